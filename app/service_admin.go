package app

import (
	"context"
	"fmt"
	"time"
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

// VMCacheEntry is one saved guest a runner keeps to start jobs fast: an
// image's snapshot or a package layer.
type VMCacheEntry struct {
	Kind     string // "snapshot" or "layer"
	Key      string
	Image    string
	Arch     string
	Packages []string // a layer's
	Created  time.Time
	LastUsed time.Time // a layer's last use
	Size     int64     // bytes on disk
}

// VMCache lists what a runner keeps (implemented by the runner).
type VMCache interface {
	VMCacheEntries() ([]VMCacheEntry, error)
}

// UseVMCache registers the runner's cache for the admin overview.
func (s *Service) UseVMCache(c VMCache) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vmCache = c
}

// VMCacheEntries lists the runner's snapshots and layers (admins only).
func (s *Service) VMCacheEntries(ctx context.Context) ([]VMCacheEntry, error) {
	if u := UserFromContext(ctx); u == nil || !u.Admin {
		return nil, Errorf(EFORBIDDEN, "only administrators may list the runner's cache")
	}
	s.mu.RLock()
	c := s.vmCache
	s.mu.RUnlock()
	if c == nil {
		return nil, nil
	}
	return c.VMCacheEntries()
}
