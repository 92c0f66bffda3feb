package store

import (
	"context"
	"fmt"
	"slices"

	"builds/app"
)

const groupColumns = `id, created, updated, owner_id, note, fired`

func scanGroup(r rowScanner) (*app.JobGroup, error) {
	var g app.JobGroup
	err := r.Scan(&g.ID, timeCol{&g.Created}, timeCol{&g.Updated}, &g.OwnerID, nullCol[string]{&g.Note}, &g.Fired)
	if err != nil {
		return nil, err
	}
	return &g, nil
}

const groupTriggerColumns = `id, group_id, action, condition, email_to, email_cc, in_reply_to, url`

func scanGroupTrigger(r rowScanner) (*app.GroupTrigger, error) {
	var g app.GroupTrigger
	if err := r.Scan(&g.ID, &g.GroupID, &g.Action, &g.Condition, &g.To, &g.Cc, &g.InReplyTo, &g.URL); err != nil {
		return nil, err
	}
	return &g, nil
}

// errInvalidGroupJobs is upstream's message for a bad createGroup job list.
const errInvalidGroupJobs = "Invalid list of job IDs. All jobs must be owned by you, not assigned to another job group, and in the pending state."

// CreateGroup inserts g (setting its ID and times), attaches the jobs, which
// must all exist, be owned by g.OwnerID, be pending and be in no group
// (else EINVALID), inserts the triggers (setting their IDs and GroupID)
// and, if queue, moves the jobs to queued.
func (db *DB) CreateGroup(ctx context.Context, g *app.JobGroup, jobIDs []int64, triggers []*app.GroupTrigger, queueFrom []app.JobStatus) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("create job group: %w", err)
	}
	defer t.Rollback()
	if err := createGroup(ctx, t, g); err != nil {
		return fmt.Errorf("create job group: %w", err)
	}
	if err := attachJobs(ctx, t, g, jobIDs); err != nil {
		return fmt.Errorf("create job group: %w", err)
	}
	for _, tr := range triggers {
		if err := createGroupTrigger(ctx, t, g.ID, tr); err != nil {
			return fmt.Errorf("create job group: %w", err)
		}
	}
	if queueFrom != nil {
		if _, err := queueGroup(ctx, t, g.ID, queueFrom); err != nil {
			return fmt.Errorf("create job group: %w", err)
		}
	}
	return t.commit("create job group")
}

func createGroup(ctx context.Context, t *tx, g *app.JobGroup) error {
	id, err := insert(ctx, t, `INSERT INTO job_groups (created, updated, owner_id, note, fired) VALUES (?, ?, ?, ?, ?)`,
		unix(t.now), unix(t.now), g.OwnerID, nullable(g.Note), flag(g.Fired))
	if err != nil {
		return formatError(err, "job group")
	}
	g.ID, g.Created, g.Updated = id, t.now, t.now
	return nil
}

