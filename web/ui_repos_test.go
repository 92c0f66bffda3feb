package web_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"builds/app"
	"builds/forge"
	"builds/forge/forgetest"
)

const repoManifest = "image: debian/stable\ntasks:\n  - build: echo building\n"

// githubPush is a GitHub push delivery of sha to main (the fields
// forge/webhook.go reads, as GitHub documents them).
func githubPush(sha string) []byte {
	return fmt.Appendf(nil, `{"ref":"refs/heads/main","before":"%s","after":"%s","deleted":false,
		"head_commit":{"id":"%s","url":"https://github.com/alice/proj/commit/%s"},"commits":[]}`,
		strings.Repeat("0", 40), sha, sha, sha)
}

// deliver posts a signed GitHub delivery to a webhook URL.
func deliver(t *testing.T, hookURL, secret, delivery string, body []byte) *http.Response {
	t.Helper()
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	req, _ := http.NewRequest("POST", hookURL, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

var (
	hookURLRE = regexp.MustCompile(`<code id="webhook-url">([^<]+)</code>`)
	secretRE  = regexp.MustCompile(`<code id="webhook-secret">([0-9a-f]+)</code>`)
)

// TestUIRepositories connects a repository in the web UI, delivers a push
// to the webhook it shows, builds by hand, and disconnects it; others see
// none of it.
func TestUIRepositories(t *testing.T) {
	e := newUIEnv(t, func(c *app.Config) { c.Builds.Origin = "http://ci.test" })
	e.svc.Forge = &forge.Adapter{}
	alice, bob := e.user("alice"), e.user("bob")
	fs := forgetest.NewServer(t)
	repo := fs.Repo("alice/proj")
	sha := repo.Commit("main", "Add a manifest", map[string]string{".build.yml": repoManifest})
	ca, cb := e.client(alice), e.client(bob)

	e.get(ca, "/repositories").want(t, http.StatusOK, "You have connected no repository yet.", `action="/repositories"`)
	resp := e.post(ca, "/repositories", url.Values{"kind": {"github"}, "url": {repo.CloneURL}, "branches": {"main"}, "visibility": {"PUBLIC"}})
	resp.want(t, http.StatusCreated, "Webhook secret, shown only now", "application/json")
	hook, secret := hookURLRE.FindStringSubmatch(resp.body), secretRE.FindStringSubmatch(resp.body)
	if hook == nil || secret == nil || !strings.HasPrefix(hook[1], "http://ci.test/forge/hook/") {
		t.Fatalf("no webhook URL or secret on the page:\n%s", trimBody(resp.body))
	}
	page := e.get(ca, "/repositories/proj")
	page.want(t, http.StatusOK, hook[1], "No push has arrived yet.", "off: no access token")
	page.lacks(t, secret[1])
	e.get(ca, "/repositories").want(t, http.StatusOK, `href="/repositories/proj"`)

	// the forge delivers a push to the URL shown (this server, not ci.test)
	local := strings.Replace(hook[1], "http://ci.test", e.url, 1)
	if r := deliver(t, local, secret[1], "d-1", githubPush(sha)); r.StatusCode != http.StatusAccepted {
		t.Fatalf("push: status %d", r.StatusCode)
	}
	page = e.get(ca, "/repositories/proj")
	page.want(t, http.StatusOK, "refs/heads/main", sha[:12], "proj/commits/main/.build.yml")
	jobLink := regexp.MustCompile(`href="/~alice/job/(\d+)"`).FindStringSubmatch(page.body)
	if jobLink == nil {
		t.Fatalf("no job link:\n%s", trimBody(page.body))
	}
	e.get(ca, "/~alice/job/"+jobLink[1]).want(t, http.StatusOK, "BUILD_SUBMITTER: github", sha[:7])

	// build now: the branch tip, then a branch that does not exist
	r := e.post(ca, "/repositories/proj/build", url.Values{"ref": {"main"}})
	r.want(t, http.StatusSeeOther)
	e.get(ca, "/repositories/proj").want(t, http.StatusOK, "Started job group")
	e.post(ca, "/repositories/proj/build", url.Values{"ref": {"no-such-branch"}}).want(t, http.StatusBadRequest, "no-such-branch")
	e.post(ca, "/repositories/proj/build", url.Values{"ref": {"--upload-pack=evil"}}).want(t, http.StatusBadRequest, "invalid revision")

	// a commit whose manifest does not parse: the page says why
	bad := repo.Commit("main", "Break it", map[string]string{".build.yml": "image: debian/stable\ntasks: [oops\n"})
	if r := deliver(t, local, secret[1], "d-2", githubPush(bad)); r.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("bad manifest push: status %d", r.StatusCode)
	}
	e.get(ca, "/repositories/proj").want(t, http.StatusOK, ".build.yml: ")

	// bob sees and does nothing of alice's
	e.get(cb, "/repositories/proj").want(t, http.StatusNotFound)
	e.get(cb, "/repositories").lacks(t, "/repositories/proj")
	e.post(cb, "/repositories/proj/build", url.Values{}).want(t, http.StatusNotFound)
	e.post(cb, "/repositories/proj/delete", url.Values{}).want(t, http.StatusNotFound)
	// nor does anyone logged out, or another site
	e.get(e.client(nil), "/repositories").want(t, http.StatusSeeOther)
	e.post(ca, "/repositories/proj/delete", url.Values{}, "Origin", "http://evil.example").want(t, http.StatusForbidden)

	e.post(ca, "/repositories/proj/delete", url.Values{}).want(t, http.StatusSeeOther)
	e.get(ca, "/repositories").want(t, http.StatusOK, "Repository proj disconnected")
	if r := deliver(t, local, secret[1], "d-3", githubPush(sha)); r.StatusCode != http.StatusNotFound {
		t.Fatalf("push after disconnecting: status %d", r.StatusCode)
	}
}

// TestUIRepositoryFormErrors: bad input comes back on the form, named,
// with what was typed kept (never the token), and is escaped.
func TestUIRepositoryFormErrors(t *testing.T) {
	e := newUIEnv(t)
	alice := e.user("alice")
	c := e.client(alice)
	tests := []struct {
		name   string
		form   url.Values
		status int
		want   string
	}{
		{"ErrExtURL", url.Values{"kind": {"github"}, "url": {"ext::sh -c id"}}, http.StatusBadRequest, "invalid clone URL"},
		{"ErrFileURL", url.Values{"kind": {"github"}, "url": {"file:///etc"}}, http.StatusForbidden, "only an administrator"},
		{"ErrLocalPath", url.Values{"kind": {"git"}, "url": {"/srv/git/x.git"}}, http.StatusForbidden, "only an administrator"},
		{"ErrKind", url.Values{"kind": {"svn"}, "url": {"https://x.example/a/b"}}, http.StatusBadRequest, "unknown forge"},
		{"ErrName", url.Values{"kind": {"github"}, "url": {"https://x.example/a/b"}, "name": {"<script>"}}, http.StatusBadRequest, "invalid repository name"},
		{"ErrBranch", url.Values{"kind": {"github"}, "url": {"https://x.example/a/b"}, "branches": {"[oops"}}, http.StatusBadRequest, "invalid branch pattern"},
		{"ErrVisibility", url.Values{"kind": {"github"}, "url": {"https://x.example/a/b"}, "visibility": {"SECRET"}}, http.StatusBadRequest, "invalid visibility"},
		{"ErrDeployKey", url.Values{"kind": {"github"}, "url": {"git@x.example:a/b.git"}, "deploy_key": {"nope"}}, http.StatusBadRequest, "unknown secret"},
		{"ErrTooLarge", url.Values{"kind": {"github"}, "url": {strings.Repeat("a", 20000)}}, http.StatusBadRequest, "could not be read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.form.Set("token", "s3cret-token")
			r := e.post(c, "/repositories", tt.form)
			r.want(t, tt.status, tt.want)
			r.lacks(t, "s3cret-token", "<script>")
		})
	}
	// an odd but valid scp-like URL is shown escaped
	e.post(c, "/repositories", url.Values{"kind": {"gitea"}, "url": {`h:"><b>x</b>.git`}, "name": {"odd"}}).want(t, http.StatusCreated)
	page := e.get(c, "/repositories/odd")
	page.want(t, http.StatusOK, "&lt;b&gt;x&lt;/b&gt;")
	page.lacks(t, "<b>x</b>")
	e.get(c, "/repositories/none").want(t, http.StatusNotFound)
}

