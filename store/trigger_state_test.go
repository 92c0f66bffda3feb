package store_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"builds/app"
	"builds/store/storetest"
)

// jobIDs returns the ids of jobs, in order.
func jobIDs(jobs []*app.Job) []int64 {
	ids := make([]int64, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	return ids
}

func equalIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFindJobsAwaitingTriggers(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	// One job per status; only the final ones await triggers.
	byStatus := map[app.JobStatus]*app.Job{}
	for _, s := range app.JobStatuses {
		byStatus[s] = MustCreateJob(t, db, alice.ID, s)
	}
	final := []int64{byStatus[app.JobSuccess].ID, byStatus[app.JobFailed].ID,
		byStatus[app.JobTimeout].ID, byStatus[app.JobCancelled].ID}

	t.Run("OK", func(t *testing.T) {
		jobs, err := db.FindJobsAwaitingTriggers(ctx, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if got := jobIDs(jobs); !equalIDs(got, final) {
			t.Fatalf("awaiting %v, want %v", got, final)
		}
		if jobs[0].Status != app.JobSuccess || jobs[0].OwnerID != alice.ID {
			t.Fatalf("job %+v", jobs[0])
		}
	})
	t.Run("Pages", func(t *testing.T) {
		tests := []struct {
			name    string
			afterID int64
			limit   int
			want    []int64
		}{
			{name: "FirstPage", afterID: 0, limit: 2, want: final[:2]},
			{name: "SecondPage", afterID: final[1], limit: 2, want: final[2:]},
			{name: "PastTheEnd", afterID: final[3], limit: 2, want: []int64{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				jobs, err := db.FindJobsAwaitingTriggers(ctx, tt.afterID, tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				if got := jobIDs(jobs); !equalIDs(got, tt.want) {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			})
		}
	})
	t.Run("FinishedJobJoins", func(t *testing.T) {
		running := byStatus[app.JobRunning]
		status := app.JobFailed
		if _, err := db.TransitionJob(ctx, running.ID, []app.JobStatus{app.JobRunning}, app.JobUpdate{Status: &status}); err != nil {
			t.Fatal(err)
		}
		jobs, err := db.FindJobsAwaitingTriggers(ctx, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		want := append([]int64{running.ID}, final...) // ids follow app.JobStatuses
		if got := jobIDs(jobs); !equalIDs(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})
	t.Run("UsesPartialIndex", func(t *testing.T) {
		storetest.SQLiteOnly(t) // PostgreSQL plans from statistics
		// The query of FindJobsAwaitingTriggers names the index; this
		// checks that SQLite can use it for that WHERE clause.
		rows, err := db.SQL().Query(`EXPLAIN QUERY PLAN SELECT id FROM jobs INDEXED BY jobs_triggers_pending
			WHERE triggers_done = 0 AND status IN ('success', 'failed', 'timeout', 'cancelled') AND id > ?
			ORDER BY id LIMIT ?`, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		if p := strings.Join(plan, "; "); !strings.Contains(p, "jobs_triggers_pending") {
			t.Fatalf("query plan does not use the partial index: %s", p)
		}
	})
	t.Run("ErrInvalidLimit", func(t *testing.T) {
		_, err := db.FindJobsAwaitingTriggers(ctx, 0, 0)
		wantCode(t, err, app.EINVALID)
	})
}

func TestMarkTriggersDone(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")

	t.Run("OK", func(t *testing.T) {
		j := MustCreateJob(t, db, alice.ID, app.JobSuccess)
		if done, err := db.TriggersDone(ctx, j.ID); err != nil || done {
			t.Fatalf("TriggersDone before = %v, %v; want false", done, err)
		}
		if set, err := db.MarkTriggersDone(ctx, j.ID); err != nil || !set {
			t.Fatalf("first MarkTriggersDone = %v, %v; want true", set, err)
		}
		if set, err := db.MarkTriggersDone(ctx, j.ID); err != nil || set {
			t.Fatalf("second MarkTriggersDone = %v, %v; want false", set, err)
		}
		if done, err := db.TriggersDone(ctx, j.ID); err != nil || !done {
			t.Fatalf("TriggersDone after = %v, %v; want true", done, err)
		}
		jobs, err := db.FindJobsAwaitingTriggers(ctx, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range jobs {
			if a.ID == j.ID {
				t.Fatal("job marked done still awaits triggers")
			}
		}
		// Bookkeeping, not a change of the job.
		if got, err := db.FindJobByID(ctx, j.ID); err != nil || !got.Updated.Equal(j.Updated) {
			t.Fatalf("job %+v, %v; updated changed", got, err)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		// The live event and the start-up scan may race: one wins.
		j := MustCreateJob(t, db, alice.ID, app.JobFailed)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				set, err := db.MarkTriggersDone(ctx, j.ID)
				if err != nil {
					t.Error(err)
				}
				if set {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("%d calls marked the job, want 1", n)
		}
	})
	t.Run("ErrNotFinal", func(t *testing.T) {
		j := MustCreateJob(t, db, alice.ID, app.JobRunning)
		_, err := db.MarkTriggersDone(ctx, j.ID)
		wantCode(t, err, app.ECONFLICT)
		if done, err := db.TriggersDone(ctx, j.ID); err != nil || done {
			t.Fatalf("TriggersDone = %v, %v; want false", done, err)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := db.MarkTriggersDone(ctx, 999)
		wantCode(t, err, app.ENOTFOUND)
		_, err = db.TriggersDone(ctx, 999)
		wantCode(t, err, app.ENOTFOUND)
	})
}

// TestMigrationTriggerState upgrades a database from before migration 0003
// and checks that jobs which finished under the old code are not resumed.
func TestMigrationTriggerState(t *testing.T) {
	ctx := context.Background()
	path := storetest.Source(t)
	db := MustOpenDBAt(t, path)
	// Undo 0003, as if the database was written by the previous version.
	for _, q := range []string{
		`DROP INDEX jobs_triggers_pending`,
		`ALTER TABLE jobs DROP COLUMN triggers_done`,
		`DELETE FROM migrations WHERE name = '0003_trigger_state.sql'`,
	} {
		if _, err := db.SQL().Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	alice := MustCreateUser(t, db, "alice")
	old := map[app.JobStatus]*app.Job{}
	for _, s := range app.JobStatuses {
		old[s] = MustCreateJob(t, db, alice.ID, s)
	}
	MustCloseDB(t, db)

	db = MustOpenDBAt(t, path)
	defer MustCloseDB(t, db)
	for _, s := range app.JobStatuses {
		done, err := db.TriggersDone(ctx, old[s].ID)
		if err != nil {
			t.Fatal(err)
		}
		if done != s.Final() {
			t.Errorf("%s job: triggers done = %v, want %v", s, done, s.Final())
		}
	}
	if jobs, err := db.FindJobsAwaitingTriggers(ctx, 0, 100); err != nil || len(jobs) != 0 {
		t.Fatalf("awaiting after upgrade: %v, %v; want none", jobIDs(jobs), err)
	}
	// A job that was running during the upgrade finishes afterwards: its
	// triggers are due.
	status := app.JobSuccess
	if _, err := db.TransitionJob(ctx, old[app.JobRunning].ID, []app.JobStatus{app.JobRunning}, app.JobUpdate{Status: &status}); err != nil {
		t.Fatal(err)
	}
	jobs, err := db.FindJobsAwaitingTriggers(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if got := jobIDs(jobs); !equalIDs(got, []int64{old[app.JobRunning].ID}) {
		t.Fatalf("awaiting %v, want [%d]", got, old[app.JobRunning].ID)
	}
}
