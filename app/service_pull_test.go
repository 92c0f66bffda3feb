package app_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"builds/app"
	"builds/forge/forgetest"

	"gopkg.in/yaml.v3"
)

// pullHead commits files on a branch of the work tree only and pushes the
// commit to ref of the bare repository, as a forge keeps a fork's pull
// request head: in no branch of the base repository.
func pullHead(t *testing.T, r *forgetest.Repo, ref string, files map[string]string) string {
	t.Helper()
	r.Git(r.Work, "checkout", "-q", "-B", "pr-"+strings.ReplaceAll(ref, "/", "-"))
	defer r.Git(r.Work, "checkout", "-q", "main")
	for name, text := range files {
		writeFile(t, r.Work, name, text)
	}
	r.Git(r.Work, "add", "-A")
	r.Git(r.Work, "commit", "-q", "--allow-empty", "-m", "A pull request")
	r.Git(r.Work, "push", "-q", "-f", r.Bare, "HEAD:"+ref)
	return r.Git(r.Work, "rev-parse", "HEAD")
}

// pull delivers a signed GitHub pull_request event of fixture, edited by
// the from/to replacement pairs.
func (e *pushEnv) pull(t *testing.T, delivery, sha string, edits ...string) (*app.PushResult, error) {
	t.Helper()
	s := string(fixture(t, "github-pull_request.json", sha))
	for i := 0; i+1 < len(edits); i += 2 {
		s = strings.Replace(s, edits[i], edits[i+1], 1)
	}
	body := []byte(s)
	return e.svc.ReceiveWebhook(context.Background(), e.hookID, githubHeaders("pull_request", delivery, e.conn.WebhookSecret, body), body)
}

// sameRepo makes the fixture's fork PR one from a branch of the base.
var sameRepo = []string{`"id": 1296270`, `"id": 1296269`}

