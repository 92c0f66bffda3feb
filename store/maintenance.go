package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"

	"builds/app"
)

var _ app.MaintenanceStore = (*DB)(nil)

// Only jobs in one of finalStatuses (trigger_state.go) are ever pruned,
// so a running job is never touched. The scans name the indexes of
// migration 0006 (partial ones hold only what is still to prune) and
// write "+status" (the unary plus keeps SQLite from walking the (status,
// id) index instead, which holds every finished job): without table
// statistics the planner would pick that one, and each pass would read
// every job.

// CountJobs counts jobs by status (every status, 0 included) and finds
// the submission time of the oldest queued job. Both reads use the
// (status, id) index: the count walks it, the oldest queued job is its
// first queued entry.
func (db *DB) CountJobs(ctx context.Context) (*app.JobStats, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	defer t.Rollback()
	st := &app.JobStats{ByStatus: make(map[app.JobStatus]int64, len(app.JobStatuses))}
	for _, s := range app.JobStatuses {
		st.ByStatus[s] = 0
	}
	rows, err := t.QueryContext(ctx, `SELECT status, count(*) FROM jobs GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return nil, fmt.Errorf("count jobs: %w", err)
		}
		st.ByStatus[app.JobStatus(s)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	var oldest time.Time
	err = t.QueryRowContext(ctx, `SELECT created FROM jobs WHERE status = 'queued' ORDER BY id LIMIT 1`).Scan(timeCol{&oldest})
	switch {
	case err == nil:
		st.OldestQueued = &oldest
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("oldest queued job: %w", err)
	}
	return st, t.commit("count jobs")
}

// ExpiredArtifacts returns up to limit artifacts still on disk that were
// stored before `before`, of jobs in a final status, oldest first.
func (db *DB) ExpiredArtifacts(ctx context.Context, before time.Time, limit int) ([]*app.Artifact, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("expired artifacts: %w", err)
	}
	defer t.Rollback()
	list, err := queryList(ctx, t, scanArtifact, `SELECT a.id, a.created, a.job_id, a.name, a.path, a.size, a.file, a.pruned
		FROM artifacts a INDEXED BY artifacts_unpruned JOIN jobs j ON j.id = a.job_id
		WHERE a.pruned IS NULL AND a.created < ? AND +j.status IN `+finalStatuses+`
		ORDER BY a.created, a.id LIMIT ?`, unix(before), limit)
	if err != nil {
		return nil, fmt.Errorf("expired artifacts: %w", err)
	}
	return list, t.commit("expired artifacts")
}

// PruneArtifacts marks artifacts pruned (their files are going).
func (db *DB) PruneArtifacts(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("prune artifacts: %w", err)
	}
	defer t.Rollback()
	args := append([]any{unix(t.now)}, anySlice(ids)...)
	if _, err := t.ExecContext(ctx, `UPDATE artifacts SET pruned = ? WHERE pruned IS NULL AND id IN (`+placeholders(len(ids))+`)`, args...); err != nil {
		return fmt.Errorf("prune artifacts: %w", err)
	}
	return t.commit("prune artifacts")
}

// ExpiredLogs returns up to limit jobs in a final status that finished
// before `before` and whose logs are not pruned, oldest first.
func (db *DB) ExpiredLogs(ctx context.Context, before time.Time, limit int) ([]int64, error) {
	return db.jobIDs(ctx, "expired logs", `SELECT id FROM jobs INDEXED BY jobs_logs_unpruned
		WHERE logs_pruned IS NULL AND finished IS NOT NULL AND finished < ? AND +status IN `+finalStatuses+`
		ORDER BY finished, id LIMIT ?`, unix(before), limit)
}

// PruneLogs marks jobs' logs pruned, if they are in a final status.
func (db *DB) PruneLogs(ctx context.Context, jobIDs []int64) error {
	if len(jobIDs) == 0 {
		return nil
	}
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("prune logs: %w", err)
	}
	defer t.Rollback()
	args := append([]any{unix(t.now)}, anySlice(jobIDs)...)
	if _, err := t.ExecContext(ctx, `UPDATE jobs SET logs_pruned = ?
		WHERE logs_pruned IS NULL AND status IN `+finalStatuses+` AND id IN (`+placeholders(len(jobIDs))+`)`, args...); err != nil {
		return fmt.Errorf("prune logs: %w", err)
	}
	return t.commit("prune logs")
}

// LogsPruned returns when a job's logs were pruned (nil: they were not).
func (db *DB) LogsPruned(ctx context.Context, jobID int64) (*time.Time, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("logs pruned: %w", err)
	}
	defer t.Rollback()
	var at *time.Time
	if err := t.QueryRowContext(ctx, `SELECT logs_pruned FROM jobs WHERE id = ?`, jobID).Scan(nullTimeCol{&at}); err != nil {
		return nil, fmt.Errorf("logs pruned of job %d: %w", jobID, formatError(err, "job"))
	}
	return at, t.commit("logs pruned")
}

// ExpiredJobs returns up to limit jobs in a final status that finished
// before `before`, oldest first.
func (db *DB) ExpiredJobs(ctx context.Context, before time.Time, limit int) ([]int64, error) {
	return db.jobIDs(ctx, "expired jobs", `SELECT id FROM jobs
		WHERE finished IS NOT NULL AND finished < ? AND +status IN `+finalStatuses+`
		ORDER BY finished, id LIMIT ?`, unix(before), limit)
}

// DeleteJobs deletes jobs in a final status with, by cascade, their
// tasks, artifact rows and trigger deliveries. It returns the ids it
// deleted.
func (db *DB) DeleteJobs(ctx context.Context, ids []int64) ([]int64, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	t, err := db.begin(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("delete jobs: %w", err)
	}
	defer t.Rollback()
	rows, err := t.Tx.QueryContext(ctx, t.stmts.rewrite(`DELETE FROM jobs WHERE status IN `+finalStatuses+` AND id IN (`+placeholders(len(ids))+`) RETURNING id`), anySlice(ids)...)
	if err != nil {
		return nil, fmt.Errorf("delete jobs: %w", err)
	}
	var gone []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("delete jobs: %w", err)
		}
		gone = append(gone, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("delete jobs: %w", err)
	}
	return gone, t.commit("delete jobs")
}

// PrunableJobs returns up to limit jobs with id > afterID in a final
// status that still have logs or artifacts on disk, oldest first: what
// [retention] max-size prunes.
func (db *DB) PrunableJobs(ctx context.Context, afterID int64, limit int) ([]int64, error) {
	return db.jobIDs(ctx, "prunable jobs", `SELECT id FROM jobs j
		WHERE id > ? AND finished IS NOT NULL AND status IN `+finalStatuses+`
		AND (logs_pruned IS NULL OR EXISTS (SELECT 1 FROM artifacts a WHERE a.job_id = j.id AND a.pruned IS NULL))
		ORDER BY id LIMIT ?`, afterID, limit)
}

// jobIDs runs a read returning job ids.
func (db *DB) jobIDs(ctx context.Context, op, query string, args ...any) ([]int64, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer t.Rollback()
	rows, err := t.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return ids, t.commit(op)
}

// Backup writes a consistent copy of the database to path (which must
// not exist) while it is in use: SQLite's VACUUM INTO reads one snapshot
// in a read transaction, so writers go on meanwhile. The copy is made
// 0600 before SQLite writes to it. On PostgreSQL the copy is a SQLite
// file too, written from one REPEATABLE READ snapshot (copy.go), so that
// a backup restores into either database.
func (db *DB) Backup(ctx context.Context, path string) error {
	if db.postgres {
		return db.backupPostgres(ctx, path)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("backup database: %w", err)
	}
	f.Close()
	// VACUUM INTO refuses an existing non-empty file only; an empty one
	// is fine and keeps the mode set above.
	if _, err := db.db.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		os.Remove(path)
		return fmt.Errorf("backup database: %w", err)
	}
	return nil
}
