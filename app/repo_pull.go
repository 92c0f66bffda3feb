package app

// Pull (merge) requests, for repositories that build them: the request's
// head commit is built as a push of it would be, but from the ref the
// forge keeps it at (a fork's commits are in no branch of the base
// repository), tagged <repo>/pulls/<N>/<manifest>, and without secrets
// when the head lives in a fork, as sr.ht builds patches from strangers.

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// PullEvent is what a verified pull (merge) request event says of it.
type PullEvent struct {
	Number int64
	// Ref is where the forge keeps the request's head in the base
	// repository: refs/pull/N/head (GitHub, Forgejo, Gitea) or
	// refs/merge-requests/N/head (GitLab).
	Ref  string
	Base string // the branch it asks to merge into
	// Fork is set when the head is in another repository than the base
	// (or in one since deleted): its jobs get no secrets.
	Fork  bool
	Title string
	URL   string // the request's page
}

// pullReason is BUILD_REASON of a pull request's jobs, named as
// dispatch.sr.ht named its (behaviour.md §1.4).
func pullReason(k ForgeKind) string {
	switch k {
	case ForgeGitHub:
		return "github-pr"
	case ForgeGitLab:
		return "gitlab-mr"
	}
	return "pull-request"
}

// pullTaskName is the task put first in a pull request's manifests: it
// fetches the request's ref and checks out its head commit.
const pullTaskName = "_pull_request"

// receivePull builds a pull request event of repository r.
func (s *Service) receivePull(ctx context.Context, r *Repo, ev *ForgeEvent) (*PushResult, error) {
	pr := ev.Pull
	if !r.PullRequests {
		return &PushResult{Message: "pull requests are not built (builds repo set NAME --pull-requests)"}, nil
	}
	if pr == nil || pr.Number <= 0 || !IsCommitSHA(ev.Commit) {
		return nil, Errorf(EINVALID, "the pull request event names no request number or head commit")
	}
	if pr.Base != "" && !r.BuildsBranch(pr.Base) {
		return &PushResult{Message: fmt.Sprintf("pull requests into %q are not built", pr.Base)}, nil
	}
	delivery := ev.Delivery
	p := &RepoPush{RepositoryID: r.ID, Delivery: &delivery, Ref: pr.Ref, Commit: ev.Commit}
	if err := s.Store.CreateRepoPush(ctx, p); ErrorCode(err) == ECONFLICT {
		s.Log.Warn("webhook replay refused", "repo_id", r.ID, "delivery", TruncateUTF8(delivery, 80))
		return nil, Errorf(ECONFLICT, "delivery %q was received before", delivery)
	} else if err != nil {
		return nil, err
	}
	// the head by its id, else the request's ref, which must point at it
	c, err := s.fetch(ctx, r, ev.Commit, pr.Ref)
	if err != nil {
		return nil, s.failPush(ctx, r, p, err)
	}
	if c.SHA != ev.Commit {
		return nil, s.failPush(ctx, r, p, Errorf(EINVALID, "fetched commit %s, not the request's head %s", c.SHA, ev.Commit))
	}
	return s.submitPush(ctx, r, p, pushInfo{Repo: r, Ref: p.Ref, Commit: c, CommitURL: ev.CommitURL, Pull: pr,
		Reason: pullReason(r.Kind)})
}

// PullRef is the ref a forge of kind k keeps pull request n's head at.
func PullRef(k ForgeKind, n int64) string {
	if k == ForgeGitLab {
		return "refs/merge-requests/" + strconv.FormatInt(n, 10) + "/head"
	}
	return "refs/pull/" + strconv.FormatInt(n, 10) + "/head"
}

// pullTags are a pull request job's tags: repository, "pulls", the
// request's number and the manifest's name.
func pullTags(repo string, n int64, manifest string) []string {
	tags := pushTags(repo, "", manifest) // [repo commits manifest]
	return []string{tags[0], "pulls", strconv.FormatInt(n, 10), tags[len(tags)-1]}
}

// cloneDir is the directory the runner clones a source URL into (its
// base name without .git, runner/steps_sources.go).
func cloneDir(u string) string {
	if i := strings.Index(u, "#"); i >= 0 {
		u = u[:i]
	}
	return strings.TrimSuffix(path.Base(u), ".git")
}

// pullTask is the script of pullTaskName: the runner's clone has only
// branches and tags, so the request's ref is fetched into it and its
// head checked out (and the SHA thereby verified again).
func pullTask(dir, ref, sha string) string {
	return fmt.Sprintf("cd %s\ngit fetch -q origin %s\ngit checkout -q %s\n", ShellQuote(dir), ShellQuote(ref), ShellQuote(sha))
}

// prependTask puts a task first in the manifest's tasks.
func prependTask(root *yaml.Node, name, script string) {
	tasks := mappingValue(root, "tasks", yaml.SequenceNode)
	task := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Tag: "!!str", Value: name},
		{Kind: yaml.ScalarNode, Tag: "!!str", Value: script, Style: yaml.LiteralStyle},
	}}
	tasks.Content = append([]*yaml.Node{task}, tasks.Content...)
}

// pullNote is a pull request job's note: the request, then the commit as
// a push's note says it.
func pullNote(p pushInfo) string {
	pr := p.Pull
	var b strings.Builder
	if pr.URL != "" {
		fmt.Fprintf(&b, "Pull request [#%d][2]: %s\n\n", pr.Number, pr.Title)
	} else {
		fmt.Fprintf(&b, "Pull request #%d: %s\n\n", pr.Number, pr.Title)
	}
	b.WriteString(pushNote(p))
	if pr.URL != "" {
		fmt.Fprintf(&b, "\n[2]: %s", pr.URL)
	}
	note := b.String()
	if len(note) > MaxNoteSize {
		note = strings.ToValidUTF8(note[:MaxNoteSize], "")
	}
	return note
}
