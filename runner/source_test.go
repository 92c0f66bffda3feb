package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"builds/app"
	"builds/forge"
	"builds/forge/forgetest"
)

// A plain git repository on the server's machine, connected by its path:
// the guest cannot reach the path, so the runner sends the server's
// bundle of it into the guest. The test guests run on this host and could
// read the path; their git is told to look elsewhere for it (the
// home's .gitconfig rewrites both URL forms to a path that does not
// exist), so a job only succeeds if the bundle was used.

// sourceManifest checks, in the guest, the clone of the pinned commit.
const sourceManifest = `image: debian/stable
` + sourceTasks

// sourceTasks are sourceManifest's tasks.
const sourceTasks = `tasks:
  - check: |
      cd proj
      git log -1 --format='subject: %s'
      cat README
      echo "origin: $(git config remote.origin.url)"
      test ! -e ~/.builds-src.bundle && echo "bundle removed"
`

// blockHostPaths makes the guests' git look for repo's path (and its
// file:// URL) where nothing is: a clone in the guest fails.
func blockHostPaths(b *testBooter, repo string) {
	b.HomeSetup = func(home string) {
		conf := fmt.Sprintf("[url \"/nonexistent/guest-cannot-reach\"]\n\tinsteadOf = %s\n\tinsteadOf = file://%s\n", repo, repo)
		os.WriteFile(filepath.Join(home, ".gitconfig"), []byte(conf), 0o644)
	}
}

// connectLocal connects r for the harness user by its path (as the
// command line does) and pushes a commit through the post-receive hook's
// delivery of a commit with manifest as its .build.yml; it returns the
// job it started and the commit.
func connectLocal(t *testing.T, svc *app.Service, user *app.User, r *forgetest.Repo, manifest string) (*app.Job, string) {
	t.Helper()
	svc.Forge = &forge.Adapter{}
	as := app.NewContextWithAuth(context.Background(), &app.Auth{Kind: app.AuthSystem, User: user})
	conn, err := svc.CreateRepository(as, app.RepoInput{Kind: app.ForgeGit, CloneURL: r.Bare})
	if err != nil {
		t.Fatal(err)
	}
	sha := r.Commit("main", "the pushed commit", map[string]string{".build.yml": manifest, "README": "hello from the host"})
	body, _ := json.Marshal(forge.HookPush{Ref: "refs/heads/main", After: sha})
	h := http.Header{}
	h.Set(forge.HookSignatureHeader, forge.SignHook([]byte(conn.WebhookSecret), body))
	h.Set(forge.HookDeliveryHeader, "delivery-1")
	h.Set(forge.HookEventHeader, "push")
	res, err := svc.ReceiveWebhook(context.Background(), conn.HookID, h, body)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Jobs) != 1 {
		t.Fatalf("the push started %d jobs: %s", len(res.Jobs), res.Message)
	}
	return res.Jobs[0], sha
}

// checkLocalClone checks a finished job cloned repo from the bundle.
func checkLocalClone(t *testing.T, h *harness, job *app.Job, repo string) {
	t.Helper()
	if job.Status != app.JobSuccess {
		t.Fatalf("job %s; setup log:\n%s\ncheck:\n%s", job.Status, h.log(job.ID, ""), h.log(job.ID, "check"))
	}
	linesInOrder(t, h.log(job.ID, ""), "Cloning repositories", "Cloning "+repo+" from the server (a local repository)")
	if strings.Contains(h.log(job.ID, ""), "Failed to clone") {
		t.Errorf("setup log:\n%s", h.log(job.ID, ""))
	}
	linesInOrder(t, h.log(job.ID, "check"), "subject: the pushed commit", "hello from the host", "origin: "+repo, "bundle removed")
}

func TestLocalSource(t *testing.T) {
	h := openHarness(t)
	repo := forgetest.NewLocal(t, "proj")
	blockHostPaths(h.booter, repo.Bare)
	h.start()
	job, _ := connectLocal(t, h.svc, h.user, repo, sourceManifest)
	checkLocalClone(t, h, h.wait(job.ID), repo.Bare)
}

// TestLocalSourceBlocked: the same guest setup fails a direct clone of
// the path, so TestLocalSource's success is the bundle's.
func TestLocalSourceBlocked(t *testing.T) {
	h := openHarness(t)
	repo := forgetest.NewLocal(t, "proj")
	repo.Commit("main", "x", map[string]string{"README": "x"})
	blockHostPaths(h.booter, repo.Bare)
	h.start()
	job := h.submit("image: debian/stable\ntasks:\n  - clone: git clone -- " + repo.Bare + " proj\n")
	if job = h.wait(job.ID); job.Status != app.JobFailed || !strings.Contains(h.log(job.ID, "clone"), "/nonexistent/guest-cannot-reach") {
		t.Fatalf("job %s; clone log:\n%s", job.Status, h.log(job.ID, "clone"))
	}
}

