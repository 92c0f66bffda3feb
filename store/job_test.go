package store_test

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"builds/app"
	"builds/store"
	"builds/store/storetest"
)

func TestCreateJob(t *testing.T) {
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		db := MustOpenDB(t)
		defer MustCloseDB(t, db)
		alice := MustCreateUser(t, db, "alice")
		j := newJob(alice.ID, app.JobPending)
		j.Note, j.Tags, j.Visibility, j.Secrets = ptr("a note"), "ci/main", app.Private, false
		tasks, err := db.CreateJob(ctx, j, []string{"setup", "build", "test"})
		if err != nil {
			t.Fatal(err)
		}
		if j.ID == 0 || !j.Created.Equal(nowSec) || !j.Updated.Equal(nowSec) {
			t.Fatalf("unexpected job %+v", j)
		}
		got, err := db.FindJobByID(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		} else if !reflect.DeepEqual(got, j) {
			t.Fatalf("got %+v, want %+v", got, j)
		}
		found, err := db.FindTasks(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(found, tasks) || len(tasks) != 3 {
			t.Fatalf("FindTasks = %+v, CreateJob returned %+v", found, tasks)
		}
		for i, k := range tasks {
			if k.Seq != i || k.Status != app.TaskPending || k.JobID != j.ID || !k.Created.Equal(nowSec) {
				t.Fatalf("task %d = %+v", i, k)
			}
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		db := MustOpenDB(t)
		defer MustCloseDB(t, db)
		alice := MustCreateUser(t, db, "alice")
		_, err := db.CreateJob(ctx, newJob(alice.ID, app.JobPending), []string{"build", "build"})
		wantCode(t, err, app.ECONFLICT)
		wantMessage(t, err, "task names must be unique within a job")
		// The job row was rolled back with its tasks.
		if jobs, err := db.FindJobs(ctx, app.JobFilter{}); err != nil || len(jobs) != 0 {
			t.Fatalf("jobs after failed create = %v, %v", jobs, err)
		}
		_, err = db.CreateJob(ctx, newJob(999, app.JobPending), nil)
		wantCode(t, err, app.ECONFLICT)
		wantMessage(t, err, "job owner or job group does not exist")
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		db := MustOpenDB(t)
		defer MustCloseDB(t, db)
		alice := MustCreateUser(t, db, "alice")
		j := newJob(alice.ID, app.JobPending)
		j.Visibility = "SECRET"
		_, err := db.CreateJob(ctx, j, nil)
		wantCode(t, err, app.EINVALID)
		wantMessage(t, err, "invalid job visibility: must be PUBLIC, UNLISTED or PRIVATE")
		_, err = db.CreateJob(ctx, newJob(alice.ID, "bogus"), nil)
		wantCode(t, err, app.EINVALID)
		wantMessage(t, err, "invalid job status")
	})
}

func TestFindJobByID(t *testing.T) {
	t.Run("ErrNotFound", func(t *testing.T) {
		db := MustOpenDB(t)
		defer MustCloseDB(t, db)
		_, err := db.FindJobByID(context.Background(), 12)
		wantCode(t, err, app.ENOTFOUND)
		wantMessage(t, err, "no such job")
	})
}

