package app

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Service methods the GraphQL API needs beyond the lead's set: webhook
// query contexts, batched task loading, account deletion and the
// worker-only mutations (claim, updateJob, updateTask, createArtifact).

// WebhookPayload is one event as a webhook query sees it (GraphQL
// JobEvent): the delivery's UUID, the event, when it happened and the job.
type WebhookPayload struct {
	UUID  string
	Event WebhookEvent
	Date  time.Time
	Job   *Job
}

// NewWebhookPayload returns a payload for event on job with a fresh UUID.
func (s *Service) NewWebhookPayload(event WebhookEvent, job *Job) WebhookPayload {
	return WebhookPayload{UUID: newUUID(), Event: event, Date: s.now(), Job: job}
}

// WebhookAuth returns the identity a subscription's query runs with: its
// creator, limited to the creating token's grants and read-only. It fails
// when the creator is gone, or the creating token was revoked or expired.
func (s *Service) WebhookAuth(ctx context.Context, sub *WebhookSubscription) (*Auth, error) {
	u, err := s.Store.FindUserByID(ctx, sub.UserID)
	if err != nil {
		return nil, fmt.Errorf("find webhook owner: %w", err)
	}
	now := s.now()
	if sub.Expires != nil && !now.Before(*sub.Expires) {
		return nil, Errorf(EFORBIDDEN, "webhook subscription %d has expired", sub.ID)
	}
	if sub.TokenID != nil {
		t, err := s.Store.FindTokenByID(ctx, *sub.TokenID)
		if ErrorCode(err) == ENOTFOUND {
			return nil, Errorf(EFORBIDDEN, "the token that created webhook subscription %d was revoked", sub.ID)
		} else if err != nil {
			return nil, fmt.Errorf("find webhook token: %w", err)
		}
		if t.Expired(now) {
			return nil, Errorf(EFORBIDDEN, "the token that created webhook subscription %d has expired", sub.ID)
		}
	}
	g, err := ParseGrants(sub.Grants)
	if err != nil {
		return nil, fmt.Errorf("grants of webhook subscription %d: %w", sub.ID, err)
	}
	return &Auth{Kind: AuthWebhook, User: u, Grants: g}, nil
}

// TasksForJobs loads the tasks of several jobs in one query, keyed by job
// id. Jobs the caller may not see are left out.
func (s *Service) TasksForJobs(ctx context.Context, jobs []*Job) (map[int64][]*Task, error) {
	ids := make([]int64, 0, len(jobs))
	for _, j := range jobs {
		if CanView(ctx, j) {
			ids = append(ids, j.ID)
		}
	}
	if len(ids) == 0 {
		return map[int64][]*Task{}, nil
	}
	m, err := s.Store.FindTasksForJobs(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("find tasks: %w", err)
	}
	return m, nil
}

// DeleteAccount deletes the caller's own account with all its jobs, logs,
// artifacts, secrets and webhooks. Because it cannot be undone it needs a
// web session or a token carrying all grants; a token limited to some
// scopes is refused.
func (s *Service) DeleteAccount(ctx context.Context) (*User, error) {
	a := AuthFromContext(ctx)
	if a == nil || a.User == nil {
		return nil, Errorf(EUNAUTHORIZED, "authentication required")
	}
	switch {
	case a.Kind == AuthSession:
	case a.Kind == AuthToken && a.Grants == nil:
	default:
		return nil, Errorf(EFORBIDDEN, "access denied: deleting an account needs a token with all grants")
	}
	if err := s.DeleteUser(ctx, a.User.ID); err != nil {
		return nil, err
	}
	s.Log.Info("account deleted", "user", a.User.Username)
	return a.User, nil
}

// CheckWorker admits only the appliance's own runners (the @worker
// directive): user tokens never pass, whatever their grants.
func CheckWorker(ctx context.Context) error {
	switch a := AuthFromContext(ctx); {
	case a == nil:
		return Errorf(EUNAUTHORIZED, "authentication required")
	case a.Kind != AuthSystem:
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
