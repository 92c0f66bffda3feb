package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"builds/app"
	"builds/web"

	"golang.org/x/crypto/ssh"
)

// Remote runners on loopback: a server (SQLite, Service, the HTTP API)
// with no local slots, and runners that reach it only over HTTP and boot
// in-process test guests.

type remoteEnv struct {
	*harness
	web      *web.Server
	addr     string
	stopWait context.CancelFunc
}

func newRemoteEnv(t testing.TB, configure ...func(*app.Config)) *remoteEnv {
	t.Helper()
	return newRemoteEnvOn(t, "", configure...)
}

// newRemoteEnvOn is newRemoteEnv with the server on the database source.
func newRemoteEnvOn(t testing.TB, source string, configure ...func(*app.Config)) *remoteEnv {
	t.Helper()
	h := openHarnessOn(t, source, func(c *app.Config) {
		c.Runner.Slots = 0
		c.Runner.Lease = 3 * time.Second
		for _, f := range configure {
			f(c)
		}
	})
	e := &remoteEnv{harness: h}
	e.startServer("127.0.0.1:0")
	t.Cleanup(func() { e.stopServer() })
	return e
}

// startServer serves the API on addr and watches leases.
func (e *remoteEnv) startServer(addr string) {
	e.t.Helper()
	e.web = &web.Server{Addr: addr, Service: e.svc, Config: e.cfg, Log: e.svc.Log}
	if err := e.web.Open(); err != nil {
		e.t.Fatal(err)
	}
	e.addr = strings.TrimPrefix(e.web.URL(), "http://")
	if e.cfg.Builds.Origin != e.web.URL() { // the first start; a restart keeps its address
		e.cfg.Builds.Origin = e.web.URL()
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.stopWait = cancel
	go e.svc.WatchLeases(ctx)
}

func (e *remoteEnv) stopServer() {
	if e.web != nil {
		e.web.Close()
		e.stopWait()
		e.web = nil
	}
}

// flakyTransport is the network between a runner and the server; down
// cuts it.
type flakyTransport struct {
	down atomic.Bool
	rt   http.RoundTripper
}

func (f *flakyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if f.down.Load() {
		return nil, errors.New("network is down")
	}
	return f.rt.RoundTrip(r)
}

type remoteRunner struct {
	name   string
	dir    string
	token  string
	cfg    *app.Config
	srv    *RemoteServer
	pool   *Pool
	booter *testBooter
	net    *flakyTransport
	closed bool
	// before, when set, runs once the runner is built and before it
	// starts: the place to change its configuration
	before func(*remoteRunner)
}

// runner registers a runner and starts it.
func (e *remoteEnv) runner(name string, slots int) *remoteRunner {
	e.t.Helper()
	token, _, err := e.svc.CreateRunner(app.SystemContext(context.Background()), name)
	if err != nil {
		e.t.Fatal(err)
	}
	r := &remoteRunner{name: name, dir: e.t.TempDir(), token: token}
	e.startRunner(r, slots)
	return r
}

// startRunner starts (or restarts) r's process: its data dir and token
// are kept.
func (e *remoteEnv) startRunner(r *remoteRunner, slots int) {
	e.t.Helper()
	cfg := app.DefaultConfig()
	cfg.Builds.DataDir = r.dir
	cfg.Runner.WorkDir = filepath.Join(r.dir, "work")
	cfg.Runner.Slots = slots
	cfg.Runner.FailedKeepalive = 0
	cfg.Runner.Name = r.name + ".test"
	r.cfg = cfg
	r.net = &flakyTransport{rt: &http.Transport{}}
	log := e.svc.Log.With("runner", r.name)
	srv, err := NewRemoteServer(RemoteOptions{URL: "http://" + e.addr, Token: r.token, Config: cfg, Version: "test", Log: log,
		Client: &http.Client{Transport: r.net},
		Images: func() []app.RunnerImage { return []app.RunnerImage{{Name: "debian/stable", Arch: "amd64"}} }})
	if err != nil {
		e.t.Fatal(err)
	}
	r.srv = srv
	r.booter = newTestBooter(e.t)
	r.pool = NewPool(srv, cfg, r.booter, log)
	r.pool.IdlePoll = time.Hour
	r.closed = false
	if r.before != nil {
		r.before(r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.pool.Start(ctx); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(r.stop)
}

// stop shuts r down as an operator would.
func (r *remoteRunner) stop() {
	if !r.closed {
		r.closed = true
		r.pool.Close()
		r.srv.Close()
	}
}

// kill ends r as a crash would: the network is gone first, so nothing
// more reaches the server.
func (r *remoteRunner) kill() {
	r.net.down.Store(true)
	r.srv.closeWait = 0
	r.srv.endLife()
	r.stop()
}

// ranOn returns the runner a job ran on (job.runner).
func (e *remoteEnv) ranOn(id int64) string {
	j, err := e.db.FindJobByID(context.Background(), id)
	if err != nil || j.Runner == nil {
		return ""
	}
	// job.runner is the runner's SSH address, host:port off port 22
	if host, _, err := net.SplitHostPort(*j.Runner); err == nil {
		return host
	}
	return *j.Runner
}

// waitFinal waits for a final status (the runners are not the harness
// pool, so wait cannot tell when they let go).
func (e *remoteEnv) waitFinal(id int64) *app.Job {
	e.t.Helper()
	var job *app.Job
	e.waitFor(fmt.Sprintf("job %d to finish", id), func() bool {
		j, err := e.db.FindJobByID(context.Background(), id)
		job = j
		return err == nil && j.Status.Final()
	})
	return job
}

func TestRemoteRunners(t *testing.T) {
	e := newRemoteEnv(t)
	e.timeout = 2 * time.Minute
	r1 := e.runner("r1", 2)
	r2 := e.runner("r2", 2)

	// 20 jobs over both runners, each with its logs complete on the
	// server
	var ids []int64
	for i := 0; i < 20; i++ {
		ids = append(ids, e.submit(fmt.Sprintf("image: debian/stable\ntasks:\n  - build: |\n      echo job-%d-output\n      sleep 0.2\n  - test: echo done-%d\n", i, i)).ID)
	}
	on := map[string]int{}
	for i, id := range ids {
		j := e.waitFinal(id)
		if j.Status != app.JobSuccess {
			t.Fatalf("job %d: %s (%s)\n%s", id, j.Status, j.Reason, e.log(id, ""))
		}
		on[e.ranOn(id)]++
		e.waitFor("the logs", func() bool {
			return strings.Contains(e.log(id, "build"), fmt.Sprintf("\njob-%d-output\n", i)) &&
				strings.Contains(e.log(id, "test"), fmt.Sprintf("\ndone-%d\n", i)) &&
				strings.Contains(e.log(id, ""), "Tearing down build VM")
		})
		if ts := e.tasks(id); ts["build"] != app.TaskSuccess || ts["test"] != app.TaskSuccess {
			t.Fatalf("job %d tasks %v", id, ts)
		}
	}
	if on["r1.test"] == 0 || on["r2.test"] == 0 || on["r1.test"]+on["r2.test"] != 20 {
		t.Fatalf("jobs ran on %v, want both runners", on)
	}
	t.Logf("20 jobs: %v", on)

	// r1 dies mid-job: its job fails once the lease runs out, with the
	// reason in its setup log; the rest finish on r2
	long := e.submit("image: debian/stable\ntasks:\n  - long: |\n      echo started\n      sleep 300\n")
	e.waitFor("the long job to start", func() bool { return strings.Contains(e.log(long.ID, "long"), "started") })
	victim := e.ranOn(long.ID)
	var dead, alive *remoteRunner = r1, r2
	if victim == "r2.test" {
		dead, alive = r2, r1
	}
	dead.kill()
	more := []int64{e.submit("image: debian/stable\ntasks:\n  - a: echo after\n").ID, e.submit("image: debian/stable\ntasks:\n  - a: echo after\n").ID}
	j := e.waitFinal(long.ID)
	if j.Status != app.JobFailed || !strings.Contains(j.Reason, "stopped answering") {
		t.Fatalf("killed runner's job: %s %q", j.Status, j.Reason)
	}
	if !strings.Contains(e.log(long.ID, ""), "Error: its runner "+dead.name+" stopped answering; the lease ran out at") {
		t.Fatalf("no lease line in the setup log:\n%s", e.log(long.ID, ""))
	}
	if ts := e.tasks(long.ID); ts["long"] != app.TaskFailed {
		t.Errorf("killed runner's task: %v", ts)
	}
	for _, id := range more {
		if j := e.waitFinal(id); j.Status != app.JobSuccess || e.ranOn(id) != alive.name+".test" {
			t.Fatalf("job %d after the kill: %s on %s", id, j.Status, e.ranOn(id))
		}
	}

	// the dead runner comes back (same data dir, same token): it does
	// not resurrect the failed job, and takes work again
	e.startRunner(dead, 2)
	alive.stop()
	back := e.submit("image: debian/stable\ntasks:\n  - a: echo back\n")
	if j := e.waitFinal(back.ID); j.Status != app.JobSuccess || e.ranOn(back.ID) != dead.name+".test" {
		t.Fatalf("job after the restart: %s on %s", j.Status, e.ranOn(back.ID))
	}
	if j, _ := e.db.FindJobByID(context.Background(), long.ID); j.Status != app.JobFailed {
		t.Fatalf("the failed job is %s again", j.Status)
	}
}

// A runner restarted while it ran a job ends that job at once, with the
// reason, rather than when the lease runs out.
func TestRemoteRunnerRestart(t *testing.T) {
	// the lease must not be what ends it
	e := newRemoteEnv(t, func(c *app.Config) { c.Runner.Lease = time.Hour })
	r := e.runner("r1", 1)
	job := e.submit("image: debian/stable\ntasks:\n  - long: |\n      echo started\n      sleep 300\n")
	e.waitFor("the job to start", func() bool { return strings.Contains(e.log(job.ID, "long"), "started") })
	r.kill()
	// what the killed process still did on its way out is over: its
	// failed deliveries left the spool for the next start
	r.srv.drains.Wait()
	e.startRunner(r, 1)
	j := e.waitFinal(job.ID)
	if j.Status != app.JobFailed || j.Reason != "the runner restarted while this job was running" {
		t.Fatalf("job after the runner restarted: %s %q", j.Status, j.Reason)
	}
}

// The server restarts while runners hold jobs: the jobs go on, their
// logs are complete afterwards, and the leases give runners time to come
// back.
func TestRemoteServerRestart(t *testing.T) {
	e := newRemoteEnv(t)
	e.timeout = 2 * time.Minute
	e.runner("r1", 2)
	job := e.submit("image: debian/stable\ntasks:\n  - slow: |\n      echo before\n      sleep 4\n      echo after\n")
	e.waitFor("the job to start", func() bool { return strings.Contains(e.log(job.ID, "slow"), "before") })
	addr := e.addr
	e.stopServer()
	time.Sleep(5 * time.Second) // longer than the lease
	e.startServer(addr)
	j := e.waitFinal(job.ID)
	if j.Status != app.JobSuccess {
		t.Fatalf("job across the server restart: %s %q\n%s", j.Status, j.Reason, e.log(job.ID, ""))
	}
	e.waitFor("the whole log", func() bool {
		l := e.log(job.ID, "slow")
		return strings.Contains(l, "\nbefore\n") && strings.Contains(l, "\nafter\n")
	})
}

// Cancelling a remote job stops it on its runner: the task is
// cancelled, its log ends with who did it, and secrets stay masked on
// the server.
func TestRemoteCancelAndSecrets(t *testing.T) {
	e := newRemoteEnv(t)
	r := e.runner("r1", 1)
	e.secret(app.SecretInput{Type: app.SecretFile, Name: "tok", Data: []byte("remote-secret-123\n"), Path: "~/tok", Mode: 0o600})
	job := e.submit("image: debian/stable\nsecrets: [tok]\nartifacts: [out.txt]\ntasks:\n  - show: |\n      cat ~/tok\n      echo artifact > out.txt\n  - long: |\n      echo waiting\n      sleep 300\n")
	e.waitFor("the long task", func() bool { return strings.Contains(e.log(job.ID, "long"), "waiting") })
	if l := e.log(job.ID, "show"); strings.Contains(l, "remote-secret-123") || !strings.Contains(l, "[masked]") {
		t.Fatalf("secret not masked on the server:\n%s", l)
	}
	if _, err := e.svc.Cancel(e.ctx, job.ID); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the cancel to reach the runner", func() bool { return r.pool.job(job.ID) == nil })
	e.waitFor("the cancel line", func() bool { return strings.Contains(e.log(job.ID, "long"), "Cancelled by ~alice at ") })
	if ts := e.tasks(job.ID); ts["show"] != app.TaskSuccess || ts["long"] != app.TaskCancelled {
		t.Fatalf("tasks %v", ts)
	}
	if j, _ := e.db.FindJobByID(context.Background(), job.ID); j.Status != app.JobCancelled {
		t.Fatalf("status %s", j.Status)
	}
	for _, f := range []string{"", "show", "long"} {
		if strings.Contains(e.log(job.ID, f), "remote-secret-123") {
			t.Fatalf("secret in the server's %q log", f)
		}
	}
	// the artifact is not uploaded (the job was cancelled before the
	// artifacts step); a finished job's is
	job2 := e.submit("image: debian/stable\nartifacts: [out.txt]\ntasks:\n  - a: echo artifact-body > out.txt\n")
	if j := e.waitFinal(job2.ID); j.Status != app.JobSuccess {
		t.Fatalf("artifact job: %s\n%s", j.Status, e.log(job2.ID, ""))
	}
	arts, err := e.svc.Artifacts(e.ctx, job2)
	if err != nil || len(arts) != 1 {
		t.Fatalf("artifacts %v %v", arts, err)
	}
	if b, _ := os.ReadFile(e.svc.ArtifactPath(arts[0])); string(b) != "artifact-body\n" {
		t.Fatalf("artifact %q", b)
	}
	if !strings.Contains(e.log(job2.ID, ""), "Uploaded out.txt") {
		t.Fatalf("no upload line:\n%s", e.log(job2.ID, ""))
	}
}

// The worker API refuses what is not a runner's, and hostile input.
func TestWorkerAPIInput(t *testing.T) {
	e := newRemoteEnv(t)
	sys := app.SystemContext(context.Background())
	tokA, _, _ := e.svc.CreateRunner(sys, "a")
	tokB, _, _ := e.svc.CreateRunner(sys, "b")
	userTok, _, _ := e.svc.CreateToken(sys, e.user.ID, "", nil, "")
	base := "http://" + e.addr
	do := func(tok, method, path, body string, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	poll := `{"slots":1,"free":1,"images":[{"name":"debian/stable","arch":"amd64"}],"wait_ms":0}`
	private := app.Private
	job, err := e.svc.Submit(e.ctx, app.SubmitInput{Manifest: "image: debian/stable\ntasks:\n  - t: \"true\"\n", Visibility: &private})
	if err != nil {
		t.Fatal(err)
	}
	// a claims the job through the worker mutation
	code, body := do(tokA, "POST", "/worker/v1/poll", poll)
	if code != 200 || !strings.Contains(body, fmt.Sprintf(`"offer":[%d]`, job.ID)) {
		t.Fatalf("poll: %d %s", code, body)
	}
	claim := fmt.Sprintf(`{"query":"mutation { claim(jobId: %d) { id status secrets { uuid } } }"}`, job.ID)
	if code, body := do(tokA, "POST", "/query", claim, "Content-Type", "application/json"); code != 200 || !strings.Contains(body, `"status":"RUNNING"`) {
		t.Fatalf("claim: %d %s", code, body)
	}
	jp := fmt.Sprintf("/worker/v1/jobs/%d", job.ID)
	for _, tc := range []struct {
		name, tok, method, path, body string
		hdr                           []string
		code                          int
		want                          string
	}{
		{"NoToken", "", "POST", "/worker/v1/poll", poll, nil, 401, "authentication required"},
		{"UserToken", userTok, "POST", "/worker/v1/poll", poll, nil, 403, "runners only"},
		{"BadRunnerToken", app.RunnerTokenPrefix + "nope", "POST", "/worker/v1/poll", poll, nil, 401, "invalid or revoked runner token"},
		{"UserTokenClaims", userTok, "POST", "/query", claim, []string{"Content-Type", "application/json"}, 200, "worker only"},
		{"ClaimTwice", tokB, "POST", "/query", claim, []string{"Content-Type", "application/json"}, 200, "cannot move it to RUNNING"},
		// a runner token is worth the worker calls on the jobs it holds,
		// nothing of a user's, nor of another runner's jobs
		{"OtherRunnerReadsJob", tokB, "POST", "/query", fmt.Sprintf(`{"query":"{ job(id: %d) { id manifest } }"}`, job.ID), []string{"Content-Type", "application/json"}, 200, `{"data":{"job":null}}`},
		{"RunnerMe", tokA, "POST", "/query", `{"query":"{ me { username } }"}`, []string{"Content-Type", "application/json"}, 200, `"errors"`},
		{"RunnerSubmits", tokA, "POST", "/query", `{"query":"mutation { submit(manifest: \"image: debian/stable\") { id } }"}`, []string{"Content-Type", "application/json"}, 200, `"errors"`},
		{"OtherRunnerReadsLogURL", tokB, "GET", fmt.Sprintf("/query/log/%d/log", job.ID), "", nil, 404, ""},
		{"OtherRunnersLog", tokB, "PUT", jp + "/log", "x", []string{"Builds-Log-Offset", "0"}, 404, "does not hold"},
		{"OtherRunnersFinish", tokB, "POST", jp + "/finish", `{"status":"success"}`, nil, 404, "does not hold"},
		{"OtherRunnersToken", tokB, "POST", jp + "/token", `{"grants":""}`, nil, 404, "does not hold"},
		{"NoOffset", tokA, "PUT", jp + "/log", "x", nil, 400, "Builds-Log-Offset"},
		{"NegativeOffset", tokA, "PUT", jp + "/log", "x", []string{"Builds-Log-Offset", "-1"}, 400, "Builds-Log-Offset"},
		{"Gap", tokA, "PUT", jp + "/log", "x", []string{"Builds-Log-Offset", "1000"}, 409, `"size":0`},
		{"TaskNotInJob", tokA, "PUT", jp + "/tasks/..%2F..%2Fetc/log", "x", []string{"Builds-Log-Offset", "0"}, 404, "has no task"},
		{"UnknownTask", tokA, "GET", jp + "/tasks/nope/log", "", nil, 404, "has no task"},
		{"BadJobID", tokA, "GET", "/worker/v1/jobs/abc/log", "", nil, 404, "no job"},
		{"HugeUpload", tokA, "PUT", jp + "/log", strings.Repeat("x", 9<<20), []string{"Builds-Log-Offset", "0"}, 400, "at most"},
		{"BadJSON", tokA, "POST", "/worker/v1/poll", `{"slots":`, nil, 400, "invalid JSON"},
		{"UnknownField", tokA, "POST", "/worker/v1/poll", `{"slots":1,"evil":true}`, nil, 400, "unknown field"},
		{"FreeOverSlots", tokA, "POST", "/worker/v1/poll", `{"slots":1,"free":5}`, nil, 400, "free"},
		{"TooManyImages", tokA, "POST", "/worker/v1/poll", `{"slots":1,"images":[` + strings.Repeat(`{"name":"a/b","arch":"x"},`, 1000) + `{"name":"a/b","arch":"x"}]}`, nil, 400, "at most 1000"},
		{"BadImage", tokA, "POST", "/worker/v1/poll", `{"slots":1,"images":[{"name":"../x","arch":"amd64"}]}`, nil, 400, "invalid image"},
		{"BadAddress", tokA, "POST", "/worker/v1/poll", `{"slots":1,"address":"evil host@x"}`, nil, 400, "address"},
		{"BigBody", tokA, "POST", "/worker/v1/poll", `{"version":"` + strings.Repeat("v", 300<<10) + `"}`, nil, 400, "over"},
		{"NotFinal", tokA, "POST", jp + "/finish", `{"status":"running"}`, nil, 400, "not a final status"},
		{"BadKey", tokA, "POST", "/worker/v1/ssh-user", `{"key":"ssh-ed25519 AAAAnotakey"}`, nil, 400, "not an SSH public key"},
		{"UnknownCall", tokA, "GET", "/worker/v1/nothing", "", nil, 404, "no worker call"},
		{"RevokeOthersToken", tokA, "DELETE", jp + "/token/1", "", nil, 404, "has no token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(tc.tok, tc.method, tc.path, tc.body, tc.hdr...)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %s, want %d and %q", code, body, tc.code, tc.want)
			}
		})
	}
	// appends resume: a retried overlap is skipped, the log stays whole
	for _, tc := range []struct{ off, body, want string }{{"0", "hello ", `"size":6`}, {"0", "hello ", `"size":6`}, {"3", "lo world\n", `"size":12`}} {
		if code, body := do(tokA, "PUT", jp+"/log", tc.body, "Builds-Log-Offset", tc.off); code != 200 || !strings.Contains(body, tc.want) {
			t.Fatalf("append at %s: %d %s", tc.off, code, body)
		}
	}
	if l := e.log(job.ID, ""); l != "hello world\n" {
		t.Fatalf("log %q", l)
	}
	// a runner token reads only the jobs it holds
	other, err := e.svc.Submit(e.ctx, app.SubmitInput{Manifest: "image: debian/stable\ntasks:\n  - t: \"true\"\n", Visibility: &private})
	if err != nil {
		t.Fatal(err)
	}
	q := func(tok string, id int64) string {
		_, body := do(tok, "POST", "/query", fmt.Sprintf(`{"query":"{ job(id: %d) { id manifest } }"}`, id), "Content-Type", "application/json")
		return body
	}
	if b := q(tokA, job.ID); !strings.Contains(b, `"manifest"`) {
		t.Fatalf("holder cannot read its job: %s", b)
	}
	if b := q(tokB, job.ID); !strings.Contains(b, `"job":null`) {
		t.Fatalf("another runner reads the job: %s", b)
	}
	if b := q(tokA, other.ID); !strings.Contains(b, `"job":null`) {
		t.Fatalf("a runner reads a job it does not hold: %s", b)
	}
	_, me := do(tokA, "POST", "/query", `{"query":"{ me { username } }"}`, "Content-Type", "application/json")
	if !strings.Contains(me, "errors") {
		t.Fatalf("a runner token is a user: %s", me)
	}
	// revoked: the token stops working and the job it held fails
	if _, err := e.svc.RevokeRunner(sys, "a"); err != nil {
		t.Fatal(err)
	}
	if code, body := do(tokA, "POST", "/worker/v1/poll", poll); code != 401 {
		t.Fatalf("revoked runner polls: %d %s", code, body)
	}
	if j := e.waitFinal(job.ID); j.Status != app.JobFailed || !strings.Contains(j.Reason, "revoked") {
		t.Fatalf("revoked runner's job: %s %q", j.Status, j.Reason)
	}
}

// A held poll answers as soon as a job is queued or a held job stops.
func TestRemotePollWakes(t *testing.T) {
	e := newRemoteEnv(t)
	tok, _, _ := e.svc.CreateRunner(app.SystemContext(context.Background()), "a")
	var wg sync.WaitGroup
	var took time.Duration
	var body string
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		req, _ := http.NewRequest("POST", "http://"+e.addr+"/worker/v1/poll",
			strings.NewReader(`{"slots":1,"free":1,"images":[{"name":"debian/stable","arch":"amd64"}],"wait_ms":20000}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took, body = time.Since(start), string(b)
	}()
	time.Sleep(300 * time.Millisecond)
	job := e.submit("image: debian/stable\ntasks:\n  - t: \"true\"\n")
	wg.Wait()
	if !strings.Contains(body, fmt.Sprintf(`"offer":[%d]`, job.ID)) || took > 10*time.Second {
		t.Fatalf("poll took %s: %s", took, body)
	}
}

// connect through a remote runner: job.runner is the runner's own SSH
// address (host:port, with sshUser ssh://builds so `hut builds ssh`
// reaches it), and the runner's SSH server asks the server whose key it
// is; the owner gets in, anyone else gets "No such job found".
func TestRemoteConnect(t *testing.T) {
	e := newRemoteEnv(t)
	token, _, err := e.svc.CreateRunner(app.SystemContext(context.Background()), "r1")
	if err != nil {
		t.Fatal(err)
	}
	var sshd *SSHServer
	r := &remoteRunner{name: "r1", dir: t.TempDir(), token: token, before: func(r *remoteRunner) {
		sshd = NewSSHServer(r.srv, r.cfg, r.pool, e.svc.Log)
		r.cfg.Runner.SSHListen = "127.0.0.1:0"
		if err := sshd.Open(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sshd.Close() })
		r.cfg.Runner.SSHListen = sshd.Addr().String()
		r.cfg.Runner.Name = "127.0.0.1"
	}}
	e.startRunner(r, 1)

	alice := newSigner(t)
	if _, err := e.svc.AddSSHKey(e.ctx, e.user.ID, string(ssh.MarshalAuthorizedKey(alice.PublicKey()))); err != nil {
		t.Fatal(err)
	}
	bob, err := e.svc.CreateUser(app.SystemContext(context.Background()), "bob", "bob@example.org", false, "")
	if err != nil {
		t.Fatal(err)
	}
	bobKey := newSigner(t)
	if _, err := e.svc.AddSSHKey(app.SystemContext(context.Background()), bob.ID, string(ssh.MarshalAuthorizedKey(bobKey.PublicKey()))); err != nil {
		t.Fatal(err)
	}
	stranger := newSigner(t)

	job := e.submit("image: debian/stable\nshell: true\ntasks:\n  - a: echo task-ran\n")
	e.waitFor("the shell banner", func() bool { return strings.Contains(e.log(job.ID, ""), "connect "+itoa(job.ID)) })
	if j := e.waitRunning(job.ID); j.Runner == nil || *j.Runner != sshd.Addr().String() {
		t.Fatalf("job.runner = %v, want the runner's SSH address %s", j.Runner, sshd.Addr())
	}
	if got := e.svc.APISSHUser(); got != "ssh://builds" {
		t.Fatalf("sshUser = %q, want ssh://builds", got)
	}
	if l := e.log(job.ID, ""); !strings.Contains(l, "ssh -t -p "+portOf(sshd.Addr().String())+" builds@127.0.0.1 connect "+itoa(job.ID)) {
		t.Fatalf("the setup log's connect line does not name the runner:\n%s", l)
	}

	sh := &sshHarness{harness: e.harness, srv: sshd}
	if out, st := sh.run(bobKey, "connect "+itoa(job.ID)+" echo in"); st == 0 || !strings.Contains(out, "No such job found.") {
		t.Fatalf("bob connected to alice's job: %d %q", st, out)
	}
	if _, err := sh.dial(stranger, nil); err == nil {
		t.Fatal("an unknown key logged in")
	}
	out, st := sh.run(alice, "connect "+itoa(job.ID)+" echo hello from $USER")
	if st != 0 || !strings.Contains(out, "Connected to build job #"+itoa(job.ID)) || !strings.Contains(out, "hello from build\n") {
		t.Fatalf("alice's connect: %d\n%s", st, out)
	}
	// her last session logged out: the shell job ends
	if j := e.waitFinal(job.ID); j.Status != app.JobSuccess {
		t.Fatalf("after logout: %s", j.Status)
	}
}

// waitRunning waits until job id runs and returns it.
func (e *remoteEnv) waitRunning(id int64) *app.Job {
	e.t.Helper()
	var job *app.Job
	e.waitFor(fmt.Sprintf("job %d to run", id), func() bool {
		j, err := e.db.FindJobByID(context.Background(), id)
		job = j
		return err == nil && j.Status == app.JobRunning
	})
	return job
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
