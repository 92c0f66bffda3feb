package store

import (
	"context"
	"fmt"
	"time"

	"builds/app"
)

const statusColumns = `id, created, updated, repository_id, push_id, job_id, commit_sha, context, state, sent, attempts, next_attempt, error, description`

func scanStatus(r rowScanner) (*app.CommitStatus, error) {
	var s app.CommitStatus
	var job *int64
	err := r.Scan(&s.ID, timeCol{&s.Created}, timeCol{&s.Updated}, &s.RepositoryID, &s.PushID, nullCol[int64]{&job},
		&s.Commit, &s.Context, &s.State, &s.Sent, &s.Attempts, nullTimeCol{&s.NextAttempt}, &s.Error, &s.Description)
	if err != nil {
		return nil, err
	}
	if job != nil {
		s.JobID = *job
	}
	return &s, nil
}

// CreateCommitStatuses inserts the statuses of a push's jobs, all due at
// once, in one transaction.
func (db *DB) CreateCommitStatuses(ctx context.Context, list []*app.CommitStatus) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("create commit statuses: %w", err)
	}
	defer t.Rollback()
	for _, s := range list {
		var job any
		if s.JobID != 0 {
			job = s.JobID
		}
		id, err := insert(ctx, t, `INSERT INTO commit_statuses (created, updated, repository_id, push_id, job_id, commit_sha, context, state, next_attempt, description)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			unix(t.now), unix(t.now), s.RepositoryID, s.PushID, job, s.Commit, s.Context, string(s.State), unix(t.now), s.Description)
		if err != nil {
			return fmt.Errorf("create commit status of job %d: %w", s.JobID, formatError(err, "commit status"))
		}
		now := t.now
		s.ID, s.Created, s.Updated, s.NextAttempt = id, t.now, t.now, &now
	}
	return t.commit("create commit statuses")
}

// SetCommitState makes state the job's wanted commit state, due now and
// with its failed attempts forgotten, unless it is that state already.
func (db *DB) SetCommitState(ctx context.Context, jobID int64, state app.CommitState) (bool, error) {
	t, err := db.begin(ctx, true)
	if err != nil {
		return false, fmt.Errorf("set commit state: %w", err)
	}
	defer t.Rollback()
	var cur string
	err = t.QueryRowContext(ctx, `SELECT state FROM commit_statuses WHERE job_id = ?`, jobID).Scan(&cur)
	if err != nil {
		if err = formatError(err, "commit status"); app.ErrorCode(err) == app.ENOTFOUND {
			return false, nil
		}
		return false, fmt.Errorf("set commit state of job %d: %w", jobID, err)
	}
	if cur != string(state) {
		_, err := t.ExecContext(ctx, `UPDATE commit_statuses SET state = ?, attempts = 0, next_attempt = ?, updated = ? WHERE job_id = ?`,
			string(state), unix(t.now), unix(t.now), jobID)
		if err != nil {
			return false, fmt.Errorf("set commit state of job %d: %w", jobID, formatError(err, "commit status"))
		}
	}
	return true, t.commit("set commit state")
}

// DueCommitStatuses returns up to limit statuses due by now, oldest first.
func (db *DB) DueCommitStatuses(ctx context.Context, now time.Time, limit int) ([]*app.CommitStatus, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find due commit statuses: %w", err)
	}
	defer t.Rollback()
	if limit <= 0 {
		limit = 100
	}
	list, err := queryList(ctx, t, scanStatus, `SELECT `+statusColumns+` FROM commit_statuses
		WHERE next_attempt IS NOT NULL AND next_attempt <= ? ORDER BY next_attempt, id LIMIT ?`, unix(now), limit)
	if err != nil {
		return nil, fmt.Errorf("find due commit statuses: %w", formatError(err, "commit status"))
	}
	return list, t.commit("find due commit statuses")
}

// FinishCommitAttempt records one attempt at sending state. After a
// success the status is done, unless its wanted state changed while the
// attempt ran: then it stays due. After a failure it is tried again at
// next, or never (next nil), if the state it tried is still the wanted one.
func (db *DB) FinishCommitAttempt(ctx context.Context, id int64, state app.CommitState, errText string, next *time.Time) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("finish commit status attempt: %w", err)
	}
	defer t.Rollback()
	if errText == "" {
		err = execOne(ctx, t, `UPDATE commit_statuses SET sent = ?, attempts = 0, error = '', updated = ?,
			next_attempt = CASE WHEN state = ? THEN NULL ELSE next_attempt END WHERE id = ?`,
			string(state), unix(t.now), string(state), id)
	} else {
		err = execOne(ctx, t, `UPDATE commit_statuses SET error = ?, updated = ?,
			attempts = CASE WHEN state = ? THEN attempts + 1 ELSE attempts END,
			next_attempt = CASE WHEN state = ? THEN ? ELSE next_attempt END WHERE id = ?`,
			errText, unix(t.now), string(state), string(state), unixPtr(next), id)
	}
	if err != nil {
		return fmt.Errorf("finish commit status attempt %d: %w", id, formatError(err, "commit status"))
	}
	return t.commit("finish commit status attempt")
}

// FindCommitStatuses returns a repository's latest statuses, newest first.
func (db *DB) FindCommitStatuses(ctx context.Context, repoID int64, limit int) ([]*app.CommitStatus, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find commit statuses: %w", err)
	}
	defer t.Rollback()
	if limit <= 0 {
		limit = 50
	}
	list, err := queryList(ctx, t, scanStatus, `SELECT `+statusColumns+` FROM commit_statuses WHERE repository_id = ? ORDER BY id DESC LIMIT ?`, repoID, limit)
	if err != nil {
		return nil, fmt.Errorf("find commit statuses of repository %d: %w", repoID, formatError(err, "commit status"))
	}
	return list, t.commit("find commit statuses")
}
