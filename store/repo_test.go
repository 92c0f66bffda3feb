package store_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"builds/app"
)

func TestRepositories(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	bob := MustCreateUser(t, db, "bob")
	proj := &app.Repo{OwnerID: alice.ID, Name: "proj", Kind: app.ForgeForgejo, CloneURL: "https://codeberg.org/alice/proj.git",
		DeployKey: ptr("deploy"), Token: []byte{1, 2, 3}, Branches: []string{"main", "release/*"}, Visibility: app.Public,
		HookID: "hook1", Secret: []byte{0, 9, 8}}
	other := &app.Repo{OwnerID: alice.ID, Name: "other", Kind: app.ForgeGit, CloneURL: "/srv/git/other.git",
		Visibility: app.Unlisted, HookID: "hook2", Secret: []byte{7}}

	t.Run("OK", func(t *testing.T) {
		for _, r := range []*app.Repo{proj, other} {
			if err := db.CreateRepository(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		for _, find := range []func() (*app.Repo, error){
			func() (*app.Repo, error) { return db.FindRepositoryByID(ctx, proj.ID) },
			func() (*app.Repo, error) { return db.FindRepositoryByHookID(ctx, "hook1") },
			func() (*app.Repo, error) { return db.FindRepositoryByName(ctx, alice.ID, "proj") },
		} {
			got, err := find()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, proj) {
				t.Errorf("got  %+v\nwant %+v", got, proj)
			}
		}
		list, err := db.FindRepositories(ctx, alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].Name != "other" || list[1].Name != "proj" || list[0].Token != nil || list[0].Branches != nil {
			t.Errorf("list %+v", list)
		}
		if list, _ := db.FindRepositories(ctx, bob.ID); len(list) != 0 {
			t.Errorf("bob's list %+v", list)
		}
	})
	t.Run("ErrDuplicateName", func(t *testing.T) {
		dup := *other
		dup.HookID = "hook3"
		if err := db.CreateRepository(ctx, &dup); app.ErrorCode(err) != app.ECONFLICT {
			t.Errorf("err %v", err)
		}
	})
	t.Run("ErrBadKind", func(t *testing.T) {
		bad := &app.Repo{OwnerID: bob.ID, Name: "x", Kind: "svn", CloneURL: "x", Visibility: app.Public, HookID: "hook4", Secret: []byte{1}}
		if err := db.CreateRepository(ctx, bad); app.ErrorCode(err) != app.EINVALID {
			t.Errorf("err %v", err)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		if _, err := db.FindRepositoryByHookID(ctx, "nope"); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("err %v", err)
		}
		if _, err := db.FindRepositoryByName(ctx, bob.ID, "proj"); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("err %v", err)
		}
	})
	t.Run("Pushes", func(t *testing.T) {
		p1 := &app.RepoPush{RepositoryID: proj.ID, Delivery: ptr("d1"), Ref: "refs/heads/main", Commit: "abc"}
		if err := db.CreateRepoPush(ctx, p1); err != nil {
			t.Fatal(err)
		}
		// a replayed delivery
		if err := db.CreateRepoPush(ctx, &app.RepoPush{RepositoryID: proj.ID, Delivery: ptr("d1"), Ref: "x", Commit: "y"}); app.ErrorCode(err) != app.ECONFLICT {
			t.Errorf("replay: err %v", err)
		}
		// the same delivery id to another repository, and pushes without one
		for _, p := range []*app.RepoPush{
			{RepositoryID: other.ID, Delivery: ptr("d1"), Ref: "refs/heads/main", Commit: "abc"},
			{RepositoryID: proj.ID, Ref: "refs/heads/main", Commit: "def"},
			{RepositoryID: proj.ID, Ref: "refs/tags/v1", Commit: "def"},
		} {
			if err := db.CreateRepoPush(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		job := MustCreateJob(t, db, alice.ID, app.JobPending)
		g := &app.JobGroup{OwnerID: alice.ID}
		if err := db.CreateGroup(ctx, g, []int64{job.ID}, nil, nil); err != nil {
			t.Fatal(err)
		}
		if err := db.FinishRepoPush(ctx, p1.ID, &g.ID, ""); err != nil {
			t.Fatal(err)
		}
		list, err := db.FindRepoPushes(ctx, proj.ID, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].Ref != "refs/tags/v1" || list[0].Delivery != nil {
			t.Fatalf("pushes %+v", list)
		}
		if err := db.FinishRepoPush(ctx, list[0].ID, nil, "no build manifest"); err != nil {
			t.Fatal(err)
		}
		all, _ := db.FindRepoPushes(ctx, proj.ID, 0)
		if len(all) != 3 || all[0].Error != "no build manifest" || *all[2].GroupID != g.ID || *all[2].Delivery != "d1" {
			t.Errorf("pushes %+v", all)
		}
	})
	t.Run("Delete", func(t *testing.T) {
		if err := db.DeleteRepository(ctx, proj.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := db.FindRepositoryByID(ctx, proj.ID); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("err %v", err)
		}
		if list, _ := db.FindRepoPushes(ctx, proj.ID, 0); len(list) != 0 {
			t.Errorf("pushes left %+v", list)
		}
		if err := db.DeleteRepository(ctx, proj.ID); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("second delete: err %v", err)
		}
	})
}

// TestRepositorySettings: migration 0008's settings are stored at
// creation and changed by UpdateRepository, one field at a time.
func TestRepositorySettings(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	r := &app.Repo{OwnerID: alice.ID, Name: "proj", Kind: app.ForgeGitHub, CloneURL: "https://github.com/alice/proj.git",
		Visibility: app.Public, HookID: "hook1", Secret: []byte{1}, PullRequests: true}
	if err := db.CreateRepository(ctx, r); err != nil {
		t.Fatal(err)
	}
	t.Run("OK", func(t *testing.T) {
		got, err := db.FindRepositoryByID(ctx, r.ID)
		if err != nil || !got.PullRequests || got.Schedule != "" || got.ScheduleLast != nil {
			t.Fatalf("%+v %v", got, err)
		}
		off := false
		if err := db.UpdateRepository(ctx, r.ID, app.RepoUpdate{PullRequests: &off}); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.FindRepositoryByID(ctx, r.ID); got.PullRequests {
			t.Errorf("still builds pull requests")
		}
		if err := db.UpdateRepository(ctx, r.ID, app.RepoUpdate{}); err != nil {
			t.Errorf("empty update: %v", err)
		}
	})
	t.Run("Schedule", func(t *testing.T) {
		if list, err := db.FindScheduledRepositories(ctx); err != nil || len(list) != 0 {
			t.Fatalf("%+v %v", list, err)
		}
		sched, at := "0 3 * * *", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		if err := db.UpdateRepository(ctx, r.ID, app.RepoUpdate{Schedule: &sched, ScheduleLast: &at}); err != nil {
			t.Fatal(err)
		}
		other := &app.Repo{OwnerID: alice.ID, Name: "other", Kind: app.ForgeGit, CloneURL: "/srv/other.git",
			Visibility: app.Public, HookID: "hook2", Secret: []byte{1}, Schedule: "@daily", ScheduleLast: &at}
		if err := db.CreateRepository(ctx, other); err != nil {
			t.Fatal(err)
		}
		list, err := db.FindScheduledRepositories(ctx)
		if err != nil || len(list) != 2 || list[0].Schedule != sched || !list[0].ScheduleLast.Equal(at) || list[1].Schedule != "@daily" {
			t.Fatalf("%+v %v", list, err)
		}
		later := at.Add(time.Hour)
		if err := db.UpdateRepository(ctx, r.ID, app.RepoUpdate{ScheduleLast: &later}); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.FindRepositoryByID(ctx, r.ID); got.Schedule != sched || !got.ScheduleLast.Equal(later) {
			t.Errorf("%+v", got)
		}
		none := ""
		db.UpdateRepository(ctx, other.ID, app.RepoUpdate{Schedule: &none})
		if list, _ := db.FindScheduledRepositories(ctx); len(list) != 1 || list[0].ID != r.ID {
			t.Errorf("after removal %+v", list)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		on := true
		if err := db.UpdateRepository(ctx, r.ID+100, app.RepoUpdate{PullRequests: &on}); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("err %v", err)
		}
	})
}
