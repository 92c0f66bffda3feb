package web

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"builds/app"
	"builds/store"
	"builds/store/storetest"
)

// apiEnv is a real server on 127.0.0.1 over a real database, for the API
// tests: a SQLite file, and in the PostgreSQL pass (main_test.go) a
// PostgreSQL database.
type apiEnv struct {
	t   testing.TB
	srv *Server
	svc *app.Service
	db  *store.DB
	cfg *app.Config
	url string

	source string // the database's path or URL
}

func newAPIEnv(t testing.TB) *apiEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	cfg := app.DefaultConfig()
	cfg.Builds.DataDir = dir
	cfg.Runner.SSHUser = "builds"
	source := storetest.Source(t)
	db, err := store.Open(ctx, source)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("BUILDS_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	svc, err := app.NewService(db, cfg, bytes.Repeat([]byte{7}, 32), logger)
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Addr: "127.0.0.1:0", Service: svc, Config: cfg, Log: logger}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	cfg.Builds.Origin = srv.URL()
	t.Cleanup(func() {
		srv.Close()
		db.Close()
	})
	return &apiEnv{t: t, srv: srv, svc: svc, db: db, cfg: cfg, url: srv.URL(), source: source}
}

// user creates an account and returns it with an all-grants token.
func (e *apiEnv) user(name string) (*app.User, string) {
	e.t.Helper()
	u, err := e.svc.CreateUser(context.Background(), name, name+"@example.org", false, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return u, e.token(u, "")
}

// token issues a token for u with the given grants ("" = all).
func (e *apiEnv) token(u *app.User, grants string) string {
	e.t.Helper()
	tok, _, err := e.svc.CreateToken(context.Background(), u.ID, grants, nil, "test")
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// as returns a context acting as u with all grants (a web session).
func as(u *app.User) context.Context {
	return app.NewContextWithAuth(context.Background(), &app.Auth{Kind: app.AuthSession, User: u})
}

const testManifest = "image: alpine/latest\ntasks:\n  - build: echo hello\n  - test: echo test\n"

// submit creates a job for u directly through the Service.
func (e *apiEnv) submit(u *app.User, vis app.Visibility) *app.Job {
	e.t.Helper()
	execute := false
	job, err := e.svc.Submit(as(u), app.SubmitInput{Manifest: testManifest, Visibility: &vis, Execute: &execute})
	if err != nil {
		e.t.Fatal(err)
	}
	return job
}

// run makes job look picked up by a runner: queued, claimed, with a setup
// log and the first task running with its own log.
func (e *apiEnv) run(job *app.Job, setupLog, taskLog string) *app.Job {
	e.t.Helper()
	ctx := app.SystemContext(context.Background())
	if job.Status == app.JobPending {
		if _, err := e.svc.UpdateJobStatus(ctx, job.ID, app.JobQueued); err != nil {
			e.t.Fatal(err)
		}
	}
	j, err := e.svc.ClaimJobByID(ctx, job.ID, "runner.example.org")
	if err != nil {
		e.t.Fatal(err)
	}
	writeFile(e.t, e.svc.LogPath(job.ID, ""), setupLog)
	tasks, err := e.db.FindTasks(ctx, job.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.svc.SetTaskStatus(ctx, tasks[0], app.TaskRunning); err != nil {
		e.t.Fatal(err)
	}
	writeFile(e.t, e.svc.LogPath(job.ID, tasks[0].Name), taskLog)
	return j
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// gqlResult is a decoded /query answer.
type gqlResult struct {
	Status int
	Header http.Header
	Data   map[string]any
	Errors []struct {
		Message    string            `json:"message"`
		Path       []any             `json:"path"`
		Extensions map[string]string `json:"extensions"`
	}
	Raw string
}

// errText joins the error messages ("" if none).
func (r *gqlResult) errText() string {
	var msgs []string
	for _, e := range r.Errors {
		msgs = append(msgs, e.Message)
	}
	return strings.Join(msgs, "; ")
}

// query posts a GraphQL request the way hut does and decodes the answer.
// vars may be nil (sent as "variables": null).
func (e *apiEnv) query(token, query string, vars map[string]any) *gqlResult {
	e.t.Helper()
	var body bytes.Buffer
	json.NewEncoder(&body).Encode(map[string]any{"query": query, "variables": vars})
	return e.post(token, "application/json; charset=utf-8", body.Bytes())
}

func (e *apiEnv) post(token, contentType string, body []byte) *gqlResult {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.url+"/query", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return e.do(req)
}

func (e *apiEnv) do(req *http.Request) *gqlResult {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Fatalf("Content-Type = %q, want application/json (status %d, body %s)", ct, resp.StatusCode, raw)
	}
	r := &gqlResult{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	if err := json.Unmarshal(raw, r); err != nil {
		e.t.Fatalf("decode %s: %v", raw, err)
	}
	return r
}

// mustQuery runs a query that must succeed with no errors.
func (e *apiEnv) mustQuery(token, query string, vars map[string]any) map[string]any {
	e.t.Helper()
	r := e.query(token, query, vars)
	if r.Status != http.StatusOK || len(r.Errors) > 0 {
		e.t.Fatalf("query failed: status %d: %s", r.Status, r.Raw)
	}
	return r.Data
}

// get walks decoded JSON: get(v, "job", "tasks", 0, "name").
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// remarshal converts decoded JSON into a typed value.
func remarshal(t testing.TB, from, to any) {
	t.Helper()
	b, err := json.Marshal(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, to); err != nil {
		t.Fatal(err)
	}
}
