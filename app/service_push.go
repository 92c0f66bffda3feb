package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// MaxWebhookBody is the largest webhook delivery read; GitHub's push
// payloads, the largest, are capped at 25 MB but carry at most 2048
// commits, well under this for what we read.
const MaxWebhookBody = 8 << 20

// PushResult is what a push (or a manual build) started: a job group, or
// a message saying why nothing was built.
type PushResult struct {
	Push    *RepoPush
	Group   *JobGroup
	Jobs    []*Job
	Message string // for answers without a group: "pong", "no build manifest" ...
}

// ReceiveWebhook handles one forge delivery to the repository whose hook
// id is hookID. Nothing is done before the delivery's signature is
// verified with the repository's secret; an unknown hook id is ENOTFOUND,
// a delivery id the repository saw before ECONFLICT (a replay). A push
// of the repository's branches or a tag submits the commit's manifests as
// one job group owned by the repository's owner.
func (s *Service) ReceiveWebhook(ctx context.Context, hookID string, h http.Header, body []byte) (*PushResult, error) {
	r, err := s.Store.FindRepositoryByHookID(ctx, hookID)
	if ErrorCode(err) == ENOTFOUND {
		s.Log.Warn("webhook for an unknown repository refused", "hook_id", TruncateUTF8(hookID, 40))
		return nil, Errorf(ENOTFOUND, "no repository has this webhook")
	} else if err != nil {
		return nil, err
	}
	if s.Forge == nil {
		return nil, fmt.Errorf("receive webhook: no forge adapter configured")
	}
	secret, err := s.sealer.open(r.Secret, repoAD("secret", r.OwnerID, r.HookID))
	if err != nil {
		return nil, fmt.Errorf("open webhook secret of repository %d: %w", r.ID, err)
	}
	ev, err := s.Forge.ParseWebhook(r.Kind, secret, h, body)
	if err != nil {
		s.Log.Warn("webhook refused", "repo_id", r.ID, "kind", r.Kind, "err", ErrorMessage(err))
		return nil, err
	}
	switch {
	case ev.Type == ForgePing:
		return &PushResult{Message: "pong"}, nil
	case ev.Type == ForgePullRequest:
		return s.receivePull(ctx, r, ev)
	case ev.Type != ForgePush:
		return &PushResult{Message: "event ignored"}, nil
	case ev.Deleted:
		return &PushResult{Message: "ref deleted, nothing to build"}, nil
	}
	if branch, ok := strings.CutPrefix(ev.Ref, "refs/heads/"); ok && !r.BuildsBranch(branch) {
		return &PushResult{Message: fmt.Sprintf("branch %q is not built", branch)}, nil
	}
	if !strings.HasPrefix(ev.Ref, "refs/heads/") && !strings.HasPrefix(ev.Ref, "refs/tags/") {
		return &PushResult{Message: "ref " + ev.Ref + " is not built"}, nil
	}
	if !IsCommitSHA(ev.Commit) {
		return nil, Errorf(EINVALID, "the push names no commit")
	}
	delivery := ev.Delivery
	p := &RepoPush{RepositoryID: r.ID, Delivery: &delivery, Ref: ev.Ref, Commit: ev.Commit}
	if err := s.Store.CreateRepoPush(ctx, p); ErrorCode(err) == ECONFLICT {
		s.Log.Warn("webhook replay refused", "repo_id", r.ID, "delivery", TruncateUTF8(delivery, 80))
		return nil, Errorf(ECONFLICT, "delivery %q was received before", delivery)
	} else if err != nil {
		return nil, err
	}
	return s.buildPush(ctx, r, p, ev.CommitURL)
}

// BuildRepository builds rev (a branch, tag or commit; "" = the default
// branch) of one of the caller's repositories: "build now" and `builds
// submit-repo`.
func (s *Service) BuildRepository(ctx context.Context, ref, rev string) (*PushResult, error) {
	return s.buildRepository(ctx, ref, rev, "")
}