// TestLocalSourceRefused: sources naming the server's paths fail the job
// with the server's reason unless the job's push made them its source;
// nothing is cloned.
func TestLocalSourceRefused(t *testing.T) {
	h := openHarness(t)
	repo := forgetest.NewLocal(t, "proj")
	blockHostPaths(h.booter, repo.Bare)
	h.start()
	connectLocal(t, h.svc, h.user, repo, sourceManifest)
	for _, tc := range []struct{ name, source, want string }{
		{"NotStartedByAPush", repo.Bare, "no push started job"},
		{"Etc", "/etc", "no push started job"},
		{"FileURL", "file:///etc", "no push started job"},
		{"DotDot", filepath.Dir(repo.Bare) + "/x/../proj.git", "paths with .. are not accepted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := h.submit("image: debian/stable\nsources:\n  - " + tc.source + "\ntasks:\n  - t: echo ran\n")
			job = h.wait(job.ID)
			setup := h.log(job.ID, "")
			if job.Status != app.JobFailed || !strings.Contains(setup, "Error: source "+tc.source) || !strings.Contains(setup, tc.want) {
				t.Fatalf("job %s, want failed saying %q; setup log:\n%s", job.Status, tc.want, setup)
			}
			if h.tasks(job.ID)["t"] == app.TaskSuccess {
				t.Error("the task ran")
			}
		})
	}
}

// TestRemoteLocalSource: a remote runner gets the bundle from the server
// over the worker API.
func TestRemoteLocalSource(t *testing.T) {
	e := newRemoteEnv(t)
	repo := forgetest.NewLocal(t, "proj")
	r := e.runner("a", 1)
	blockHostPaths(r.booter, repo.Bare)
	job, _ := connectLocal(t, e.svc, e.user, repo, sourceManifest)
	job = e.wait(job.ID)
	checkLocalClone(t, e.harness, job, repo.Bare)

	// and a refusal reaches the job's log as the server said it
	bad := e.submit("image: debian/stable\nsources:\n  - /etc\ntasks:\n  - t: echo ran\n")
	bad = e.wait(bad.ID)
	if setup := e.log(bad.ID, ""); bad.Status != app.JobFailed || !strings.Contains(setup, "Error: source /etc is a path on the server") {
		t.Fatalf("job %s; setup log:\n%s", bad.Status, setup)
	}
}

// TestWorkerSourceAPI: GET /worker/v1/jobs/N/source answers only the
// runner holding the running job, and only for its pushed repository.
func TestWorkerSourceAPI(t *testing.T) {
	e := newRemoteEnv(t)
	repo := forgetest.NewLocal(t, "proj")
	sys := app.SystemContext(context.Background())
	tokA, _, _ := e.svc.CreateRunner(sys, "a")
	tokB, _, _ := e.svc.CreateRunner(sys, "b")
	userTok, _, _ := e.svc.CreateToken(sys, e.user.ID, "", nil, "")
	job, sha := connectLocal(t, e.svc, e.user, repo, sourceManifest)
	do := func(tok, method, path, body string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+e.addr+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	src := func(id int64, source string) string {
		return fmt.Sprintf("/worker/v1/jobs/%d/source?url=%s", id, url.QueryEscape(source))
	}
	if code, _, body := do(tokA, "GET", src(job.ID, repo.Bare), ""); code != 404 || !strings.Contains(body, "does not hold") {
		t.Fatalf("before the claim: %d %s", code, body)
	}
	poll := `{"slots":1,"free":1,"images":[{"name":"debian/stable","arch":"amd64"}],"wait_ms":0}`
	if code, _, body := do(tokA, "POST", "/worker/v1/poll", poll); code != 200 || !strings.Contains(body, fmt.Sprintf(`"offer":[%d]`, job.ID)) {
		t.Fatalf("poll: %d %s", code, body)
	}
	claim := fmt.Sprintf(`{"query":"mutation { claim(jobId: %d) { id status } }"}`, job.ID)
	if code, _, body := do(tokA, "POST", "/query", claim); code != 200 || !strings.Contains(body, `"status":"RUNNING"`) {
		t.Fatalf("claim: %d %s", code, body)
	}
	for _, tc := range []struct {
		name, tok, path string
		code            int
		want            string
	}{
		{"UserToken", userTok, src(job.ID, repo.Bare), 403, "runners only"},
		{"NoToken", "", src(job.ID, repo.Bare), 401, "authentication required"},
		{"OtherRunner", tokB, src(job.ID, repo.Bare), 404, "does not hold"},
		{"Etc", tokA, src(job.ID, "/etc"), 403, "source /etc is a path on the server, and not that of the repository proj"},
		{"NoURL", tokA, fmt.Sprintf("/worker/v1/jobs/%d/source", job.ID), 400, "not an absolute path"},
		{"BadJobID", tokA, "/worker/v1/jobs/x/source?url=/etc", 404, "no job"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, body := do(tc.tok, "GET", tc.path, ""); code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %s, want %d and %q", code, body, tc.code, tc.want)
			}
		})
	}
	t.Run("OK", func(t *testing.T) {
		code, hdr, body := do(tokA, "GET", src(job.ID, "file://"+repo.Bare), "")
		if code != 200 || hdr.Get("Content-Length") != fmt.Sprint(len(body)) {
			t.Fatalf("%d, %s bytes announced, %d sent", code, hdr.Get("Content-Length"), len(body))
		}
		dir := t.TempDir()
		file := filepath.Join(dir, "b.bundle")
		os.WriteFile(file, []byte(body), 0o600)
		repo.Git(dir, "clone", "-q", file, "proj")
		if got := repo.Git(filepath.Join(dir, "proj"), "rev-parse", "HEAD"); got != sha {
			t.Errorf("HEAD %s, want %s", got, sha)
		}
	})
}
