package runner

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"builds/app"
)

// RemoteServer is a builds server reached over its API, for `builds
// runner` on another machine (app/runners.go has the protocol). Jobs are
// claimed with the worker mutations; a poll loop is the heartbeat and
// hears of queued jobs and cancels. Logs are written (masked) to a spool
// in the data dir and shipped from there as they grow, each upload
// saying where in the log it starts, so that an upload that broke off is
// resumed and the server's copy is complete even if this runner dies
// right after. While the server cannot be reached, jobs keep running and
// every call is retried with backoff.
type RemoteServer struct {
	opt   RemoteOptions
	base  string
	hc    *http.Client
	log   *slog.Logger
	spool string
	hub   *app.LogHub
	pool  *Pool

	mu       sync.Mutex
	offers   []int64
	jobs     map[int64]*remoteJob
	stopped  map[int64]app.StoppedJob // stops heard before the pool held the job
	repoll   context.CancelFunc       // ends the poll in flight (the report changed)
	settings app.RunnerSettings
	drains   sync.WaitGroup
	// life bounds the work left in the background (last log bytes, a
	// final status): Close waits closeWait for it, then ends it.
	life      context.Context
	endLife   context.CancelFunc
	closeWait time.Duration
	// contact is when the server last answered (unix nanoseconds; 0:
	// never). Once it has been silent for longer than a lease, the jobs
	// this runner holds are failed there, and retries for them stop.
	contact atomic.Int64
}

// RemoteOptions configure a RemoteServer.
type RemoteOptions struct {
	URL    string      // the server's base URL ([runner] server)
	Token  string      // the runner token
	Config *app.Config // this runner's; Start overwrites the server's settings in it
	// Images lists what this runner can boot.
	Images  func() []app.RunnerImage
	Version string
	Log     *slog.Logger
	Client  *http.Client // nil: one with sane timeouts
}

// remoteJob is a job this runner holds, until everything of it reached
// the server.
type remoteJob struct {
	cj      *app.ClaimedJob
	secrets []*app.Secret
	dir     string // spool dir

	mu       sync.Mutex
	logs     map[string]*shippedLog // by task, "" = setup log
	finish   *app.FinishRequest     // a final status not yet delivered
	finished chan struct{}          // closed once the final status was delivered (or could not be)
	finOnce  sync.Once
	lost     bool // the server no longer has it for this runner
}

// shippedLog is one log of a remote job: the spool file and how much of
// it the server has.
type shippedLog struct {
	job   int64
	task  string
	path  string
	mu    sync.Mutex
	sent  int64
	moved chan struct{} // closed (and replaced) when sent advances or shipping ends
	done  bool          // shipped to the end after the log closed, or given up
}

// The poll loop's timing.
const (
	pollWait    = 25 * time.Second
	maxBackoff  = 30 * time.Second
	logChunk    = 1 << 20
	callTimeout = time.Minute
	// deliverFor is how long a final status or the last log bytes are
	// retried while the server cannot be reached.
	deliverFor = 30 * time.Minute
)

// NewRemoteServer returns a server client for opt; Start connects.
func NewRemoteServer(opt RemoteOptions) (*RemoteServer, error) {
	if err := checkURL(opt.URL); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(opt.Token, app.RunnerTokenPrefix) {
		return nil, fmt.Errorf("runner token: want a token from `builds runner-token create` (it starts with %s)", app.RunnerTokenPrefix)
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	hc := opt.Client
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: pollWait + 30*time.Second,
			IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second,
		}}
	}
	spool := filepath.Join(opt.Config.Builds.DataDir, "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	life, endLife := context.WithCancel(context.Background())
	return &RemoteServer{
		opt: opt, base: strings.TrimRight(opt.URL, "/"), hc: hc, log: opt.Log, spool: spool,
		hub: &app.LogHub{}, jobs: map[int64]*remoteJob{}, stopped: map[int64]app.StoppedJob{},
		life: life, endLife: endLife, closeWait: time.Minute,
	}, nil
}

func checkURL(s string) error {
	if s == "" {
		return errors.New("no server: set [runner] server or -server")
	}
	if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
		return fmt.Errorf("server %q: want an http(s) URL", s)
	}
	return nil
}

// callError is an answer of the server's: permanent for 4xx (retrying
// does not help), transient otherwise.
type callError struct {
	status int
	msg    string
	size   int64 // a log conflict's size
}

func (e *callError) Error() string { return fmt.Sprintf("server: %s (%d)", e.msg, e.status) }

// permanent reports whether err is an answer that retrying cannot change.
func permanent(err error) bool {
	var ce *callError
	return errors.As(err, &ce) && ce.status >= 400 && ce.status < 500 && ce.status != http.StatusTooManyRequests
}