// buildRepository is BuildRepository with the jobs' BUILD_REASON (""
// for none): "schedule" for the scheduler's builds.
func (s *Service) buildRepository(ctx context.Context, ref, rev, reason string) (*PushResult, error) {
	if err := requireGrant(ctx, ScopeJobs, RW); err != nil {
		return nil, err
	}
	r, err := s.OwnRepository(ctx, ref)
	if err != nil {
		return nil, err
	}
	if rev == "" {
		rev = "HEAD"
	}
	if strings.HasPrefix(rev, "-") || strings.ContainsAny(rev, "\x00\n\r\t ") || len(rev) > 256 {
		return nil, Errorf(EINVALID, "invalid revision %q", rev)
	}
	c, err := s.fetch(ctx, r, rev, "")
	if err != nil {
		return nil, err
	}
	full := c.Ref
	if full == "" {
		full = rev // a commit given by its SHA
	}
	p := &RepoPush{RepositoryID: r.ID, Ref: full, Commit: c.SHA}
	if err := s.Store.CreateRepoPush(ctx, p); err != nil {
		return nil, err
	}
	return s.submitPush(ctx, r, p, pushInfo{Repo: r, Ref: p.Ref, Commit: c, Reason: reason})
}

// fetch reads a commit's manifests from the repository.
func (s *Service) fetch(ctx context.Context, r *Repo, rev, ref string) (*ForgeCommit, error) {
	if s.Forge == nil {
		return nil, fmt.Errorf("fetch: no forge adapter configured")
	}
	req, err := s.fetchRequest(ctx, r)
	if err != nil {
		return nil, err
	}
	req.Rev, req.Ref = rev, ref
	return s.Forge.FetchCommit(ctx, req)
}

// listBranches lists the repository's branches.
func (s *Service) listBranches(ctx context.Context, r *Repo) ([]string, error) {
	if s.Forge == nil {
		return nil, fmt.Errorf("list branches: no forge adapter configured")
	}
	req, err := s.fetchRequest(ctx, r)
	if err != nil {
		return nil, err
	}
	return s.Forge.ListBranches(ctx, req)
}

// fetchRequest is how the repository is read: its URL, credentials and
// the manifest limits.
func (s *Service) fetchRequest(ctx context.Context, r *Repo) (FetchRequest, error) {
	req := FetchRequest{URL: r.CloneURL, MaxManifests: s.Config.Limits.ManifestsPerPush, MaxSize: s.Config.Limits.ManifestSize}
	if r.DeployKey != nil {
		sec, err := s.ResolveSecret(ctx, r.OwnerID, *r.DeployKey)
		if err != nil {
			return req, Errorf(EINVALID, "the repository's deploy key is gone: %s", ErrorMessage(err))
		}
		req.SSHKey = sec.Data
	}
	if r.Token != nil {
		tok, err := s.sealer.open(r.Token, repoAD("token", r.OwnerID, r.HookID))
		if err != nil {
			return req, fmt.Errorf("open access token of repository %d: %w", r.ID, err)
		}
		req.Token = string(tok)
		req.TokenUser = "x-access-token"
		if r.Kind == ForgeGitLab {
			req.TokenUser = "oauth2"
		}
	}
	return req, nil
}

// buildPush fetches a pushed commit and submits its manifests.
func (s *Service) buildPush(ctx context.Context, r *Repo, p *RepoPush, commitURL string) (*PushResult, error) {
	c, err := s.fetch(ctx, r, p.Commit, p.Ref)
	if err != nil {
		return nil, s.failPush(ctx, r, p, err)
	}
	if c.SHA != p.Commit {
		return nil, s.failPush(ctx, r, p, Errorf(EINVALID, "fetched commit %s, not the pushed %s", c.SHA, p.Commit))
	}
	return s.submitPush(ctx, r, p, pushInfo{Repo: r, Ref: p.Ref, Commit: c, CommitURL: commitURL})
}

// failPush records why a push built nothing and returns err.
func (s *Service) failPush(ctx context.Context, r *Repo, p *RepoPush, err error) error {
	msg := ErrorMessage(err)
	if ErrorCode(err) == EINTERNAL {
		msg = "internal error"
	}
	if ferr := s.Store.FinishRepoPush(ctx, p.ID, nil, msg); ferr != nil {
		s.Log.Error("record push", "repo_id", r.ID, "err", ferr)
	}
	s.Log.Info("push not built", "repo_id", r.ID, "ref", p.Ref, "commit", p.Commit, "err", err)
	return err
}

