package app_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"builds/app"
	"builds/forge"
	"builds/forge/forgetest"

	"gopkg.in/yaml.v3"
)

func fixture(t *testing.T, name, sha string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "forge", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.ReplaceAll(string(b), "{{SHA}}", sha))
}

func hmacHex(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func githubHeaders(event, delivery, secret string, body []byte) http.Header {
	return http.Header{"X-Github-Event": {event}, "X-Github-Delivery": {delivery},
		"X-Hub-Signature-256": {"sha256=" + hmacHex(secret, body)}}
}

// pushEnv is a Service with the real forge adapter and alice's repository
// "proj", a local bare repository, connected as a GitHub one.
type pushEnv struct {
	*testEnv
	repo   *forgetest.Repo
	conn   *app.NewRepo
	as     context.Context // alice, as the command line acts for her
	hookID string
}

func newPushEnv(t *testing.T, in app.RepoInput) *pushEnv {
	t.Helper()
	e := newEnv(t)
	e.svc.Forge = &forge.Adapter{}
	r := forgetest.NewLocal(t, "proj")
	as := app.NewContextWithAuth(context.Background(), &app.Auth{Kind: app.AuthSystem, User: e.alice})
	if in.Kind == "" {
		in.Kind = app.ForgeGitHub
	}
	in.CloneURL = "file://" + r.Bare
	conn, err := e.svc.CreateRepository(as, in)
	if err != nil {
		t.Fatal(err)
	}
	return &pushEnv{testEnv: e, repo: r, conn: conn, as: as, hookID: conn.HookID}
}

// push delivers a signed GitHub push of sha to ref.
func (e *pushEnv) push(t *testing.T, fixtureName, delivery, sha string) (*app.PushResult, error) {
	t.Helper()
	body := fixture(t, fixtureName, sha)
	return e.svc.ReceiveWebhook(context.Background(), e.hookID, githubHeaders("push", delivery, e.conn.WebhookSecret, body), body)
}

func (e *pushEnv) groupJobs(t *testing.T, g *app.JobGroup) []*app.Job {
	t.Helper()
	jobs, err := e.svc.GroupJobs(e.as, g)
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

func (e *pushEnv) jobCount(t *testing.T) int {
	t.Helper()
	jobs, err := e.db.FindJobs(context.Background(), app.JobFilter{OwnerID: &e.alice.ID})
	if err != nil {
		t.Fatal(err)
	}
	return len(jobs)
}

const pushManifest = `image: debian/stable
shell: true
sources:
  - https://git.example.org/someone/lib
  - https://git.example.org/me/proj.git#main
environment:
  GIT_REF: overwritten
  KEEP: me
tasks:
  - build: echo hi
`

func TestPushBuildsGroup(t *testing.T) {
	e := newPushEnv(t, app.RepoInput{Visibility: app.Public})
	sha := e.repo.Commit("main", "Add manifests\n\nwith a body", map[string]string{
		".build.yml": pushManifest, ".builds/other.yml": "image: alpine/latest\ntasks:\n  - t: echo ok\n"})
	res, err := e.push(t, "github-push.json", "d-1", sha)
	if err != nil {
		t.Fatal(err)
	}
	if res.Group == nil || len(res.Jobs) != 2 {
		t.Fatalf("result %+v", res)
	}
	jobs := e.groupJobs(t, res.Group)
	if len(jobs) != 2 {
		t.Fatalf("group has %d jobs", len(jobs))
	}
	wantNote := "[" + sha[:7] + "][0] — [Ada Lovelace][1]\n\n    Add manifests\n\n" +
		"[0]: https://github.com/octo-org/proj/commit/" + sha + "\n[1]: mailto:ada@example.org"
	if res.Group.Note == nil || *res.Group.Note != wantNote {
		t.Errorf("group note %q\nwant %q", ptrStr(res.Group.Note), wantNote)
	}
	for i, wantTags := range []string{"proj/commits/main/.build.yml", "proj/commits/main/other.yml"} {
		j := jobs[i]
		if j.Tags != wantTags || j.Status != app.JobQueued || j.Visibility != app.Public || !j.Secrets || j.OwnerID != e.alice.ID {
			t.Errorf("job %d: tags %q status %s visibility %s secrets %v", i, j.Tags, j.Status, j.Visibility, j.Secrets)
		}
		if ptrStr(j.Note) != wantNote {
			t.Errorf("job %d note %q", i, ptrStr(j.Note))
		}
	}
	var m struct {
		Shell       *bool             `yaml:"shell"`
		Sources     []string          `yaml:"sources"`
		Environment map[string]string `yaml:"environment"`
	}
	if err := yaml.Unmarshal([]byte(jobs[0].Manifest), &m); err != nil {
		t.Fatal(err)
	}
	pinned := "file://" + e.repo.Bare + "#" + sha
	if m.Shell != nil || len(m.Sources) != 2 || m.Sources[0] != "https://git.example.org/someone/lib" || m.Sources[1] != pinned {
		t.Errorf("rewritten manifest:\n%s", jobs[0].Manifest)
	}
	wantEnv := map[string]string{"BUILD_SUBMITTER": "github", "GIT_REF": "refs/heads/main", "GIT_COMMIT": sha, "KEEP": "me"}
	for k, v := range wantEnv {
		if m.Environment[k] != v {
			t.Errorf("env %s = %q, want %q", k, m.Environment[k], v)
		}
	}
	// a manifest without the repository among its sources gets it added
	if err := yaml.Unmarshal([]byte(jobs[1].Manifest), &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Sources) != 1 || m.Sources[0] != pinned {
		t.Errorf("second manifest's sources %v", m.Sources)
	}
	pushes, err := e.svc.RepositoryPushes(e.as, e.conn.Repo, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(pushes) != 1 || pushes[0].GroupID == nil || *pushes[0].GroupID != res.Group.ID || pushes[0].Commit != sha {
		t.Errorf("pushes %+v", pushes)
	}

	t.Run("ErrReplay", func(t *testing.T) {
		_, err := e.push(t, "github-push.json", "d-1", sha)
		if app.ErrorCode(err) != app.ECONFLICT || !strings.Contains(err.Error(), "received before") {
			t.Fatalf("err %v", err)
		}
		if n := e.jobCount(t); n != 2 {
			t.Errorf("%d jobs after a replay", n)
		}
	})
	t.Run("Tag", func(t *testing.T) {
		e.repo.Git(e.repo.Work, "tag", "v1.0")
		e.repo.Git(e.repo.Work, "push", "-q", e.repo.Bare, "v1.0")
		res, err := e.push(t, "github-tag.json", "d-tag", sha)
		if err != nil {
			t.Fatal(err)
		}
		jobs := e.groupJobs(t, res.Group)
		if jobs[0].Tags != "proj/commits/.build.yml" || !strings.Contains(jobs[0].Manifest, "GIT_REF: refs/tags/v1.0") {
			t.Errorf("tag job: tags %q manifest\n%s", jobs[0].Tags, jobs[0].Manifest)
		}
	})
	t.Run("Ping", func(t *testing.T) {
		body := fixture(t, "github-ping.json", sha)
		res, err := e.svc.ReceiveWebhook(context.Background(), e.hookID, githubHeaders("ping", "d-ping", e.conn.WebhookSecret, body), body)
		if err != nil || res.Message != "pong" || res.Group != nil {
			t.Fatalf("ping: %+v %v", res, err)
		}
	})
	t.Run("Deleted", func(t *testing.T) {
		res, err := e.push(t, "github-delete.json", "d-del", sha)
		if err != nil || res.Group != nil || !strings.Contains(res.Message, "deleted") {
			t.Fatalf("delete: %+v %v", res, err)
		}
	})
}

func ptrStr(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

// TestPushRefused: hostile and broken deliveries build nothing, each with
// its own error.
func TestPushRefused(t *testing.T) {
	e := newPushEnv(t, app.RepoInput{})
	sha := e.repo.Commit("main", "ok", map[string]string{".build.yml": pushManifest})
	body := fixture(t, "github-push.json", sha)

	t.Run("ErrBadSignature", func(t *testing.T) {
		_, err := e.svc.ReceiveWebhook(context.Background(), e.hookID, githubHeaders("push", "d-bad", "not the secret", body), body)
		if app.ErrorCode(err) != app.EUNAUTHORIZED {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("ErrUnsigned", func(t *testing.T) {
		h := githubHeaders("push", "d-none", e.conn.WebhookSecret, body)
		h.Del("X-Hub-Signature-256")
		if _, err := e.svc.ReceiveWebhook(context.Background(), e.hookID, h, body); app.ErrorCode(err) != app.EUNAUTHORIZED {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("ErrUnknownRepository", func(t *testing.T) {
		h := githubHeaders("push", "d-x", e.conn.WebhookSecret, body)
		if _, err := e.svc.ReceiveWebhook(context.Background(), "0123456789abcdef", h, body); app.ErrorCode(err) != app.ENOTFOUND {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("ErrManifestFailsToParse", func(t *testing.T) {
		bad := e.repo.Commit("main", "broken", map[string]string{".build.yml": "image: debian/stable\ntasks: [oops\n"})
		_, err := e.push(t, "github-push.json", "d-parse", bad)
		if app.ErrorCode(err) != app.EINVALID || !strings.Contains(err.Error(), ".build.yml: ") || !strings.Contains(err.Error(), "Invalid YAML") {
			t.Fatalf("err %v", err)
		}
		pushes, _ := e.svc.RepositoryPushes(e.as, e.conn.Repo, 1)
		if pushes[0].GroupID != nil || !strings.Contains(pushes[0].Error, "Invalid YAML") {
			t.Errorf("push recorded %+v", pushes[0])
		}
	})
	t.Run("ErrOneOfTwoFails", func(t *testing.T) {
		// the good manifest is not submitted either
		two := e.repo.Commit("main", "one bad", map[string]string{".build.yml": pushManifest, ".builds/bad.yml": "tasks: []\n"})
		_, err := e.push(t, "github-push.json", "d-two", two)
		if app.ErrorCode(err) != app.EINVALID || !strings.Contains(err.Error(), "bad.yml: ") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("ErrTooManyManifests", func(t *testing.T) {
		files := map[string]string{}
		for _, n := range []string{"a", "b", "c", "d", "e"} {
			files[".builds/"+n+".yml"] = pushManifest
		}
		many := e.repo.Commit("main", "many", files)
		_, err := e.push(t, "github-push.json", "d-many", many)
		if app.ErrorCode(err) != app.EINVALID || !strings.Contains(err.Error(), "at most 4 manifests") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("NoManifest", func(t *testing.T) {
		none := e.repo.Commit("main", "none", map[string]string{".build.yml": "", ".builds/a.yml": "", ".builds/b.yml": "",
			".builds/c.yml": "", ".builds/d.yml": "", ".builds/e.yml": "", ".builds/bad.yml": ""})
		res, err := e.push(t, "github-push.json", "d-none", none)
		if err != nil || res.Group != nil || !strings.Contains(res.Message, "no build manifest") {
			t.Fatalf("%+v %v", res, err)
		}
	})
	t.Run("ErrCommitNotInRepository", func(t *testing.T) {
		_, err := e.push(t, "github-push.json", "d-gone", strings.Repeat("ab", 20))
		if app.ErrorCode(err) != app.EINVALID {
			t.Fatalf("err %v", err)
		}
	})
	if n := e.jobCount(t); n != 0 {
		t.Errorf("%d jobs made by refused pushes", n)
	}
}

func TestPushBranchFilter(t *testing.T) {
	e := newPushEnv(t, app.RepoInput{Branches: []string{"main", "release/*"}})
	topic := e.repo.Commit("topic", "topic", map[string]string{".build.yml": pushManifest})
	body := []byte(strings.ReplaceAll(string(fixture(t, "github-push.json", topic)), "refs/heads/main", "refs/heads/topic"))
	res, err := e.svc.ReceiveWebhook(context.Background(), e.hookID, githubHeaders("push", "d-1", e.conn.WebhookSecret, body), body)
	if err != nil || res.Group != nil || !strings.Contains(res.Message, `branch "topic" is not built`) {
		t.Fatalf("%+v %v", res, err)
	}
	rel := e.repo.Commit("release/2.0", "rel", nil)
	body = []byte(strings.ReplaceAll(string(fixture(t, "github-push.json", rel)), "refs/heads/main", "refs/heads/release/2.0"))
	res, err = e.svc.ReceiveWebhook(context.Background(), e.hookID, githubHeaders("push", "d-2", e.conn.WebhookSecret, body), body)
	if err != nil || res.Group == nil {
		t.Fatalf("%+v %v", res, err)
	}
	if tags := res.Jobs[0].Tags; tags != "proj/commits/release/2.0/.build.yml" {
		t.Errorf("tags %q", tags)
	}
}

// TestPushOtherForges: GitLab's and Forgejo's pushes, each verified its
// own way, build like GitHub's.
func TestPushOtherForges(t *testing.T) {
	for _, kind := range []app.ForgeKind{app.ForgeGitLab, app.ForgeForgejo, app.ForgeGitea} {
		t.Run(string(kind), func(t *testing.T) {
			e := newPushEnv(t, app.RepoInput{Kind: kind})
			branch, fix := "main", "gitlab-push.json"
			if kind != app.ForgeGitLab {
				branch, fix = "develop", "gitea-push.json"
			}
			sha := e.repo.Commit(branch, "ok", map[string]string{".build.yml": pushManifest})
			body := fixture(t, fix, sha)
			h := http.Header{}
			switch kind {
			case app.ForgeGitLab:
				h.Set("X-Gitlab-Event", "Push Hook")
				h.Set("X-Gitlab-Event-UUID", "u-1")
				h.Set("X-Gitlab-Token", e.conn.WebhookSecret)
			case app.ForgeForgejo:
				h.Set("X-Forgejo-Event", "push")
				h.Set("X-Forgejo-Delivery", "u-1")
				h.Set("X-Forgejo-Signature", hmacHex(e.conn.WebhookSecret, body))
			default:
				h.Set("X-Gitea-Event", "push")
				h.Set("X-Gitea-Delivery", "u-1")
				h.Set("X-Gitea-Signature", hmacHex(e.conn.WebhookSecret, body))
			}
			res, err := e.svc.ReceiveWebhook(context.Background(), e.hookID, h, body)
			if err != nil {
				t.Fatal(err)
			}
			if res.Group == nil || res.Jobs[0].Tags != "proj/commits/"+branch+"/.build.yml" ||
				!strings.Contains(res.Jobs[0].Manifest, "BUILD_SUBMITTER: "+string(kind)) {
				t.Fatalf("%+v", res)
			}
			if _, err := e.svc.ReceiveWebhook(context.Background(), e.hookID, h, body); app.ErrorCode(err) != app.ECONFLICT {
				t.Errorf("replay: %v", err)
			}
		})
	}
}

func TestBuildRepository(t *testing.T) {
	e := newPushEnv(t, app.RepoInput{})
	sha := e.repo.Commit("main", "ok", map[string]string{".build.yml": pushManifest})
	for _, rev := range []string{"", "main", "refs/heads/main", sha} {
		res, err := e.svc.BuildRepository(e.as, "proj", rev)
		if err != nil {
			t.Fatalf("%q: %v", rev, err)
		}
		if res.Group == nil || res.Push.Commit != sha {
			t.Fatalf("%q: %+v", rev, res)
		}
	}
	if _, err := e.svc.BuildRepository(e.bobCtx, "proj", ""); app.ErrorCode(err) != app.ENOTFOUND {
		t.Errorf("bob built alice's repository: %v", err)
	}
	if _, err := e.svc.BuildRepository(e.as, "proj", "--upload-pack=touch /tmp/x"); app.ErrorCode(err) != app.EINVALID {
		t.Errorf("option as revision: %v", err)
	}
}

func TestCreateRepositoryRules(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		name string
		ctx  context.Context
		in   app.RepoInput
		code string
	}{
		{"ErrLocalPathByUser", e.aliceCtx, app.RepoInput{Kind: app.ForgeGit, CloneURL: "/srv/git/bob.git"}, app.EFORBIDDEN},
		{"ErrFileURLByUser", e.aliceCtx, app.RepoInput{Kind: app.ForgeGitHub, CloneURL: "file:///srv/git/bob.git"}, app.EFORBIDDEN},
		{"ErrExt", e.aliceCtx, app.RepoInput{Kind: app.ForgeGitHub, CloneURL: "ext::sh -c id"}, app.EINVALID},
		{"ErrOption", e.aliceCtx, app.RepoInput{Kind: app.ForgeGitHub, CloneURL: "--upload-pack=id"}, app.EINVALID},
		{"ErrKind", e.aliceCtx, app.RepoInput{Kind: "svn", CloneURL: "https://x.example/p"}, app.EINVALID},
		{"ErrBranchPattern", e.aliceCtx, app.RepoInput{Kind: app.ForgeGitHub, CloneURL: "https://x.example/p", Branches: []string{"[x"}}, app.EINVALID},
		{"ErrDeployKey", e.aliceCtx, app.RepoInput{Kind: app.ForgeGitHub, CloneURL: "https://x.example/p", DeployKey: "nope"}, app.EINVALID},
		{"ErrAnonymous", e.anonCtx, app.RepoInput{Kind: app.ForgeGitHub, CloneURL: "https://x.example/p"}, app.EUNAUTHORIZED},
		{"ErrReadOnlyToken", tokenCtx(t, e.svc, e.alice, "JOBS:RO"), app.RepoInput{Kind: app.ForgeGitHub, CloneURL: "https://x.example/p"}, app.EFORBIDDEN},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := e.svc.CreateRepository(tt.ctx, tt.in); app.ErrorCode(err) != tt.code {
				t.Errorf("err %v, want %s", err, tt.code)
			}
		})
	}
	t.Run("OK", func(t *testing.T) {
		r, err := e.svc.CreateRepository(e.aliceCtx, app.RepoInput{Kind: app.ForgeGitHub, CloneURL: "git@github.com:alice/proj.git", Token: "tok"})
		if err != nil {
			t.Fatal(err)
		}
		if r.Name != "proj" || len(r.WebhookSecret) < 32 || r.Visibility != app.Unlisted {
			t.Errorf("%+v", r)
		}
		// the secret and token are stored sealed, never in the clear
		stored, _ := e.db.FindRepositoryByID(context.Background(), r.ID)
		if strings.Contains(string(stored.Secret), r.WebhookSecret) || strings.Contains(string(stored.Token), "tok") {
			t.Error("secret or token stored in the clear")
		}
		if _, err := e.svc.CreateRepository(e.aliceCtx, app.RepoInput{Kind: app.ForgeGitHub, CloneURL: "https://github.com/alice/proj"}); app.ErrorCode(err) != app.ECONFLICT {
			t.Errorf("same name twice: %v", err)
		}
		if list, _ := e.svc.Repositories(e.bobCtx); len(list) != 0 {
			t.Errorf("bob sees %d repositories", len(list))
		}
		if _, err := e.svc.DeleteRepository(e.bobCtx, "proj"); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("bob deleted alice's: %v", err)
		}
		if _, err := e.svc.DeleteRepository(e.aliceCtx, "proj"); err != nil {
			t.Error(err)
		}
	})
}