func TestPullRequestBuilt(t *testing.T) {
	e := newPushEnv(t, app.RepoInput{PullRequests: true})
	e.repo.Commit("main", "base", map[string]string{".build.yml": pushManifest})
	sha := pullHead(t, e.repo, "refs/pull/2/head", map[string]string{".build.yml": pushManifest + "  - test: echo pr\n"})

	t.Run("ForkGetsNoSecrets", func(t *testing.T) {
		res, err := e.pull(t, "d-fork", sha)
		if err != nil {
			t.Fatal(err)
		}
		if res.Group == nil || len(res.Jobs) != 1 || res.Push.Ref != "refs/pull/2/head" || res.Push.Commit != sha {
			t.Fatalf("%+v", res)
		}
		j := res.Jobs[0]
		if j.Secrets || j.Tags != "proj/pulls/2/.build.yml" {
			t.Errorf("fork job: secrets %v tags %q", j.Secrets, j.Tags)
		}
		if n := ptrStr(j.Note); !strings.HasPrefix(n, "Pull request [#2][2]: Update the README\n\n") ||
			!strings.HasSuffix(n, "[2]: https://github.com/octo-org/proj/pull/2") || !strings.Contains(n, sha[:7]) {
			t.Errorf("note %q", n)
		}
		var m struct {
			Sources     []string            `yaml:"sources"`
			Environment map[string]string   `yaml:"environment"`
			Tasks       []map[string]string `yaml:"tasks"`
		}
		if err := yaml.Unmarshal([]byte(j.Manifest), &m); err != nil {
			t.Fatal(err)
		}
		clone := "file://" + e.repo.Bare
		if len(m.Sources) != 2 || m.Sources[1] != clone {
			t.Errorf("sources %v", m.Sources)
		}
		for k, v := range map[string]string{"BUILD_REASON": "github-pr", "GIT_REF": "refs/pull/2/head", "GIT_COMMIT": sha, "BUILD_SUBMITTER": "github"} {
			if m.Environment[k] != v {
				t.Errorf("env %s = %q, want %q", k, m.Environment[k], v)
			}
		}
		want := "cd proj\ngit fetch -q origin refs/pull/2/head\ngit checkout -q " + sha + "\n"
		if len(m.Tasks) != 3 || m.Tasks[0]["_pull_request"] != want || m.Tasks[2]["test"] != "echo pr" {
			t.Errorf("tasks %v", m.Tasks)
		}
	})
	t.Run("SameRepositoryGetsSecrets", func(t *testing.T) {
		res, err := e.pull(t, "d-same", sha, sameRepo...)
		if err != nil {
			t.Fatal(err)
		}
		if res.Group == nil || !res.Jobs[0].Secrets {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("Synchronize", func(t *testing.T) {
		sha2 := pullHead(t, e.repo, "refs/pull/2/head", map[string]string{"more": "x"})
		res, err := e.pull(t, "d-sync", sha2, `"action": "opened"`, `"action": "synchronize"`)
		if err != nil || res.Group == nil || res.Push.Commit != sha2 {
			t.Fatalf("%+v %v", res, err)
		}
	})
	t.Run("IgnoredActions", func(t *testing.T) {
		before := e.jobCount(t)
		for _, action := range []string{"closed", "labeled", "edited", "assigned"} {
			res, err := e.pull(t, "d-"+action, sha, `"action": "opened"`, `"action": "`+action+`"`)
			if err != nil || res.Group != nil || res.Message != "event ignored" {
				t.Errorf("%s: %+v %v", action, res, err)
			}
		}
		if n := e.jobCount(t); n != before {
			t.Errorf("%d jobs, want %d", n, before)
		}
	})
	t.Run("ErrReplay", func(t *testing.T) {
		if _, err := e.pull(t, "d-fork", sha); app.ErrorCode(err) != app.ECONFLICT {
			t.Errorf("replay: %v", err)
		}
	})
	t.Run("ErrHeadNotThere", func(t *testing.T) {
		before := e.jobCount(t)
		other := strings.Repeat("ab", 20)
		_, err := e.pull(t, "d-missing", other)
		if app.ErrorCode(err) != app.EINVALID || !strings.Contains(err.Error(), other[:12]) {
			t.Errorf("err %v", err)
		}
		if n := e.jobCount(t); n != before {
			t.Errorf("%d jobs, want %d", n, before)
		}
	})
	t.Run("ErrBadPayload", func(t *testing.T) {
		body := []byte(`{"action":"opened","number":2}`)
		_, err := e.svc.ReceiveWebhook(context.Background(), e.hookID, githubHeaders("pull_request", "d-bad", e.conn.WebhookSecret, body), body)
		if app.ErrorCode(err) != app.EINVALID || !strings.Contains(err.Error(), "without pull_request") {
			t.Errorf("err %v", err)
		}
	})
}

// TestPullRequestsOff: a repository without the setting builds no pull
// request, and says so; turned on, the same request is built.
func TestPullRequestsOff(t *testing.T) {
	e := newPushEnv(t, app.RepoInput{})
	e.repo.Commit("main", "base", map[string]string{".build.yml": pushManifest})
	sha := pullHead(t, e.repo, "refs/pull/2/head", nil)
	res, err := e.pull(t, "d-1", sha)
	if err != nil || res.Group != nil || !strings.HasPrefix(res.Message, "pull requests are not built") {
		t.Fatalf("%+v %v", res, err)
	}
	if n := e.jobCount(t); n != 0 {
		t.Errorf("%d jobs", n)
	}
	on := true
	r, err := e.svc.UpdateRepository(e.as, "proj", app.RepoUpdate{PullRequests: &on})
	if err != nil || !r.PullRequests {
		t.Fatalf("%+v %v", r, err)
	}
	if res, err := e.pull(t, "d-2", sha); err != nil || res.Group == nil {
		t.Fatalf("%+v %v", res, err)
	}
	if _, err := e.svc.UpdateRepository(e.bobCtx, "proj", app.RepoUpdate{PullRequests: &on}); app.ErrorCode(err) != app.ENOTFOUND {
		t.Errorf("bob changed alice's repository: %v", err)
	}
}

// TestPullRequestBaseBranch: requests into branches the repository does
// not build are not built.
func TestPullRequestBaseBranch(t *testing.T) {
	e := newPushEnv(t, app.RepoInput{PullRequests: true, Branches: []string{"main"}})
	e.repo.Commit("main", "base", map[string]string{".build.yml": pushManifest})
	sha := pullHead(t, e.repo, "refs/pull/2/head", nil)
	res, err := e.pull(t, "d-1", sha, `"ref": "main"`, `"ref": "old"`)
	if err != nil || res.Group != nil || res.Message != `pull requests into "old" are not built` {
		t.Fatalf("%+v %v", res, err)
	}
	if res, err := e.pull(t, "d-2", sha); err != nil || res.Group == nil {
		t.Fatalf("%+v %v", res, err)
	}
}

// TestMergeRequestGitLab: a GitLab merge request with new commits is
// built from refs/merge-requests/N/head; one from another project gets
// no secrets.
func TestMergeRequestGitLab(t *testing.T) {
	e := newPushEnv(t, app.RepoInput{Kind: app.ForgeGitLab, PullRequests: true})
	e.repo.Commit("main", "base", map[string]string{".build.yml": pushManifest})
	sha := pullHead(t, e.repo, "refs/merge-requests/1/head", nil)
	deliver := func(delivery string, edits ...string) (*app.PushResult, error) {
		s := string(fixture(t, "gitlab-merge_request.json", sha))
		for i := 0; i+1 < len(edits); i += 2 {
			s = strings.Replace(s, edits[i], edits[i+1], 1)
		}
		h := http.Header{"X-Gitlab-Event": {"Merge Request Hook"}, "X-Gitlab-Event-Uuid": {delivery}, "X-Gitlab-Token": {e.conn.WebhookSecret}}
		return e.svc.ReceiveWebhook(context.Background(), e.hookID, h, []byte(s))
	}
	res, err := deliver("u-1")
	if err != nil || res.Group == nil {
		t.Fatalf("%+v %v", res, err)
	}
	j := res.Jobs[0]
	if !j.Secrets || j.Tags != "proj/pulls/1/.build.yml" || !strings.Contains(j.Manifest, "BUILD_REASON: gitlab-mr") ||
		!strings.Contains(j.Manifest, "git fetch -q origin refs/merge-requests/1/head") {
		t.Errorf("job secrets %v tags %q\n%s", j.Secrets, j.Tags, j.Manifest)
	}
	res, err = deliver("u-2", `"source_project_id": 14`, `"source_project_id": 15`)
	if err != nil || res.Group == nil || res.Jobs[0].Secrets {
		t.Fatalf("fork: %+v %v", res, err)
	}
	res, err = deliver("u-3", `"action": "update"`, `"action": "close"`)
	if err != nil || res.Group != nil {
		t.Fatalf("close: %+v %v", res, err)
	}
}

// TestPullRequestsPlainGit: plain git repositories have no pull requests.
func TestPullRequestsPlainGit(t *testing.T) {
	e := newPushEnv(t, app.RepoInput{Kind: app.ForgeGit})
	on := true
	if _, err := e.svc.UpdateRepository(e.as, "proj", app.RepoUpdate{PullRequests: &on}); app.ErrorCode(err) != app.EINVALID {
		t.Errorf("err %v", err)
	}
}

func writeFile(t *testing.T, dir, name, text string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if text == "" {
		os.Remove(p)
		return
	}
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
