package store

import (
	"context"
	"fmt"
	"slices"

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
// manifest order. Jobs without tasks have no entry.
func (db *DB) FindTasksForJobs(ctx context.Context, jobIDs []int64) (map[int64][]*app.Task, error) {
	out := make(map[int64][]*app.Task, len(jobIDs))
	if len(jobIDs) == 0 {
		return out, nil
	}
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find tasks: %w", err)
	}
	defer t.Rollback()
	ids := slices.Clone(jobIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids) // a job in two batches would get its tasks twice
	for start := 0; start < len(ids); start += maxBatch {
		batch := ids[start:min(start+maxBatch, len(ids))]
		tasks, err := queryBlock(ctx, t, taskDest, 2*len(batch), `SELECT `+taskColumns+` FROM tasks
			WHERE job_id IN (`+placeholders(len(batch))+`) ORDER BY job_id, seq`, anySlice(batch)...)
		if err != nil {
			return nil, fmt.Errorf("find tasks of %d jobs: %w", len(jobIDs), formatError(err, "task"))
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
	return out, t.commit("find tasks")
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
