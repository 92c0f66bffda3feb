package store_test

import (
	"context"
	"reflect"
	"slices"
	"testing"
	"time"

	"builds/app"
	"builds/store"
)

// projectJob is j with only the fields a partial read of fields fills in,
// written out field by field rather than taken from the store's table.
func projectJob(j app.Job, fields app.JobFields) app.Job {
	p := app.Job{ID: j.ID, OwnerID: j.OwnerID, Visibility: j.Visibility}
	has := func(f app.JobFields) bool { return fields&f != 0 }
	if has(app.JobFieldCreated) {
		p.Created = j.Created
	}
	if has(app.JobFieldUpdated) {
		p.Updated = j.Updated
	}
	if has(app.JobFieldGroupID) {
		p.GroupID = j.GroupID
	}
	if has(app.JobFieldManifest) {
		p.Manifest = j.Manifest
	}
	if has(app.JobFieldNote) {
		p.Note = j.Note
	}
	if has(app.JobFieldTags) {
		p.Tags = j.Tags
	}
	if has(app.JobFieldImage) {
		p.Image = j.Image
	}
	if has(app.JobFieldRunner) {
		p.Runner = j.Runner
	}
	if has(app.JobFieldStatus) {
		p.Status = j.Status
	}
	if has(app.JobFieldSecrets) {
		p.Secrets = j.Secrets
	}
	if has(app.JobFieldStarted) {
		p.Started = j.Started
	}
	if has(app.JobFieldFinished) {
		p.Finished = j.Finished
	}
	if has(app.JobFieldDeadline) {
		p.Deadline = j.Deadline
	}
	if has(app.JobFieldReason) {
		p.Reason = j.Reason
	}
	return p
}

