package app_test

import (
	"context"
	"fmt"
	"testing"

	"builds/app"
)

// jobIn returns a new job of alice's in status st, put there directly in
// the store.
func (e *testEnv) jobIn(t *testing.T, st app.JobStatus) *app.Job {
	t.Helper()
	no := false
	job, err := e.svc.Submit(e.aliceCtx, app.SubmitInput{Manifest: okManifest, Execute: &no})
	if err != nil {
		t.Fatal(err)
	}
	if st != app.JobPending {
		job, err = e.db.TransitionJob(context.Background(), job.ID, app.JobStatuses, app.JobUpdate{Status: &st})
		if err != nil {
			t.Fatal(err)
		}
	}
	return job
}

// TestJobStateMachine walks every (from, to) pair through the one
// transition path: a move happens exactly when the table allows it, and
// then the listeners hear of it.
func TestJobStateMachine(t *testing.T) {
	e := newEnv(t)
	sys := app.SystemContext(context.Background())
	allowed := map[[2]app.JobStatus]bool{
		{app.JobPending, app.JobQueued}: true, {app.JobPending, app.JobCancelled}: true,
		{app.JobQueued, app.JobRunning}: true, {app.JobQueued, app.JobCancelled}: true,
		{app.JobRunning, app.JobSuccess}: true, {app.JobRunning, app.JobFailed}: true,
		{app.JobRunning, app.JobTimeout}: true, {app.JobRunning, app.JobCancelled}: true,
	}
	for _, from := range app.JobStatuses {
		for _, to := range app.JobStatuses {
			t.Run(fmt.Sprintf("%s-%s", from, to), func(t *testing.T) {
				job := e.jobIn(t, from)
				if got := from.CanTransition(to); got != allowed[[2]app.JobStatus{from, to}] {
					t.Fatalf("CanTransition = %v", got)
				}
				events := len(e.events)
				got, err := e.svc.UpdateJobStatus(sys, job.ID, to)
				if allowed[[2]app.JobStatus{from, to}] {
					if err != nil || got.Status != to {
						t.Fatalf("move: %v, %v", got, err)
					}
					if len(e.events) != events+1 {
						t.Errorf("%d events, want 1", len(e.events)-events)
					}
					if to.Final() && got.Finished == nil || to == app.JobRunning && (got.Started == nil || got.Deadline == nil || got.Runner == nil) {
						t.Errorf("columns of the move not set: %+v", got)
					}
					return
				}
				if err == nil {
					t.Fatalf("moved %s -> %s", from, to)
				}
				if code := app.ErrorCode(err); code != app.ECONFLICT && code != app.EINVALID {
					t.Errorf("error %v (%s)", err, code)
				}
				if cur, _ := e.db.FindJobByID(context.Background(), job.ID); cur.Status != from || len(e.events) != events {
					t.Errorf("refused move changed the job (%s) or told listeners", cur.Status)
				}
			})
		}
	}
	// The other entries go through the same table.
	t.Run("UserPaths", func(t *testing.T) {
		for _, from := range app.JobStatuses {
			job := e.jobIn(t, from)
			_, err := e.svc.Cancel(e.aliceCtx, job.ID)
			if (err == nil) != from.CanTransition(app.JobCancelled) {
				t.Errorf("cancel from %s: %v", from, err)
			}
			job = e.jobIn(t, from)
			_, err = e.svc.Start(e.aliceCtx, job.ID)
			if (err == nil) != (from == app.JobPending) {
				t.Errorf("start from %s: %v", from, err)
			}
			job = e.jobIn(t, from)
			// FinishJob returns a job that already left running unchanged
			got, err := e.svc.FinishJob(sys, job.ID, app.JobFailed, "x")
			if err != nil || (got.Reason == "x") != (from == app.JobRunning) {
				t.Errorf("finish from %s: %v %v", from, got, err)
			}
		}
	})
}
