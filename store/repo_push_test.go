package store_test

import (
	"context"
	"testing"

	"builds/app"
)

func TestFindRepoPushByGroup(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	r := &app.Repo{OwnerID: alice.ID, Name: "proj", Kind: app.ForgeGit, CloneURL: "/srv/git/proj.git",
		Visibility: app.Unlisted, HookID: "hook1", Secret: []byte{1}}
	if err := db.CreateRepository(ctx, r); err != nil {
		t.Fatal(err)
	}
	job := MustCreateJob(t, db, alice.ID, app.JobPending)
	g := &app.JobGroup{OwnerID: alice.ID}
	if err := db.CreateGroup(ctx, g, []int64{job.ID}, nil, nil); err != nil {
		t.Fatal(err)
	}
	other := &app.JobGroup{OwnerID: alice.ID}
	if err := db.CreateGroup(ctx, other, []int64{MustCreateJob(t, db, alice.ID, app.JobPending).ID}, nil, nil); err != nil {
		t.Fatal(err)
	}
	// a push that built nothing, then the one that started g
	failed := &app.RepoPush{RepositoryID: r.ID, Ref: "refs/heads/main", Commit: "1111111111111111111111111111111111111111"}
	p := &app.RepoPush{RepositoryID: r.ID, Ref: "refs/heads/main", Commit: "2222222222222222222222222222222222222222"}
	for _, x := range []*app.RepoPush{failed, p} {
		if err := db.CreateRepoPush(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.FinishRepoPush(ctx, failed.ID, nil, "no build manifest"); err != nil {
		t.Fatal(err)
	}
	if err := db.FinishRepoPush(ctx, p.ID, &g.ID, ""); err != nil {
		t.Fatal(err)
	}

	t.Run("OK", func(t *testing.T) {
		got, err := db.FindRepoPushByGroup(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != p.ID || got.RepositoryID != r.ID || got.Commit != p.Commit || got.GroupID == nil || *got.GroupID != g.ID {
			t.Errorf("got %+v, want push %d of group %d", got, p.ID, g.ID)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		for _, id := range []int64{other.ID, 9999} {
			if _, err := db.FindRepoPushByGroup(ctx, id); app.ErrorCode(err) != app.ENOTFOUND {
				t.Errorf("group %d: err %v, want ENOTFOUND", id, err)
			}
		}
	})
}
