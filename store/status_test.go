package store_test

import (
	"context"
	"testing"
	"time"

	"builds/app"
)

func TestCommitStatuses(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	repo := &app.Repo{OwnerID: alice.ID, Name: "proj", Kind: app.ForgeGitHub, CloneURL: "https://github.com/alice/proj.git",
		Token: []byte{1}, Visibility: app.Unlisted, HookID: "h", Secret: []byte{2}}
	if err := db.CreateRepository(ctx, repo); err != nil {
		t.Fatal(err)
	}
	push := &app.RepoPush{RepositoryID: repo.ID, Ref: "refs/heads/main", Commit: "abc"}
	if err := db.CreateRepoPush(ctx, push); err != nil {
		t.Fatal(err)
	}
	j1, j2 := MustCreateJob(t, db, alice.ID, app.JobQueued), MustCreateJob(t, db, alice.ID, app.JobQueued)
	list := []*app.CommitStatus{
		{RepositoryID: repo.ID, PushID: push.ID, JobID: j1.ID, Commit: "abc", Context: "builds/a", State: app.CommitPending},
		{RepositoryID: repo.ID, PushID: push.ID, JobID: j2.ID, Commit: "abc", Context: "builds/b", State: app.CommitPending},
	}
	if err := db.CreateCommitStatuses(ctx, list); err != nil {
		t.Fatal(err)
	}
	due := func() []*app.CommitStatus {
		t.Helper()
		l, err := db.DueCommitStatuses(ctx, nowSec, 10)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}

	t.Run("OK", func(t *testing.T) {
		if l := due(); len(l) != 2 || l[0].JobID != j1.ID || l[0].State != app.CommitPending || l[0].Sent != "" {
			t.Fatalf("due %+v", l)
		}
		if l, _ := db.DueCommitStatuses(ctx, nowSec.Add(-time.Second), 10); len(l) != 0 {
			t.Errorf("due before they were made: %+v", l)
		}
		for _, cs := range list {
			if err := db.FinishCommitAttempt(ctx, cs.ID, app.CommitPending, "", nil); err != nil {
				t.Fatal(err)
			}
		}
		if l := due(); len(l) != 0 {
			t.Errorf("due after sending %+v", l)
		}
	})
	t.Run("StateChangedWhileSending", func(t *testing.T) {
		if ok, err := db.SetCommitState(ctx, j1.ID, app.CommitRunning); !ok || err != nil {
			t.Fatal(ok, err)
		}
		// running is being sent when the job finishes
		if ok, err := db.SetCommitState(ctx, j1.ID, app.CommitSuccess); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if err := db.FinishCommitAttempt(ctx, list[0].ID, app.CommitRunning, "", nil); err != nil {
			t.Fatal(err)
		}
		l := due()
		if len(l) != 1 || l[0].State != app.CommitSuccess || l[0].Sent != app.CommitRunning {
			t.Fatalf("due %+v", l)
		}
		// a failed attempt at the old state does not push back the new one
		later := nowSec.Add(time.Hour)
		if err := db.FinishCommitAttempt(ctx, list[0].ID, app.CommitRunning, "boom", &later); err != nil {
			t.Fatal(err)
		}
		if l := due(); len(l) != 1 || l[0].Attempts != 0 || l[0].Error != "boom" {
			t.Fatalf("due %+v", l)
		}
		if err := db.FinishCommitAttempt(ctx, list[0].ID, app.CommitSuccess, "", nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Failures", func(t *testing.T) {
		db.SetCommitState(ctx, j2.ID, app.CommitFailure)
		later := nowSec.Add(time.Minute)
		if err := db.FinishCommitAttempt(ctx, list[1].ID, app.CommitFailure, "HTTP status 503", &later); err != nil {
			t.Fatal(err)
		}
		if l := due(); len(l) != 0 {
			t.Fatalf("due before the retry time %+v", l)
		}
		l, err := db.DueCommitStatuses(ctx, later, 10)
		if err != nil || len(l) != 1 || l[0].Attempts != 1 || l[0].Error != "HTTP status 503" {
			t.Fatalf("due at retry time %+v, %v", l, err)
		}
		if err := db.FinishCommitAttempt(ctx, list[1].ID, app.CommitFailure, "gave up", nil); err != nil {
			t.Fatal(err)
		}
		if l, _ := db.DueCommitStatuses(ctx, later.Add(time.Hour), 10); len(l) != 0 {
			t.Fatalf("due after giving up %+v", l)
		}
		// setting the same state again does not revive it; another does
		db.SetCommitState(ctx, j2.ID, app.CommitFailure)
		if l, _ := db.DueCommitStatuses(ctx, later.Add(time.Hour), 10); len(l) != 0 {
			t.Fatalf("revived by the same state %+v", l)
		}
	})
	t.Run("List", func(t *testing.T) {
		l, err := db.FindCommitStatuses(ctx, repo.ID, 10)
		if err != nil || len(l) != 2 || l[0].JobID != j2.ID || l[0].Error != "gave up" || l[1].Sent != app.CommitSuccess {
			t.Fatalf("list %+v, %v", l, err)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		if ok, err := db.SetCommitState(ctx, 99999, app.CommitSuccess); ok || err != nil {
			t.Errorf("a job without status: %v, %v", ok, err)
		}
		if err := db.FinishCommitAttempt(ctx, 99999, app.CommitSuccess, "", nil); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("err %v", err)
		}
		bad := []*app.CommitStatus{{RepositoryID: repo.ID, PushID: push.ID, JobID: j1.ID, Commit: "abc", Context: "x", State: "exploded"}}
		if err := db.CreateCommitStatuses(ctx, bad); err == nil {
			t.Error("a bad state was stored")
		}
	})
	t.Run("NoJob", func(t *testing.T) {
		// manifests that failed to parse: no job, a description of their own
		nojob := []*app.CommitStatus{
			{RepositoryID: repo.ID, PushID: push.ID, Commit: "abc", Context: "builds/x", State: app.CommitFailure, Description: "builds: line 2: bad"},
			{RepositoryID: repo.ID, PushID: push.ID, Commit: "abc", Context: "builds/y", State: app.CommitFailure, Description: "builds: line 3: bad"},
		}
		if err := db.CreateCommitStatuses(ctx, nojob); err != nil {
			t.Fatal(err)
		}
		l := due()
		if len(l) != 2 || l[0].JobID != 0 || l[0].Description != "builds: line 2: bad" || l[1].Context != "builds/y" {
			t.Fatalf("due %+v", l)
		}
		for _, cs := range nojob {
			if err := db.FinishCommitAttempt(ctx, cs.ID, app.CommitFailure, "", nil); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("DeletedWithRepository", func(t *testing.T) {
		if err := db.DeleteRepository(ctx, repo.ID); err != nil {
			t.Fatal(err)
		}
		if l, _ := db.FindCommitStatuses(ctx, repo.ID, 10); len(l) != 0 {
			t.Errorf("left %+v", l)
		}
	})
}