// call makes one worker call: JSON in (nil: none) and out (nil: ignored).
func (s *RemoteServer) call(ctx context.Context, method, p string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+p, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return s.do(req, out)
}

func (s *RemoteServer) do(req *http.Request, out any) error {
	req.Header.Set("Authorization", "Bearer "+s.opt.Token)
	req.Header.Set("User-Agent", "builds-runner/"+s.opt.Version)
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	s.contact.Store(time.Now().UnixNano())
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error  string `json:"error"`
			Size   int64  `json:"size"`
			Errors []struct {
				Message string `json:"message"`
			} `json:"errors"`
		}
		json.Unmarshal(b, &e)
		msg := e.Error
		if msg == "" && len(e.Errors) > 0 {
			msg = e.Errors[0].Message
		}
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		return &callError{status: resp.StatusCode, msg: msg, size: e.Size}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("server: invalid reply to %s %s: %w", req.Method, req.URL.Path, err)
		}
	}
	return nil
}

// gql runs a GraphQL request; errors in the reply are permanent.
func (s *RemoteServer) gql(ctx context.Context, query string, vars map[string]any, out any) error {
	b, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/query", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return s.gqlDo(req, out)
}

func (s *RemoteServer) gqlDo(req *http.Request, out any) error {
	var reply struct {
		Data   json.RawMessage `json:"data"`
		Errors []struct {
			Message    string `json:"message"`
			Extensions struct {
				Code string `json:"code"`
			} `json:"extensions"`
		} `json:"errors"`
	}
	if err := s.do(req, &reply); err != nil {
		return err
	}
	if len(reply.Errors) > 0 {
		st := http.StatusBadRequest
		switch reply.Errors[0].Extensions.Code {
		case "INTERNAL":
			st = http.StatusInternalServerError
		case "CONFLICT":
			st = http.StatusConflict
		case "NOT_FOUND":
			st = http.StatusNotFound
		}
		return &callError{status: st, msg: reply.Errors[0].Message}
	}
	return json.Unmarshal(reply.Data, out)
}

// retry runs f until it succeeds, fails for good, or ctx or the
// runner's life ends, or the server has been silent for longer than a
// lease, waiting longer after each failure.
func (s *RemoteServer) retry(ctx context.Context, what string, f func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.life, cancel)() // a forced stop ends the retries too
	wait := 250 * time.Millisecond
	for i := 0; ; i++ {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		err := f(cctx)
		cancel()
		if err == nil || permanent(err) {
			return err
		}
		if lost := s.lostFor(); lost > 0 {
			return fmt.Errorf("%s: the server has not answered for %s, longer than a lease; it has failed this runner's jobs (last: %w)", what, lost.Round(time.Second), err)
		}
		if i == 2 || i > 0 && i%10 == 0 {
			s.log.Warn("server unreachable; retrying", "call", what, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, maxBackoff)
	}
}

// lostFor says how long the server has been silent when that is longer
// than a lease, and 0 otherwise (or before the first answer).
func (s *RemoteServer) lostFor() time.Duration {
	last := s.contact.Load()
	s.mu.Lock()
	lease := time.Duration(s.settings.LeaseMS) * time.Millisecond
	s.mu.Unlock()
	if last == 0 || lease <= 0 {
		return 0
	}
	if d := time.Since(time.Unix(0, last)); d > lease {
		return d
	}
	return 0
}

// Start recovers the spool a previous process left, waits until the
// server answers a first poll (taking its settings) and starts the poll
// loop.
func (s *RemoteServer) Start(ctx context.Context, p *Pool) error {
	s.pool = p
	s.recoverSpool(ctx)
	var reply *app.PollReply
	err := s.retry(ctx, "first poll", func(ctx context.Context) error {
		var err error
		reply, err = s.poll(ctx, 0)
		return err
	})
	if err != nil {
		return fmt.Errorf("connect to %s: %w", s.base, err)
	}
	s.applySettings(reply.Settings)
	s.log.Info("connected to the builds server", "server", s.base, "origin", reply.Settings.Origin)
	s.apply(reply)
	go s.pollLoop(p.base)
	return nil
}

// recoverFor bounds how long a start tries to fail each job its previous
// process left running, before it goes on (the lease ends it anyway).
const recoverFor = time.Minute

