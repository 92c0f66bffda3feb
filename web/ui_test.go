package web_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builds/app"
	"builds/store"
	"builds/store/storetest"
	"builds/web"
)

// uiEnv is a real server on 127.0.0.1 over a real SQLite file.
type uiEnv struct {
	t   *testing.T
	cfg *app.Config
	db  *store.DB
	svc *app.Service
	srv *web.Server
	url string
}

const uiManifest = "image: debian/stable\ntasks:\n  - build: |\n      echo building\n  - test: |\n      echo testing\n"

func newUIEnv(t *testing.T, configure ...func(*app.Config)) *uiEnv {
	t.Helper()
	storetest.SQLiteOnly(t) // the UI reads through the same Service as the API
	dir := t.TempDir()
	cfg := app.DefaultConfig()
	cfg.Builds.DataDir = dir
	cfg.Builds.SiteName = "testbuilds"
	for _, f := range configure {
		f(cfg)
	}
	db, err := store.Open(context.Background(), filepath.Join(dir, "builds.db"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := app.NewService(db, cfg, bytes.Repeat([]byte{7}, 32), log)
	if err != nil {
		t.Fatal(err)
	}
	srv := &web.Server{Addr: "127.0.0.1:0", Service: svc, Config: cfg, Log: log}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Close()
		db.Close()
	})
	return &uiEnv{t: t, cfg: cfg, db: db, svc: svc, srv: srv, url: srv.URL()}
}

