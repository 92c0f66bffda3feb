package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"builds/app"
	"builds/store"
)

// gitIn runs git in dir as a fixed author.
func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Ada", "GIT_AUTHOR_EMAIL=ada@example.org",
		"GIT_COMMITTER_NAME=Ada", "GIT_COMMITTER_EMAIL=ada@example.org", "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commitPush commits files in work and pushes main to bare.
func commitPush(t *testing.T, work, bare string, files map[string]string) string {
	t.Helper()
	for name, text := range files {
		p := filepath.Join(work, name)
		if text == "" {
			os.Remove(p)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(text), 0o644)
	}
	gitIn(t, work, "add", "-A")
	gitIn(t, work, "commit", "-q", "--allow-empty", "-m", "change")
	gitIn(t, work, "push", "-q", bare, "HEAD:refs/heads/main")
	return gitIn(t, work, "rev-parse", "HEAD")
}

// githubPush is a GitHub push payload of the fields builds reads (see
// forge/testdata/github-push.json for a whole one).
func githubPush(sha string) []byte {
	return []byte(`{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"` + sha +
		`","deleted":false,"head_commit":{"id":"` + sha + `","url":"https://github.com/me/proj/commit/` + sha + `"},"commits":[]}`)
}

// TestRepoWebhookE2E: a repository connected with `builds repo add`
// receives signed GitHub deliveries over HTTP on a running server; a push
// becomes a job group, and each bad delivery gets its own status.
func TestRepoWebhookE2E(t *testing.T) {
	cfg := testConfig(t, "")
	if _, _, err := run(t, cfg, "", "user", "add", "alice", "--email", "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bare, work := filepath.Join(dir, "proj.git"), filepath.Join(dir, "work")
	gitIn(t, dir, "init", "-q", "--bare", "-b", "main", bare)
	gitIn(t, dir, "init", "-q", "-b", "main", work)

	s := serveConfig(t, cfg, freePort(t))
	out, _, err := run(t, cfg, "", "repo", "add", "--user", "alice", "--kind", "github", "--url", "file://"+bare, "--visibility", "public")
	if err != nil {
		t.Fatal(err)
	}
	hook := regexp.MustCompile(`webhook URL: +(\S+)`).FindStringSubmatch(out)
	secret := regexp.MustCompile(`webhook secret: +(\S+)`).FindStringSubmatch(out)
	if hook == nil || secret == nil || !strings.HasPrefix(hook[1], s.base+"/forge/hook/") {
		t.Fatalf("repo add printed %q", out)
	}
	list, _, err := run(t, cfg, "", "repo", "list", "--user", "alice")
	if err != nil || !strings.Contains(list, "proj") || strings.Contains(list, secret[1]) {
		t.Fatalf("repo list: %v\n%s", err, list)
	}

	post := func(url, delivery, key string, body []byte) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		m := hmac.New(sha256.New, []byte(key))
		m.Write(body)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", delivery)
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var ans map[string]any
		json.Unmarshal(b, &ans)
		return resp.StatusCode, ans
	}

	manifest := "image: debian/stable\ntasks:\n  - build: echo hi\n"
	sha := commitPush(t, work, bare, map[string]string{".build.yml": manifest})
	code, ans := post(hook[1], "d-1", secret[1], githubPush(sha))
	jobs, _ := ans["jobs"].([]any)
	if code != http.StatusAccepted || ans["group_id"] == nil || len(jobs) != 1 || !strings.HasPrefix(jobs[0].(string), s.base+"/~alice/job/") {
		t.Fatalf("push: %d %v", code, ans)
	}
	// the job page shows the job with its tags
	resp, err := http.Get(jobs[0].(string))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "commits") {
		t.Errorf("job page %d", resp.StatusCode)
	}

	bad := commitPush(t, work, bare, map[string]string{".build.yml": "image: [\n"})
	none := commitPush(t, work, bare, map[string]string{".build.yml": ""})
	for _, tt := range []struct {
		name, url, delivery, key string
		body                     []byte
		code                     int
		msg                      string
	}{
		{"Replay", hook[1], "d-1", secret[1], githubPush(sha), http.StatusConflict, "received before"},
		{"BadSignature", hook[1], "d-2", "wrong", githubPush(sha), http.StatusUnauthorized, "bad signature"},
		{"UnknownRepository", s.base + "/forge/hook/00112233445566778899aabbccddeeff", "d-3", secret[1], githubPush(sha), http.StatusNotFound, "no repository"},
		{"Oversized", hook[1], "d-4", secret[1], bytes.Repeat([]byte(" "), 9<<20), http.StatusRequestEntityTooLarge, "larger than"},
		{"ManifestFailsToParse", hook[1], "d-5", secret[1], githubPush(bad), http.StatusUnprocessableEntity, ".build.yml: "},
		{"NoManifest", hook[1], "d-6", secret[1], githubPush(none), http.StatusOK, "no build manifest"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, ans := post(tt.url, tt.delivery, tt.key, tt.body)
			if code != tt.code || !strings.Contains(ans["message"].(string), tt.msg) || ans["group_id"] != nil {
				t.Errorf("%d %v, want %d with %q", code, ans, tt.code, tt.msg)
			}
		})
	}
	if _, _, err := run(t, cfg, "", "repo", "rm", "--user", "alice", "proj"); err != nil {
		t.Fatal(err)
	}
	if code, _ := post(hook[1], "d-7", secret[1], githubPush(sha)); code != http.StatusNotFound {
		t.Errorf("after rm: %d", code)
	}
}