// recoverSpool ends the jobs a previous process of this runner was
// running (their VMs are gone) and clears its spool.
func (s *RemoteServer) recoverSpool(ctx context.Context) {
	ents, _ := os.ReadDir(s.spool)
	for _, e := range ents {
		id, err := strconv.ParseInt(e.Name(), 10, 64)
		if err == nil && id > 0 {
			cctx, cancel := context.WithTimeout(ctx, recoverFor)
			err := s.retry(cctx, "fail a job of the previous process", func(ctx context.Context) error {
				return s.call(ctx, http.MethodPost, fmt.Sprintf("/worker/v1/jobs/%d/finish", id), app.FinishRequest{
					Status: app.JobFailed, Reason: "the runner restarted while this job was running"}, nil)
			})
			cancel()
			switch {
			case err == nil:
				s.log.Warn("job left running by a previous process marked failed", "job_id", id)
			case !permanent(err):
				// kept for the next start; the lease ends the job meanwhile
				s.log.Error("job left running by a previous process: the server did not take its end", "job_id", id, "err", err)
				continue
			}
		}
		os.RemoveAll(filepath.Join(s.spool, e.Name()))
	}
}

// applySettings takes the server's settings into this runner's
// configuration (before any job runs).
func (s *RemoteServer) applySettings(st app.RunnerSettings) {
	c := s.opt.Config
	s.mu.Lock()
	s.settings = st
	s.mu.Unlock()
	if st.Origin != "" {
		c.Builds.Origin = st.Origin
	}
	if st.SiteName != "" {
		c.Builds.SiteName = st.SiteName
	}
	if st.JobTimeoutMS > 0 {
		c.Runner.JobTimeout = time.Duration(st.JobTimeoutMS) * time.Millisecond
	}
	c.Limits.LogSize, c.Limits.ArtifactSize, c.Limits.ArtifactsPerJob = st.LogSize, st.ArtifactSize, st.ArtifactsPerJob
}

// report is what the next poll says.
func (s *RemoteServer) report(wait time.Duration) app.RunnerReport {
	rep := app.RunnerReport{Version: s.opt.Version, Address: s.opt.Config.APIRunner(s.opt.Config.RunnerName()), WaitMS: int(wait.Milliseconds())}
	if s.opt.Images != nil {
		rep.Images = s.opt.Images()
	}
	if p := s.pool; p != nil {
		rep.Slots = p.cfg.Runner.Slots
		rep.Free = max(0, rep.Slots-int(p.busy.Load()))
	}
	s.mu.Lock()
	for id, j := range s.jobs {
		if !j.lost {
			rep.Running = append(rep.Running, id)
		}
	}
	if len(s.offers) > 0 {
		rep.Free = 0 // the slots are about to claim these
	}
	s.mu.Unlock()
	return rep
}

func (s *RemoteServer) poll(ctx context.Context, wait time.Duration) (*app.PollReply, error) {
	var reply app.PollReply
	if err := s.call(ctx, http.MethodPost, "/worker/v1/poll", s.report(wait), &reply); err != nil {
		return nil, err
	}
	return &reply, nil
}

// pollLoop polls until ctx ends. A poll is cut short (and made again)
// when what it reports changed: a slot freed or a job taken.
func (s *RemoteServer) pollLoop(ctx context.Context) {
	wait := 250 * time.Millisecond
	failures := 0
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, pollWait+callTimeout)
		s.mu.Lock()
		s.repoll = cancel
		s.mu.Unlock()
		reply, err := s.poll(pctx, pollWait)
		cancelled := pctx.Err() == context.Canceled
		cancel()
		switch {
		case err == nil:
			if failures > 0 {
				s.log.Info("the builds server answers again", "server", s.base)
			}
			failures, wait = 0, 250*time.Millisecond
			s.apply(reply)
		case ctx.Err() != nil:
			return
		case cancelled:
			// cut short on purpose: poll again at once
		default:
			failures++
			if failures == 1 || failures%20 == 0 {
				s.log.Warn("cannot poll the builds server; running jobs go on, retrying", "server", s.base, "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, maxBackoff)
		}
	}
}

// SlotFreed is the pool saying a slot is free: report it.
func (s *RemoteServer) SlotFreed() { s.kick() }

// kick cuts the poll in flight short, so the next one reports anew.
func (s *RemoteServer) kick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repoll != nil {
		s.repoll()
	}
}

