package store

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"builds/app"
)

const taskColumns = `id, created, updated, job_id, seq, name, status`

func scanTask(r rowScanner) (*app.Task, error) {
	var k app.Task
	if err := r.Scan(taskDest(&k)...); err != nil {
		return nil, err
	}
	return &k, nil
}

// taskDest returns the scan destinations of taskColumns in k.
func taskDest(k *app.Task) []any {
	return []any{&k.ID, timeCol{&k.Created}, timeCol{&k.Updated}, &k.JobID, &k.Seq, &k.Name, &k.Status}
}

// taskFieldColumns are the columns of the fields a partial read may
// leave out, in taskColumns order, with their scan destinations.
var taskFieldColumns = []struct {
	field app.TaskFields
	col   string
	dest  func(*app.Task) any
}{
	{app.TaskFieldID, "id", func(k *app.Task) any { return &k.ID }},
	{app.TaskFieldCreated, "created", func(k *app.Task) any { return timeCol{&k.Created} }},
	{app.TaskFieldUpdated, "updated", func(k *app.Task) any { return timeCol{&k.Updated} }},
	{app.TaskFieldSeq, "seq", func(k *app.Task) any { return &k.Seq }},
	{app.TaskFieldName, "name", func(k *app.Task) any { return &k.Name }},
	{app.TaskFieldStatus, "status", func(k *app.Task) any { return &k.Status }},
}

// taskSelect returns the columns to read for fields (nil: all of them) and
// the function that gives their scan destinations in a Task.
func taskSelect(fields *app.TaskFields) (string, func(*app.Task) []any) {
	if fields == nil {
		return taskColumns, taskDest
	}
	cols := []string{"job_id"}
	var dests []func(*app.Task) any
	for _, c := range taskFieldColumns {
		if *fields&c.field != 0 {
			cols = append(cols, c.col)
			dests = append(dests, c.dest)
		}
	}
	return strings.Join(cols, ", "), func(k *app.Task) []any {
		d := make([]any, 0, 1+len(dests))
		d = append(d, &k.JobID)
		for _, f := range dests {
			d = append(d, f(k))
		}
		return d
	}
}

// createTasks inserts one pending task per name for job jobID.
func createTasks(ctx context.Context, t *tx, jobID int64, names []string) ([]*app.Task, error) {
	tasks := make([]*app.Task, 0, len(names))
	for i, name := range names {
		k := &app.Task{Created: t.now, Updated: t.now, JobID: jobID, Seq: i, Name: name, Status: app.TaskPending}
		id, err := insert(ctx, t, `INSERT INTO tasks (created, updated, job_id, seq, name, status) VALUES (?, ?, ?, ?, ?, ?)`,
			unix(t.now), unix(t.now), jobID, i, name, k.Status)
		if err != nil {
			return nil, formatError(err, "task")
		}
		k.ID = id
		tasks = append(tasks, k)
	}
	return tasks, nil
}

// FindTasks returns the job's tasks in manifest order.
func (db *DB) FindTasks(ctx context.Context, jobID int64) ([]*app.Task, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find tasks: %w", err)
	}
	defer t.Rollback()
	tasks, err := queryList(ctx, t, scanTask, `SELECT `+taskColumns+` FROM tasks WHERE job_id = ? ORDER BY seq`, jobID)
	if err != nil {
		return nil, fmt.Errorf("find tasks of job %d: %w", jobID, formatError(err, "task"))
	}
	return tasks, t.commit("find tasks")
}

// maxBatch bounds the ids bound into one IN (...) list.
const maxBatch = 500

// FindTasksForJobs returns the tasks of several jobs, keyed by job id and in
// manifest order. Jobs without tasks have no entry. With fields, only
// those fields and JobID are read. Up to maxBatch jobs (a page) are one
// statement, run without a transaction (see the package doc); more are
// read in batches in one transaction.
func (db *DB) FindTasksForJobs(ctx context.Context, jobIDs []int64, fields *app.TaskFields) (map[int64][]*app.Task, error) {
	ids := slices.Clone(jobIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids) // a job in two batches would get its tasks twice
	if len(ids) <= maxBatch {
		out, err := findTasksForJobs(ctx, db.autocommit(), ids, fields)
		if err != nil {
			return nil, fmt.Errorf("find tasks of %d jobs: %w", len(ids), err)
		}
		return out, nil
	}
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find tasks: %w", err)
	}
	defer t.Rollback()
	out, err := findTasksForJobs(ctx, t, ids, fields)
	if err != nil {
		return nil, fmt.Errorf("find tasks of %d jobs: %w", len(ids), err)
	}
	return out, t.commit("find tasks")
}

// findTasksForJobs reads the tasks of the jobs ids, sorted and without
// duplicates, maxBatch jobs per statement.
func findTasksForJobs(ctx context.Context, q querier, ids []int64, fields *app.TaskFields) (map[int64][]*app.Task, error) {
	out := make(map[int64][]*app.Task, len(ids))
	cols, dest := taskSelect(fields)
	for start := 0; start < len(ids); start += maxBatch {
		batch := ids[start:min(start+maxBatch, len(ids))]
		tasks, err := queryBlock(ctx, q, dest, 2*len(batch), `SELECT `+cols+` FROM tasks
			WHERE job_id IN (`+placeholders(len(batch))+`) ORDER BY job_id, seq`, anySlice(batch)...)
		if err != nil {
			return nil, formatError(err, "task")
		}
		// A job's tasks are one run of the list: each job gets its run,
		// capped so that appending to one cannot overwrite the next.
		for i := 0; i < len(tasks); {
			j := i + 1
			for j < len(tasks) && tasks[j].JobID == tasks[i].JobID {
				j++
			}
			out[tasks[i].JobID] = tasks[i:j:j]
			i = j
		}
	}
	return out, nil
}

// UpdateTaskStatus sets the task's status and returns it.
func (db *DB) UpdateTaskStatus(ctx context.Context, taskID int64, status app.TaskStatus) (*app.Task, error) {
	t, err := db.begin(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("update task: %w", err)
	}
	defer t.Rollback()
	k, err := scanTask(t.QueryRowContext(ctx, `UPDATE tasks SET status = ?, updated = ? WHERE id = ? RETURNING `+taskColumns,
		status, unix(t.now), taskID))
	if err != nil {
		return nil, fmt.Errorf("update task %d: %w", taskID, formatError(err, "task"))
	}
	return k, t.commit("update task")
}

// SkipPendingTasks marks every pending task of the job skipped. ENOTFOUND if
// the job does not exist.
func (db *DB) SkipPendingTasks(ctx context.Context, jobID int64) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("skip tasks: %w", err)
	}
	defer t.Rollback()
	if _, err := findJobByID(ctx, t, jobID); err != nil {
		return fmt.Errorf("skip tasks of job %d: %w", jobID, err)
	}
	_, err = t.ExecContext(ctx, `UPDATE tasks SET status = 'skipped', updated = ? WHERE job_id = ? AND status = 'pending'`,
		unix(t.now), jobID)
	if err != nil {
		return fmt.Errorf("skip tasks of job %d: %w", jobID, formatError(err, "task"))
	}
	return t.commit("skip tasks")
}