// TestSubmitRepo: `builds submit-repo` builds a branch's tip.
func TestSubmitRepo(t *testing.T) {
	cfg := testConfig(t, "")
	if _, _, err := run(t, cfg, "", "user", "add", "alice", "--email", "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bare, work := filepath.Join(dir, "proj.git"), filepath.Join(dir, "work")
	gitIn(t, dir, "init", "-q", "--bare", "-b", "main", bare)
	gitIn(t, dir, "init", "-q", "-b", "main", work)
	sha := commitPush(t, work, bare, map[string]string{".build.yml": "image: debian/stable\ntasks:\n  - build: echo hi\n"})
	if _, _, err := run(t, cfg, "", "repo", "add", "--user", "alice", "--kind", "git", "--url", bare); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, cfg, "", "submit-repo", "--user", "alice", "proj", "main")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "submitted for refs/heads/main at "+sha) || !strings.Contains(out, "/~alice/job/") {
		t.Errorf("submit-repo printed %q", out)
	}
	if _, _, err := run(t, cfg, "", "submit-repo", "--user", "alice", "proj", "nope"); err == nil || !strings.Contains(err.Error(), `no branch or tag "nope"`) {
		t.Errorf("unknown branch: %v", err)
	}
}

// TestRepoSettings: `builds repo add --pull-requests` and `builds repo
// set` change what a repository builds; list shows it.
func TestRepoSettings(t *testing.T) {
	cfg := testConfig(t, "")
	if _, _, err := run(t, cfg, "", "user", "add", "alice", "--email", "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, cfg, "", "repo", "add", "--user", "alice", "--kind", "forgejo", "--url", "https://codeberg.org/alice/proj.git", "--pull-requests"); err != nil {
		t.Fatal(err)
	}
	pulls := func() string {
		t.Helper()
		out, _, err := run(t, cfg, "", "repo", "list", "--user", "alice")
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(strings.Split(strings.TrimSpace(out), "\n")[1])
		return f[5]
	}
	if p := pulls(); p != "yes" {
		t.Errorf("after add: pulls %q", p)
	}
	out, _, err := run(t, cfg, "", "repo", "set", "--user", "alice", "proj", "--pull-requests=false")
	if err != nil || !strings.Contains(out, "repository proj: pull requests not built") {
		t.Fatalf("%v %q", err, out)
	}
	if p := pulls(); p != "no" {
		t.Errorf("after set: pulls %q", p)
	}
	out, _, err = run(t, cfg, "", "repo", "set", "--user", "alice", "proj", "--schedule", "30 2 * * 1-5")
	if err != nil || !strings.Contains(out, "pull requests not built, schedule 30 2 * * 1-5") {
		t.Fatalf("%v %q", err, out)
	}
	if out, _, _ := run(t, cfg, "", "repo", "list", "--user", "alice"); !strings.HasSuffix(strings.TrimSpace(out), "30 2 * * 1-5") {
		t.Errorf("list: %q", out)
	}
	if out, _, err := run(t, cfg, "", "repo", "set", "--user", "alice", "proj", "--schedule", ""); err != nil || !strings.Contains(out, "no schedule") {
		t.Errorf("remove schedule: %v %q", err, out)
	}
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"repo", "set", "--user", "alice", "proj", "--schedule", "0 24 * * *"}, `invalid schedule "0 24 * * *": hour field "24": end of range (24) above maximum (23)`},
		{[]string{"repo", "add", "--user", "alice", "--kind", "github", "--url", "https://github.com/a/b.git", "--schedule", "0 3 * *"}, "expected exactly 5 fields, found 4"},
		{[]string{"repo", "set", "--user", "alice", "proj"}, "nothing to change"},
		{[]string{"repo", "set", "--user", "alice", "proj", "--branches", "main"}, "--branches cannot be changed"},
		{[]string{"repo", "set", "--user", "alice", "nope", "--pull-requests"}, `no repository named "nope"`},
		{[]string{"repo", "add", "--user", "alice", "--kind", "git", "--url", "/srv/x.git", "--pull-requests"}, "plain git repositories have no pull requests"},
	} {
		if _, _, err := run(t, cfg, "", tt.args...); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%v: %v, want %q", tt.args, err, tt.msg)
		}
	}
}