// TestUIRepositoryManyPushes: the page shows the latest pushes only, so a
// busy repository's page costs the same as a quiet one's.
func TestUIRepositoryManyPushes(t *testing.T) {
	e := newUIEnv(t)
	e.svc.Forge = &forge.Adapter{}
	alice := e.user("alice")
	fs := forgetest.NewServer(t)
	repo := fs.Repo("alice/proj")
	sha := repo.Commit("main", "No manifest", map[string]string{"README": "hi\n"})
	c := e.client(alice)
	resp := e.post(c, "/repositories", url.Values{"kind": {"github"}, "url": {repo.CloneURL}})
	hook, secret := hookURLRE.FindStringSubmatch(resp.body), secretRE.FindStringSubmatch(resp.body)
	local := strings.Replace(hook[1], strings.TrimRight(e.cfg.Builds.Origin, "/"), e.url, 1)
	for i := range 40 {
		if r := deliver(t, local, secret[1], fmt.Sprintf("d-%d", i), githubPush(sha)); r.StatusCode != http.StatusOK {
			t.Fatalf("push %d: status %d", i, r.StatusCode)
		}
	}
	page := e.get(c, "/repositories/proj")
	page.want(t, http.StatusOK, "no build manifest")
	if n := strings.Count(page.body, `class="push"`); n != 30 {
		t.Errorf("%d pushes shown, want the latest 30", n)
	}
}