// attachJobs puts the jobs into group g; every id must match, or none is
// attached. Duplicate ids count once.
func attachJobs(ctx context.Context, t *tx, g *app.JobGroup, jobIDs []int64) error {
	ids := slices.Clone(jobIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	for start := 0; start < len(ids); start += maxBatch {
		batch := ids[start:min(start+maxBatch, len(ids))]
		args := append([]any{g.ID, unix(t.now), g.OwnerID}, anySlice(batch)...)
		res, err := t.ExecContext(ctx, `UPDATE jobs SET group_id = ?, updated = ?
			WHERE owner_id = ? AND status = 'pending' AND group_id IS NULL
			AND id IN (`+placeholders(len(batch))+`)`, args...)
		if err != nil {
			return formatError(err, "job")
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != int64(len(batch)) {
			return app.Errorf(app.EINVALID, errInvalidGroupJobs)
		}
	}
	return nil
}

func createGroupTrigger(ctx context.Context, t *tx, groupID int64, g *app.GroupTrigger) error {
	id, err := insert(ctx, t, `INSERT INTO group_triggers (group_id, action, condition, email_to, email_cc, in_reply_to, url)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, groupID, g.Action, g.Condition, g.To, g.Cc, g.InReplyTo, g.URL)
	if err != nil {
		return formatError(err, "group trigger")
	}
	g.ID, g.GroupID = id, groupID
	return nil
}

// FindGroupByID returns the job group with the given id.
func (db *DB) FindGroupByID(ctx context.Context, id int64) (*app.JobGroup, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find job group: %w", err)
	}
	defer t.Rollback()
	g, err := findGroupByID(ctx, t, id)
	if err != nil {
		return nil, fmt.Errorf("find job group %d: %w", id, err)
	}
	return g, t.commit("find job group")
}

func findGroupByID(ctx context.Context, t *tx, id int64) (*app.JobGroup, error) {
	g, err := scanGroup(t.QueryRowContext(ctx, `SELECT `+groupColumns+` FROM job_groups WHERE id = ?`, id))
	return g, formatError(err, "job group")
}

// FindGroupTriggers returns the group's triggers in creation order.
func (db *DB) FindGroupTriggers(ctx context.Context, groupID int64) ([]*app.GroupTrigger, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find group triggers: %w", err)
	}
	defer t.Rollback()
	list, err := queryList(ctx, t, scanGroupTrigger, `SELECT `+groupTriggerColumns+` FROM group_triggers
		WHERE group_id = ? ORDER BY id`, groupID)
	if err != nil {
		return nil, fmt.Errorf("find triggers of job group %d: %w", groupID, formatError(err, "group trigger"))
	}
	return list, t.commit("find group triggers")
}

// QueueGroup moves the group's jobs whose status is one of from to queued
// and returns how many moved. ENOTFOUND if the group does not exist.
func (db *DB) QueueGroup(ctx context.Context, groupID int64, from []app.JobStatus) (int, error) {
	t, err := db.begin(ctx, true)
	if err != nil {
		return 0, fmt.Errorf("queue job group: %w", err)
	}
	defer t.Rollback()
	if _, err := findGroupByID(ctx, t, groupID); err != nil {
		return 0, fmt.Errorf("queue job group %d: %w", groupID, err)
	}
	n, err := queueGroup(ctx, t, groupID, from)
	if err != nil {
		return 0, fmt.Errorf("queue job group %d: %w", groupID, err)
	}
	return n, t.commit("queue job group")
}

func queueGroup(ctx context.Context, t *tx, groupID int64, from []app.JobStatus) (int, error) {
	if len(from) == 0 {
		return 0, nil
	}
	res, err := t.ExecContext(ctx, `UPDATE jobs SET status = ?, updated = ? WHERE group_id = ? AND status IN (`+placeholders(len(from))+`)`,
		append([]any{app.JobQueued, unix(t.now), groupID}, anySlice(from)...)...)
	if err != nil {
		return 0, formatError(err, "job")
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// MarkGroupFired sets the group's Fired flag if it was unset and reports
// whether this call set it, so that group triggers run exactly once.
func (db *DB) MarkGroupFired(ctx context.Context, groupID int64) (bool, error) {
	t, err := db.begin(ctx, true)
	if err != nil {
		return false, fmt.Errorf("mark job group fired: %w", err)
	}
	defer t.Rollback()
	res, err := t.ExecContext(ctx, `UPDATE job_groups SET fired = 1, updated = ? WHERE id = ? AND fired = 0`,
		unix(t.now), groupID)
	if err != nil {
		return false, fmt.Errorf("mark job group %d fired: %w", groupID, formatError(err, "job group"))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("mark job group %d fired: %w", groupID, err)
	}
	if n == 0 {
		if _, err := findGroupByID(ctx, t, groupID); err != nil {
			return false, fmt.Errorf("mark job group %d fired: %w", groupID, err)
		}
	}
	return n == 1, t.commit("mark job group fired")
}

const triggerDeliveryColumns = `id, created, job_id, group_id, action, target, status, message, attempts`

func scanTriggerDelivery(r rowScanner) (*app.TriggerDelivery, error) {
	var d app.TriggerDelivery
	err := r.Scan(&d.ID, timeCol{&d.Created}, nullCol[int64]{&d.JobID}, nullCol[int64]{&d.GroupID},
		&d.Action, &d.Target, &d.Status, &d.Message, &d.Attempts)
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// CreateTriggerDelivery records a trigger attempt, setting ID and Created.
func (db *DB) CreateTriggerDelivery(ctx context.Context, d *app.TriggerDelivery) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("create trigger delivery: %w", err)
	}
	defer t.Rollback()
	id, err := insert(ctx, t, `INSERT INTO trigger_deliveries (created, job_id, group_id, action, target, status, message, attempts)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		unix(t.now), nullable(d.JobID), nullable(d.GroupID), d.Action, d.Target, d.Status, d.Message, d.Attempts)
	if err != nil {
		return fmt.Errorf("create trigger delivery: %w", formatError(err, "trigger delivery"))
	}
	d.ID, d.Created = id, t.now
	return t.commit("create trigger delivery")
}

// FindTriggerDeliveries returns the trigger deliveries recorded for a job,
// oldest first.
func (db *DB) FindTriggerDeliveries(ctx context.Context, jobID int64) ([]*app.TriggerDelivery, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find trigger deliveries: %w", err)
	}
	defer t.Rollback()
	list, err := queryList(ctx, t, scanTriggerDelivery, `SELECT `+triggerDeliveryColumns+` FROM trigger_deliveries
		WHERE job_id = ? ORDER BY id`, jobID)
	if err != nil {
		return nil, fmt.Errorf("find trigger deliveries of job %d: %w", jobID, formatError(err, "trigger delivery"))
	}
	return list, t.commit("find trigger deliveries")
}
