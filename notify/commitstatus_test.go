package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"builds/app"
	"builds/forge"
	"builds/forge/forgetest"
)

// fakeForge is a forge on 127.0.0.1 (forgetest.Server) that clones only
// with the access token and takes commit statuses on GitHub's, Gitea's or
// GitLab's API path, checking the token the way that forge does.
type fakeForge struct {
	*forgetest.Server
	t     *testing.T
	kind  app.ForgeKind
	token string

	mu       sync.Mutex
	statuses []postedStatus
	failNext int // answer the next n status posts with failCode
	failCode int
}

type postedStatus struct {
	Path string
	Body map[string]string
}

func newFakeForge(t *testing.T, kind app.ForgeKind, token string) *fakeForge {
	t.Helper()
	f := &fakeForge{Server: forgetest.NewServer(t), t: t, kind: kind, token: token}
	f.Server.Token = token
	f.API = http.HandlerFunc(f.status)
	return f
}

// repo makes a repository at path (owner/name) with one commit holding
// files on main, and returns the commit.
func (f *fakeForge) repo(path string, files map[string]string) string {
	return f.Repo(path).Commit("main", "Add the manifests", files)
}

// status takes one commit status post, checking the forge's own
// authentication.
func (f *fakeForge) status(w http.ResponseWriter, r *http.Request) {
	if !strings.Contains(r.URL.Path, "/statuses/") {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	token := f.token
	f.mu.Unlock()
	var ok bool
	switch f.kind {
	case app.ForgeGitHub:
		ok = r.Header.Get("Authorization") == "Bearer "+token
	case app.ForgeGitea, app.ForgeForgejo:
		ok = r.Header.Get("Authorization") == "token "+token
	case app.ForgeGitLab:
		ok = r.Header.Get("PRIVATE-TOKEN") == token
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "want a JSON POST", http.StatusBadRequest)
		return
	}
	if !ok {
		http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
		return
	}
	var body map[string]string
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil {
		http.Error(w, "bad JSON", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failNext > 0 {
		f.failNext--
		http.Error(w, "forge is having a bad day", f.failCode)
		return
	}
	f.statuses = append(f.statuses, postedStatus{Path: r.URL.Path, Body: body})
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, "{}")
}

func (f *fakeForge) posted() []postedStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]postedStatus(nil), f.statuses...)
}

// lastState is the last state posted for a context ("" if none).
func (f *fakeForge) lastState(context string) string {
	state := ""
	for _, s := range f.posted() {
		if s.Body["context"] == context || s.Body["name"] == context {
			state = s.Body["state"]
		}
	}
	return state
}

const statusManifest = "image: debian/stable\ntasks:\n  - t: echo ok\n"

// statusEnv is a notifier env whose alice connected repository proj on a
// fake forge, with an access token, and built its main branch.
type statusEnv struct {
	*env
	forge *fakeForge
	repo  *app.NewRepo
	res   *app.PushResult
	sha   string
}

func newStatusEnv(t *testing.T, kind app.ForgeKind, manifests map[string]string, configure ...func(*app.Config)) *statusEnv {
	t.Helper()
	cfg := testConfig(t)
	for _, f := range configure {
		f(cfg)
	}
	e := newEnv(t, cfg)
	e.svc.Forge = &forge.Adapter{}
	ff := newFakeForge(t, kind, "tok-"+string(kind))
	sha := ff.repo("alice/proj", manifests)
	as := app.NewContextWithAuth(context.Background(), &app.Auth{Kind: app.AuthSystem, User: e.user})
	repo, err := e.svc.CreateRepository(as, app.RepoInput{Kind: kind, CloneURL: ff.URL + "/alice/proj.git", Token: ff.token})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.BuildRepository(as, "proj", "main")
	if err != nil {
		t.Fatal(err)
	}
	if res.Group == nil || len(res.Jobs) != len(manifests) {
		t.Fatalf("build: %+v", res)
	}
	return &statusEnv{env: e, forge: ff, repo: repo, res: res, sha: sha}
}