func (e *uiEnv) user(name string) *app.User {
	e.t.Helper()
	u, err := e.svc.CreateUser(context.Background(), name, name+"@example.org", false, "password-"+name)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// as returns a context acting as u through a web session.
func as(u *app.User) context.Context {
	return app.NewContextWithAuth(context.Background(), &app.Auth{Kind: app.AuthSession, User: u})
}

type jobOpts struct {
	note       string
	tags       []string
	visibility app.Visibility
	manifest   string
}

func (e *uiEnv) submit(u *app.User, o jobOpts) *app.Job {
	e.t.Helper()
	in := app.SubmitInput{Manifest: uiManifest, Tags: o.tags}
	if o.manifest != "" {
		in.Manifest = o.manifest
	}
	if o.note != "" {
		in.Note = &o.note
	}
	if o.visibility != "" {
		in.Visibility = &o.visibility
	}
	job, err := e.svc.Submit(as(u), in)
	if err != nil {
		e.t.Fatal(err)
	}
	return job
}

// start moves a queued job to running as a runner would.
func (e *uiEnv) start(job *app.Job) {
	e.t.Helper()
	st, runner, now := app.JobRunning, "test-runner", time.Now().UTC().Truncate(time.Second)
	if _, err := e.db.TransitionJob(context.Background(), job.ID, []app.JobStatus{app.JobQueued},
		app.JobUpdate{Status: &st, Runner: &runner, Started: &now}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *uiEnv) finish(job *app.Job, st app.JobStatus) {
	e.t.Helper()
	if _, err := e.svc.FinishJob(context.Background(), job.ID, st, ""); err != nil {
		e.t.Fatal(err)
	}
}

func (e *uiEnv) setTask(job *app.Job, name string, st app.TaskStatus) {
	e.t.Helper()
	_, task, err := e.svc.Task(app.SystemContext(context.Background()), job.ID, name)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.svc.SetTaskStatus(context.Background(), task, st); err != nil {
		e.t.Fatal(err)
	}
}

// appendLog writes to a job's log file and wakes its readers, as the
// runner's log writer does.
func (e *uiEnv) appendLog(job *app.Job, task, text string) {
	e.t.Helper()
	p := e.svc.LogPath(job.ID, task)
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		e.t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		e.t.Fatal(err)
	}
	fi, _ := f.Stat()
	e.svc.Logs.Notify(job.ID, task, fi.Size())
}

// client returns an HTTP client that keeps cookies and does not follow
// redirects; with a user, it is logged in through the login form.
func (e *uiEnv) client(u *app.User) *http.Client {
	e.t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if u != nil {
		resp := e.post(c, "/login", url.Values{"username": {u.Username}, "password": {"password-" + u.Username}})
		if resp.status != http.StatusSeeOther {
			e.t.Fatalf("login %s: status %d: %s", u.Username, resp.status, resp.body)
		}
	}
	return c
}

type uiResp struct {
	status int
	header http.Header
	body   string
}

func (e *uiEnv) do(c *http.Client, req *http.Request) uiResp {
	e.t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return uiResp{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (e *uiEnv) get(c *http.Client, path string) uiResp {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.url+path, nil)
	return e.do(c, req)
}

func (e *uiEnv) post(c *http.Client, path string, form url.Values, headers ...string) uiResp {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.url+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return e.do(c, req)
}

func (r uiResp) want(t *testing.T, status int, contains ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body:\n%s", r.status, status, trimBody(r.body))
	}
	for _, s := range contains {
		if !strings.Contains(r.body, s) {
			t.Errorf("body lacks %q:\n%s", s, trimBody(r.body))
		}
	}
}

func (r uiResp) lacks(t *testing.T, strs ...string) {
	t.Helper()
	for _, s := range strs {
		if strings.Contains(r.body, s) {
			t.Errorf("body contains %q", s)
		}
	}
}

func trimBody(s string) string {
	if len(s) > 3000 {
		return s[:3000] + "..."
	}
	return s
}

func TestUILoginLogout(t *testing.T) {
	e := newUIEnv(t)
	alice := e.user("alice")
	anon := e.client(nil)

	e.get(anon, "/").want(t, http.StatusOK, "Log in", "testbuilds")
	e.get(anon, "/login?next=/secrets").want(t, http.StatusOK, `name="password"`, `value="/secrets"`)
	e.post(anon, "/login", url.Values{"username": {"alice"}, "password": {"wrong-password"}}).
		want(t, http.StatusUnauthorized, "invalid username or password")
	e.get(anon, "/settings").want(t, http.StatusSeeOther)

	c := e.client(alice)
	u, _ := url.Parse(e.url)
	var session *http.Cookie
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "builds_session" {
			session = ck
		}
	}
	if session == nil {
		t.Fatal("no session cookie after login")
	}
	e.get(c, "/").want(t, http.StatusOK, "Welcome back, ~alice")
	if r := e.get(c, "/login?next=/submit"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/submit" {
		t.Errorf("login page when logged in: %d to %q", r.status, r.header.Get("Location"))
	}

	// The cookie's attributes, as the server set them.
	resp := e.post(e.client(nil), "/login", url.Values{"username": {"alice"}, "password": {"password-alice"}, "next": {"/secrets"}})
	resp.want(t, http.StatusSeeOther)
	if loc := resp.header.Get("Location"); loc != "/secrets" {
		t.Errorf("redirect to %q, want /secrets", loc)
	}
	sc := resp.header.Get("Set-Cookie")
	for _, attr := range []string{"HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(sc, attr) {
			t.Errorf("session cookie %q lacks %s", sc, attr)
		}
	}
	if strings.Contains(sc, "Secure") {
		t.Errorf("session cookie %q is Secure on an http origin", sc)
	}

	// Logout invalidates the session server-side: the old cookie value,
	// replayed, no longer logs anyone in.
	e.post(c, "/logout", nil).want(t, http.StatusSeeOther)
	replay := e.client(nil)
	replay.Jar.SetCookies(u, []*http.Cookie{{Name: "builds_session", Value: session.Value}})
	e.get(replay, "/settings").want(t, http.StatusSeeOther)
	e.get(replay, "/").want(t, http.StatusOK, "Log in")
}

func TestUILoginOpenRedirect(t *testing.T) {
	e := newUIEnv(t)
	e.user("alice")
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"} {
		resp := e.post(e.client(nil), "/login", url.Values{"username": {"alice"}, "password": {"password-alice"}, "next": {next}})
		if loc := resp.header.Get("Location"); loc != "/" {
			t.Errorf("next=%q redirected to %q, want /", next, loc)
		}
	}
}

func TestUISecureCookieOnHTTPS(t *testing.T) {
	e := newUIEnv(t, func(c *app.Config) { c.Builds.Origin = "https://builds.example" })
	e.user("alice")
	resp := e.post(e.client(nil), "/login", url.Values{"username": {"alice"}, "password": {"password-alice"}})
	resp.want(t, http.StatusSeeOther)
	if sc := resp.header.Get("Set-Cookie"); !strings.Contains(sc, "Secure") {
		t.Errorf("session cookie %q is not Secure on an https origin", sc)
	}
}