// seedVariedJobs creates jobs of alice and bob in which every field is
// set in some job and unset (NULL, empty) in another.
func seedVariedJobs(t *testing.T, db *store.DB) (alice, bob *app.User) {
	t.Helper()
	ctx := context.Background()
	alice = MustCreateUser(t, db, "alice")
	bob = MustCreateUser(t, db, "bob")
	for i := range 12 {
		owner := alice.ID
		if i%4 == 3 {
			owner = bob.ID
		}
		j := newJob(owner, app.JobPending)
		j.Visibility = []app.Visibility{app.Public, app.Unlisted, app.Private}[i%3]
		j.Secrets = i%2 == 0
		if i%2 == 1 {
			j.Note, j.Tags, j.Image = ptr("note <&> é"), "ci/main", "debian/stable"
		}
		if _, err := db.CreateJob(ctx, j, []string{"build", "test"}); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			continue // pending: no runner, no times
		}
		started, deadline := nowSec.Add(-time.Minute), nowSec.Add(time.Hour)
		if _, err := db.TransitionJob(ctx, j.ID, []app.JobStatus{app.JobPending}, app.JobUpdate{
			Status: ptr(app.JobRunning), Runner: ptr("runner.example.org"), Started: &started, Deadline: &deadline,
		}); err != nil {
			t.Fatal(err)
		}
		if i%3 == 2 {
			if _, err := db.TransitionJob(ctx, j.ID, []app.JobStatus{app.JobRunning}, app.JobUpdate{
				Status: ptr(app.JobFailed), Finished: &nowSec, Reason: ptr("timed out"),
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	grouped, err := db.FindJobs(ctx, app.JobFilter{OwnerID: &alice.ID, Status: []app.JobStatus{app.JobPending}, Limit: 1})
	if err != nil || len(grouped) != 1 {
		t.Fatalf("find a pending job: %v, %v", grouped, err)
	}
	if err := db.CreateGroup(ctx, &app.JobGroup{OwnerID: alice.ID}, []int64{grouped[0].ID}, nil, nil); err != nil {
		t.Fatal(err)
	}
	return alice, bob
}

func TestFindJobsFields(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice, _ := seedVariedJobs(t, db)
	before := int64(10)

	filters := []struct {
		name string
		f    app.JobFilter
	}{
		{"All", app.JobFilter{}},
		{"OwnerPage", app.JobFilter{OwnerID: &alice.ID, Limit: 4}},
		{"OwnerNextPage", app.JobFilter{OwnerID: &alice.ID, BeforeID: &before, Limit: 4}},
		{"Visible", app.JobFilter{OwnerID: &alice.ID, Visibility: []app.Visibility{app.Public}}},
		{"Search", app.JobFilter{Search: []app.SearchTerm{{Key: "image", Value: "alpine"}, {Value: "release", Negate: true}}}},
	}
	var one []app.JobFields
	for f := app.JobFields(1); f <= app.AllJobFields; f <<= 1 {
		one = append(one, f)
	}
	sets := append([]app.JobFields{0, app.AllJobFields,
		app.JobFieldStatus | app.JobFieldNote | app.JobFieldTags, // hut's jobs list
		app.AllJobFields &^ app.JobFieldManifest}, one...)
	for _, tt := range filters {
		t.Run(tt.name, func(t *testing.T) {
			full, err := db.FindJobs(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			} else if len(full) == 0 {
				t.Fatal("no jobs: the case tests nothing")
			}
			for _, fields := range sets {
				f := tt.f
				f.Fields = &fields
				part, err := db.FindJobs(ctx, f)
				if err != nil {
					t.Fatalf("fields %b: %v", fields, err)
				}
				if len(part) != len(full) {
					t.Fatalf("fields %b: %d jobs, the full read has %d", fields, len(part), len(full))
				}
				for i := range full {
					if want := projectJob(*full[i], fields); !reflect.DeepEqual(*part[i], want) {
						t.Fatalf("fields %b: job %d is\n%+v, want\n%+v", fields, i, *part[i], want)
					}
				}
			}
		})
	}
	t.Run("AllIsFull", func(t *testing.T) {
		all := app.AllJobFields
		part, err := db.FindJobs(ctx, app.JobFilter{Fields: &all})
		if err != nil {
			t.Fatal(err)
		}
		full, err := db.FindJobs(ctx, app.JobFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(part, full) {
			t.Fatal("reading every field differs from the full read")
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		fields := app.JobFieldStatus
		_, err := db.FindJobs(ctx, app.JobFilter{Fields: &fields, Search: []app.SearchTerm{{Key: "owner", Value: "x"}}})
		wantCode(t, err, app.EINVALID)
	})
}

func TestFindTasksForJobsFields(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice, _ := seedVariedJobs(t, db)
	jobs, err := db.FindJobs(ctx, app.JobFilter{OwnerID: &alice.ID})
	if err != nil {
		t.Fatal(err)
	}
	ids := []int64{999}
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	if _, err := db.UpdateTaskStatus(ctx, 1, app.TaskSuccess); err != nil {
		t.Fatal(err)
	}
	full, err := db.FindTasksForJobs(ctx, ids, nil)
	if err != nil {
		t.Fatal(err)
	} else if len(full) != len(jobs) {
		t.Fatalf("tasks of %d jobs, want %d", len(full), len(jobs))
	}
	project := func(k app.Task, fields app.TaskFields) app.Task {
		p := app.Task{JobID: k.JobID}
		has := func(f app.TaskFields) bool { return fields&f != 0 }
		if has(app.TaskFieldID) {
			p.ID = k.ID
		}
		if has(app.TaskFieldCreated) {
			p.Created = k.Created
		}
		if has(app.TaskFieldUpdated) {
			p.Updated = k.Updated
		}
		if has(app.TaskFieldSeq) {
			p.Seq = k.Seq
		}
		if has(app.TaskFieldName) {
			p.Name = k.Name
		}
		if has(app.TaskFieldStatus) {
			p.Status = k.Status
		}
		return p
	}
	t.Run("ManyBatches", func(t *testing.T) {
		// 600 ids of no job sort before the real ones, which come in the
		// second batch of a read in one transaction.
		many := slices.Clone(ids)
		for i := range 600 {
			many = append(many, int64(-i))
		}
		fields := app.TaskFieldName | app.TaskFieldStatus
		got, err := db.FindTasksForJobs(ctx, many, &fields)
		if err != nil {
			t.Fatal(err)
		}
		part, err := db.FindTasksForJobs(ctx, ids, &fields)
		if err != nil {
			t.Fatal(err)
		} else if !reflect.DeepEqual(got, part) {
			t.Fatalf("in batches %v, in one read %v", got, part)
		}
	})
	sets := []app.TaskFields{0, app.AllTaskFields, app.TaskFieldName | app.TaskFieldStatus}
	for f := app.TaskFields(1); f <= app.AllTaskFields; f <<= 1 {
		sets = append(sets, f)
	}
	for _, fields := range sets {
		part, err := db.FindTasksForJobs(ctx, ids, &fields)
		if err != nil {
			t.Fatalf("fields %b: %v", fields, err)
		}
		want := map[int64][]app.Task{}
		for id, tasks := range full {
			for _, k := range tasks {
				want[id] = append(want[id], project(*k, fields))
			}
		}
		got := map[int64][]app.Task{}
		for id, tasks := range part {
			for _, k := range tasks {
				got[id] = append(got[id], *k)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("fields %b: got %+v, want %+v", fields, got, want)
		}
	}
}
