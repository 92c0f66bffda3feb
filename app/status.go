package app

import (
	"context"
	"time"
)

// CommitState is what a forge shows next to a commit for one job a push
// started. Forges name these differently (GitLab says "running", "failed"
// and "canceled"); the notifier translates (notify/commitstatus.go).
type CommitState string

// Commit states.
const (
	CommitPending   CommitState = "pending"
	CommitRunning   CommitState = "running"
	CommitSuccess   CommitState = "success"
	CommitFailure   CommitState = "failure"
	CommitCancelled CommitState = "cancelled"
)

// CommitStateOf is the commit state that a job's status shows.
func CommitStateOf(s JobStatus) CommitState {
	switch s {
	case JobRunning:
		return CommitRunning
	case JobSuccess:
		return CommitSuccess
	case JobFailed, JobTimeout:
		return CommitFailure
	case JobCancelled:
		return CommitCancelled
	}
	return CommitPending
}

// CommitStatus is the status builds reports to a repository's forge for
// one job of a push: State is what the forge should show, Sent what it
// last accepted. While they differ and NextAttempt is set, the notifier
// sends State; Error is the last failure, shown on the repository page.
type CommitStatus struct {
	ID           int64
	Created      time.Time
	Updated      time.Time
	RepositoryID int64
	PushID       int64
	JobID        int64 // 0: no job (a manifest that failed to parse)
	Commit       string
	Context      string // "builds/<manifest>": one status per manifest
	State        CommitState
	Sent         CommitState // "" = nothing accepted yet
	Attempts     int         // failed attempts at sending State
	NextAttempt  *time.Time  // nil = nothing to send (sent, or given up)
	Error        string
	// Description is what the forge shows of a status without a job: the
	// parser's error ("" for a job's, described from the job).
	Description string
}

// StatusStore is the part of Store that keeps commit statuses
// (store/status.go).
type StatusStore interface {
	// CreateCommitStatuses inserts the statuses of a push's jobs, due at
	// once, setting their IDs.
	CreateCommitStatuses(ctx context.Context, list []*CommitStatus) error
	// SetCommitState makes state the job's wanted commit state, due at
	// once, unless it is already; it reports whether the job has a commit
	// status at all.
	SetCommitState(ctx context.Context, jobID int64, state CommitState) (bool, error)
	// DueCommitStatuses returns up to limit statuses due by now, oldest
	// first.
	DueCommitStatuses(ctx context.Context, now time.Time, limit int) ([]*CommitStatus, error)
	// FinishCommitAttempt records one attempt at sending state: sent
	// (errText "") or failed, tried again at next (nil: given up). A
	// success leaves the status due if its state changed meanwhile.
	FinishCommitAttempt(ctx context.Context, id int64, state CommitState, errText string, next *time.Time) error
	// FindCommitStatuses returns a repository's latest statuses, newest
	// first.
	FindCommitStatuses(ctx context.Context, repoID int64, limit int) ([]*CommitStatus, error)
}

// StatusTarget is everything the notifier needs to report one commit
// status to a forge. It holds the repository's access token in the clear:
// it never leaves the notifier.
type StatusTarget struct {
	Kind        ForgeKind
	CloneURL    string
	Token       string
	Commit      string
	Context     string
	State       CommitState
	TargetURL   string // the job's page
	Description string
}

// ReportsStatus reports whether builds reports commit statuses for r: a
// forge with a status API and an access token to call it with.
func (r *Repo) ReportsStatus() bool {
	return r.Kind != ForgeGit && r.Token != nil
}
