package app

// The worker API (the @worker mutations claim, updateJob, updateTask and
// createArtifact): build runners acting with the appliance's authority.
// User tokens never reach these, whatever their grants.

import (
	"context"
	"fmt"
	"io"
)

// CheckWorker admits only the appliance's own runners (the @worker
// directive): user tokens never pass, whatever their grants.
func CheckWorker(ctx context.Context) error {
	switch a := AuthFromContext(ctx); {
	case a == nil:
		return Errorf(EUNAUTHORIZED, "authentication required")
	case a.Kind != AuthSystem && a.Kind != AuthRunner:
		return Errorf(EFORBIDDEN, "access denied: worker only")
	}
	return nil
}

func requireWorker(ctx context.Context) error { return CheckWorker(ctx) }

// ClaimJobByID moves one queued job to running for runner (the claim
// mutation). ECONFLICT if the job is not queued.
func (s *Service) ClaimJobByID(ctx context.Context, id int64, runner string) (*Job, error) {
	if err := requireWorker(ctx); err != nil {
		return nil, err
	}
	if a := AuthFromContext(ctx); a.Kind == AuthRunner {
		return s.claimForRunner(ctx, a, id)
	}
	if runner == "" {
		runner = s.Config.RunnerName()
	}
	return s.transition(ctx, id, JobRunning, runner)
}

// UpdateJobStatus moves a job to status along the allowed transitions (the
// updateJob mutation). Final statuses go through the same path as the
// runner's own, so triggers and webhooks fire.
func (s *Service) UpdateJobStatus(ctx context.Context, id int64, status JobStatus) (*Job, error) {
	if err := requireWorker(ctx); err != nil {
		return nil, err
	}
	if AuthFromContext(ctx).Kind == AuthRunner {
		if _, _, err := s.heldJob(ctx, id, true); err != nil {
			return nil, err
		}
		if status.Final() {
			return s.RunnerFinish(ctx, id, FinishRequest{Status: status})
		}
	}
	return s.transition(ctx, id, status, s.Config.RunnerName())
}

func (s *Service) transition(ctx context.Context, id int64, to JobStatus, runner string) (*Job, error) {
	return s.moveJob(ctx, id, move{to: to, runner: runner})
}

// UpdateTaskByID records a task's status and returns its job (the
// updateTask mutation).
func (s *Service) UpdateTaskByID(ctx context.Context, taskID int64, status TaskStatus) (*Job, error) {
	if err := requireWorker(ctx); err != nil {
		return nil, err
	}
	valid := false
	for _, st := range TaskStatuses {
		valid = valid || st == status
	}
	if !valid {
		return nil, Errorf(EINVALID, "invalid task status %q", status)
	}
	if a := AuthFromContext(ctx); a.Kind == AuthRunner {
		jobID, err := s.runnerOwnsTask(ctx, a, taskID)
		if err != nil {
			return nil, err
		}
		// a task that fails because its job was cancelled is cancelled
		// (the API's TaskStatus has no word for it)
		if job, err := s.Store.FindJobByID(ctx, jobID); err == nil && job.Status == JobCancelled && status == TaskFailed {
			status = TaskCancelled
		}
	}
	t, err := s.Store.UpdateTaskStatus(ctx, taskID, status)
	if ErrorCode(err) == ENOTFOUND {
		return nil, Errorf(ENOTFOUND, "no such task: %d", taskID)
	} else if err != nil {
		return nil, fmt.Errorf("update task: %w", err)
	}
	return s.Store.FindJobByID(ctx, t.JobID)
}

// StoreArtifact stores an uploaded artifact through the artifact store
// (the createArtifact mutation). guestPath is the path in the guest; the
// file keeps its base name under a random directory.
func (s *Service) StoreArtifact(ctx context.Context, jobID int64, guestPath string, r io.Reader) (*Artifact, error) {
	if err := requireWorker(ctx); err != nil {
		return nil, err
	}
	if AuthFromContext(ctx).Kind == AuthRunner {
		if _, _, err := s.heldJob(ctx, jobID, true); err != nil {
			return nil, err
		}
	}
	w, err := s.NewArtifact(ctx, jobID, guestPath)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Abort()
		return nil, err
	}
	return w.Commit(ctx)
}
