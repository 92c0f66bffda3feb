package store_test

import (
	"context"
	"reflect"
	"testing"

	"builds/app"
)

// pending is where group queueing takes jobs from.
var pending = []app.JobStatus{app.JobPending}

func TestCreateGroup(t *testing.T) {
	ctx := context.Background()
	const invalid = "Invalid list of job IDs. All jobs must be owned by you, not assigned to another job group, and in the pending state."

	t.Run("OK", func(t *testing.T) {
		db := MustOpenDB(t)
		defer MustCloseDB(t, db)
		alice := MustCreateUser(t, db, "alice")
		a := MustCreateJob(t, db, alice.ID, app.JobPending)
		b := MustCreateJob(t, db, alice.ID, app.JobPending)
		g := &app.JobGroup{OwnerID: alice.ID, Note: ptr("release")}
		triggers := []*app.GroupTrigger{
			{Action: "email", Condition: "failure", To: "a@example.org", Cc: "b@example.org", InReplyTo: "<m@x>"},
			{Action: "webhook", Condition: "always", URL: "https://hook.example/x"},
		}
		// Duplicate ids count once.
		if err := db.CreateGroup(ctx, g, []int64{a.ID, b.ID, a.ID}, triggers, nil); err != nil {
			t.Fatal(err)
		}
		if g.ID == 0 || !g.Created.Equal(nowSec) || triggers[0].ID == 0 || triggers[1].GroupID != g.ID {
			t.Fatalf("group %+v, triggers %+v %+v", g, triggers[0], triggers[1])
		}
		got, err := db.FindGroupByID(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		} else if !reflect.DeepEqual(got, g) {
			t.Fatalf("got %+v, want %+v", got, g)
		}
		gotTriggers, err := db.FindGroupTriggers(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		} else if !reflect.DeepEqual(gotTriggers, triggers) {
			t.Fatalf("triggers %+v, want %+v", gotTriggers, triggers)
		}
		jobs, err := db.FindJobs(ctx, app.JobFilter{GroupID: &g.ID})
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) != 2 || jobs[0].Status != app.JobPending || *jobs[0].GroupID != g.ID {
			t.Fatalf("group jobs %+v", jobs)
		}
	})
	t.Run("Queue", func(t *testing.T) {
		db := MustOpenDB(t)
		defer MustCloseDB(t, db)
		alice := MustCreateUser(t, db, "alice")
		a := MustCreateJob(t, db, alice.ID, app.JobPending)
		g := &app.JobGroup{OwnerID: alice.ID}
		if err := db.CreateGroup(ctx, g, []int64{a.ID}, nil, pending); err != nil {
			t.Fatal(err)
		}
		if j, err := db.FindJobByID(ctx, a.ID); err != nil || j.Status != app.JobQueued {
			t.Fatalf("job %+v, %v; want queued", j, err)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		db := MustOpenDB(t)
		defer MustCloseDB(t, db)
		alice := MustCreateUser(t, db, "alice")
		bob := MustCreateUser(t, db, "bob")
		ok := MustCreateJob(t, db, alice.ID, app.JobPending)
		queued := MustCreateJob(t, db, alice.ID, app.JobQueued)
		bobs := MustCreateJob(t, db, bob.ID, app.JobPending)
		grouped := MustCreateJob(t, db, alice.ID, app.JobPending)
		if err := db.CreateGroup(ctx, &app.JobGroup{OwnerID: alice.ID}, []int64{grouped.ID}, nil, nil); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name string
			ids  []int64
		}{
			{"Missing", []int64{ok.ID, 999}},
			{"NotPending", []int64{ok.ID, queued.ID}},
			{"NotOwned", []int64{ok.ID, bobs.ID}},
			{"Grouped", []int64{ok.ID, grouped.ID}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				g := &app.JobGroup{OwnerID: alice.ID}
				err := db.CreateGroup(ctx, g, tt.ids, []*app.GroupTrigger{{Action: "email", Condition: "always"}}, pending)
				wantCode(t, err, app.EINVALID)
				wantMessage(t, err, invalid)
				// Nothing of the failed group remains.
				if j, err := db.FindJobByID(ctx, ok.ID); err != nil || j.GroupID != nil || j.Status != app.JobPending {
					t.Fatalf("job after failed group: %+v, %v", j, err)
				}
				_, err = db.FindGroupByID(ctx, g.ID)
				wantCode(t, err, app.ENOTFOUND)
			})
		}
		err := db.CreateGroup(ctx, &app.JobGroup{OwnerID: alice.ID}, []int64{ok.ID},
			[]*app.GroupTrigger{{Action: "irc", Condition: "always"}}, nil)
		wantCode(t, err, app.EINVALID)
		wantMessage(t, err, `invalid trigger action: must be "email" or "webhook"`)
	})
	t.Run("ErrConflict", func(t *testing.T) {
		db := MustOpenDB(t)
		defer MustCloseDB(t, db)
		err := db.CreateGroup(ctx, &app.JobGroup{OwnerID: 999}, nil, nil, nil)
		wantCode(t, err, app.ECONFLICT)
		wantMessage(t, err, "group owner does not exist")
	})
}

