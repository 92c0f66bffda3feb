package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"builds/app"
)

// Commit statuses: each job a push started has a status on the forge,
// kept by the Service (app/service_status.go) and sent from here, through
// the same guarded client and retry policy as webhooks ([webhooks]
// allow-private, allow-loopback, timeout and max-attempts). A failure is
// recorded for the repository's page and never touches the job.

// commitStatusBatch is how many due statuses one turn of the delivery
// loop sends.
const commitStatusBatch = 50

// updateCommitStatus makes a job event the wanted state of the job's
// commit status, if it has one, and wakes the sender.
func (d *Dispatcher) updateCommitStatus(ctx context.Context, ev jobEvent) {
	job := ev.job
	has, err := d.svc.CommitStateChanged(ctx, &job)
	if err != nil {
		d.log.Error("notify: update commit status", "job_id", job.ID, "err", err)
		return
	}
	if has {
		d.signal(d.wakeStatuses)
	}
}

// statusLoop sends due commit statuses: at start (what an earlier run
// left), when a job with one changes, and every PollInterval for retries.
// It runs apart from the webhook deliveries, so a slow forge holds up
// neither.
func (d *Dispatcher) statusLoop(ctx context.Context) {
	tick := time.NewTicker(d.PollInterval)
	defer tick.Stop()
	for {
		d.sendDueStatuses(ctx)
		select {
		case <-ctx.Done():
			return
		case <-d.wakeStatuses:
		case <-tick.C:
		}
	}
}

// sendDueStatuses sends the commit statuses that are due, one at a time:
// a forge gets the states of one job in the order they happened.
func (d *Dispatcher) sendDueStatuses(ctx context.Context) {
	due, err := d.svc.DueCommitStatuses(ctx, commitStatusBatch)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error("notify: find due commit statuses", "err", err)
		}
		return
	}
	for _, cs := range due {
		if ctx.Err() != nil {
			return
		}
		d.sendStatus(ctx, cs)
	}
}

// sendStatus makes one attempt at reporting cs and records its outcome.
func (d *Dispatcher) sendStatus(ctx context.Context, cs *app.CommitStatus) {
	policy := d.webhookRetry()
	attempt := cs.Attempts + 1
	err := d.reportStatus(ctx, cs)
	if ctx.Err() != nil {
		return // cut short by shutdown: still due, sent at the next start
	}
	if err == nil {
		if ferr := d.svc.FinishCommitAttempt(ctx, cs, "", nil); ferr != nil {
			d.log.Error("notify: record commit status", "job_id", cs.JobID, "err", ferr)
		}
		return
	}
	msg := err.Error()
	var next *time.Time
	if wait, again := policy.next(attempt, err); again {
		t := d.svc.Now().UTC().Add(wait)
		next = &t
		msg = fmt.Sprintf("attempt %d of %d: %s", attempt, policy.attempts, msg)
	} else {
		msg = fmt.Sprintf("gave up after attempt %d: %s", attempt, msg)
	}
	d.log.Warn("notify: commit status not reported", "job_id", cs.JobID, "repo_id", cs.RepositoryID, "state", cs.State, "err", msg)
	if ferr := d.svc.FinishCommitAttempt(ctx, cs, msg, next); ferr != nil {
		d.log.Error("notify: record commit status", "job_id", cs.JobID, "err", ferr)
	}
}

// reportStatus sends cs to its repository's forge.
func (d *Dispatcher) reportStatus(ctx context.Context, cs *app.CommitStatus) error {
	t, err := d.svc.CommitStatusTarget(ctx, cs)
	if err != nil {
		if app.ErrorCode(err) == app.ENOTFOUND || app.ErrorCode(err) == app.EINVALID {
			return permanent(err)
		}
		return err
	}
	req, err := statusRequest(ctx, t)
	if err != nil {
		return permanent(err)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("post status: %w", err) // the token is in a header, never the URL
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode == http.StatusTooManyRequests {
		// rate limited: worth another try later, unlike other 4xx answers
		return fmt.Errorf("%s answered HTTP status 429 (rate limited): %s", req.URL.Host, oneLine(body))
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %w: %s", req.URL.Host, statusError(resp.StatusCode), oneLine(body))
	}
	return nil
}

// oneLine is a forge's error answer cut to one short line for the page.
func oneLine(b []byte) string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "?")), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		return "(empty answer)"
	}
	return s
}

// forgeRepo is where a repository's forge API lives: its base URL (scheme,
// host and the forge's own path prefix) and the repository's path on it.
type forgeRepo struct {
	base string // "https://codeberg.org", "https://git.example.org/forgejo"
	path string // "owner/repo", or GitLab's "group/sub/project"
	host string
}

