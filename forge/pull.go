package forge

// Pull (merge) request events: which actions mean a new head to build,
// where the forge keeps that head, and whether it comes from a fork.

import (
	"slices"

	"builds/app"
)

// repoRef is the part of a pull request's head or base repository read.
type repoRef struct {
	ID int64 `json:"id"`
}

// prEnd is a pull request's head or base as GitHub, Forgejo and Gitea
// describe it.
type prEnd struct {
	Ref  string   `json:"ref"`
	SHA  string   `json:"sha"`
	Repo *repoRef `json:"repo"` // null on GitHub when the fork was deleted
	// RepoID is Gitea's and Forgejo's id of the end's repository.
	RepoID int64 `json:"repo_id"`
}

func (e prEnd) repoID() int64 {
	if e.RepoID != 0 {
		return e.RepoID
	}
	if e.Repo != nil {
		return e.Repo.ID
	}
	return 0
}

// prPayload is the pull_request event of GitHub, Forgejo and Gitea.
type prPayload struct {
	Action      string `json:"action"`
	Number      int64  `json:"number"`
	PullRequest *struct {
		Number  int64  `json:"number"`
		HTMLURL string `json:"html_url"`
		Title   string `json:"title"`
		Head    prEnd  `json:"head"`
		Base    prEnd  `json:"base"`
	} `json:"pull_request"`
}

// pull turns the payload into a pull request event, when action is one
// of build.
func (p *prPayload) pull(kind app.ForgeKind, ev *app.ForgeEvent, build ...string) (*app.ForgeEvent, error) {
	if !slices.Contains(build, p.Action) {
		ev.Type = app.ForgeIgnored
		return ev, nil
	}
	pr := p.PullRequest
	if pr == nil {
		return nil, app.Errorf(app.EINVALID, "a pull_request event without pull_request")
	}
	n := p.Number
	if n == 0 {
		n = pr.Number
	}
	if n <= 0 {
		return nil, app.Errorf(app.EINVALID, "a pull_request event without the request's number")
	}
	if !app.IsCommitSHA(pr.Head.SHA) {
		return nil, app.Errorf(app.EINVALID, "a pull_request event without the head commit (pull_request.head.sha)")
	}
	head, base := pr.Head.repoID(), pr.Base.repoID()
	ev.Type, ev.Commit, ev.Ref = app.ForgePullRequest, pr.Head.SHA, app.PullRef(kind, n)
	ev.Pull = &app.PullEvent{Number: n, Ref: ev.Ref, Base: pr.Base.Ref, Title: pr.Title, URL: pr.HTMLURL,
		Fork: head == 0 || base == 0 || head != base}
	return ev, nil
}

// parseGitHubPull reads GitHub's pull_request event: "opened",
// "synchronize" (new commits) and "reopened" build the head; closing,
// labelling, editing and the rest are ignored.
func parseGitHubPull(ev *app.ForgeEvent, body []byte) (*app.ForgeEvent, error) {
	var p prPayload
	if err := decode(body, &p); err != nil {
		return nil, err
	}
	return p.pull(app.ForgeGitHub, ev, "opened", "synchronize", "reopened")
}

// parseGiteaPull reads Forgejo's and Gitea's pull_request event, whose
// actions are "opened", "synchronized" and "reopened" for a new head.
func parseGiteaPull(kind app.ForgeKind, ev *app.ForgeEvent, body []byte) (*app.ForgeEvent, error) {
	var p prPayload
	if err := decode(body, &p); err != nil {
		return nil, err
	}
	return p.pull(kind, ev, "opened", "synchronized", "reopened")
}

// parseGitLabMR reads GitLab's "Merge Request Hook": actions "open" and
// "reopen", and "update" when it brought new commits (GitLab then sends
// object_attributes.oldrev, and only then); approvals, closing, merging
// and edits are ignored.
func parseGitLabMR(ev *app.ForgeEvent, body []byte) (*app.ForgeEvent, error) {
	var p struct {
		ObjectKind string `json:"object_kind"`
		Attrs      *struct {
			IID             int64   `json:"iid"`
			Action          string  `json:"action"`
			Title           string  `json:"title"`
			URL             string  `json:"url"`
			TargetBranch    string  `json:"target_branch"`
			SourceProjectID int64   `json:"source_project_id"`
			TargetProjectID int64   `json:"target_project_id"`
			OldRev          string  `json:"oldrev"`
			LastCommit      *commit `json:"last_commit"`
		} `json:"object_attributes"`
	}
	if err := decode(body, &p); err != nil {
		return nil, err
	}
	if p.ObjectKind != "merge_request" || p.Attrs == nil {
		return nil, app.Errorf(app.EINVALID, "a Merge Request Hook event with object_kind %q", p.ObjectKind)
	}
	a := p.Attrs
	switch {
	case a.Action == "open" || a.Action == "reopen":
	case a.Action == "update" && a.OldRev != "":
	default:
		ev.Type = app.ForgeIgnored
		return ev, nil
	}
	if a.IID <= 0 {
		return nil, app.Errorf(app.EINVALID, "a merge request event without the request's iid")
	}
	if a.LastCommit == nil || !app.IsCommitSHA(a.LastCommit.ID) {
		return nil, app.Errorf(app.EINVALID, "a merge request event without the head commit (object_attributes.last_commit.id)")
	}
	ev.Type, ev.Commit, ev.Ref = app.ForgePullRequest, a.LastCommit.ID, app.PullRef(app.ForgeGitLab, a.IID)
	ev.CommitURL = a.LastCommit.URL
	ev.Pull = &app.PullEvent{Number: a.IID, Ref: ev.Ref, Base: a.TargetBranch, Title: a.Title, URL: a.URL,
		Fork: a.SourceProjectID == 0 || a.SourceProjectID != a.TargetProjectID}
	return ev, nil
}
