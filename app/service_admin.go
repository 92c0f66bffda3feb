package app

import (
	"context"
	"fmt"
)

// ActiveJobs lists every user's unfinished jobs (pending, queued,
// running), newest first, at most limit of them (0 = all). It is the
// operators' overview: only admins may call it, everybody else gets
// EFORBIDDEN.
func (s *Service) ActiveJobs(ctx context.Context, limit int) ([]*Job, error) {
	if err := requireGrant(ctx, ScopeJobs, RO); err != nil {
		return nil, err
	}
	if u := UserFromContext(ctx); u == nil || !u.Admin {
		return nil, Errorf(EFORBIDDEN, "only administrators may list every user's jobs")
	}
	jobs, err := s.Store.FindJobs(ctx, JobFilter{Status: []JobStatus{JobPending, JobQueued, JobRunning}, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("find active jobs: %w", err)
	}
	return jobs, nil
}
