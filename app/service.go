package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// JobListener hears of every committed change of a job: its creation
// (EventJobCreated) and each status change (EventJobUpdated), with the
// job as stored after it. The runner wakes for queued jobs and stops the
// VMs of jobs that left running; notifications send webhooks and
// triggers. Implementations must not block.
type JobListener interface {
	JobChanged(ctx context.Context, event WebhookEvent, job *Job)
}

// Service enforces the rules on top of the Store: who may see and change
// what, and which status transitions happen (job_state.go). Web, API,
// runner, notifications and CLI all go through it.
type Service struct {
	Store  Store
	Config *Config
	Logs   *LogHub
	Now    func() time.Time
	Log    *slog.Logger
	// Metrics receives measurements (NopMetrics unless the metrics
	// endpoint is on).
	Metrics Metrics
	// Forge verifies and parses forge webhooks and reads pushed commits'
	// manifests (forge.Adapter); nil refuses connected repositories' pushes.
	Forge Forge
	// FreeSpace returns the bytes free on the filesystem holding a
	// directory ([runner] min-free-disk, the admin page); statfs(2).
	FreeSpace func(dir string) (int64, error)

	cursors cursorCodec
	sealer  *sealer

	mu        sync.RWMutex
	listeners []JobListener
	vmCache   VMCache // the runner's snapshots and layers (admin overview)
	disk      diskState

	kickMu   sync.Mutex
	kick     chan struct{} // closed at the next job change: held runner polls look again
	logLocks sync.Map      // log path -> *sync.Mutex: remote runners' appends
	// sshURI is set once a remote runner reports an SSH address with a
	// port: the API's sshUser is then ssh://<user> (see APISSHUser).
	sshURI atomic.Bool
}

// NewService returns a Service; secretKey (32 bytes) encrypts secrets at
// rest and signs cursors. log may be nil (slog.Default()).
func NewService(store Store, cfg *Config, secretKey []byte, log *slog.Logger) (*Service, error) {
	s, err := newSealer(secretKey)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Service{
		Store:     store,
		Config:    cfg,
		Logs:      &LogHub{},
		Now:       time.Now,
		Log:       log,
		Metrics:   NopMetrics{},
		FreeSpace: statfsFree,
		cursors:   cursorCodec{key: append([]byte("builds-cursor"), secretKey...)},
		sealer:    s,
	}, nil
}

// Listen adds a listener of job changes (the runner, notifications).
func (s *Service) Listen(l JobListener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, l)
}

func (s *Service) now() time.Time { return s.Now().UTC().Truncate(time.Second) }

// changed tells the listeners about a committed change of job.
func (s *Service) changed(ctx context.Context, ev WebhookEvent, job *Job) {
	if job == nil {
		return
	}
	s.mu.RLock()
	ls := s.listeners
	s.mu.RUnlock()
	ctx = context.WithoutCancel(ctx)
	for _, l := range ls {
		l.JobChanged(ctx, ev, job)
	}
	s.kickRunners()
}

// requireUser returns the caller, or EUNAUTHORIZED.
func requireUser(ctx context.Context) (*User, error) {
	if u := UserFromContext(ctx); u != nil {
		return u, nil
	}
	return nil, Errorf(EUNAUTHORIZED, "authentication required")
}

// CheckGrant is the one grant check, for the Service's own methods and
// the API's @access directive alike: EUNAUTHORIZED without an identity,
// EFORBIDDEN when the identity lacks scope:kind.
func CheckGrant(ctx context.Context, scope Scope, kind Access) error {
	a := AuthFromContext(ctx)
	if a == nil || a.User == nil && a.Kind != AuthSystem && a.Kind != AuthRunner {
		return Errorf(EUNAUTHORIZED, "authentication required")
	}
	if a.Can(scope, kind) {
		return nil
	}
	if a.Kind == AuthWebhook && kind == RW {
		return Errorf(EFORBIDDEN, "access denied: webhook queries are read-only")
	}
	return Errorf(EFORBIDDEN, "access denied: this token lacks the %s:%s grant", scope, kind)
}

func requireGrant(ctx context.Context, scope Scope, kind Access) error {
	return CheckGrant(ctx, scope, kind)
}

// CanCancel reports whether the caller may cancel job now: its owner (or
// an admin) while the state machine lets it go to cancelled.
func CanCancel(ctx context.Context, job *Job) bool {
	if !job.Status.CanTransition(JobCancelled) {
		return false
	}
	if isOwner(ctx, job) {
		return true
	}
	u := UserFromContext(ctx)
	return u != nil && u.Admin
}

func isSystem(ctx context.Context) bool {
	a := AuthFromContext(ctx)
	return a != nil && a.Kind == AuthSystem
}

