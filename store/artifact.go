package store

import (
	"context"
	"fmt"

	"builds/app"
)

const artifactColumns = `id, created, job_id, name, path, size, file, pruned`

func scanArtifact(r rowScanner) (*app.Artifact, error) {
	var a app.Artifact
	if err := r.Scan(&a.ID, timeCol{&a.Created}, &a.JobID, &a.Name, &a.Path, &a.Size, &a.File, nullTimeCol{&a.Pruned}); err != nil {
		return nil, err
	}
	return &a, nil
}

// CreateArtifact inserts a, setting its ID and Created.
func (db *DB) CreateArtifact(ctx context.Context, a *app.Artifact) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("create artifact: %w", err)
	}
	defer t.Rollback()
	id, err := insert(ctx, t, `INSERT INTO artifacts (created, job_id, name, path, size, file) VALUES (?, ?, ?, ?, ?, ?)`,
		unix(t.now), a.JobID, a.Name, a.Path, a.Size, a.File)
	if err != nil {
		return fmt.Errorf("create artifact %s: %w", a.Name, formatError(err, "artifact"))
	}
	a.ID, a.Created = id, t.now
	return t.commit("create artifact")
}

// FindArtifacts returns the job's artifacts, oldest first.
func (db *DB) FindArtifacts(ctx context.Context, jobID int64) ([]*app.Artifact, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find artifacts: %w", err)
	}
	defer t.Rollback()
	list, err := queryList(ctx, t, scanArtifact, `SELECT `+artifactColumns+` FROM artifacts WHERE job_id = ? ORDER BY id`, jobID)
	if err != nil {
		return nil, fmt.Errorf("find artifacts of job %d: %w", jobID, formatError(err, "artifact"))
	}
	return list, t.commit("find artifacts")
}

// FindArtifactByID returns the artifact with the given id.
func (db *DB) FindArtifactByID(ctx context.Context, id int64) (*app.Artifact, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find artifact: %w", err)
	}
	defer t.Rollback()
	a, err := scanArtifact(t.QueryRowContext(ctx, `SELECT `+artifactColumns+` FROM artifacts WHERE id = ?`, id))
	if err != nil {
		return nil, fmt.Errorf("find artifact %d: %w", id, formatError(err, "artifact"))
	}
	return a, t.commit("find artifact")
}