// submitPush rewrites and submits a commit's manifests as one job group,
// queued at once, as the repository's owner. Every manifest is checked
// before any job is made: one that fails to parse submits nothing. A pull
// request's jobs (info.Pull) are tagged apart and get no secrets from a
// fork.
func (s *Service) submitPush(ctx context.Context, r *Repo, p *RepoPush, info pushInfo) (*PushResult, error) {
	c := info.Commit
	if len(c.Manifests) == 0 {
		if err := s.Store.FinishRepoPush(ctx, p.ID, nil, "no build manifest"); err != nil {
			return nil, err
		}
		return &PushResult{Push: p, Message: "no build manifest (.build.yml or .builds/*.yml) at " + ShortSHA(c.SHA)}, nil
	}
	owner, err := s.Store.FindUserByID(ctx, r.OwnerID)
	if err != nil {
		return nil, s.failPush(ctx, r, p, err)
	}
	texts := make([]string, len(c.Manifests))
	for i, m := range c.Manifests {
		if _, err := s.CheckManifest(m.Text); err != nil {
			s.queueManifestFailure(ctx, r, p, c.SHA, m.Name, ErrorMessage(err))
			return nil, s.failPush(ctx, r, p, Errorf(EINVALID, "%s: %s", m.Name, ErrorMessage(err)))
		}
		text, err := rewriteManifest(m.Text, info)
		if err != nil {
			s.queueManifestFailure(ctx, r, p, c.SHA, m.Name, err.Error())
			return nil, s.failPush(ctx, r, p, Errorf(EINVALID, "%s: %s", m.Name, err.Error()))
		}
		texts[i] = text
	}
	as := NewContextWithAuth(ctx, &Auth{Kind: AuthSystem, User: owner})
	note := pushNote(info)
	secrets, no := true, false
	tags := func(manifest string) []string { return pushTags(r.Name, p.Ref, manifest) }
	if pr := info.Pull; pr != nil {
		note, secrets = pullNote(info), !pr.Fork
		tags = func(manifest string) []string { return pullTags(r.Name, pr.Number, manifest) }
	}
	var jobs []*Job
	var ids []int64
	for i, text := range texts {
		job, err := s.Submit(as, SubmitInput{Manifest: text, Tags: tags(c.Manifests[i].Name),
			Note: &note, Secrets: &secrets, Execute: &no, Visibility: &r.Visibility})
		if err != nil {
			s.cancelJobs(as, jobs)
			if ErrorCode(err) == EINVALID {
				s.queueManifestFailure(ctx, r, p, c.SHA, c.Manifests[i].Name, ErrorMessage(err))
			}
			return nil, s.failPush(ctx, r, p, Errorf(EINVALID, "%s: %s", c.Manifests[i].Name, ErrorMessage(err)))
		}
		jobs = append(jobs, job)
		ids = append(ids, job.ID)
	}
	names := make([]string, len(jobs))
	for i := range jobs {
		names[i] = c.Manifests[i].Name
	}
	// before the group starts the jobs, so their first change finds them
	s.queueCommitStatuses(ctx, r, p, c.SHA, jobs, names)
	g, err := s.CreateGroup(as, ids, nil, nil, &note)
	if err != nil {
		s.cancelJobs(as, jobs)
		return nil, s.failPush(ctx, r, p, err)
	}
	if err := s.Store.FinishRepoPush(ctx, p.ID, &g.ID, ""); err != nil {
		return nil, err
	}
	p.GroupID = &g.ID
	s.Log.Info("push built", "repo_id", r.ID, "ref", p.Ref, "commit", c.SHA, "group_id", g.ID, "jobs", len(jobs))
	return &PushResult{Push: p, Group: g, Jobs: jobs}, nil
}

// cancelJobs cancels the pending jobs of a push that could not be grouped.
func (s *Service) cancelJobs(ctx context.Context, jobs []*Job) {
	for _, j := range jobs {
		if _, err := s.Cancel(ctx, j.ID); err != nil && !errors.Is(err, context.Canceled) {
			s.Log.Warn("cancel job of a failed push", "job_id", j.ID, "err", err)
		}
	}
}