// CanView reports whether the caller may see job (behaviour.md §4.7).
// Anonymous callers see PUBLIC and UNLISTED jobs by id.
func CanView(ctx context.Context, job *Job) bool {
	if isSystem(ctx) || AuthFromContext(ctx).holds(job.ID) {
		return true
	}
	if u := UserFromContext(ctx); u != nil && (u.ID == job.OwnerID || u.Admin) {
		return true
	}
	return job.Visibility != Private
}

// isOwner reports whether the caller owns job (or is the system).
func isOwner(ctx context.Context, job *Job) bool {
	if isSystem(ctx) || AuthFromContext(ctx).holds(job.ID) {
		return true
	}
	u := UserFromContext(ctx)
	return u != nil && u.ID == job.OwnerID
}

// errNoJob is what callers get for missing and invisible jobs alike, so
// private job ids do not leak.
func errNoJob(id int64) error { return Errorf(ENOTFOUND, "no such job: %d", id) }

// Job returns a job the caller may see.
func (s *Service) Job(ctx context.Context, id int64) (*Job, error) {
	job, err := s.Store.FindJobByID(ctx, id)
	if ErrorCode(err) == ENOTFOUND {
		return nil, errNoJob(id)
	} else if err != nil {
		return nil, fmt.Errorf("find job: %w", err)
	}
	if !CanView(ctx, job) {
		return nil, errNoJob(id)
	}
	return job, nil
}

// OwnJob returns a job the caller owns; others' jobs are "not found".
func (s *Service) OwnJob(ctx context.Context, id int64) (*Job, error) {
	job, err := s.Job(ctx, id)
	if err != nil {
		return nil, err
	}
	if !isOwner(ctx, job) {
		return nil, errNoJob(id)
	}
	return job, nil
}

// JobList is one page of jobs with the cursor of the next page ("" at the end).
type JobList struct {
	Jobs   []*Job
	Cursor string
}

// UserJobs lists owner's jobs visible to the caller, newest first: all of
// them for the owner, PUBLIC ones for everybody else. search and tagPrefix
// are optional (web UI).
func (s *Service) UserJobs(ctx context.Context, ownerID int64, cursor *string, f JobFilter) (*JobList, error) {
	// The cursor kind names the owner, so a cursor from another user's
	// list is rejected rather than reinterpreted.
	kind := fmt.Sprint("jobs:", ownerID)
	f.OwnerID = &ownerID
	if u := UserFromContext(ctx); !isSystem(ctx) && (u == nil || u.ID != ownerID && !u.Admin) {
		f.Visibility = []Visibility{Public}
	}
	size := f.Limit
	if size == 0 {
		size = PageSize
	}
	jobs, next, err := paginate(s.cursors, kind, cursor, size, func(j *Job) int64 { return j.ID },
		func(before *int64, limit int) ([]*Job, error) {
			f.BeforeID, f.Limit = before, limit
			return s.Store.FindJobs(ctx, f)
		})
	if err != nil {
		return nil, fmt.Errorf("find jobs: %w", err)
	}
	return &JobList{Jobs: jobs, Cursor: next}, nil
}

// Tasks returns the tasks of a job the caller may see, in manifest order.
func (s *Service) Tasks(ctx context.Context, job *Job) ([]*Task, error) {
	if !CanView(ctx, job) {
		return nil, errNoJob(job.ID)
	}
	return s.Store.FindTasks(ctx, job.ID)
}

// Task returns one task of a visible job by name.
func (s *Service) Task(ctx context.Context, jobID int64, name string) (*Job, *Task, error) {
	job, err := s.Job(ctx, jobID)
	if err != nil {
		return nil, nil, err
	}
	tasks, err := s.Store.FindTasks(ctx, jobID)
	if err != nil {
		return nil, nil, err
	}
	for _, t := range tasks {
		if t.Name == name {
			return job, t, nil
		}
	}
	return nil, nil, Errorf(ENOTFOUND, "no such task: %s", name)
}

// Artifacts returns the artifacts of a visible job.
func (s *Service) Artifacts(ctx context.Context, job *Job) ([]*Artifact, error) {
	if !CanView(ctx, job) {
		return nil, errNoJob(job.ID)
	}
	return s.Store.FindArtifacts(ctx, job.ID)
}

// Artifact returns an artifact of a visible job.
func (s *Service) Artifact(ctx context.Context, id int64) (*Job, *Artifact, error) {
	a, err := s.Store.FindArtifactByID(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	job, err := s.Job(ctx, a.JobID)
	if err != nil {
		return nil, nil, Errorf(ENOTFOUND, "no such artifact")
	}
	return job, a, nil
}

// User returns a user by id.
func (s *Service) User(ctx context.Context, id int64) (*User, error) {
	return s.Store.FindUserByID(ctx, id)
}

// UserByName returns a user by username.
func (s *Service) UserByName(ctx context.Context, name string) (*User, error) {
	return s.Store.FindUserByName(ctx, name)
}
