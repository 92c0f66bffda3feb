package store_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builds/app"
	"builds/store"
)

// TestBackupCopy: DB.Backup's copy, opened on its own, passes its check
// and names the jobs (settled: final since before the cut-off) and the
// artifacts not pruned; artifacts marked pruned in the copy drop out of
// it and stay in the database it was taken from.
func TestBackupCopy(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	alice := MustCreateUser(t, db, "alice")
	done := MustCreateJob(t, db, alice.ID, app.JobQueued)
	running := MustCreateJob(t, db, alice.ID, app.JobQueued)
	queued := MustCreateJob(t, db, alice.ID, app.JobQueued)
	st, fin := app.JobRunning, now.Add(-2*time.Hour)
	for _, id := range []int64{done.ID, running.ID} {
		if _, err := db.TransitionJob(ctx, id, []app.JobStatus{app.JobQueued}, app.JobUpdate{Status: &st}); err != nil {
			t.Fatal(err)
		}
	}
	ok := app.JobSuccess
	if _, err := db.TransitionJob(ctx, done.ID, []app.JobStatus{app.JobRunning}, app.JobUpdate{Status: &ok, Finished: &fin}); err != nil {
		t.Fatal(err)
	}
	var arts []*app.Artifact
	for _, name := range []string{"a.txt", "b.txt", "c.txt"} {
		a := &app.Artifact{JobID: done.ID, Name: name, Path: "/out/" + name, File: "1/00/" + name, Size: 1}
		if err := db.CreateArtifact(ctx, a); err != nil {
			t.Fatal(err)
		}
		arts = append(arts, a)
	}
	if err := db.PruneArtifacts(ctx, []int64{arts[2].ID}); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(t.TempDir(), "copy.db")
	if err := db.Backup(ctx, path); err != nil {
		t.Fatal(err)
	}
	cp, err := store.OpenCopy(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	if err := cp.Check(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		settledBefore time.Time
		settled       bool
	}{
		{"Settled", now.Add(-time.Hour), true},
		{"NotYet", now.Add(-3 * time.Hour), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idx, err := cp.Index(ctx, tc.settledBefore)
			if err != nil {
				t.Fatal(err)
			}
			want := []app.BackupJob{{ID: done.ID, Settled: tc.settled}, {ID: running.ID}, {ID: queued.ID}}
			if len(idx.Jobs) != 3 || idx.Jobs[0] != want[0] || idx.Jobs[1] != want[1] || idx.Jobs[2] != want[2] {
				t.Errorf("jobs %+v, want %+v", idx.Jobs, want)
			}
			if len(idx.Artifacts) != 2 || idx.Artifacts[0].File != arts[0].File || idx.Artifacts[1].JobID != done.ID {
				t.Errorf("artifacts %+v", idx.Artifacts)
			}
		})
	}
	if err := cp.MarkArtifactsPruned(ctx, []int64{arts[0].ID}, now); err != nil {
		t.Fatal(err)
	}
	idx, err := cp.Index(ctx, now)
	if err != nil || len(idx.Artifacts) != 1 || idx.Artifacts[0].ID != arts[1].ID {
		t.Errorf("after marking a pruned: %+v %v", idx, err)
	}
	live, err := db.FindArtifacts(ctx, done.ID)
	if err != nil || len(live) != 3 || live[0].Pruned != nil {
		t.Errorf("the live database changed: %v", err)
	}

	t.Run("ErrNotBuilds", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other.db")
		raw, err := sql.Open("sqlite", other)
		if err != nil {
			t.Fatal(err)
		}
		raw.Exec(`CREATE TABLE notes (x)`)
		raw.Close()
		cp, err := store.OpenCopy(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		defer cp.Close()
		if err := cp.Check(ctx); err == nil || !strings.Contains(err.Error(), "not a builds database") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("ErrMissing", func(t *testing.T) {
		if _, err := store.OpenCopy(ctx, filepath.Join(t.TempDir(), "none.db")); err == nil {
			t.Error("opened a copy that does not exist")
		}
	})
}
