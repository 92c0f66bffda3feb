package notify

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"builds/app"
	"builds/store"
	"builds/web"
)

// t0 is the fixed creation time of test jobs; jobs finish at t0+finishAfter.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const finishAfter = 3*time.Minute + 12*time.Second

// env is a real store, Service and Dispatcher on a temp dir.
type env struct {
	t     testing.TB
	path  string // database file
	cfg   *app.Config
	db    *store.DB
	svc   *app.Service
	d     *Dispatcher
	gate  *gate // between the Service and d
	user  *app.User
	clock *clock // the Service's clock
	opts  []func(*Dispatcher)
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testConfig returns a config for tests: loopback receivers allowed, short
// timeouts, three attempts.
func testConfig(t testing.TB) *app.Config {
	cfg := app.DefaultConfig()
	cfg.Builds.DataDir = t.TempDir()
	cfg.Builds.Origin = "https://ci.example.org"
	cfg.Builds.SiteName = "builds"
	cfg.Webhooks.AllowLoopback = true
	cfg.Webhooks.Timeout = 2 * time.Second
	cfg.Webhooks.MaxAttempts = 3
	cfg.Mail.Timeout = 2 * time.Second
	cfg.Mail.MaxAttempts = 3
	cfg.Mail.From = "CI <ci@example.org>"
	return cfg
}

// newEnv opens a store on cfg's data dir and starts a Dispatcher on it,
// rendering user webhooks with the real GraphQL API (web.Server).
// opts adjust the Dispatcher before it starts.
func newEnv(t testing.TB, cfg *app.Config, opts ...func(*Dispatcher)) *env {
	t.Helper()
	e := &env{t: t, cfg: cfg, path: filepath.Join(cfg.Builds.DataDir, "builds.db"), clock: &clock{now: t0.Add(finishAfter)}, opts: opts}
	e.open()
	ctx := context.Background()
	if u, err := e.db.FindUserByName(ctx, "alice"); err == nil {
		e.user = u
		return e
	}
	e.user = &app.User{Username: "alice", Email: "alice@example.org"}
	if err := e.db.CreateUser(ctx, e.user); err != nil {
		t.Fatal(err)
	}
	return e
}

// gate passes job changes on to the Dispatcher unless muted (a process
// that dies right after a commit).
type gate struct {
	muted atomic.Bool
	next  app.JobListener
}

func (g *gate) JobChanged(ctx context.Context, ev app.WebhookEvent, job *app.Job) {
	if !g.muted.Load() {
		g.next.JobChanged(ctx, ev, job)
	}
}

// open (re)opens the database and starts a new Service and Dispatcher.
func (e *env) open() {
	t := e.t
	t.Helper()
	db, err := store.Open(context.Background(), e.path)
	if err != nil {
		t.Fatal(err)
	}
	db.Now = func() time.Time { return t0 }
	svc, err := app.NewService(db, e.cfg, make([]byte, 32), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	svc.Now = e.clock.Now
	var logw io.Writer = testWriter{t}
	if _, bench := t.(*testing.B); bench {
		logw = io.Discard
	}
	d, err := NewDispatcher(svc, e.cfg, slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug})),
		&web.Server{Service: svc, Config: e.cfg})
	if err != nil {
		t.Fatal(err)
	}
	d.Backoff = 20 * time.Millisecond
	d.MaxBackoff = 100 * time.Millisecond
	d.PollInterval = 50 * time.Millisecond
	for _, o := range e.opts {
		o(d)
	}
	e.gate = &gate{next: d}
	svc.Listen(e.gate)
	e.db, e.svc, e.d = db, svc, d
	d.Start(context.Background())
	t.Cleanup(e.close)
}