// apply acts on a poll's reply: stops, then offers.
func (s *RemoteServer) apply(reply *app.PollReply) {
	for _, st := range reply.Stop {
		job := &app.Job{ID: st.ID, Status: st.Status, Reason: st.Reason, Updated: st.At}
		if r := s.pool.job(st.ID); r != nil {
			r.statusChanged(job)
		}
		s.mu.Lock()
		if j := s.jobs[st.ID]; j != nil && strings.HasPrefix(st.Reason, "this runner does not hold") {
			j.lost = true
		}
		if s.pool.job(st.ID) == nil {
			s.stopped[st.ID] = st
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.offers = append(s.offers[:0], reply.Offer...)
	s.mu.Unlock()
	if len(reply.Offer) > 0 {
		s.pool.Wake()
	}
}

const claimQuery = `mutation claim($id: Int!) { claim(jobId: $id) {
	id created updated status manifest note tags visibility image runner
	owner { id canonicalName ... on User { username email } }
	tasks { id created updated name status }
	secrets { __typename id created uuid name
		... on SSHKey { privateKey } ... on PGPKey { privateKey }
		... on SecretFile { path mode data } }
} }`

type gqlClaimedJob struct {
	ID         int64     `json:"id"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
	Status     string    `json:"status"`
	Manifest   string    `json:"manifest"`
	Note       *string   `json:"note"`
	Tags       []string  `json:"tags"`
	Visibility string    `json:"visibility"`
	Image      string    `json:"image"`
	Runner     *string   `json:"runner"`
	Owner      struct {
		ID       int64  `json:"id"`
		Username string `json:"username"`
		Email    string `json:"email"`
	} `json:"owner"`
	Tasks []struct {
		ID      int64     `json:"id"`
		Created time.Time `json:"created"`
		Updated time.Time `json:"updated"`
		Name    string    `json:"name"`
		Status  string    `json:"status"`
	} `json:"tasks"`
	Secrets *[]struct {
		Typename   string  `json:"__typename"`
		ID         int64   `json:"id"`
		UUID       string  `json:"uuid"`
		Name       *string `json:"name"`
		PrivateKey string  `json:"privateKey"`
		Path       string  `json:"path"`
		Mode       int     `json:"mode"`
		Data       string  `json:"data"`
	} `json:"secrets"`
}

// Claim claims the jobs the last poll offered, the first that is still
// there.
func (s *RemoteServer) Claim(ctx context.Context) (*app.ClaimedJob, error) {
	for {
		s.mu.Lock()
		if len(s.offers) == 0 {
			s.mu.Unlock()
			return nil, app.Errorf(app.ENOTFOUND, "no job offered")
		}
		id := s.offers[0]
		s.offers = s.offers[1:]
		last := len(s.offers) == 0
		s.mu.Unlock()
		if last {
			s.kick() // report the slot this claim takes
		}
		cj, err := s.claim(ctx, id)
		if err == nil {
			return cj, nil
		}
		var ce *callError
		if !errors.As(err, &ce) || ce.status != http.StatusConflict && ce.status != http.StatusNotFound {
			// the claim may have happened with its reply lost or
			// unreadable: give the job back as failed rather than
			// leave it to its lease
			s.finishNow(id, app.JobFailed, "the runner could not take the job it claimed: "+err.Error())
		}
		if !permanent(err) {
			return nil, err
		}
		s.log.Debug("offered job not claimed", "job_id", id, "err", err)
	}
}

func (s *RemoteServer) claim(ctx context.Context, id int64) (*app.ClaimedJob, error) {
	var out struct {
		Claim *gqlClaimedJob `json:"claim"`
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := s.gql(cctx, claimQuery, map[string]any{"id": id}, &out); err != nil {
		return nil, err
	}
	g := out.Claim
	if g == nil {
		return nil, &callError{status: http.StatusNotFound, msg: fmt.Sprintf("job %d not claimed", id)}
	}
	job := &app.Job{ID: g.ID, Created: g.Created, Updated: g.Updated, OwnerID: g.Owner.ID, Manifest: g.Manifest,
		Note: g.Note, Tags: strings.Join(g.Tags, "/"), Visibility: app.Visibility(g.Visibility), Image: g.Image,
		Runner: g.Runner, Status: app.JobStatus(strings.ToLower(g.Status)), Secrets: g.Secrets != nil}
	m, err := app.ParseManifest([]byte(g.Manifest), 0)
	if err != nil {
		s.finishNow(id, app.JobFailed, "stored manifest is invalid: "+err.Error())
		return nil, &callError{status: http.StatusBadRequest, msg: err.Error()}
	}
	cj := &app.ClaimedJob{Job: job, Manifest: m, Owner: &app.User{ID: g.Owner.ID, Username: g.Owner.Username, Email: g.Owner.Email}}
	for _, t := range g.Tasks {
		cj.Tasks = append(cj.Tasks, &app.Task{ID: t.ID, JobID: job.ID, Created: t.Created, Updated: t.Updated, Name: t.Name,
			Status: app.TaskStatus(strings.ToLower(t.Status))})
	}
	rj := &remoteJob{cj: cj, dir: filepath.Join(s.spool, strconv.FormatInt(id, 10)), logs: map[string]*shippedLog{}, finished: make(chan struct{})}
	if g.Secrets != nil {
		for _, sec := range *g.Secrets {
			x := &app.Secret{ID: sec.ID, UUID: sec.UUID, Name: sec.Name, UserID: job.OwnerID}
			var b64 string
			switch sec.Typename {
			case "SSHKey":
				x.Type, b64 = app.SecretSSHKey, sec.PrivateKey
			case "PGPKey":
				x.Type, b64 = app.SecretPGPKey, sec.PrivateKey
			default:
				x.Type, b64 = app.SecretFile, sec.Data
				p, mode := sec.Path, sec.Mode
				x.Path, x.Mode = &p, &mode
			}
			if x.Data, err = base64.StdEncoding.DecodeString(b64); err != nil {
				return nil, fmt.Errorf("claim job %d: secret %s: %w", id, sec.UUID, err)
			}
			rj.secrets = append(rj.secrets, x)
		}
	}
	if err := os.MkdirAll(rj.dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s.mu.Lock()
	s.jobs[id] = rj
	s.mu.Unlock()
	return cj, nil
}

// finishNow tries once to end a job this runner cannot run.
func (s *RemoteServer) finishNow(id int64, st app.JobStatus, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if err := s.call(ctx, http.MethodPost, fmt.Sprintf("/worker/v1/jobs/%d/finish", id), app.FinishRequest{Status: st, Reason: reason}, nil); err != nil {
		s.log.Error("finish job", "job_id", id, "err", err)
	}
}

func (s *RemoteServer) job(id int64) *remoteJob {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jobs[id]
}

// CurrentJob answers from the stops polls brought: a job this runner
// claimed is running unless a poll said otherwise.
func (s *RemoteServer) CurrentJob(_ context.Context, id int64) (*app.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.stopped[id]; ok {
		delete(s.stopped, id)
		return &app.Job{ID: id, Status: st.Status, Reason: st.Reason, Updated: st.At}, nil
	}
	if j := s.jobs[id]; j != nil {
		cp := *j.cj.Job
		cp.Status = app.JobRunning
		return &cp, nil
	}
	return nil, app.Errorf(app.ENOTFOUND, "no job %d on this runner", id)
}

func (s *RemoteServer) LogPath(jobID int64, task string) string {
	return app.LogPath(s.spool, jobID, task)
}

func (s *RemoteServer) Logs() *app.LogHub { return s.hub }

// OpenLog opens the job's log in the spool and ships it as it grows.
func (s *RemoteServer) OpenLog(jobID int64, task string, mask *app.Masker) (*app.LogWriter, error) {
	j := s.job(jobID)
	if j == nil {
		return nil, fmt.Errorf("job %d is not held by this runner", jobID)
	}
	p := filepath.Join(j.dir, "logs", task, "log")
	if task == "" {
		p = filepath.Join(j.dir, "logs", "log")
	}
	lw, err := app.OpenLogFile(s.hub, time.Now, p, jobID, task, mask)
	if err != nil {
		return nil, err
	}
	j.mu.Lock()
	l := j.logs[task]
	if l == nil {
		l = &shippedLog{job: jobID, task: task, path: p, moved: make(chan struct{})}
		j.logs[task] = l
		s.drains.Add(1)
		go func() {
			defer s.drains.Done()
			s.ship(j, l)
		}()
	}
	j.mu.Unlock()
	return lw, nil
}

// logURL is where a log of a job is uploaded.
func logURL(jobID int64, task string) string {
	if task == "" {
		return fmt.Sprintf("/worker/v1/jobs/%d/log", jobID)
	}
	return fmt.Sprintf("/worker/v1/jobs/%d/tasks/%s/log", jobID, url.PathEscape(task))
}

// ship sends a log's new bytes until it is closed and all sent, the
// server no longer takes it, or deliverFor passed without the server.
func (s *RemoteServer) ship(j *remoteJob, l *shippedLog) {
	defer l.finish()
	ctx := s.life
	wait := 250 * time.Millisecond
	var failingSince time.Time
	buf := make([]byte, logChunk)
	for {
		live := s.hub.Live(l.job, l.task)
		size := app.LogSize(l.path)
		sent := l.sentNow()
		if sent >= size {
			if !live {
				return
			}
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			s.hub.Wait(wctx, l.job, l.task, sent)
			cancel()
			continue
		}
		n, err := readAt(l.path, buf, sent)
		if err == nil && n > 0 {
			err = s.upload(ctx, l, buf[:n], sent)
		}
		var ce *callError
		switch {
		case err == nil:
			failingSince, wait = time.Time{}, 250*time.Millisecond
			continue
		case errors.As(err, &ce) && ce.status == http.StatusConflict:
			// the server has a different amount: go on from there
			l.advance(ce.size)
			continue
		case permanent(err):
			s.log.Warn("log upload refused; the rest of this log stays on the runner", "job_id", l.job, "task", l.task, "err", err)
			return
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		} else if time.Since(failingSince) > deliverFor {
			s.log.Error("log upload: giving up", "job_id", l.job, "task", l.task, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, maxBackoff)
	}
}

func readAt(p string, buf []byte, off int64) (int, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := f.ReadAt(buf, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

func (s *RemoteServer) upload(ctx context.Context, l *shippedLog, b []byte, off int64) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.base+logURL(l.job, l.task), bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Builds-Log-Offset", strconv.FormatInt(off, 10))
	var reply app.LogSizeReply
	if err := s.do(req, &reply); err != nil {
		return err
	}
	l.advance(reply.Size)
	return nil
}

func (l *shippedLog) sentNow() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent
}

func (l *shippedLog) advance(to int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent = to
	close(l.moved)
	l.moved = make(chan struct{})
}

func (l *shippedLog) finish() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done = true
	close(l.moved)
	l.moved = make(chan struct{})
}

// flush waits until the server has what the log holds now (or shipping
// ended, or ctx).
func (l *shippedLog) flush(ctx context.Context) {
	size := app.LogSize(l.path)
	for {
		l.mu.Lock()
		ok, moved := l.sent >= size || l.done, l.moved
		l.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return
		}
	}
}

// flushLogs waits for the job's logs named (all of them for nil).
func (j *remoteJob) flushLogs(ctx context.Context, tasks ...string) {
	j.mu.Lock()
	var ls []*shippedLog
	for t, l := range j.logs {
		if tasks == nil || slices.Contains(tasks, t) {
			ls = append(ls, l)
		}
	}
	j.mu.Unlock()
	for _, l := range ls {
		l.flush(ctx)
	}
}

// EndLogs hands the job to a drain that delivers what is left (its final
// status if still pending, the last log bytes), tells the server the
// logs are complete and clears the spool; it returns at once.
func (s *RemoteServer) EndLogs(_ context.Context, jobID int64, _ []string) {
	j := s.job(jobID)
	if j == nil {
		return
	}
	s.drains.Add(1)
	go func() {
		defer s.drains.Done()
		ctx, cancel := context.WithTimeout(s.life, deliverFor)
		defer cancel()
		select {
		case <-j.finished:
		case <-ctx.Done():
		}
		j.flushLogs(ctx)
		err := s.retry(ctx, "logs done", func(ctx context.Context) error {
			return s.call(ctx, http.MethodPost, fmt.Sprintf("/worker/v1/jobs/%d/logs-done", jobID), struct{}{}, nil)
		})
		delivered := err == nil || permanent(err) // a refusal: the server is done with the job
		if !delivered {
			s.log.Error("end logs", "job_id", jobID, "err", err)
		}
		s.mu.Lock()
		delete(s.jobs, jobID)
		delete(s.stopped, jobID)
		s.mu.Unlock()
		s.hub.Forget(jobID, "")
		for _, t := range j.cj.Tasks {
			s.hub.Forget(jobID, t.Name)
		}
		if delivered {
			os.RemoveAll(j.dir)
		} // else the spool stays for the next start, which fails the job (recoverSpool)
		s.kick()
	}()
}

// Close waits (up to a minute) for jobs' last logs and statuses to reach
// the server, then ends what is left.
func (s *RemoteServer) Close() error {
	done := make(chan struct{})
	go func() { s.drains.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.closeWait):
		s.log.Warn("stopping with job logs not yet sent to the server; the server fails those jobs when their leases end")
	}
	s.endLife()
	return nil
}

func (s *RemoteServer) updateTask(ctx context.Context, taskID int64, st app.TaskStatus) error {
	var out struct {
		UpdateTask *struct {
			ID int64 `json:"id"`
		} `json:"updateTask"`
	}
	return s.gql(ctx, `mutation updateTask($id: Int!, $status: TaskStatus!) { updateTask(taskId: $id, status: $status) { id } }`,
		map[string]any{"id": taskID, "status": strings.ToUpper(string(st.API()))}, &out)
}

// SetTaskStatus stores a task's status; a final one once the task's log
// reached the server, as clients read the log to its end then.
func (s *RemoteServer) SetTaskStatus(ctx context.Context, jobID int64, task *app.Task, st app.TaskStatus) error {
	j := s.job(jobID)
	if j == nil {
		return fmt.Errorf("job %d is not held by this runner", jobID)
	}
	if st != app.TaskRunning {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
		j.flushLogs(fctx, task.Name)
		cancel()
	}
	err := s.retry(context.WithoutCancel(ctx), "update task", func(ctx context.Context) error { return s.updateTask(ctx, task.ID, st) })
	if err != nil {
		return err
	}
	task.Status = st
	return nil
}

func (s *RemoteServer) SkipRemainingTasks(ctx context.Context, jobID int64) error {
	j := s.job(jobID)
	if j == nil {
		return fmt.Errorf("job %d is not held by this runner", jobID)
	}
	for _, t := range j.cj.Tasks {
		if t.Status == app.TaskPending {
			if err := s.SetTaskStatus(ctx, jobID, t, app.TaskSkipped); err != nil {
				return err
			}
		}
	}
	return nil
}

// FinishJob delivers the final status once the setup log reached the
// server. While the server cannot be reached it goes on trying in the
// background (polls keep the job's lease meanwhile).
func (s *RemoteServer) FinishJob(ctx context.Context, jobID int64, st app.JobStatus, reason string) (*app.Job, error) {
	j := s.job(jobID)
	if j == nil {
		return nil, fmt.Errorf("job %d is not held by this runner", jobID)
	}
	req := &app.FinishRequest{Status: st, Reason: reason}
	deliver := func(ctx context.Context) (*app.Job, error) {
		j.flushLogs(ctx, "")
		var out struct {
			ID     int64         `json:"id"`
			Status app.JobStatus `json:"status"`
		}
		err := s.retry(ctx, "finish job", func(ctx context.Context) error {
			return s.call(ctx, http.MethodPost, fmt.Sprintf("/worker/v1/jobs/%d/finish", jobID), req, &out)
		})
		if err != nil {
			return nil, err
		}
		return &app.Job{ID: out.ID, Status: out.Status}, nil
	}
	done := func() { j.finOnce.Do(func() { close(j.finished) }) }
	job, err := deliver(ctx)
	if err == nil || permanent(err) {
		done()
		return job, err
	}
	s.drains.Add(1)
	go func() {
		defer s.drains.Done()
		defer done()
		bctx, cancel := context.WithTimeout(s.life, deliverFor)
		defer cancel()
		if _, err := deliver(bctx); err != nil {
			s.log.Error("finish job: giving up", "job_id", jobID, "err", err)
		}
	}()
	return nil, fmt.Errorf("finish job %d: still trying in the background: %w", jobID, err)
}

func (s *RemoteServer) ResolveSecret(_ context.Context, cj *app.ClaimedJob, ref string) (*app.Secret, error) {
	j := s.job(cj.Job.ID)
	if j != nil {
		for _, sec := range j.secrets {
			if sec.UUID == ref || sec.Name != nil && *sec.Name == ref {
				return sec, nil
			}
		}
	}
	return nil, app.Errorf(app.ENOTFOUND, "secret %q not found for the job's owner", ref)
}

// SourceBundle downloads the bundle of a local source from the server
// (GET /worker/v1/jobs/N/source), retried until the server answers; the
// body is streamed to the guest as it comes.
func (s *RemoteServer) SourceBundle(ctx context.Context, cj *app.ClaimedJob, source string) (io.ReadCloser, error) {
	var body io.ReadCloser
	err := s.retry(ctx, "source bundle", func(context.Context) error {
		// not under the call's timeout, which ends when this returns:
		// the body is read afterwards, under ctx (the job's), and the
		// client's header timeout bounds the wait for the bundle
		req, err := http.NewRequestWithContext(ctx, http.MethodGet,
			fmt.Sprintf("%s/worker/v1/jobs/%d/source?url=%s", s.base, cj.Job.ID, url.QueryEscape(source)), nil)
		if err != nil {
			return err
		}
		body, err = s.download(req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return body, nil
}

// download makes a worker GET whose OK body is returned unread; any other
// answer is a callError.
func (s *RemoteServer) download(req *http.Request) (io.ReadCloser, error) {
	req.Header.Set("Authorization", "Bearer "+s.opt.Token)
	req.Header.Set("User-Agent", "builds-runner/"+s.opt.Version)
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, err
	}
	s.contact.Store(time.Now().UnixNano())
	if resp.StatusCode == http.StatusOK {
		return resp.Body, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error string `json:"error"`
	}
	json.Unmarshal(b, &e)
	if e.Error == "" {
		e.Error = http.StatusText(resp.StatusCode)
	}
	return nil, &callError{status: resp.StatusCode, msg: e.Error}
}

// remoteArtifact spools an artifact and uploads it on Commit
// (createArtifact).
type remoteArtifact struct {
	s      *RemoteServer
	jobID  int64
	guest  string
	f      *os.File
	size   int64
	limit  int64
	over   bool
	closed bool
}

func (s *RemoteServer) NewArtifact(ctx context.Context, jobID int64, guestPath string) (ArtifactWriter, error) {
	j := s.job(jobID)
	if j == nil {
		return nil, fmt.Errorf("job %d is not held by this runner", jobID)
	}
	name := path.Base(guestPath)
	if guestPath == "" || name == "/" || name == "." || name == ".." || strings.ContainsAny(guestPath, "\x00\n") {
		return nil, app.Errorf(app.EINVALID, "invalid artifact path %q", guestPath)
	}
	f, err := os.CreateTemp(j.dir, "artifact-*")
	if err != nil {
		return nil, err
	}
	return &remoteArtifact{s: s, jobID: jobID, guest: guestPath, f: f, limit: s.opt.Config.Limits.ArtifactSize}, nil
}

func (a *remoteArtifact) Write(p []byte) (int, error) {
	if a.over {
		return 0, app.ErrLogLimit
	}
	if a.limit > 0 && a.size+int64(len(p)) > a.limit {
		a.over = true
		return 0, app.ErrLogLimit
	}
	n, err := a.f.Write(p)
	a.size += int64(n)
	return n, err
}

func (a *remoteArtifact) TooLarge() bool { return a.over }

func (a *remoteArtifact) Abort() {
	if !a.closed {
		a.closed = true
		a.f.Close()
		os.Remove(a.f.Name())
	}
}

func (a *remoteArtifact) Commit(ctx context.Context) (*app.Artifact, error) {
	defer a.Abort()
	var out struct {
		CreateArtifact *struct {
			ID      int64     `json:"id"`
			Created time.Time `json:"created"`
			Path    string    `json:"path"`
			Size    int64     `json:"size"`
			URL     *string   `json:"url"`
		} `json:"createArtifact"`
	}
	err := a.s.retry(context.WithoutCancel(ctx), "upload artifact", func(ctx context.Context) error {
		req, err := a.request(ctx)
		if err != nil {
			return err
		}
		return a.s.gqlDo(req, &out)
	})
	if err != nil {
		return nil, err
	}
	c := out.CreateArtifact
	if c == nil {
		return nil, errors.New("upload artifact: no artifact in the reply")
	}
	return &app.Artifact{ID: c.ID, JobID: a.jobID, Created: c.Created, Name: path.Base(c.Path), Path: c.Path, Size: c.Size}, nil
}

// request is the multipart createArtifact request with the spooled file.
func (a *remoteArtifact) request(ctx context.Context) (*http.Request, error) {
	if _, err := a.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	ops, _ := json.Marshal(map[string]any{
		"query":     `mutation createArtifact($id: Int!, $path: String!, $file: File!) { createArtifact(jobId: $id, path: $path, contents: $file) { id created path size url } }`,
		"variables": map[string]any{"id": a.jobID, "path": a.guest, "file": nil},
	})
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		err := func() error {
			if err := mw.WriteField("operations", string(ops)); err != nil {
				return err
			}
			if err := mw.WriteField("map", `{"0": ["variables.file"]}`); err != nil {
				return err
			}
			fw, err := mw.CreateFormFile("0", path.Base(a.guest))
			if err != nil {
				return err
			}
			if _, err := io.Copy(fw, a.f); err != nil {
				return err
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.s.base+"/query", pr)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return req, nil
}

func (s *RemoteServer) JobToken(ctx context.Context, cj *app.ClaimedJob, grants string, _ time.Duration) (string, func(context.Context) error, error) {
	var reply app.JobTokenReply
	err := s.retry(ctx, "job token", func(ctx context.Context) error {
		return s.call(ctx, http.MethodPost, fmt.Sprintf("/worker/v1/jobs/%d/token", cj.Job.ID), app.JobTokenRequest{Grants: grants}, &reply)
	})
	if err != nil {
		return "", nil, err
	}
	revoke := func(ctx context.Context) error {
		return s.call(ctx, http.MethodDelete, fmt.Sprintf("/worker/v1/jobs/%d/token/%d", cj.Job.ID, reply.ID), nil, nil)
	}
	return reply.Token, revoke, nil
}

func (s *RemoteServer) UserBySSHKey(ctx context.Context, key ssh.PublicKey) (*app.User, error) {
	var reply app.SSHUserReply
	if err := s.call(ctx, http.MethodPost, "/worker/v1/ssh-user", app.SSHUserRequest{Key: string(ssh.MarshalAuthorizedKey(key))}, &reply); err != nil {
		return nil, err
	}
	return &app.User{ID: reply.ID, Username: reply.Username}, nil
}

// LookupJob: a runner knows only the jobs it holds.
func (s *RemoteServer) LookupJob(_ context.Context, id int64) (*app.Job, *app.User, []*app.Task, error) {
	return nil, nil, nil, app.Errorf(app.ENOTFOUND, "no job %d on this runner", id)
}
