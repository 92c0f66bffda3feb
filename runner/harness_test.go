package runner

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"builds/app"
	"builds/store"
)

// harness is a builds instance with a real SQLite store and a pool that
// boots in-process test guests.
type harness struct {
	t      testing.TB
	cfg    *app.Config
	db     *store.DB
	svc    *app.Service
	booter *testBooter
	pool   *Pool
	user   *app.User
	ctx    context.Context // authenticated as user
	// timeout bounds every wait (VM jobs get minutes).
	timeout time.Duration
}

// newHarness starts a pool. Idle slots only look at the queue when woken,
// so tests also check that submitting wakes the pool.
func newHarness(t testing.TB, opts ...func(*app.Config)) *harness {
	t.Helper()
	h := openHarness(t, opts...)
	h.start()
	return h
}

// openHarness sets everything up without starting the pool.
func openHarness(t testing.TB, opts ...func(*app.Config)) *harness {
	t.Helper()
	return openHarnessOn(t, "", opts...)
}

// openHarnessOn is openHarness on the database source (a SQLite file in
// the temporary directory if "").
func openHarnessOn(t testing.TB, source string, opts ...func(*app.Config)) *harness {
	t.Helper()
	dir := t.TempDir()
	if source == "" {
		source = filepath.Join(dir, "builds.db")
	}
	cfg := app.DefaultConfig()
	cfg.Builds.DataDir = dir
	cfg.Builds.Origin = "http://builds.test"
	cfg.Runner.WorkDir = filepath.Join(dir, "work")
	cfg.Runner.Slots = 2
	cfg.Runner.FailedKeepalive = 0
	cfg.Runner.Name = "runner.test"
	for _, o := range opts {
		o(cfg)
	}
	ctx := context.Background()
	db, err := store.Open(ctx, source)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	key := make([]byte, 32)
	rand.Read(key)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	svc, err := app.NewService(db, cfg, key, log)
	if err != nil {
		t.Fatal(err)
	}
	booter := newTestBooter(t)
	pool := NewPool(LocalServer(svc, nil), cfg, booter, log)
	pool.IdlePoll = time.Hour
	user, err := svc.CreateUser(ctx, "alice", "alice@example.org", false, "")
	if err != nil {
		t.Fatal(err)
	}
	return &harness{
		t: t, cfg: cfg, db: db, svc: svc, booter: booter, pool: pool, user: user,
		ctx:     app.NewContextWithAuth(ctx, &app.Auth{Kind: app.AuthSession, User: user}),
		timeout: time.Minute,
	}
}

func (h *harness) start() {
	h.t.Helper()
	if err := h.pool.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { h.pool.Close() })
}

// submit queues a manifest as the harness user.
func (h *harness) submit(manifest string) *app.Job {
	h.t.Helper()
	job, err := h.svc.Submit(h.ctx, app.SubmitInput{Manifest: manifest})
	if err != nil {
		h.t.Fatalf("submit: %v", err)
	}
	return job
}

// wait waits until the job reached a final status and the runner let go
// of it (VM torn down, logs closed).
func (h *harness) wait(id int64) *app.Job {
	h.t.Helper()
	deadline := time.Now().Add(h.timeout)
	for time.Now().Before(deadline) {
		job, err := h.db.FindJobByID(context.Background(), id)
		if err != nil {
			h.t.Fatal(err)
		}
		if job.Status.Final() && h.pool.job(id) == nil {
			return job
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("job %d did not finish; setup log:\n%s", id, h.log(id, ""))
	return nil
}

// waitFor polls cond until it holds.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(h.timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("timed out waiting for %s", what)
}

// waitLog waits until a log contains s.
func (h *harness) waitLog(id int64, task, s string) {
	h.t.Helper()
	h.waitFor("log to contain "+s, func() bool { return strings.Contains(h.log(id, task), s) })
}

func (h *harness) log(id int64, task string) string {
	b, _ := os.ReadFile(h.svc.LogPath(id, task))
	return string(b)
}

func (h *harness) tasks(id int64) map[string]app.TaskStatus {
	h.t.Helper()
	ts, err := h.db.FindTasks(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]app.TaskStatus{}
	for _, t := range ts {
		out[t.Name] = t.Status
	}
	return out
}

// home returns the home directory of a job's guest.
func (h *harness) home(id int64) string {
	h.t.Helper()
	g := h.booter.guest(id)
	if g == nil {
		h.t.Fatalf("job %d has no guest", id)
	}
	return g.srv.home
}

// linesInOrder checks that each of want appears in text after the
// previous one.
func linesInOrder(t testing.TB, text string, want ...string) {
	t.Helper()
	rest := text
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("missing %q (in order) in:\n%s", w, text)
		}
		rest = rest[i+len(w):]
	}
}

// procGroup starts a command in its own process group.
func procGroup() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func sleepMS(n int) { time.Sleep(time.Duration(n) * time.Millisecond) }