// close stops the dispatcher and closes the database (idempotent).
func (e *env) close() {
	if e.d != nil {
		e.d.Close()
		e.d = nil
	}
	if e.db != nil {
		e.db.Close()
		e.db = nil
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// jobSpec describes a job to run to a final status.
type jobSpec struct {
	manifest string
	tags     string
	note     *string
	tasks    map[string]app.TaskStatus // final task statuses; others stay pending
	groupID  *int64
}

// createJob stores a queued job with one pending task per manifest task.
func (e *env) createJob(spec jobSpec, status app.JobStatus) *app.Job {
	e.t.Helper()
	m, err := app.ParseManifest([]byte(spec.manifest), 0)
	if err != nil {
		e.t.Fatalf("manifest: %v", err)
	}
	job := &app.Job{OwnerID: e.user.ID, Manifest: spec.manifest, Note: spec.note, Tags: spec.tags,
		Visibility: app.Unlisted, Image: m.Image, Status: status, Secrets: false}
	if _, err := e.db.CreateJob(context.Background(), job, m.TaskNames()); err != nil {
		e.t.Fatal(err)
	}
	return job
}

// runJob moves a queued job to running and sets its task statuses.
func (e *env) runJob(job *app.Job, tasks map[string]app.TaskStatus) {
	e.t.Helper()
	ctx := context.Background()
	running, runner := app.JobRunning, "runner1"
	if _, err := e.db.TransitionJob(ctx, job.ID, []app.JobStatus{app.JobQueued}, app.JobUpdate{Status: &running, Runner: &runner}); err != nil {
		e.t.Fatal(err)
	}
	list, err := e.db.FindTasks(ctx, job.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, task := range list {
		if st, ok := tasks[task.Name]; ok {
			if _, err := e.db.UpdateTaskStatus(ctx, task.ID, st); err != nil {
				e.t.Fatal(err)
			}
		}
	}
}

// finish records a running job's final status through the Service, which
// emits the event the Dispatcher acts on.
func (e *env) finish(job *app.Job, status app.JobStatus) {
	e.t.Helper()
	if _, err := e.svc.FinishJob(app.SystemContext(context.Background()), job.ID, status, ""); err != nil {
		e.t.Fatal(err)
	}
}

// runToEnd creates a job, runs it and finishes it with status.
func (e *env) runToEnd(spec jobSpec, status app.JobStatus) *app.Job {
	e.t.Helper()
	job := e.createJob(spec, app.JobQueued)
	e.runJob(job, spec.tasks)
	e.finish(job, status)
	return job
}

// waitFor polls cond until it holds; the deadline only guards against a
// hang, it is not a performance assertion.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deliveries waits until a job has at least n trigger delivery records.
func (e *env) deliveries(jobID int64, n int) []*app.TriggerDelivery {
	e.t.Helper()
	var list []*app.TriggerDelivery
	waitFor(e.t, "trigger deliveries", func() bool {
		var err error
		list, err = e.db.FindTriggerDeliveries(context.Background(), jobID)
		if err != nil {
			e.t.Fatal(err)
		}
		return len(list) >= n
	})
	return list
}

// setupLog returns a job's setup log.
func (e *env) setupLog(jobID int64) string {
	data, err := os.ReadFile(e.svc.LogPath(jobID, ""))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		e.t.Fatal(err)
	}
	return string(data)
}

// ---- SMTP receiver ----

// mailServer is a real SMTP server (go-smtp) on 127.0.0.1.
type mailServer struct {
	addr string
	port int
	mu   sync.Mutex
	msgs []*received
	// user/pass required when set
	user, pass string
	// failNext makes the next n DATA commands fail with 451.
	failNext int
}

type received struct {
	from     string
	to       []string
	data     string
	tls      bool
	authUser string
}

// newMailServer starts a server. mode: "none" (plain), "starttls" (plain
// with STARTTLS offered), "tls" (implicit TLS).
func newMailServer(t testing.TB, mode string, cert *tls.Certificate) *mailServer {
	t.Helper()
	ms := &mailServer{}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &mailSession{srv: ms, conn: c}, nil
	}))
	s.Domain = "mx.test"
	s.AllowInsecureAuth = true // the loopback-only plain-text auth case
	s.ErrorLog = smtpLog{t}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	switch mode {
	case "starttls":
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
	case "tls":
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
		ln = tls.NewListener(ln, s.TLSConfig)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	ms.addr = ln.Addr().String()
	ms.port = ln.Addr().(*net.TCPAddr).Port
	return ms
}

type smtpLog struct{ t testing.TB }

func (l smtpLog) Printf(format string, v ...any) { l.t.Logf("smtp server: "+format, v...) }
func (l smtpLog) Println(v ...any)               { l.t.Log(append([]any{"smtp server:"}, v...)...) }

func (ms *mailServer) messages() []*received {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]*received{}, ms.msgs...)
}

type mailSession struct {
	srv  *mailServer
	conn *smtp.Conn
	msg  received
}

