package store

import (
	"context"
	"fmt"

	"builds/app"
)

// finalStatuses is the SQL list of final job statuses. It must read exactly
// like the WHERE clause of the jobs_triggers_pending index (migration 0003)
// for SQLite to use that partial index.
const finalStatuses = `('success', 'failed', 'timeout', 'cancelled')`

// FindJobsAwaitingTriggers returns up to limit final jobs whose triggers
// have not been marked done, with id > afterID, oldest first. Callers page
// through them by passing the last id seen.
func (db *DB) FindJobsAwaitingTriggers(ctx context.Context, afterID int64, limit int) ([]*app.Job, error) {
	if limit <= 0 {
		return nil, app.Errorf(app.EINVALID, "limit must be positive, not %d", limit)
	}
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find jobs awaiting triggers: %w", err)
	}
	defer t.Rollback()
	// Left alone, the planner prefers jobs_status and reads every final job
	// ever; the partial index holds only the ones awaiting triggers.
	jobs, err := queryList(ctx, t, scanJob, `SELECT `+jobColumns+` FROM jobs INDEXED BY jobs_triggers_pending
		WHERE triggers_done = 0 AND status IN `+finalStatuses+` AND id > ?
		ORDER BY id LIMIT ?`, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("find jobs awaiting triggers: %w", formatError(err, "job"))
	}
	return jobs, t.commit("find jobs awaiting triggers")
}

// TriggersDone reports whether a job's triggers have been marked done.
func (db *DB) TriggersDone(ctx context.Context, jobID int64) (bool, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return false, fmt.Errorf("find trigger state: %w", err)
	}
	defer t.Rollback()
	var done bool
	err = t.QueryRowContext(ctx, `SELECT triggers_done FROM jobs WHERE id = ?`, jobID).Scan(&done)
	if err != nil {
		return false, fmt.Errorf("find trigger state of job %d: %w", jobID, formatError(err, "job"))
	}
	return done, t.commit("find trigger state")
}

// MarkTriggersDone records that a final job's triggers have been
// processed, if that was not recorded yet, and reports whether this call
// recorded it. A job that is not final is ECONFLICT (its triggers have not
// run); a missing job ENOTFOUND.
func (db *DB) MarkTriggersDone(ctx context.Context, jobID int64) (bool, error) {
	t, err := db.begin(ctx, true)
	if err != nil {
		return false, fmt.Errorf("mark triggers done: %w", err)
	}
	defer t.Rollback()
	set, err := markTriggersDone(ctx, t, jobID)
	if err != nil {
		return false, fmt.Errorf("mark triggers of job %d done: %w", jobID, err)
	}
	return set, t.commit("mark triggers done")
}

func markTriggersDone(ctx context.Context, t *tx, jobID int64) (bool, error) {
	// updated is left alone: this is bookkeeping, not a change of the job.
	res, err := t.ExecContext(ctx, `UPDATE jobs SET triggers_done = 1
		WHERE id = ? AND triggers_done = 0 AND status IN `+finalStatuses, jobID)
	if err != nil {
		return false, formatError(err, "job")
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	if n == 1 {
		return true, nil
	}
	// Tell "already done" from a missing or unfinished job.
	j, err := findJobByID(ctx, t, jobID)
	if err != nil {
		return false, err
	}
	if !j.Status.Final() {
		return false, app.Errorf(app.ECONFLICT, "job %d is %s, not in a final status", jobID, j.Status)
	}
	return false, nil
}
