package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"builds/app"
)

// Copy is a database file written by DB.Backup, opened on its own (no
// migrations, no WAL) so `builds backup` can read what the snapshot
// names and `builds restore` can check it. Closing it leaves the one
// file behind.
type Copy struct {
	db *sql.DB
}

// OpenCopy opens the database copy at path, which must exist.
func OpenCopy(ctx context.Context, path string) (*Copy, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open database copy: %w", err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("open database copy: %w", err)
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}
	q := url.Values{}
	// DELETE: a copy is one file, moved and checksummed as such; the
	// server that opens it later switches it to WAL (dsn).
	q.Add("_pragma", "journal_mode(DELETE)")
	q.Add("_pragma", "foreign_keys(1)")
	u.RawQuery = q.Encode()
	sdb, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, fmt.Errorf("open database copy: %w", err)
	}
	sdb.SetMaxOpenConns(1)
	if err := sdb.PingContext(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("open database copy %s: %w", abs, err)
	}
	return &Copy{db: sdb}, nil
}

// Close closes the copy.
func (c *Copy) Close() error { return c.db.Close() }

// Check runs SQLite's integrity check and makes sure the file is a
// builds database (it has the migrations and jobs tables).
func (c *Copy) Check(ctx context.Context) error {
	var res string
	if err := c.db.QueryRowContext(ctx, `PRAGMA integrity_check(1)`).Scan(&res); err != nil {
		return fmt.Errorf("check database: %w", err)
	}
	if res != "ok" {
		return fmt.Errorf("check database: %s", res)
	}
	var n int
	err := c.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('migrations', 'jobs', 'artifacts')`).Scan(&n)
	if err != nil {
		return fmt.Errorf("check database: %w", err)
	}
	if n != 3 {
		return errors.New("check database: not a builds database (no jobs, artifacts or migrations table)")
	}
	return nil
}

// Index returns the jobs and unpruned artifacts of the copy. A job is
// settled if it has been in a final status since before settledBefore.
func (c *Copy) Index(ctx context.Context, settledBefore time.Time) (*app.BackupIndex, error) {
	tx, err := c.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("read database copy: %w", err)
	}
	defer tx.Rollback()
	idx := &app.BackupIndex{}
	rows, err := tx.QueryContext(ctx, `SELECT id, status IN `+finalStatuses+` AND finished IS NOT NULL AND finished < ? FROM jobs ORDER BY id`, unix(settledBefore))
	if err != nil {
		return nil, fmt.Errorf("read database copy: %w", err)
	}
	for rows.Next() {
		var j app.BackupJob
		if err := rows.Scan(&j.ID, &j.Settled); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read database copy: %w", err)
		}
		idx.Jobs = append(idx.Jobs, j)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read database copy: %w", err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT id, job_id, file FROM artifacts WHERE pruned IS NULL ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("read database copy: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a app.BackupArtifact
		if err := rows.Scan(&a.ID, &a.JobID, &a.File); err != nil {
			return nil, fmt.Errorf("read database copy: %w", err)
		}
		idx.Artifacts = append(idx.Artifacts, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read database copy: %w", err)
	}
	return idx, nil
}

// MarkArtifactsPruned marks artifacts of the copy pruned at `at`: their
// files went (the pruner, a deleted job) between the snapshot and the
// copying of files, so the restored server answers url: null for them
// as the live one now does.
func (c *Copy) MarkArtifactsPruned(ctx context.Context, ids []int64, at time.Time) error {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("mark artifacts pruned: %w", err)
	}
	defer tx.Rollback()
	for len(ids) > 0 {
		n := min(len(ids), 500)
		args := append([]any{unix(at)}, anySlice(ids[:n])...)
		if _, err := tx.ExecContext(ctx, `UPDATE artifacts SET pruned = ? WHERE id IN (`+placeholders(n)+`)`, args...); err != nil {
			return fmt.Errorf("mark artifacts pruned: %w", err)
		}
		ids = ids[n:]
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("mark artifacts pruned: %w", err)
	}
	return nil
}