func (s *mailSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *mailSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != s.srv.user || password != s.srv.pass {
			return errors.New("invalid credentials")
		}
		s.msg.authUser = username
		return nil
	}), nil
}

func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.srv.user != "" && s.msg.authUser == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	s.msg.from = from
	return nil
}

func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.msg.to = append(s.msg.to, to)
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if s.srv.failNext > 0 {
		s.srv.failNext--
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	m := s.msg
	m.data = string(data)
	_, m.tls = s.conn.TLSConnectionState()
	s.srv.msgs = append(s.srv.msgs, &m)
	return nil
}

func (s *mailSession) Reset()        { s.msg = received{authUser: s.msg.authUser} }
func (s *mailSession) Logout() error { return nil }

// testCert makes a self-signed certificate for 127.0.0.1 and localhost
// and returns it with a pool trusting it.
func testCert(t testing.TB) (*tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test mail server"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// ---- webhook receiver ----

// hookServer records signed POSTs and answers with the next status in
// statuses (200 once they run out).
type hookServer struct {
	*httptest.Server
	pub      ed25519.PublicKey
	mu       sync.Mutex
	reqs     []*hookRequest
	statuses []int
	// hang, while set, makes requests wait for the client to give up
	// (they are not recorded); arrived gets their delivery ids.
	hang    atomic.Bool
	arrived chan string
	// done gets a value per recorded request (dropped when full).
	done chan struct{}
}

type hookRequest struct {
	header   http.Header
	body     string
	verified bool // signature checked with the public key
}

func newHookServer(t testing.TB, pub ed25519.PublicKey, statuses ...int) *hookServer {
	h := &hookServer{pub: pub, statuses: statuses, arrived: make(chan string, 100), done: make(chan struct{}, 1024)}
	h.Server = httptest.NewServer(h)
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.hang.Load() {
		io.Copy(io.Discard, r.Body) // so the server notices the client leaving
		h.arrived <- r.Header.Get("X-Webhook-Delivery")
		<-r.Context().Done()
		return
	}
	body, _ := io.ReadAll(r.Body)
	req := &hookRequest{header: r.Header.Clone(), body: string(body), verified: verify(h.pub, body, r.Header)}
	h.mu.Lock()
	h.reqs = append(h.reqs, req)
	status := http.StatusOK
	if len(h.statuses) > 0 {
		status, h.statuses = h.statuses[0], h.statuses[1:]
	}
	h.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, "thanks\n")
	select {
	case h.done <- struct{}{}:
	default:
	}
}

func (h *hookServer) requests() []*hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*hookRequest{}, h.reqs...)
}

// verify checks X-Payload-Signature over body+nonce as a receiver would.
func verify(pub ed25519.PublicKey, body []byte, h http.Header) bool {
	sig, err := base64.StdEncoding.DecodeString(h.Get("X-Payload-Signature"))
	nonce := h.Get("X-Payload-Nonce")
	if err != nil || len(nonce) != 16 {
		return false
	}
	return ed25519.Verify(pub, append(append([]byte{}, body...), nonce...), sig)
}

// publicKey returns the dispatcher's public key as a receiver gets it.
func (e *env) publicKey() ed25519.PublicKey {
	e.t.Helper()
	raw, err := base64.StdEncoding.DecodeString(e.d.PublicKey())
	if err != nil {
		e.t.Fatal(err)
	}
	return ed25519.PublicKey(raw)
}

// settle waits until the start-up scan and every event so far are
// handled and the triggers they started have finished.
func (e *env) settle() {
	e.t.Helper()
	select {
	case <-e.d.resumeDone:
	case <-time.After(15 * time.Second):
		e.t.Fatal("timed out waiting for the start-up scan")
	}
	waitFor(e.t, "event queue to drain", func() bool {
		e.d.mu.Lock()
		defer e.d.mu.Unlock()
		return len(e.d.queue) == 0 && !e.d.handling
	})
	e.d.triggers.Wait()
}

// userContext acts as e.user through a web session.
func (e *env) userContext() context.Context {
	return app.NewContextWithAuth(context.Background(), &app.Auth{Kind: app.AuthSession, User: e.user})
}

// openStore opens the database file directly (as a restarted process).
func openStore(path string) (*store.DB, error) {
	return store.Open(context.Background(), path)
}