// TestServeRunsSchedules: the server's scheduler builds, at start, a
// schedule's run missed while it was down.
func TestServeRunsSchedules(t *testing.T) {
	cfg := testConfig(t, "")
	if _, _, err := run(t, cfg, "", "user", "add", "alice", "--email", "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bare, work := filepath.Join(dir, "proj.git"), filepath.Join(dir, "work")
	gitIn(t, dir, "init", "-q", "--bare", "-b", "main", bare)
	gitIn(t, dir, "init", "-q", "-b", "main", work)
	commitPush(t, work, bare, map[string]string{".build.yml": "image: debian/stable\ntasks:\n  - build: echo nightly\n"})
	if _, _, err := run(t, cfg, "", "repo", "add", "--user", "alice", "--kind", "git", "--url", bare, "--schedule", "0 3 * * *"); err != nil {
		t.Fatal(err)
	}
	// the server was down for the last two nights
	ctx := context.Background()
	dbPath := filepath.Join(filepath.Dir(cfg), "data", "builds.db")
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := db.FindUserByName(ctx, "alice")
	r, err := db.FindRepositoryByName(ctx, u.ID, "proj")
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-50 * time.Hour)
	if err := db.UpdateRepository(ctx, r.ID, app.RepoUpdate{ScheduleLast: &before}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	serveConfig(t, cfg, freePort(t))
	db, err = store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		jobs, err := db.FindJobs(ctx, app.JobFilter{OwnerID: &u.ID})
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) > 0 {
			if len(jobs) != 1 || jobs[0].Tags != "proj/commits/main/.build.yml" || !strings.Contains(jobs[0].Manifest, "BUILD_REASON: schedule") {
				t.Fatalf("%d jobs: %+v", len(jobs), jobs[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no scheduled job")
		}
		time.Sleep(100 * time.Millisecond)
	}
	r, _ = db.FindRepositoryByID(ctx, r.ID)
	if r.ScheduleLast == nil || r.ScheduleLast.Before(time.Now().Add(-time.Minute)) {
		t.Errorf("schedule_last %v", r.ScheduleLast)
	}
}