// parseForgeRepo reads a clone URL (https, http, ssh or scp-like). The
// API is reached over HTTPS for ssh clone URLs, and over the clone URL's
// own scheme and port for http(s). For GitHub, Forgejo and Gitea the
// repository path is the last two elements and anything before them the
// forge's prefix; for GitLab the whole path is the project (nested groups).
func parseForgeRepo(kind app.ForgeKind, cloneURL string) (*forgeRepo, error) {
	scheme, host, p := "https", "", ""
	if u, err := url.Parse(cloneURL); err == nil && strings.Contains(cloneURL, "://") {
		switch u.Scheme {
		case "http", "https":
			scheme, host = u.Scheme, u.Host
		case "ssh", "git":
			host = u.Hostname()
		default:
			return nil, fmt.Errorf("no forge API for %s URLs", u.Scheme)
		}
		p = u.Path
	} else if h, rest, ok := strings.Cut(cloneURL, ":"); ok && !strings.Contains(h, "/") {
		if _, after, ok := strings.Cut(h, "@"); ok {
			h = after
		}
		host, p = h, rest
	}
	p = strings.TrimSuffix(strings.Trim(p, "/"), ".git")
	parts := strings.Split(p, "/")
	if host == "" || len(parts) < 2 || slicesHasEmpty(parts) {
		return nil, fmt.Errorf("cannot tell the forge's repository from the clone URL %q (want host/owner/repo)", cloneURL)
	}
	r := &forgeRepo{base: scheme + "://" + host, host: host, path: p}
	if kind != app.ForgeGitLab {
		n := len(parts)
		r.path = parts[n-2] + "/" + parts[n-1]
		if prefix := strings.Join(parts[:n-2], "/"); prefix != "" {
			r.base += "/" + prefix
		}
	}
	return r, nil
}

func slicesHasEmpty(parts []string) bool {
	for _, s := range parts {
		if s == "" || s == "." || s == ".." {
			return true
		}
	}
	return false
}

// statusRequest is the forge's "create a commit status" call for t:
//   - GitHub: POST /repos/{owner}/{repo}/statuses/{sha} on api.github.com
//     (or {host}/api/v3 for GitHub Enterprise), Bearer token; states
//     pending, success, failure, error.
//   - Forgejo and Gitea: POST /api/v1/repos/{owner}/{repo}/statuses/{sha},
//     "token" authorization; the same states.
//   - GitLab: POST /api/v4/projects/{url-encoded path}/statuses/{sha},
//     PRIVATE-TOKEN header; states pending, running, success, failed,
//     canceled, and "name" for the context.
func statusRequest(ctx context.Context, t *app.StatusTarget) (*http.Request, error) {
	fr, err := parseForgeRepo(t.Kind, t.CloneURL)
	if err != nil {
		return nil, err
	}
	sha := url.PathEscape(t.Commit)
	var endpoint string
	body := map[string]string{"target_url": t.TargetURL, "description": t.Description}
	header := http.Header{}
	switch t.Kind {
	case app.ForgeGitHub:
		api := fr.base + "/api/v3"
		if fr.host == "github.com" {
			api = "https://api.github.com"
		}
		endpoint = api + "/repos/" + fr.path + "/statuses/" + sha
		body["state"], body["context"] = githubState(t.State), t.Context
		header.Set("Authorization", "Bearer "+t.Token)
		header.Set("Accept", "application/vnd.github+json")
		header.Set("X-GitHub-Api-Version", "2022-11-28")
	case app.ForgeForgejo, app.ForgeGitea:
		endpoint = fr.base + "/api/v1/repos/" + fr.path + "/statuses/" + sha
		body["state"], body["context"] = githubState(t.State), t.Context
		header.Set("Authorization", "token "+t.Token)
	case app.ForgeGitLab:
		endpoint = fr.base + "/api/v4/projects/" + url.PathEscape(fr.path) + "/statuses/" + sha
		body["state"], body["name"] = gitlabState(t.State), t.Context
		header.Set("PRIVATE-TOKEN", t.Token)
	default:
		return nil, fmt.Errorf("repositories of kind %q have no commit status API", t.Kind)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("status request: %w", err)
	}
	req.Header = header
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "builds")
	return req, nil
}

// githubState is GitHub's (and Forgejo's, Gitea's) name of a state: they
// have no "running", and call a cancelled job an error.
func githubState(s app.CommitState) string {
	switch s {
	case app.CommitRunning:
		return "pending"
	case app.CommitCancelled:
		return "error"
	}
	return string(s)
}

// gitlabState is GitLab's name of a state.
func gitlabState(s app.CommitState) string {
	switch s {
	case app.CommitFailure:
		return "failed"
	case app.CommitCancelled:
		return "canceled"
	}
	return string(s)
}