// start moves a queued job to running through the Service, as the
// runner does, so the change is heard.
func (e *statusEnv) start(job *app.Job) {
	e.t.Helper()
	if _, err := e.svc.ClaimJobByID(app.SystemContext(context.Background()), job.ID, "runner1"); err != nil {
		e.t.Fatal(err)
	}
}

// jobOf is the push's job of a manifest file name.
func (e *statusEnv) jobOf(manifest string) *app.Job {
	for _, j := range e.res.Jobs {
		if strings.HasSuffix(j.Tags, "/"+manifest) {
			return j
		}
	}
	e.t.Fatalf("no job for %s among %d", manifest, len(e.res.Jobs))
	return nil
}

func TestCommitStatusGitHub(t *testing.T) {
	e := newStatusEnv(t, app.ForgeGitHub, map[string]string{".builds/a.yml": statusManifest, ".builds/b.yml": statusManifest})
	waitFor(t, "pending statuses", func() bool {
		return e.forge.lastState("builds/a") == "pending" && e.forge.lastState("builds/b") == "pending"
	})
	a, b := e.jobOf("a.yml"), e.jobOf("b.yml")
	e.start(a)
	e.svc.FinishJob(app.SystemContext(context.Background()), a.ID, app.JobSuccess, "")
	e.start(b)
	e.svc.FinishJob(app.SystemContext(context.Background()), b.ID, app.JobFailed, "")
	waitFor(t, "final statuses", func() bool {
		return e.forge.lastState("builds/a") == "success" && e.forge.lastState("builds/b") == "failure"
	})
	for _, s := range e.forge.posted() {
		if want := "/api/v3/repos/alice/proj/statuses/" + e.sha; s.Path != want {
			t.Errorf("posted to %s, want %s", s.Path, want)
		}
		if !strings.HasPrefix(s.Body["target_url"], "https://ci.example.org/~alice/job/") {
			t.Errorf("target_url = %q", s.Body["target_url"])
		}
		if !strings.HasPrefix(s.Body["description"], "builds: job #") {
			t.Errorf("description = %q", s.Body["description"])
		}
		if strings.Contains(s.Body["target_url"]+s.Body["description"], e.forge.token) {
			t.Error("the access token leaked into a status")
		}
	}
	// the forge has them; builds records that once the answer is read
	waitFor(t, "the statuses recorded as sent", func() bool {
		list, err := e.svc.CommitStatuses(app.SystemContext(context.Background()), e.repo.Repo, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, cs := range list {
			if cs.Sent != cs.State || cs.NextAttempt != nil || cs.Error != "" {
				return false
			}
		}
		return len(list) == 2
	})
}

func TestCommitStatusGitLabAndGitea(t *testing.T) {
	for _, tt := range []struct {
		kind          app.ForgeKind
		path          string
		failed, field string
	}{
		{app.ForgeGitLab, "/api/v4/projects/alice%2Fproj/statuses/", "failed", "name"},
		{app.ForgeGitea, "/api/v1/repos/alice/proj/statuses/", "failure", "context"},
		{app.ForgeForgejo, "/api/v1/repos/alice/proj/statuses/", "failure", "context"},
	} {
		t.Run(string(tt.kind), func(t *testing.T) {
			e := newStatusEnv(t, tt.kind, map[string]string{".build.yml": statusManifest})
			job := e.res.Jobs[0]
			e.start(job)
			waitFor(t, "running", func() bool {
				want := "pending"
				if tt.kind == app.ForgeGitLab {
					want = "running"
				}
				return e.forge.lastState("builds/build") == want
			})
			e.svc.FinishJob(app.SystemContext(context.Background()), job.ID, app.JobTimeout, "")
			waitFor(t, "failure", func() bool { return e.forge.lastState("builds/build") == tt.failed })
			for _, s := range e.forge.posted() {
				// the escaped path is the raw one: check it as sent
				if !strings.Contains(s.Path, strings.ReplaceAll(tt.path, "%2F", "/")) || s.Body[tt.field] != "builds/build" {
					t.Errorf("posted %s %v", s.Path, s.Body)
				}
			}
			if got := e.forge.posted(); !strings.Contains(got[len(got)-1].Body["description"], "timed out") {
				t.Errorf("description = %q", got[len(got)-1].Body["description"])
			}
		})
	}
}

// TestCommitStatusRetried: a forge failing with 503 gets the status again
// later; the failure shows on the repository's statuses meanwhile, and
// the job is untouched.
func TestCommitStatusRetried(t *testing.T) {
	e := newStatusEnv(t, app.ForgeGitHub, map[string]string{".build.yml": statusManifest},
		func(c *app.Config) { c.Webhooks.MaxAttempts = 1000 })
	waitFor(t, "pending", func() bool { return e.forge.lastState("builds/build") == "pending" })
	setFail := func(n int) {
		e.forge.mu.Lock()
		e.forge.failNext, e.forge.failCode = n, http.StatusServiceUnavailable
		e.forge.mu.Unlock()
	}
	status := func() *app.CommitStatus {
		list, err := e.svc.CommitStatuses(app.SystemContext(context.Background()), e.repo.Repo, 1)
		if err != nil || len(list) != 1 {
			t.Fatalf("statuses %v, %v", list, err)
		}
		return list[0]
	}
	setFail(1 << 30) // down until the test has seen it retrying
	job := e.res.Jobs[0]
	e.start(job)
	e.svc.FinishJob(app.SystemContext(context.Background()), job.ID, app.JobSuccess, "")
	waitFor(t, "the failure shown, to be retried", func() bool {
		cs := status()
		return cs.Attempts >= 2 && cs.NextAttempt != nil && strings.Contains(cs.Error, "503")
	})
	setFail(0)
	waitFor(t, "success once the forge is back", func() bool { return e.forge.lastState("builds/build") == "success" })
	waitFor(t, "the failure cleared", func() bool { cs := status(); return cs.Error == "" && cs.NextAttempt == nil })
	got, err := e.svc.Job(app.SystemContext(context.Background()), job.ID)
	if err != nil || got.Status != app.JobSuccess {
		t.Fatalf("job = %+v, %v", got, err)
	}
}

// TestCommitStatusGivesUp: a forge refusing the token (401) is not asked
// again; the repository's page says why, the build is untouched.
func TestCommitStatusGivesUp(t *testing.T) {
	e := newStatusEnv(t, app.ForgeGitHub, map[string]string{".build.yml": statusManifest})
	waitFor(t, "pending", func() bool { return e.forge.lastState("builds/build") == "pending" })
	e.forge.mu.Lock()
	e.forge.token = "rotated" // the API refuses the token builds holds
	e.forge.mu.Unlock()
	job := e.res.Jobs[0]
	e.start(job)
	var cs *app.CommitStatus
	waitFor(t, "given up", func() bool {
		list, _ := e.svc.CommitStatuses(app.SystemContext(context.Background()), e.repo.Repo, 1)
		cs = list[0]
		return cs.State == app.CommitRunning && cs.NextAttempt == nil && cs.Error != ""
	})
	if !strings.Contains(cs.Error, "gave up after attempt 1") || !strings.Contains(cs.Error, "401") {
		t.Errorf("error = %q", cs.Error)
	}
	if strings.Contains(cs.Error, "tok-github") {
		t.Error("the token is in the error")
	}
	// a later change is tried afresh
	e.forge.mu.Lock()
	e.forge.token = "tok-github"
	e.forge.mu.Unlock()
	e.svc.FinishJob(app.SystemContext(context.Background()), job.ID, app.JobSuccess, "")
	waitFor(t, "success", func() bool { return e.forge.lastState("builds/build") == "success" })
}

// TestCommitStatusNoToken: a repository without an access token reports
// nothing (there is nothing to call the API with) and builds as ever.
func TestCommitStatusNoToken(t *testing.T) {
	e := newEnv(t, testConfig(t))
	e.svc.Forge = &forge.Adapter{}
	ff := newFakeForge(t, app.ForgeGitHub, "")
	ff.repo("alice/proj", map[string]string{".build.yml": statusManifest})
	as := app.NewContextWithAuth(context.Background(), &app.Auth{Kind: app.AuthSystem, User: e.user})
	repo, err := e.svc.CreateRepository(as, app.RepoInput{Kind: app.ForgeGitHub, CloneURL: ff.URL + "/alice/proj.git"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.BuildRepository(as, "proj", "main")
	if err != nil || res.Group == nil {
		t.Fatalf("build: %+v, %v", res, err)
	}
	if _, err := e.svc.ClaimJobByID(app.SystemContext(context.Background()), res.Jobs[0].ID, "runner1"); err != nil {
		t.Fatal(err)
	}
	e.svc.FinishJob(app.SystemContext(context.Background()), res.Jobs[0].ID, app.JobSuccess, "")
	time.Sleep(200 * time.Millisecond) // several poll intervals
	if list, _ := e.svc.CommitStatuses(app.SystemContext(context.Background()), repo.Repo, 10); len(list) != 0 {
		t.Errorf("statuses without a token: %+v", list)
	}
}

func TestStatusRequest(t *testing.T) {
	base := app.StatusTarget{Token: "T", Commit: "0123456789abcdef0123456789abcdef01234567", Context: "builds/build",
		State: app.CommitCancelled, TargetURL: "https://ci/~a/job/1", Description: "builds: job #1 cancelled"}
	tests := []struct {
		name        string
		kind        app.ForgeKind
		url         string
		endpoint    string
		header, val string
		state       string
	}{
		{"GitHubCom", app.ForgeGitHub, "https://github.com/o/r.git", "https://api.github.com/repos/o/r/statuses/", "Authorization", "Bearer T", "error"},
		{"GitHubSCP", app.ForgeGitHub, "git@github.com:o/r.git", "https://api.github.com/repos/o/r/statuses/", "Authorization", "Bearer T", "error"},
		{"GitHubEnterprise", app.ForgeGitHub, "ssh://git@ghe.example.org:2222/o/r", "https://ghe.example.org/api/v3/repos/o/r/statuses/", "Authorization", "Bearer T", "error"},
		{"Codeberg", app.ForgeForgejo, "https://codeberg.org/o/r.git", "https://codeberg.org/api/v1/repos/o/r/statuses/", "Authorization", "token T", "error"},
		{"GiteaSubpath", app.ForgeGitea, "http://box:3000/gitea/o/r.git/", "http://box:3000/gitea/api/v1/repos/o/r/statuses/", "Authorization", "token T", "error"},
		{"GitLabNested", app.ForgeGitLab, "https://gitlab.com/g/sub/p.git", "https://gitlab.com/api/v4/projects/g%2Fsub%2Fp/statuses/", "Private-Token", "T", "canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := base
			tg.Kind, tg.CloneURL = tt.kind, tt.url
			req, err := statusRequest(context.Background(), &tg)
			if err != nil {
				t.Fatal(err)
			}
			if got := req.URL.String(); got != tt.endpoint+tg.Commit {
				t.Errorf("endpoint %s, want %s", got, tt.endpoint+tg.Commit)
			}
			if got := req.Header.Get(tt.header); got != tt.val {
				t.Errorf("%s = %q", tt.header, got)
			}
			var body map[string]string
			json.NewDecoder(req.Body).Decode(&body)
			if body["state"] != tt.state || body["target_url"] != tg.TargetURL {
				t.Errorf("body %v", body)
			}
		})
	}
	for _, bad := range []string{"file:///srv/git/r.git", "/srv/git/r.git", "https://github.com/onlyone", "https://github.com//r", "https://x/../r", "ext::sh -c id"} {
		tg := base
		tg.Kind, tg.CloneURL = app.ForgeGitHub, bad
		if _, err := statusRequest(context.Background(), &tg); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	tg := base
	tg.Kind, tg.CloneURL = app.ForgeGit, "https://x/o/r"
	if _, err := statusRequest(context.Background(), &tg); err == nil {
		t.Error("kind git: no error")
	}
}

// TestCommitStatusManifestFails: a pushed manifest that does not parse
// builds nothing, and the forge shows a failure with the parser's error,
// linking to the repository's page.
func TestCommitStatusManifestFails(t *testing.T) {
	e := newEnv(t, testConfig(t))
	e.svc.Forge = &forge.Adapter{}
	ff := newFakeForge(t, app.ForgeGitea, "tok-gitea")
	ff.repo("alice/proj", map[string]string{".build.yml": "image: debian/stable\ntasks: [oops\n", ".builds/long.yml": statusManifest})
	as := app.NewContextWithAuth(context.Background(), &app.Auth{Kind: app.AuthSystem, User: e.user})
	repo, err := e.svc.CreateRepository(as, app.RepoInput{Kind: app.ForgeGitea, CloneURL: ff.URL + "/alice/proj.git", Token: ff.token})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.BuildRepository(as, "proj", "main"); app.ErrorCode(err) != app.EINVALID {
		t.Fatalf("build of a broken manifest: %v", err)
	}
	waitFor(t, "the failure status", func() bool { return ff.lastState("builds/build") == "failure" })
	got := ff.posted()
	if len(got) != 1 {
		t.Fatalf("posted %+v, want one status for the broken manifest", got)
	}
	desc := got[0].Body["description"]
	if !strings.HasPrefix(desc, "builds: line 2: Invalid YAML") || len(desc) > 140 {
		t.Errorf("description %q", desc)
	}
	if got[0].Body["target_url"] != "https://ci.example.org/repositories/proj" {
		t.Errorf("target_url %q", got[0].Body["target_url"])
	}
	waitFor(t, "the status recorded as sent", func() bool {
		list, err := e.svc.CommitStatuses(app.SystemContext(context.Background()), repo.Repo, 10)
		if err != nil || len(list) != 1 || list[0].JobID != 0 {
			t.Fatalf("statuses %+v, %v", list, err)
		}
		return list[0].Sent == app.CommitFailure
	})
	if jobs, _ := e.db.FindJobs(context.Background(), app.JobFilter{}); len(jobs) != 0 {
		t.Errorf("a broken push made jobs: %+v", jobs)
	}
}

// TestCommitStatusPullRequest: a pull request's jobs report on its head
// commit, which is in no branch of the repository.
func TestCommitStatusPullRequest(t *testing.T) {
	e := newEnv(t, testConfig(t))
	e.svc.Forge = &forge.Adapter{}
	ff := newFakeForge(t, app.ForgeGitHub, "tok-github")
	r := ff.Repo("alice/proj")
	r.Commit("main", "base", map[string]string{".build.yml": statusManifest})
	forgetest.Git(t, r.Work, "checkout", "-q", "-B", "topic")
	head := r.Commit("topic", "a pull request", map[string]string{"README": "pr\n"})
	forgetest.Git(t, r.Work, "push", "-q", r.Bare, "HEAD:refs/pull/2/head", ":refs/heads/topic")
	as := app.NewContextWithAuth(context.Background(), &app.Auth{Kind: app.AuthSystem, User: e.user})
	repo, err := e.svc.CreateRepository(as, app.RepoInput{Kind: app.ForgeGitHub, CloneURL: r.CloneURL, Token: ff.token, PullRequests: true})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join("..", "forge", "testdata", "github-pull_request.json"))
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(strings.ReplaceAll(string(raw), "{{SHA}}", head))
	m := hmac.New(sha256.New, []byte(repo.WebhookSecret))
	m.Write(body)
	h := http.Header{"X-Github-Event": {"pull_request"}, "X-Github-Delivery": {"pr-1"},
		"X-Hub-Signature-256": {"sha256=" + hex.EncodeToString(m.Sum(nil))}}
	res, err := e.svc.ReceiveWebhook(context.Background(), repo.HookID, h, body)
	if err != nil || res.Group == nil || len(res.Jobs) != 1 {
		t.Fatalf("pull request: %+v, %v", res, err)
	}
	waitFor(t, "the pending status", func() bool { return ff.lastState("builds/build") == "pending" })
	if got := ff.posted()[0].Path; got != "/api/v3/repos/alice/proj/statuses/"+head {
		t.Errorf("posted to %s, want the head %s", got, head)
	}
}
