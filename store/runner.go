package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"builds/app"
)

const runnerColumns = `id, name, created, hash, last_seen, revoked, report`

func scanRunner(r rowScanner) (*app.Runner, error) {
	var (
		x      app.Runner
		report string
	)
	if err := r.Scan(&x.ID, &x.Name, timeCol{&x.Created}, &x.Hash, nullTimeCol{&x.LastSeen}, nullTimeCol{&x.Revoked}, &report); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(report), &x.Report); err != nil {
		return nil, fmt.Errorf("runner %d: stored report: %w", x.ID, err)
	}
	return &x, nil
}

// CreateRunner inserts r, setting its ID and Created. ECONFLICT when an
// unrevoked runner has the name.
func (db *DB) CreateRunner(ctx context.Context, r *app.Runner) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("create runner: %w", err)
	}
	defer t.Rollback()
	id, err := insert(ctx, t, `INSERT INTO runners (created, name, hash) VALUES (?, ?, ?)`, unix(t.now), r.Name, r.Hash)
	if err != nil {
		return fmt.Errorf("create runner: %w", formatError(err, "runner"))
	}
	r.ID, r.Created = id, t.now
	return t.commit("create runner")
}

// FindRunnerByHash returns the unrevoked runner whose token hash is hash.
func (db *DB) FindRunnerByHash(ctx context.Context, hash string) (*app.Runner, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find runner: %w", err)
	}
	defer t.Rollback()
	r, err := scanRunner(t.QueryRowContext(ctx, `SELECT `+runnerColumns+` FROM runners WHERE hash = ? AND revoked IS NULL`, hash))
	if err != nil {
		return nil, fmt.Errorf("find runner: %w", formatError(err, "runner"))
	}
	return r, nil
}

// FindRunners returns every runner, revoked ones too, by name.
func (db *DB) FindRunners(ctx context.Context) ([]*app.Runner, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find runners: %w", err)
	}
	defer t.Rollback()
	rs, err := queryList(ctx, t, scanRunner, `SELECT `+runnerColumns+` FROM runners ORDER BY name, id`)
	if err != nil {
		return nil, fmt.Errorf("find runners: %w", err)
	}
	return rs, nil
}

// TouchRunner records a poll of runner id: its report, at now.
func (db *DB) TouchRunner(ctx context.Context, id int64, rep app.RunnerReport) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("touch runner: %w", err)
	}
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("touch runner: %w", err)
	}
	defer t.Rollback()
	if err := execOne(ctx, t, `UPDATE runners SET last_seen = ?, report = ? WHERE id = ? AND revoked IS NULL`, unix(t.now), string(b), id); err != nil {
		return fmt.Errorf("touch runner: %w", formatError(err, "runner"))
	}
	return t.commit("touch runner")
}

// RevokeRunner revokes runner id: its token stops working.
func (db *DB) RevokeRunner(ctx context.Context, id int64) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("revoke runner: %w", err)
	}
	defer t.Rollback()
	if err := execOne(ctx, t, `UPDATE runners SET revoked = ? WHERE id = ? AND revoked IS NULL`, unix(t.now), id); err != nil {
		return fmt.Errorf("revoke runner: %w", formatError(err, "runner"))
	}
	return t.commit("revoke runner")
}

// ClaimJobForRunner moves job id along upd if its status is one of from
// and records the runner's lease on it, in one transaction.
func (db *DB) ClaimJobForRunner(ctx context.Context, id int64, from []app.JobStatus, upd app.JobUpdate, runnerID int64, expires time.Time) (*app.Job, error) {
	t, err := db.begin(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("claim job: %w", err)
	}
	defer t.Rollback()
	j, err := updateJob(ctx, t, id, from, upd)
	if app.ErrorCode(err) == app.ENOTFOUND {
		// tell a missing job from one in another status
		cur, ferr := findJobByID(ctx, t, id)
		if ferr != nil {
			return nil, fmt.Errorf("claim job %d: %w", id, ferr)
		}
		err = app.Errorf(app.ECONFLICT, "job %d is %s, not %s", id, cur.Status, joinStatuses(from))
	}
	if err != nil {
		return nil, fmt.Errorf("claim job: %w", err)
	}
	if _, err := t.ExecContext(ctx, `INSERT INTO job_leases (job_id, runner_id, expires) VALUES (?, ?, ?)
		ON CONFLICT (job_id) DO UPDATE SET runner_id = excluded.runner_id, expires = excluded.expires`,
		id, runnerID, unix(expires)); err != nil {
		return nil, fmt.Errorf("claim job: lease: %w", formatError(err, "lease"))
	}
	if err := t.commit("claim job"); err != nil {
		return nil, err
	}
	return j, nil
}