func TestUICrossOriginForms(t *testing.T) {
	e := newUIEnv(t)
	alice := e.user("alice")
	job := e.submit(alice, jobOpts{})
	e.start(job)
	c := e.client(alice)
	tests := []struct {
		name    string
		path    string
		headers []string
	}{
		{"cancel from another site", fmt.Sprintf("/cancel/%d", job.ID), []string{"Sec-Fetch-Site", "cross-site"}},
		{"cancel with foreign Origin", fmt.Sprintf("/cancel/%d", job.ID), []string{"Origin", "http://evil.example"}},
		{"login from another site", "/login", []string{"Sec-Fetch-Site", "cross-site"}},
		{"secret from another site", "/secrets", []string{"Origin", "http://evil.example"}},
		{"logout from another site", "/logout", []string{"Sec-Fetch-Site", "cross-site"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.post(c, tt.path, url.Values{"username": {"alice"}}, tt.headers...).want(t, http.StatusForbidden, "rejected")
		})
	}
	got, _ := e.svc.Job(as(alice), job.ID)
	if got.Status != app.JobRunning {
		t.Errorf("job is %s after forged cancels, want running", got.Status)
	}
	// The same form from this site works.
	e.post(c, fmt.Sprintf("/cancel/%d", job.ID), nil, "Sec-Fetch-Site", "same-origin").want(t, http.StatusSeeOther)
}

func TestUIStaticAndErrors(t *testing.T) {
	e := newUIEnv(t)
	anon := e.client(nil)
	tests := []struct {
		name, path string
		status     int
		contains   string
	}{
		{"stylesheet", "/static/style.css", 200, ".jobpage"},
		{"script", "/static/app.js", 200, "EventSource"},
		{"ansi colours", "/static/ansi.css", 200, ".log .f196{"},
		{"static dir", "/static/", 404, ""},
		{"unknown page", "/no/such/page", 404, "There is nothing here"},
		{"unknown user", "/~nobody", 404, "There is nothing here"},
		{"unknown user badge", "/~nobody.svg", 404, ""},
		{"bad job id", "/~nobody/job/xyz", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.get(anon, tt.path)
			r.want(t, tt.status, tt.contains)
			if tt.status == 404 && strings.HasPrefix(tt.path, "/~") || tt.path == "/no/such/page" {
				r.want(t, tt.status, `<link rel="stylesheet" href="/static/style.css">`)
			}
		})
	}
	r := e.get(anon, "/")
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP = %q", csp)
	}
	req, _ := http.NewRequest("PUT", e.url+"/", nil)
	e.do(anon, req).want(t, http.StatusMethodNotAllowed)
}

func TestUIInternalErrorPage(t *testing.T) {
	e := newUIEnv(t)
	e.user("alice")
	e.db.Close() // every query now fails
	e.get(e.client(nil), "/~alice").want(t, http.StatusInternalServerError, "Something went wrong", "/static/style.css")
}

// The session cookie works on the API's download URLs (the job page links
// them), and a cross-site request does not get the cookie's authority.
func TestUISessionOnAPI(t *testing.T) {
	e := newUIEnv(t)
	alice := e.user("alice")
	job := e.submit(alice, jobOpts{visibility: app.Private})
	e.start(job)
	e.appendLog(job, "", "private setup log\n")
	c := e.client(alice)
	logPath := fmt.Sprintf("/query/log/%d/log", job.ID)
	e.get(c, logPath).want(t, http.StatusOK, "private setup log")
	e.get(e.client(nil), logPath).want(t, http.StatusNotFound)

	query := func(headers ...string) uiResp {
		req, _ := http.NewRequest("POST", e.url+"/query", strings.NewReader(`{"query":"{ me { username } }"}`))
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		return e.do(c, req)
	}
	if r := query(); !strings.Contains(r.body, `"username":"alice"`) {
		t.Errorf("GraphQL with the session cookie: %d %s", r.status, r.body)
	}
	if r := query("Sec-Fetch-Site", "cross-site"); strings.Contains(r.body, `"username":"alice"`) {
		t.Errorf("cross-site GraphQL request used the session: %s", r.body)
	}
}