// TestUIRepositorySettings: pull requests and the schedule are set when
// connecting and changed on the repository's page; bad cron text is
// refused naming the field, and plain git repositories have no pull
// requests.
func TestUIRepositorySettings(t *testing.T) {
	e := newUIEnv(t)
	alice, bob := e.user("alice"), e.user("bob")
	c := e.client(alice)
	e.post(c, "/repositories", url.Values{"kind": {"github"}, "url": {"https://github.com/alice/proj.git"},
		"pull_requests": {"1"}, "schedule": {"0 3 * * *"}}).want(t, http.StatusCreated)
	e.get(c, "/repositories/proj").want(t, http.StatusOK, "built (forks without secrets)", "<code>0 3 * * *</code>")

	e.post(c, "/repositories/proj/settings", url.Values{"schedule": {"30 2 * * 1-5"}}).want(t, http.StatusSeeOther)
	page := e.get(c, "/repositories/proj")
	page.want(t, http.StatusOK, "Settings of proj saved.", "not built", "<code>30 2 * * 1-5</code>")
	r, err := e.svc.OwnRepository(as(alice), "proj")
	if err != nil || r.PullRequests || r.Schedule != "30 2 * * 1-5" {
		t.Fatalf("stored %+v, %v", r, err)
	}
	e.post(c, "/repositories/proj/settings", url.Values{"schedule": {"0 24 * * *"}}).want(t, http.StatusBadRequest, "hour field")
	e.post(c, "/repositories/proj/settings", url.Values{"schedule": {""}, "pull_requests": {"1"}}).want(t, http.StatusSeeOther)
	if r, _ := e.svc.OwnRepository(as(alice), "proj"); !r.PullRequests || r.Schedule != "" {
		t.Fatalf("stored %+v", r)
	}
	e.post(c, "/repositories", url.Values{"kind": {"github"}, "url": {"https://github.com/alice/other.git"},
		"schedule": {"every day"}}).want(t, http.StatusBadRequest, "schedule")
	e.post(e.client(bob), "/repositories/proj/settings", url.Values{"schedule": {"* * * * *"}}).want(t, http.StatusNotFound)
	if r, _ := e.svc.OwnRepository(as(alice), "proj"); r.Schedule != "" {
		t.Fatalf("bob changed alice's schedule: %+v", r)
	}
}