func TestQueueGroup(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	a := MustCreateJob(t, db, alice.ID, app.JobPending)
	b := MustCreateJob(t, db, alice.ID, app.JobPending)
	g := &app.JobGroup{OwnerID: alice.ID}
	if err := db.CreateGroup(ctx, g, []int64{a.ID, b.ID}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.TransitionJob(ctx, b.ID, app.JobStatuses, app.JobUpdate{Status: ptr(app.JobCancelled)}); err != nil {
		t.Fatal(err)
	}

	t.Run("OK", func(t *testing.T) {
		n, err := db.QueueGroup(ctx, g.ID, pending)
		if err != nil {
			t.Fatal(err)
		} else if n != 1 {
			t.Fatalf("queued %d jobs, want 1 (the cancelled one stays)", n)
		}
		if n, err := db.QueueGroup(ctx, g.ID, pending); err != nil || n != 0 {
			t.Fatalf("second QueueGroup = %d, %v", n, err)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := db.QueueGroup(ctx, 999, pending)
		wantCode(t, err, app.ENOTFOUND)
		wantMessage(t, err, "no such job group")
	})
}

func TestMarkGroupFired(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	g := &app.JobGroup{OwnerID: alice.ID}
	if err := db.CreateGroup(ctx, g, nil, nil, nil); err != nil {
		t.Fatal(err)
	}

	t.Run("OK", func(t *testing.T) {
		if set, err := db.MarkGroupFired(ctx, g.ID); err != nil || !set {
			t.Fatalf("first MarkGroupFired = %v, %v; want true", set, err)
		}
		if set, err := db.MarkGroupFired(ctx, g.ID); err != nil || set {
			t.Fatalf("second MarkGroupFired = %v, %v; want false", set, err)
		}
		if got, err := db.FindGroupByID(ctx, g.ID); err != nil || !got.Fired {
			t.Fatalf("group %+v, %v", got, err)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := db.MarkGroupFired(ctx, 999)
		wantCode(t, err, app.ENOTFOUND)
	})
}

func TestGroupDeleteKeepsJobs(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	j := MustCreateJob(t, db, alice.ID, app.JobPending)
	g := &app.JobGroup{OwnerID: alice.ID}
	if err := db.CreateGroup(ctx, g, []int64{j.ID}, nil, nil); err != nil {
		t.Fatal(err)
	}
	// No method deletes groups alone; check the schema's SET NULL directly.
	if _, err := db.SQL().Exec(db.Rebind(`DELETE FROM job_groups WHERE id = ?`), g.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := db.FindJobByID(ctx, j.ID); err != nil || got.GroupID != nil {
		t.Fatalf("job %+v, %v; want group cleared", got, err)
	}
}

func TestArtifacts(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	j := MustCreateJob(t, db, alice.ID, app.JobSuccess)
	a := &app.Artifact{JobID: j.ID, Name: "out.tar.gz", Path: "build/out.tar.gz", Size: 1234, File: "1/out.tar.gz"}

	t.Run("OK", func(t *testing.T) {
		if err := db.CreateArtifact(ctx, a); err != nil {
			t.Fatal(err)
		}
		got, err := db.FindArtifactByID(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		} else if !reflect.DeepEqual(got, a) {
			t.Fatalf("got %+v, want %+v", got, a)
		}
		list, err := db.FindArtifacts(ctx, j.ID)
		if err != nil || len(list) != 1 || !reflect.DeepEqual(list[0], a) {
			t.Fatalf("FindArtifacts = %+v, %v", list, err)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := db.FindArtifactByID(ctx, 999)
		wantCode(t, err, app.ENOTFOUND)
		wantMessage(t, err, "no such artifact")
	})
	t.Run("ErrConflict", func(t *testing.T) {
		err := db.CreateArtifact(ctx, &app.Artifact{JobID: 999, Name: "x", Path: "x", File: "x"})
		wantCode(t, err, app.ECONFLICT)
		wantMessage(t, err, "job does not exist")
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		err := db.CreateArtifact(ctx, &app.Artifact{JobID: j.ID, Name: "x", Path: "x", File: "x", Size: -1})
		wantCode(t, err, app.EINVALID)
	})
}

func TestTriggerDeliveries(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	j := MustCreateJob(t, db, alice.ID, app.JobFailed)
	g := &app.JobGroup{OwnerID: alice.ID}
	if err := db.CreateGroup(ctx, g, nil, nil, nil); err != nil {
		t.Fatal(err)
	}

	t.Run("OK", func(t *testing.T) {
		d1 := &app.TriggerDelivery{JobID: &j.ID, Action: "webhook", Target: "https://x", Status: "failed", Message: "HTTP 500", Attempts: 3}
		d2 := &app.TriggerDelivery{JobID: &j.ID, GroupID: &g.ID, Action: "email", Target: "a@example.org", Status: "sent", Attempts: 1}
		for _, d := range []*app.TriggerDelivery{d1, d2} {
			if err := db.CreateTriggerDelivery(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.FindTriggerDeliveries(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		} else if !reflect.DeepEqual(got, []*app.TriggerDelivery{d1, d2}) {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		err := db.CreateTriggerDelivery(ctx, &app.TriggerDelivery{Action: "email", Status: "sent"})
		wantCode(t, err, app.EINVALID)
		wantMessage(t, err, "trigger delivery needs a job or a job group")
		err = db.CreateTriggerDelivery(ctx, &app.TriggerDelivery{JobID: &j.ID, Action: "email", Status: "maybe"})
		wantCode(t, err, app.EINVALID)
	})
	t.Run("ErrConflict", func(t *testing.T) {
		err := db.CreateTriggerDelivery(ctx, &app.TriggerDelivery{JobID: ptr(int64(999)), Action: "email", Status: "sent"})
		wantCode(t, err, app.ECONFLICT)
	})
}