const leaseColumns = `job_id, runner_id, expires`

func scanLease(r rowScanner) (*app.JobLease, error) {
	var l app.JobLease
	if err := r.Scan(&l.JobID, &l.RunnerID, timeCol{&l.Expires}); err != nil {
		return nil, err
	}
	return &l, nil
}

// FindLease returns job id's lease.
func (db *DB) FindLease(ctx context.Context, jobID int64) (*app.JobLease, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find lease: %w", err)
	}
	defer t.Rollback()
	l, err := scanLease(t.QueryRowContext(ctx, `SELECT `+leaseColumns+` FROM job_leases WHERE job_id = ?`, jobID))
	if err != nil {
		return nil, fmt.Errorf("find lease: %w", formatError(err, "lease"))
	}
	return l, nil
}

// FindLeases returns every lease, soonest to end first.
func (db *DB) FindLeases(ctx context.Context) ([]*app.JobLease, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find leases: %w", err)
	}
	defer t.Rollback()
	ls, err := queryList(ctx, t, scanLease, `SELECT `+leaseColumns+` FROM job_leases ORDER BY expires, job_id`)
	if err != nil {
		return nil, fmt.Errorf("find leases: %w", err)
	}
	return ls, nil
}

// RenewLeases moves the leases runner holds on ids to expires. Leases of
// other runners are left alone.
func (db *DB) RenewLeases(ctx context.Context, runnerID int64, ids []int64, expires time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("renew leases: %w", err)
	}
	defer t.Rollback()
	args := append([]any{unix(expires), runnerID}, anySlice(ids)...)
	if _, err := t.ExecContext(ctx, `UPDATE job_leases SET expires = ? WHERE runner_id = ? AND job_id IN (`+placeholders(len(ids))+`)`, args...); err != nil {
		return fmt.Errorf("renew leases: %w", err)
	}
	return t.commit("renew leases")
}

// ExtendLeases moves every lease that ends before expires to expires.
func (db *DB) ExtendLeases(ctx context.Context, expires time.Time) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("extend leases: %w", err)
	}
	defer t.Rollback()
	if _, err := t.ExecContext(ctx, `UPDATE job_leases SET expires = ? WHERE expires < ?`, unix(expires), unix(expires)); err != nil {
		return fmt.Errorf("extend leases: %w", err)
	}
	return t.commit("extend leases")
}

// DeleteLease removes job id's lease (none is fine).
func (db *DB) DeleteLease(ctx context.Context, jobID int64) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("delete lease: %w", err)
	}
	defer t.Rollback()
	if _, err := t.ExecContext(ctx, `DELETE FROM job_leases WHERE job_id = ?`, jobID); err != nil {
		return fmt.Errorf("delete lease: %w", err)
	}
	return t.commit("delete lease")
}

// FindQueuedJobs returns up to limit queued jobs, oldest first, of the
// given images (all images when images is nil).
func (db *DB) FindQueuedJobs(ctx context.Context, images []string, limit int) ([]*app.Job, error) {
	if images != nil && len(images) == 0 {
		return []*app.Job{}, nil
	}
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find queued jobs: %w", err)
	}
	defer t.Rollback()
	q := `SELECT ` + jobColumns + ` FROM jobs WHERE status = ?`
	args := []any{app.JobQueued}
	if images != nil {
		q += ` AND image IN (` + placeholders(len(images)) + `)`
		args = append(args, anySlice(images)...)
	}
	q += ` ORDER BY id LIMIT ?`
	args = append(args, limit)
	jobs, err := queryList(ctx, t, scanJob, q, args...)
	if err != nil {
		return nil, fmt.Errorf("find queued jobs: %w", formatError(err, "job"))
	}
	return jobs, nil
}
