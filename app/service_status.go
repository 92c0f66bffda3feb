package app

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Commit statuses: for each job a push starts, builds tells the forge
// (pending, running, success, failure) with the job's page as the target,
// one status per manifest. The Service keeps the wanted state of each in
// the store; the notifier (notify/commitstatus.go) sends it, retrying with
// backoff. Like the rest of the notifier's bookkeeping these methods act
// with the appliance's authority and are not reachable from the API.

// queueCommitStatuses records a pending status for each of a push's jobs
// (names are their manifests), if the repository reports statuses. A
// failure is logged and never fails the push.
func (s *Service) queueCommitStatuses(ctx context.Context, r *Repo, p *RepoPush, commit string, jobs []*Job, names []string) {
	if !r.ReportsStatus() || len(jobs) == 0 {
		return
	}
	list := make([]*CommitStatus, len(jobs))
	for i, j := range jobs {
		list[i] = &CommitStatus{RepositoryID: r.ID, PushID: p.ID, JobID: j.ID, Commit: commit,
			Context: statusContext(names[i]), State: CommitStateOf(j.Status)}
	}
	if err := s.Store.CreateCommitStatuses(ctx, list); err != nil {
		s.Log.Error("queue commit statuses", "repo_id", r.ID, "push_id", p.ID, "err", err)
	}
}

// maxStatusDescription is the longest description sent: GitHub refuses
// more than 140 characters.
const maxStatusDescription = 140

// queueManifestFailure records a failure status, without a job, for a
// pushed manifest that builds nothing because it is wrong: the forge shows
// the parser's error next to the commit. A failure to record is logged.
func (s *Service) queueManifestFailure(ctx context.Context, r *Repo, p *RepoPush, commit, manifest, msg string) {
	if !r.ReportsStatus() {
		return
	}
	desc := "builds: " + msg
	if len(desc) > maxStatusDescription {
		desc = TruncateUTF8(desc, maxStatusDescription-3) + "..."
	}
	cs := &CommitStatus{RepositoryID: r.ID, PushID: p.ID, Commit: commit, Context: statusContext(manifest),
		State: CommitFailure, Description: desc}
	if err := s.Store.CreateCommitStatuses(ctx, []*CommitStatus{cs}); err != nil {
		s.Log.Error("queue commit status", "repo_id", r.ID, "push_id", p.ID, "err", err)
	}
}

// statusContext is the status's name on the forge: "builds/<manifest>"
// without its .yml, so each manifest has its own line under a commit.
func statusContext(manifest string) string {
	name := strings.TrimSuffix(strings.TrimSuffix(manifest, ".yml"), ".yaml")
	name = strings.TrimPrefix(name, ".")
	return "builds/" + name
}

// CommitStateChanged makes the job's status the wanted commit state of
// the job's commit status. It reports whether the job has one (false for
// jobs no push started, or whose repository reports nothing).
func (s *Service) CommitStateChanged(ctx context.Context, job *Job) (bool, error) {
	return s.Store.SetCommitState(ctx, job.ID, CommitStateOf(job.Status))
}

// DueCommitStatuses returns up to limit commit statuses to send now.
func (s *Service) DueCommitStatuses(ctx context.Context, limit int) ([]*CommitStatus, error) {
	return s.Store.DueCommitStatuses(ctx, s.now(), limit)
}

// CommitStatusTarget returns what reporting cs takes: the forge, the
// repository's access token, the job's page. ENOTFOUND means the
// repository or the job is gone.
func (s *Service) CommitStatusTarget(ctx context.Context, cs *CommitStatus) (*StatusTarget, error) {
	r, err := s.Store.FindRepositoryByID(ctx, cs.RepositoryID)
	if err != nil {
		return nil, err
	}
	if !r.ReportsStatus() {
		return nil, Errorf(EINVALID, "repository %s reports no commit status (no access token)", r.Name)
	}
	tok, err := s.sealer.open(r.Token, repoAD("token", r.OwnerID, r.HookID))
	if err != nil {
		return nil, fmt.Errorf("open access token of repository %d: %w", r.ID, err)
	}
	if cs.JobID == 0 {
		// a manifest that failed: the repository's page says more
		return &StatusTarget{Kind: r.Kind, CloneURL: r.CloneURL, Token: string(tok), Commit: cs.Commit,
			Context: cs.Context, State: cs.State, TargetURL: s.Config.RepoPageURL(r), Description: cs.Description}, nil
	}
	job, err := s.Store.FindJobByID(ctx, cs.JobID)
	if err != nil {
		return nil, err
	}
	owner, err := s.Store.FindUserByID(ctx, job.OwnerID)
	if err != nil {
		return nil, err
	}
	return &StatusTarget{Kind: r.Kind, CloneURL: r.CloneURL, Token: string(tok), Commit: cs.Commit,
		Context: cs.Context, State: cs.State, TargetURL: s.Config.JobURL(owner.Username, job.ID),
		Description: statusDescription(job, cs.State)}, nil
}

// statusDescription is the line a forge shows beside the status.
func statusDescription(job *Job, state CommitState) string {
	what := map[CommitState]string{CommitPending: "queued", CommitRunning: "running", CommitSuccess: "passed",
		CommitCancelled: "cancelled"}[state]
	if state == CommitFailure {
		what = "failed"
		if job.Status == JobTimeout {
			what = "timed out"
		}
	}
	return fmt.Sprintf("builds: job #%d %s", job.ID, what)
}

// FinishCommitAttempt records one attempt at sending cs's state: sent
// when errText is "", else failed and tried again at next (nil: given up).
func (s *Service) FinishCommitAttempt(ctx context.Context, cs *CommitStatus, errText string, next *time.Time) error {
	outcome := "delivered"
	switch {
	case errText != "" && next != nil:
		outcome = "retry"
	case errText != "":
		outcome = "failed"
	}
	s.Metrics.Delivery("commit_status", outcome)
	return s.Store.FinishCommitAttempt(ctx, cs.ID, cs.State, errText, next)
}

// CommitStatuses lists the latest commit statuses of one of the caller's
// repositories, for its page: what the forge was told, and what failed.
func (s *Service) CommitStatuses(ctx context.Context, r *Repo, limit int) ([]*CommitStatus, error) {
	if u := UserFromContext(ctx); !isSystem(ctx) && (u == nil || u.ID != r.OwnerID) {
		return nil, Errorf(ENOTFOUND, "no such repository")
	}
	return s.Store.FindCommitStatuses(ctx, r.ID, limit)
}