func TestFindJobs(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	bob := MustCreateUser(t, db, "bob")

	type spec struct {
		owner  int64
		note   *string
		tags   string
		image  string
		status app.JobStatus
		vis    app.Visibility
	}
	specs := []spec{
		{alice.ID, ptr("fix 100% bug"), "ci/main", "alpine/latest", app.JobSuccess, app.Public},
		{alice.ID, nil, "ci", "debian/stable", app.JobFailed, app.Unlisted},
		{alice.ID, ptr("release_1"), "ci/mainline", "alpine/edge", app.JobPending, app.Private},
		{alice.ID, ptr("Release notes"), "", "openbsd/latest", app.JobQueued, app.Public},
		{bob.ID, ptr("bob"), "ci/main", "alpine/latest", app.JobSuccess, app.Public},
		{alice.ID, nil, "cix", "debian/testing", app.JobPending, app.Public},
	}
	ids := make([]int64, len(specs)+1) // ids[n] is the id of job n (1-based)
	for i, s := range specs {
		j := newJob(s.owner, s.status)
		j.Note, j.Tags, j.Image, j.Visibility = s.note, s.tags, s.image, s.vis
		if _, err := db.CreateJob(ctx, j, []string{"t"}); err != nil {
			t.Fatal(err)
		}
		ids[i+1] = j.ID
	}
	g := &app.JobGroup{OwnerID: alice.ID}
	if err := db.CreateGroup(ctx, g, []int64{ids[6]}, nil, nil); err != nil {
		t.Fatal(err)
	}

	term := func(key, value string, negate bool) []app.SearchTerm {
		return []app.SearchTerm{{Key: key, Value: value, Negate: negate}}
	}
	tests := []struct {
		name string
		f    app.JobFilter
		want []int // job numbers, newest first
	}{
		{"All", app.JobFilter{}, []int{6, 5, 4, 3, 2, 1}},
		{"Owner", app.JobFilter{OwnerID: &alice.ID}, []int{6, 4, 3, 2, 1}},
		{"ID", app.JobFilter{ID: &ids[3]}, []int{3}},
		{"Group", app.JobFilter{GroupID: &g.ID}, []int{6}},
		{"Public", app.JobFilter{Visibility: []app.Visibility{app.Public}}, []int{6, 5, 4, 1}},
		{"OwnerListed", app.JobFilter{OwnerID: &alice.ID, Visibility: []app.Visibility{app.Public, app.Unlisted}}, []int{6, 4, 2, 1}},
		{"Status", app.JobFilter{Status: []app.JobStatus{app.JobSuccess, app.JobFailed}}, []int{5, 2, 1}},
		{"TagPrefix", app.JobFilter{TagPrefix: ptr("ci")}, []int{5, 3, 2, 1}},
		{"TagPrefixDeep", app.JobFilter{TagPrefix: ptr("ci/main")}, []int{5, 1}},
		{"TagPrefixWildcard", app.JobFilter{TagPrefix: ptr("c_")}, nil},
		{"TagPrefixPercent", app.JobFilter{TagPrefix: ptr("%")}, nil},
		{"BeforeID", app.JobFilter{BeforeID: &ids[4]}, []int{4, 3, 2, 1}},
		{"Limit", app.JobFilter{Limit: 2}, []int{6, 5}},
		{"BeforeIDLimit", app.JobFilter{OwnerID: &alice.ID, BeforeID: &ids[5], Limit: 2}, []int{4, 3}},
		{"Note", app.JobFilter{Search: term("", "release", false)}, []int{4, 3}},
		{"NoteUnderscore", app.JobFilter{Search: term("", "_", false)}, []int{3}},
		{"NotePercent", app.JobFilter{Search: term("", "0%", false)}, []int{1}},
		{"NotNote", app.JobFilter{Search: term("", "release", true)}, []int{6, 5, 2, 1}},
		{"StatusTerm", app.JobFilter{Search: term("status", "FAILED", false)}, []int{2}},
		{"NotStatus", app.JobFilter{Search: term("status", "success", true)}, []int{6, 4, 3, 2}},
		{"Image", app.JobFilter{Search: term("image", "alpine", false)}, []int{5, 3, 1}},
		{"NotImage", app.JobFilter{Search: term("image", "alpine", true)}, []int{6, 4, 2}},
		{"Tags", app.JobFilter{Search: term("tags", "main", false)}, []int{5, 3, 1}},
		{"Combined", app.JobFilter{OwnerID: &alice.ID, Search: []app.SearchTerm{
			{Key: "image", Value: "alpine"}, {Key: "status", Value: "pending", Negate: true}}}, []int{1}},
		{"CombinedAll", app.JobFilter{OwnerID: &alice.ID, Visibility: []app.Visibility{app.Public},
			Status: []app.JobStatus{app.JobSuccess, app.JobQueued}, TagPrefix: ptr("ci"), BeforeID: &ids[6], Limit: 5,
			Search: term("", "bug", false)}, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jobs, err := db.FindJobs(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			got := []int{}
			for _, j := range jobs {
				for n, id := range ids {
					if id == j.ID {
						got = append(got, n)
					}
				}
			}
			want := tt.want
			if want == nil {
				want = []int{}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got jobs %v, want %v", got, want)
			}
		})
	}
	t.Run("ErrInvalid", func(t *testing.T) {
		_, err := db.FindJobs(ctx, app.JobFilter{Search: term("owner", "x", false)})
		wantCode(t, err, app.EINVALID)
	})
}

