package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"builds/app"
	"builds/store/storetest"
)

// A database from before 0004 (tasks could not be 'cancelled') keeps its
// tasks, their ids and the id sequence through the upgrade, and takes
// cancelled tasks after it.
func TestMigrateTaskCancelled(t *testing.T) {
	storetest.SQLiteOnly(t) // the PostgreSQL migration alters the constraint in place
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "builds.db")
	db := MustOpenDBAt(t, path)
	u := MustCreateUser(t, db, "alice")
	j := newJob(u.ID, app.JobRunning)
	tasks, err := db.CreateJob(ctx, j, []string{"build", "test", "gone"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.UpdateTaskStatus(ctx, tasks[0].ID, app.TaskSuccess); err != nil {
		t.Fatal(err)
	}
	// back to the schema before 0004, the last task deleted so that the
	// sequence is ahead of the ids
	for _, q := range []string{
		`DELETE FROM tasks WHERE name = 'gone'`,
		`CREATE TABLE tasks_old (
			id INTEGER PRIMARY KEY AUTOINCREMENT, created INTEGER NOT NULL, updated INTEGER NOT NULL,
			job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE, seq INTEGER NOT NULL, name TEXT NOT NULL,
			status TEXT NOT NULL CONSTRAINT task_status CHECK (status IN ('pending', 'running', 'success', 'failed', 'skipped')),
			UNIQUE (job_id, name))`,
		`INSERT INTO tasks_old SELECT id, created, updated, job_id, seq, name, status FROM tasks`,
		`DELETE FROM sqlite_sequence WHERE name = 'tasks_old'`,
		`INSERT INTO sqlite_sequence (name, seq) SELECT 'tasks_old', seq FROM sqlite_sequence WHERE name = 'tasks'`,
		`DROP TABLE tasks`,
		`ALTER TABLE tasks_old RENAME TO tasks`,
		`CREATE UNIQUE INDEX tasks_job_id ON tasks (job_id, seq)`,
		`DELETE FROM migrations WHERE name = '0004_task_cancelled.sql'`,
	} {
		if _, err := db.SQL().Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := db.UpdateTaskStatus(ctx, tasks[1].ID, app.TaskCancelled); err == nil {
		t.Fatal("the old schema took a cancelled task")
	}
	MustCloseDB(t, db)

	db = MustOpenDBAt(t, path)
	defer MustCloseDB(t, db)
	got, err := db.FindTasks(ctx, j.ID)
	if err != nil || len(got) != 2 || got[0].ID != tasks[0].ID || got[0].Status != app.TaskSuccess ||
		got[1].ID != tasks[1].ID || got[1].Name != "test" || got[1].Status != app.TaskPending {
		t.Fatalf("tasks after the upgrade: %+v %v", got, err)
	}
	if _, err := db.UpdateTaskStatus(ctx, tasks[1].ID, app.TaskCancelled); err != nil {
		t.Fatalf("cancelled task after the upgrade: %v", err)
	}
	j2 := newJob(u.ID, app.JobQueued)
	more, err := db.CreateJob(ctx, j2, []string{"next"})
	if err != nil {
		t.Fatal(err)
	}
	if more[0].ID <= tasks[2].ID {
		t.Fatalf("task id %d reused (deleted task had %d)", more[0].ID, tasks[2].ID)
	}
	// a job deleted still takes its tasks along (the foreign key survived)
	if _, err := db.SQL().Exec(`DELETE FROM jobs WHERE id = ?`, j.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.FindTasks(ctx, j.ID); len(got) != 0 {
		t.Fatalf("tasks of a deleted job: %+v", got)
	}
	if _, err := db.UpdateTaskStatus(ctx, more[0].ID, app.TaskStatus("bogus")); err == nil {
		t.Fatal("bogus task status stored")
	}
}