func TestFindJobsPaging(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	bob := MustCreateUser(t, db, "bob")
	var want []int64
	for i := 0; i < 60; i++ {
		owner := alice.ID
		if i%3 == 0 {
			owner = bob.ID
		}
		j := MustCreateJob(t, db, owner, app.JobPending)
		if owner == alice.ID {
			want = append([]int64{j.ID}, want...)
		}
	}
	// Pages of 25 fetched as 26 rows, the extra row's id being the cursor
	// of the next page (behaviour.md §4.6).
	var got []int64
	var cursor *int64
	pages := 0
	for {
		jobs, err := db.FindJobs(ctx, app.JobFilter{OwnerID: &alice.ID, BeforeID: cursor, Limit: 26})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(jobs) == 26 {
			cursor = &jobs[25].ID
			jobs = jobs[:25]
		} else {
			cursor = nil
		}
		for _, j := range jobs {
			got = append(got, j.ID)
		}
		if cursor == nil {
			break
		}
	}
	if pages != 2 || !reflect.DeepEqual(got, want) {
		t.Fatalf("paged %d pages: %v, want %v", pages, got, want)
	}
}

func TestTransitionJob(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")

	t.Run("OK", func(t *testing.T) {
		j := MustCreateJob(t, db, alice.ID, app.JobRunning)
		fin := nowSec.Add(time.Minute)
		got, err := db.TransitionJob(ctx, j.ID, []app.JobStatus{app.JobRunning},
			app.JobUpdate{Status: ptr(app.JobFailed), Finished: &fin, Reason: ptr("task failed")})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != app.JobFailed || got.Finished == nil || !got.Finished.Equal(fin) || got.Reason != "task failed" {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		j := MustCreateJob(t, db, alice.ID, app.JobRunning)
		_, err := db.TransitionJob(ctx, j.ID, []app.JobStatus{app.JobPending, app.JobQueued}, app.JobUpdate{Status: ptr(app.JobCancelled)})
		wantCode(t, err, app.ECONFLICT)
		wantMessage(t, err, fmt.Sprintf("job %d is running, not pending or queued", j.ID))
		if got, err := db.FindJobByID(ctx, j.ID); err != nil || got.Status != app.JobRunning {
			t.Fatalf("job after failed transition: %+v, %v", got, err)
		}
		_, err = db.TransitionJob(ctx, j.ID, nil, app.JobUpdate{Status: ptr(app.JobCancelled)})
		wantCode(t, err, app.ECONFLICT)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := db.TransitionJob(ctx, 999, []app.JobStatus{app.JobPending}, app.JobUpdate{Status: ptr(app.JobQueued)})
		wantCode(t, err, app.ENOTFOUND)
	})
}

func TestUpdateJob(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")

	t.Run("OK", func(t *testing.T) {
		j := MustCreateJob(t, db, alice.ID, app.JobQueued)
		later := now.Add(time.Hour)
		db.Now = func() time.Time { return later }
		defer func() { db.Now = func() time.Time { return now } }()
		start, fin, dl := nowSec.Add(time.Second), nowSec.Add(2*time.Second), nowSec.Add(3*time.Second)
		got, err := db.UpdateJob(ctx, j.ID, app.JobUpdate{Visibility: ptr(app.Public),
			Runner: ptr("r1"), Started: &start, Finished: &fin, Deadline: &dl, Reason: ptr("why")})
		if err != nil {
			t.Fatal(err)
		}
		want := *j
		want.Visibility, want.Runner, want.Started, want.Finished, want.Deadline, want.Reason =
			app.Public, ptr("r1"), &start, &fin, &dl, "why"
		want.Updated = later.Truncate(time.Second)
		if !reflect.DeepEqual(got, &want) {
			t.Fatalf("got %+v, want %+v", got, &want)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := db.UpdateJob(ctx, 999, app.JobUpdate{Reason: ptr("x")})
		wantCode(t, err, app.ENOTFOUND)
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		j := MustCreateJob(t, db, alice.ID, app.JobQueued)
		_, err := db.TransitionJob(ctx, j.ID, app.JobStatuses, app.JobUpdate{Status: ptr(app.JobStatus("done"))})
		wantCode(t, err, app.EINVALID)
	})
	t.Run("ErrStatus", func(t *testing.T) {
		// status changes go through TransitionJob (the state machine)
		j := MustCreateJob(t, db, alice.ID, app.JobQueued)
		_, err := db.UpdateJob(ctx, j.ID, app.JobUpdate{Status: ptr(app.JobRunning)})
		wantCode(t, err, app.EINVALID)
	})
}

// queued is where a claim takes jobs from.
var queued = []app.JobStatus{app.JobQueued}

// claim is the update of a claim by runner at nowSec, with a deadline
// timeout later (none for 0).
func claim(runner string, timeout time.Duration) app.JobUpdate {
	st, start := app.JobRunning, nowSec
	u := app.JobUpdate{Status: &st, Runner: &runner, Started: &start}
	if timeout > 0 {
		dl := nowSec.Add(timeout)
		u.Deadline = &dl
	}
	return u
}

func TestClaimJob(t *testing.T) {
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		db := MustOpenDB(t)
		defer MustCloseDB(t, db)
		alice := MustCreateUser(t, db, "alice")
		MustCreateJob(t, db, alice.ID, app.JobPending)
		first := MustCreateJob(t, db, alice.ID, app.JobQueued)
		second := MustCreateJob(t, db, alice.ID, app.JobQueued)

		j, err := db.ClaimJob(ctx, queued, claim("runner-1", 90*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if j.ID != first.ID || j.Status != app.JobRunning || j.Runner == nil || *j.Runner != "runner-1" ||
			j.Started == nil || !j.Started.Equal(nowSec) || j.Deadline == nil || !j.Deadline.Equal(nowSec.Add(90*time.Minute)) {
			t.Fatalf("claimed %+v", j)
		}
		j, err = db.ClaimJob(ctx, queued, claim("runner-2", 0))
		if err != nil {
			t.Fatal(err)
		} else if j.ID != second.ID || j.Deadline != nil {
			t.Fatalf("claimed %+v, want job %d without deadline", j, second.ID)
		}
		// claims take the statuses they may take from as arguments
		if _, err := db.ClaimJob(ctx, nil, claim("r", 0)); app.ErrorCode(err) != app.ENOTFOUND {
			t.Fatalf("claim from no status: %v", err)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		db := MustOpenDB(t)
		defer MustCloseDB(t, db)
		alice := MustCreateUser(t, db, "alice")
		MustCreateJob(t, db, alice.ID, app.JobPending)
		_, err := db.ClaimJob(ctx, queued, claim("r", time.Hour))
		wantCode(t, err, app.ENOTFOUND)
		wantMessage(t, err, "no such queued job")
	})
	t.Run("Concurrent", func(t *testing.T) {
		db := MustOpenDB(t)
		defer MustCloseDB(t, db)
		alice := MustCreateUser(t, db, "alice")
		var want []int64
		for i := 0; i < 50; i++ {
			want = append(want, MustCreateJob(t, db, alice.ID, app.JobQueued).ID)
		}
		claimed := make([][]int64, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for w := range 2 {
			wg.Go(func() {
				for {
					j, err := db.ClaimJob(ctx, queued, claim(fmt.Sprintf("runner-%d", w), time.Hour))
					if app.ErrorCode(err) == app.ENOTFOUND {
						return
					} else if err != nil {
						errs[w] = err
						return
					}
					claimed[w] = append(claimed[w], j.ID)
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		all := append(append([]int64{}, claimed[0]...), claimed[1]...)
		sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
		if !reflect.DeepEqual(all, want) {
			t.Fatalf("claimed %v (runner 0: %d, runner 1: %d), want each of %v once", all, len(claimed[0]), len(claimed[1]), want)
		}
		running, err := db.FindJobsByStatus(ctx, []app.JobStatus{app.JobRunning})
		if err != nil || len(running) != 50 {
			t.Fatalf("running jobs = %d, %v", len(running), err)
		}
	})
}

func TestFindJobsByStatus(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	a := MustCreateJob(t, db, alice.ID, app.JobRunning)
	MustCreateJob(t, db, alice.ID, app.JobSuccess)
	b := MustCreateJob(t, db, alice.ID, app.JobQueued)
	c := MustCreateJob(t, db, alice.ID, app.JobRunning)

	t.Run("OK", func(t *testing.T) {
		jobs, err := db.FindJobsByStatus(ctx, []app.JobStatus{app.JobQueued, app.JobRunning})
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) != 3 || jobs[0].ID != a.ID || jobs[1].ID != b.ID || jobs[2].ID != c.ID {
			t.Fatalf("got %+v", jobs)
		}
	})
	t.Run("Empty", func(t *testing.T) {
		jobs, err := db.FindJobsByStatus(ctx, nil)
		if err != nil || len(jobs) != 0 {
			t.Fatalf("got %v, %v", jobs, err)
		}
	})
}

func TestTasks(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	j1 := newJob(alice.ID, app.JobRunning)
	tasks1, err := db.CreateJob(ctx, j1, []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	j2 := newJob(alice.ID, app.JobRunning)
	tasks2, err := db.CreateJob(ctx, j2, []string{"x"})
	if err != nil {
		t.Fatal(err)
	}
	j3 := MustCreateJob(t, db, alice.ID, app.JobPending)

	t.Run("FindTasksForJobs", func(t *testing.T) {
		m, err := db.FindTasksForJobs(ctx, []int64{j1.ID, j2.ID, 999}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := map[int64][]*app.Task{j1.ID: tasks1, j2.ID: tasks2}
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("got %v, want %v", m, want)
		}
		if _, ok := m[j3.ID]; ok {
			t.Fatal("unrequested job present")
		}
	})
	t.Run("UpdateTaskStatus", func(t *testing.T) {
		got, err := db.UpdateTaskStatus(ctx, tasks1[0].ID, app.TaskSuccess)
		if err != nil {
			t.Fatal(err)
		} else if got.Status != app.TaskSuccess || got.Name != "a" {
			t.Fatalf("got %+v", got)
		}
		if _, err := db.UpdateTaskStatus(ctx, tasks1[1].ID, app.TaskRunning); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SkipPendingTasks", func(t *testing.T) {
		if err := db.SkipPendingTasks(ctx, j1.ID); err != nil {
			t.Fatal(err)
		}
		tasks, err := db.FindTasks(ctx, j1.ID)
		if err != nil {
			t.Fatal(err)
		}
		got := []app.TaskStatus{tasks[0].Status, tasks[1].Status, tasks[2].Status}
		want := []app.TaskStatus{app.TaskSuccess, app.TaskRunning, app.TaskSkipped}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("statuses %v, want %v", got, want)
		}
		// Other jobs are untouched.
		if tasks, _ := db.FindTasks(ctx, j2.ID); tasks[0].Status != app.TaskPending {
			t.Fatalf("job 2 task is %s", tasks[0].Status)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := db.UpdateTaskStatus(ctx, 999, app.TaskFailed)
		wantCode(t, err, app.ENOTFOUND)
		wantMessage(t, err, "no such task")
		wantCode(t, db.SkipPendingTasks(ctx, 999), app.ENOTFOUND)
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		_, err := db.UpdateTaskStatus(ctx, tasks2[0].ID, "exploded")
		wantCode(t, err, app.EINVALID)
		wantMessage(t, err, "invalid task status")
	})
}

// Compile-time check from the tests' side too.
var _ app.Store = (*store.DB)(nil)

// TestTextNotUTF8: text that is not valid UTF-8, or holds NUL bytes (a
// web form's note, a database SQLite wrote), is stored on both databases:
// byte for byte on SQLite, with U+FFFD for each bad sequence on
// PostgreSQL, whose text cannot hold them, instead of failing the write.
func TestTextNotUTF8(t *testing.T) {
	db := MustOpenDB(t)
	u := MustCreateUser(t, db, "alice")
	note := "ok \xff\xfe end \x00 nul é"
	j := newJob(u.ID, app.JobPending)
	j.Note = &note
	if _, err := db.CreateJob(context.Background(), j, []string{"build"}); err != nil {
		t.Fatal(err)
	}
	got, err := db.FindJobByID(context.Background(), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := note
	if storetest.Postgres() {
		want = "ok \uFFFD end \uFFFD nul é"
	}
	if got.Note == nil {
		t.Fatal("note lost")
	}
	if *got.Note != want {
		t.Errorf("note %q, want %q", *got.Note, want)
	}
}
