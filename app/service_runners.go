package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// The server's side of remote runners (runners.go): their tokens, polls,
// leases and the worker calls only they make.

var runnerNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// Bounds on what a runner may report in one poll.
const (
	maxReportImages = 1000
	maxReportSlots  = 1024
	maxReportText   = 255
)

func requireAdmin(ctx context.Context) error {
	if isSystem(ctx) {
		return nil
	}
	if u := UserFromContext(ctx); u != nil && u.Admin {
		return nil
	}
	return Errorf(EFORBIDDEN, "only administrators may manage runners")
}

// CreateRunner registers a remote runner and returns its token, which is
// shown this once.
func (s *Service) CreateRunner(ctx context.Context, name string) (string, *Runner, error) {
	if err := requireAdmin(ctx); err != nil {
		return "", nil, err
	}
	if !runnerNameRe.MatchString(name) {
		return "", nil, Errorf(EINVALID, "invalid runner name %q: use 1-63 lower-case letters, digits, '.', '_' or '-'", name)
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	secret := RunnerTokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	r := &Runner{Name: name, Hash: HashToken(secret)}
	if err := s.Store.CreateRunner(ctx, r); err != nil {
		if ErrorCode(err) == ECONFLICT {
			return "", nil, Errorf(ECONFLICT, "a runner named %q already exists", name)
		}
		return "", nil, fmt.Errorf("create runner: %w", err)
	}
	return secret, r, nil
}

// Runners lists the registered runners, revoked ones too.
func (s *Service) Runners(ctx context.Context) ([]*Runner, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	return s.Store.FindRunners(ctx)
}

// RunnerStatus is a runner as /admin shows it.
type RunnerStatus struct {
	*Runner
	Live    bool // it polled within the lease
	Running int  // jobs it holds that run
}

// RunnerOverview lists the runners that are not revoked, by name, with
// whether they answer and how many jobs each runs.
func (s *Service) RunnerOverview(ctx context.Context) ([]RunnerStatus, error) {
	rs, err := s.Runners(ctx)
	if err != nil {
		return nil, err
	}
	leases, err := s.Store.FindLeases(ctx)
	if err != nil {
		return nil, err
	}
	held := map[int64]int{}
	for _, l := range leases {
		held[l.RunnerID]++
	}
	now, lease := s.now(), s.lease()
	var out []RunnerStatus
	for _, r := range rs {
		if r.Revoked == nil {
			out = append(out, RunnerStatus{Runner: r, Live: r.Live(now, lease), Running: held[r.ID]})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// RevokeRunner revokes the runner named name (or with that id): its token
// stops working and the jobs it holds fail now.
func (s *Service) RevokeRunner(ctx context.Context, name string) (*Runner, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	rs, err := s.Store.FindRunners(ctx)
	if err != nil {
		return nil, err
	}
	var r *Runner
	for _, x := range rs {
		if x.Revoked == nil && (x.Name == name || fmt.Sprint(x.ID) == name) {
			r = x
		}
	}
	if r == nil {
		return nil, Errorf(ENOTFOUND, "no runner %q", name)
	}
	if err := s.Store.RevokeRunner(ctx, r.ID); err != nil {
		return nil, err
	}
	leases, err := s.Store.FindLeases(ctx)
	if err != nil {
		return r, err
	}
	for _, l := range leases {
		if l.RunnerID == r.ID {
			s.endLease(ctx, l, r.Name, fmt.Sprintf("its runner %s was revoked", r.Name))
		}
	}
	return r, nil
}

// AuthenticateRunner resolves a runner token to an identity holding the
// runner's jobs.
func (s *Service) AuthenticateRunner(ctx context.Context, secret string) (*Auth, error) {
	bad := Errorf(EUNAUTHORIZED, "Authentication error: invalid or revoked runner token")
	if !strings.HasPrefix(secret, RunnerTokenPrefix) || len(secret) > 256 {
		return nil, bad
	}
	r, err := s.Store.FindRunnerByHash(ctx, HashToken(secret))
	if ErrorCode(err) == ENOTFOUND {
		return nil, bad
	} else if err != nil {
		return nil, fmt.Errorf("find runner: %w", err)
	}
	a := &Auth{Kind: AuthRunner, Runner: r}
	leases, err := s.Store.FindLeases(ctx)
	if err != nil {
		return nil, err
	}
	for _, l := range leases {
		if l.RunnerID == r.ID {
			a.hold(l.JobID)
		}
	}
	return a, nil
}

func requireRunner(ctx context.Context) (*Auth, error) {
	a := AuthFromContext(ctx)
	if a == nil {
		return nil, Errorf(EUNAUTHORIZED, "authentication required")
	}
	if a.Kind != AuthRunner || a.Runner == nil {
		return nil, Errorf(EFORBIDDEN, "access denied: runners only")
	}
	return a, nil
}

// lease is how long a remote runner's job lives without its next poll.
func (s *Service) lease() time.Duration { return s.Config.Runner.Lease }

// checkReport validates a poll's report.
func checkReport(rep *RunnerReport) error {
	switch {
	case rep.Slots < 0 || rep.Slots > maxReportSlots:
		return Errorf(EINVALID, "slots: %d is not between 0 and %d", rep.Slots, maxReportSlots)
	case rep.Free < 0 || rep.Free > rep.Slots:
		return Errorf(EINVALID, "free: %d is not between 0 and slots (%d)", rep.Free, rep.Slots)
	case len(rep.Images) > maxReportImages:
		return Errorf(EINVALID, "images: %d images, at most %d", len(rep.Images), maxReportImages)
	case len(rep.Running) > maxReportSlots:
		return Errorf(EINVALID, "running: %d jobs, at most %d", len(rep.Running), maxReportSlots)
	case len(rep.Address) > maxReportText || len(rep.Version) > maxReportText:
		return Errorf(EINVALID, "address or version longer than %d bytes", maxReportText)
	case rep.WaitMS < 0:
		return Errorf(EINVALID, "wait_ms: %d is negative", rep.WaitMS)
	}
	if rep.Address != "" && strings.ContainsAny(rep.Address, " \t\r\n/@\x00") {
		return Errorf(EINVALID, "address %q: a host name or host:port", rep.Address)
	}
	for _, im := range rep.Images {
		if _, _, err := splitImageName(im.Name); err != nil || len(im.Arch) > 32 || strings.ContainsAny(im.Arch, " /\x00") {
			return Errorf(EINVALID, "images: invalid image %q (%q)", im.Name, im.Arch)
		}
	}
	return nil
}

// imagePartRe is one part of a distro/release image name.
var imagePartRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._+-]{0,63}$`)

// splitImageName checks a distro/release image name.
func splitImageName(name string) (string, string, error) {
	d, r, ok := strings.Cut(name, "/")
	if !ok || !imagePartRe.MatchString(d) || !imagePartRe.MatchString(r) {
		return "", "", errors.New("want distro/release")
	}
	return d, r, nil
}

// RunnerPoll is a runner's heartbeat and its question for work: it
// renews the leases of the jobs it reports, and answers with the jobs it
// must stop and the queued jobs it can run, holding the answer up to the
// report's wait while there is nothing to say.
func (s *Service) RunnerPoll(ctx context.Context, rep RunnerReport) (*PollReply, error) {
	a, err := requireRunner(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkReport(&rep); err != nil {
		return nil, err
	}
	if err := s.Store.TouchRunner(ctx, a.Runner.ID, rep); err != nil {
		return nil, err
	}
	a.Runner.Report = rep
	s.noteAddress(rep.Address)
	lease := s.lease()
	if err := s.Store.RenewLeases(ctx, a.Runner.ID, rep.Running, s.now().Add(lease)); err != nil {
		return nil, err
	}
	wait := min(time.Duration(rep.WaitMS)*time.Millisecond, MaxPollWait, lease/3)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		kick := s.runnerKick()
		reply, err := s.pollAnswer(ctx, a.Runner, rep)
		if err != nil {
			return nil, err
		}
		if len(reply.Offer) > 0 || len(reply.Stop) > 0 {
			return reply, nil
		}
		select {
		case <-kick:
		case <-deadline.C:
			return reply, nil
		case <-ctx.Done():
			return reply, nil
		}
	}
}

// pollAnswer works out a poll's reply as things are now.
func (s *Service) pollAnswer(ctx context.Context, r *Runner, rep RunnerReport) (*PollReply, error) {
	c := s.Config
	reply := &PollReply{Offer: []int64{}, Stop: []StoppedJob{}, Settings: RunnerSettings{
		Origin: c.Builds.Origin, SiteName: c.Builds.SiteName,
		LeaseMS: s.lease().Milliseconds(), JobTimeoutMS: c.Runner.JobTimeout.Milliseconds(),
		LogSize: c.Limits.LogSize, ArtifactSize: c.Limits.ArtifactSize, ArtifactsPerJob: c.Limits.ArtifactsPerJob,
	}}
	for _, id := range rep.Running {
		l, err := s.Store.FindLease(ctx, id)
		if err != nil && ErrorCode(err) != ENOTFOUND {
			return nil, err
		}
		job, jerr := s.Store.FindJobByID(ctx, id)
		switch {
		case l == nil || l.RunnerID != r.ID || jerr != nil:
			st := StoppedJob{ID: id, Status: JobFailed, Reason: "this runner does not hold the job", At: s.now()}
			if jerr == nil {
				st.Status = job.Status
			}
			reply.Stop = append(reply.Stop, st)
		case job.Status != JobRunning:
			reply.Stop = append(reply.Stop, StoppedJob{ID: id, Status: job.Status, Reason: job.Reason, At: job.Updated})
		}
	}
	if rep.Free == 0 {
		return reply, nil
	}
	arches := map[string][]string{}
	var names []string
	for _, im := range rep.Images {
		if _, ok := arches[im.Name]; !ok {
			names = append(names, im.Name)
		}
		arches[im.Name] = append(arches[im.Name], im.Arch)
	}
	if len(names) == 0 {
		return reply, nil
	}
	sort.Strings(names)
	jobs, err := s.Store.FindQueuedJobs(ctx, names, 4*rep.Free)
	if err != nil {
		return nil, err
	}
	for _, j := range jobs {
		if len(reply.Offer) == rep.Free {
			break
		}
		if m, err := ParseManifest([]byte(j.Manifest), 0); err == nil && (m.Arch == "" || slices.Contains(arches[j.Image], m.Arch)) {
			reply.Offer = append(reply.Offer, j.ID)
		}
	}
	return reply, nil
}

// runnerKick returns a channel closed at the next job change (a job
// queued, a job cancelled): held polls look again.
func (s *Service) runnerKick() <-chan struct{} {
	s.kickMu.Lock()
	defer s.kickMu.Unlock()
	if s.kick == nil {
		s.kick = make(chan struct{})
	}
	return s.kick
}

// kickRunners wakes the held polls.
func (s *Service) kickRunners() {
	s.kickMu.Lock()
	defer s.kickMu.Unlock()
	if s.kick != nil {
		close(s.kick)
		s.kick = nil
	}
}

// claimForRunner moves queued job id to running for the calling runner,
// with a lease.
func (s *Service) claimForRunner(ctx context.Context, a *Auth, id int64) (*Job, error) {
	name := a.Runner.Report.Address
	if name == "" {
		name = a.Runner.Name
	}
	job, err := s.moveJob(ctx, id, move{to: JobRunning, runner: name,
		lease: &JobLease{RunnerID: a.Runner.ID, Expires: s.now().Add(s.lease())}})
	if err != nil {
		return nil, err
	}
	a.hold(job.ID)
	s.Log.Info("job claimed by a remote runner", "job_id", job.ID, "runner", a.Runner.Name)
	return job, nil
}

// heldJob returns job id if the calling runner holds it (its lease is
// there, the job running or recently ended).
func (s *Service) heldJob(ctx context.Context, id int64, running bool) (*Auth, *Job, error) {
	a, err := requireRunner(ctx)
	if err != nil {
		return nil, nil, err
	}
	l, err := s.Store.FindLease(ctx, id)
	if err != nil || l.RunnerID != a.Runner.ID {
		return nil, nil, Errorf(ENOTFOUND, "this runner does not hold job %d", id)
	}
	job, err := s.Store.FindJobByID(ctx, id)
	if err != nil {
		return nil, nil, errNoJob(id)
	}
	if running && job.Status != JobRunning {
		return nil, nil, Errorf(ECONFLICT, "job %d is %s", id, strings.ToUpper(string(job.Status)))
	}
	return a, job, nil
}

// runnerLogPath checks task against the job's tasks ("" is the setup log).
func (s *Service) runnerLogPath(ctx context.Context, job *Job, task string) (string, error) {
	if task != "" {
		tasks, err := s.Store.FindTasks(ctx, job.ID)
		if err != nil {
			return "", err
		}
		found := false
		for _, t := range tasks {
			found = found || t.Name == task
		}
		if !found {
			return "", Errorf(ENOTFOUND, "job %d has no task %q", job.ID, task)
		}
	}
	return s.LogPath(job.ID, task), nil
}

// RunnerLogSize returns how much of a log of a job the runner holds the
// server has: where its next append starts.
func (s *Service) RunnerLogSize(ctx context.Context, jobID int64, task string) (int64, error) {
	_, job, err := s.heldJob(ctx, jobID, false)
	if err != nil {
		return 0, err
	}
	path, err := s.runnerLogPath(ctx, job, task)
	if err != nil {
		return 0, err
	}
	return LogSize(path), nil
}

// remoteLogSlack is what a log may hold beyond [limits] log-size: the
// runner's own line saying the limit was hit.
const remoteLogSlack = 4096

// RunnerAppendLog appends body, the bytes of a log from offset on (masked
// on the runner), to a log of a job the runner holds. Bytes the server
// already has (a retried upload) are skipped; an offset beyond the end is
// ECONFLICT. It returns the log's new size.
func (s *Service) RunnerAppendLog(ctx context.Context, jobID int64, task string, offset int64, body io.Reader) (int64, error) {
	_, job, err := s.heldJob(ctx, jobID, false)
	if err != nil {
		return 0, err
	}
	path, err := s.runnerLogPath(ctx, job, task)
	if err != nil {
		return 0, err
	}
	mu := s.logLock(path)
	mu.Lock()
	defer mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return 0, fmt.Errorf("create log dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("open log: %w", err)
	}
	size := fi.Size()
	if offset < 0 || offset > size {
		return size, Errorf(ECONFLICT, "the log has %d bytes; an append at %d would leave a gap", size, offset)
	}
	if _, err := io.CopyN(io.Discard, body, size-offset); err != nil && !errors.Is(err, io.EOF) {
		return size, fmt.Errorf("read log upload: %w", err)
	}
	limit := s.Config.Limits.LogSize
	if task == "" || limit == 0 {
		limit = 1 << 40
	}
	n, err := io.Copy(f, io.LimitReader(body, limit+remoteLogSlack-size))
	size += n
	if err != nil {
		return size, fmt.Errorf("append log: %w", err)
	}
	if extra, _ := io.Copy(io.Discard, io.LimitReader(body, 1)); extra > 0 {
		return size, Errorf(EINVALID, "the log is over its size limit of %s ([limits] log-size)", HumanSize(s.Config.Limits.LogSize))
	}
	if n > 0 {
		s.Logs.Open(jobID, task)
		s.Logs.Notify(jobID, task, size)
	}
	return size, nil
}

// logLock serializes appends to one log file.
func (s *Service) logLock(path string) *sync.Mutex {
	m, _ := s.logLocks.LoadOrStore(path, &sync.Mutex{})
	return m.(*sync.Mutex)
}

// RunnerLogsDone says a job's logs are complete: readers following them
// see their end.
func (s *Service) RunnerLogsDone(ctx context.Context, jobID int64) error {
	_, job, err := s.heldJob(ctx, jobID, false)
	if err != nil {
		return err
	}
	tasks, err := s.Store.FindTasks(ctx, job.ID)
	if err != nil {
		return err
	}
	s.Logs.Forget(jobID, "")
	s.logLocks.Delete(s.LogPath(jobID, ""))
	for _, t := range tasks {
		s.Logs.Forget(jobID, t.Name)
		s.logLocks.Delete(s.LogPath(jobID, t.Name))
	}
	return nil
}

// RunnerFinish stores the final status of a job the runner holds. A job
// that already left running is returned as it is.
func (s *Service) RunnerFinish(ctx context.Context, jobID int64, req FinishRequest) (*Job, error) {
	_, job, err := s.heldJob(ctx, jobID, false)
	if err != nil {
		return nil, err
	}
	if !req.Status.Final() {
		return nil, Errorf(EINVALID, "status: %q is not a final status", req.Status)
	}
	if len(req.Reason) > 4096 {
		req.Reason = req.Reason[:4096]
	}
	if job.Status != JobRunning {
		return job, nil
	}
	job, err = s.FinishJob(ctx, jobID, req.Status, req.Reason)
	if err != nil {
		return nil, err
	}
	s.revokeJobTokens(ctx, job)
	return job, nil
}

// jobTokenComment names the token minted for a job's oauth: grants.
func jobTokenComment(jobID int64) string { return fmt.Sprintf("build job #%d", jobID) }

// RunnerJobToken mints the OAuth token of a running job the runner holds
// (manifest oauth:): the owner's, with grants, until the job's deadline.
func (s *Service) RunnerJobToken(ctx context.Context, jobID int64, grants string) (*JobTokenReply, error) {
	_, job, err := s.heldJob(ctx, jobID, true)
	if err != nil {
		return nil, err
	}
	ttl := time.Hour
	if job.Deadline != nil {
		ttl = job.Deadline.Sub(s.now())
	}
	if ttl <= 0 {
		return nil, Errorf(ECONFLICT, "job %d is past its deadline", jobID)
	}
	secret, tok, err := s.CreateToken(ctx, job.OwnerID, grants, &ttl, jobTokenComment(jobID))
	if err != nil {
		return nil, err
	}
	return &JobTokenReply{Token: secret, ID: tok.ID}, nil
}

// RunnerRevokeJobToken deletes a token RunnerJobToken minted for the job.
func (s *Service) RunnerRevokeJobToken(ctx context.Context, jobID, tokenID int64) error {
	_, job, err := s.heldJob(ctx, jobID, false)
	if err != nil {
		return err
	}
	t, err := s.Store.FindTokenByID(ctx, tokenID)
	if err != nil || t.UserID != job.OwnerID || t.Comment != jobTokenComment(jobID) {
		return Errorf(ENOTFOUND, "job %d has no token %d", jobID, tokenID)
	}
	return s.Store.DeleteToken(ctx, tokenID)
}

// revokeJobTokens deletes what is left of a remote job's tokens once it
// ended (its runner may be gone).
func (s *Service) revokeJobTokens(ctx context.Context, job *Job) {
	toks, err := s.Store.FindTokens(ctx, job.OwnerID)
	if err != nil {
		s.Log.Error("revoke job tokens", "job_id", job.ID, "err", err)
		return
	}
	for _, t := range toks {
		if t.Comment == jobTokenComment(job.ID) {
			if err := s.Store.DeleteToken(ctx, t.ID); err != nil {
				s.Log.Error("revoke job token", "job_id", job.ID, "err", err)
			}
		}
	}
}

// RunnerSSHUser says whose key line key is, for `connect` on a runner.
func (s *Service) RunnerSSHUser(ctx context.Context, key string) (*SSHUserReply, error) {
	if _, err := requireRunner(ctx); err != nil {
		return nil, err
	}
	if len(key) > 16<<10 {
		return nil, Errorf(EINVALID, "key: longer than 16 KiB")
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key))
	if err != nil {
		return nil, Errorf(EINVALID, "key: not an SSH public key")
	}
	u, err := s.UserBySSHKey(ctx, pub)
	if err != nil {
		return nil, Errorf(ENOTFOUND, "no account has this key")
	}
	return &SSHUserReply{ID: u.ID, Username: u.Username}, nil
}

// runnerOwns reports whether a remote runner holds the job a task belongs
// to (updateTask from a runner).
func (s *Service) runnerOwnsTask(ctx context.Context, a *Auth, taskID int64) (int64, error) {
	a.mu.Lock()
	ids := make([]int64, 0, len(a.held))
	for id := range a.held {
		ids = append(ids, id)
	}
	a.mu.Unlock()
	for _, id := range ids {
		ts, err := s.Store.FindTasks(ctx, id)
		if err != nil {
			return 0, err
		}
		for _, t := range ts {
			if t.ID == taskID {
				if _, _, err := s.heldJob(ctx, id, false); err != nil {
					return 0, err
				}
				return id, nil
			}
		}
	}
	return 0, Errorf(ENOTFOUND, "no such task: %d", taskID)
}

// ExpireLeases fails the running jobs whose runner stopped polling, and
// drops the leases of ended jobs once they ran out. It returns how many
// jobs it failed.
func (s *Service) ExpireLeases(ctx context.Context) (int, error) {
	leases, err := s.Store.FindLeases(ctx)
	if err != nil {
		return 0, err
	}
	now := s.now()
	var names map[int64]string
	n := 0
	for _, l := range leases {
		if !l.Expires.Before(now) {
			break // soonest first
		}
		if names == nil {
			names = map[int64]string{}
			if rs, err := s.Store.FindRunners(ctx); err == nil {
				for _, r := range rs {
					names[r.ID] = r.Name
				}
			}
		}
		if s.endLease(ctx, l, names[l.RunnerID], fmt.Sprintf("its runner %s stopped answering; the lease ran out at %s",
			names[l.RunnerID], l.Expires.UTC().Format("2006-01-02 15:04:05 UTC"))) {
			n++
		}
	}
	return n, nil
}

// endLease fails the lease's job if it is still running (reporting
// whether it did) and drops the lease.
func (s *Service) endLease(ctx context.Context, l *JobLease, runner, reason string) bool {
	failed := false
	if job, err := s.Store.FindJobByID(ctx, l.JobID); err == nil && job.Status == JobRunning {
		s.SetupLogf(job.ID, "Error: %s; the job was marked failed.", reason)
		if tasks, err := s.Store.FindTasks(ctx, job.ID); err == nil {
			for _, t := range tasks {
				if t.Status == TaskRunning {
					s.Store.UpdateTaskStatus(ctx, t.ID, TaskFailed)
				}
			}
		}
		if job, err = s.FinishJob(ctx, job.ID, JobFailed, reason); err == nil && job.Status == JobFailed {
			failed = true
			s.Log.Warn("remote job failed: its lease ended", "job_id", job.ID, "runner", runner)
		}
		s.revokeJobTokens(ctx, job)
	}
	if err := s.Store.DeleteLease(ctx, l.JobID); err != nil {
		s.Log.Error("delete lease", "job_id", l.JobID, "err", err)
	}
	s.Logs.Forget(l.JobID, "")
	return failed
}

// WatchLeases expires leases until ctx ends. It first gives every lease
// a full term from now: runners polled a server that was down meanwhile,
// and their jobs must not fail for it.
func (s *Service) WatchLeases(ctx context.Context) {
	if rs, err := s.Store.FindRunners(ctx); err == nil {
		for _, r := range rs {
			if r.Revoked == nil {
				s.noteAddress(r.Report.Address)
			}
		}
	}
	if err := s.Store.ExtendLeases(ctx, s.now().Add(s.lease())); err != nil {
		s.Log.Error("extend leases", "err", err)
	}
	tick := time.NewTicker(max(s.lease()/6, 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if _, err := s.ExpireLeases(ctx); err != nil && ctx.Err() == nil {
				s.Log.Error("expire leases", "err", err)
			}
		}
	}
}

// noteAddress takes note of a runner's SSH address: one with a port
// other than 22 makes the API publish sshUser as ssh://<user>, which
// `hut builds ssh` then joins with job.runner into a destination URI
// OpenSSH reads (ssh://builds@host:port). A plain ssh user with host:port
// would not reach it. The URI form works for port 22 too, so once set it
// stays set.
func (s *Service) noteAddress(addr string) {
	if host, port, err := net.SplitHostPort(addr); err == nil && port != "22" && !strings.Contains(host, ":") {
		s.sshURI.Store(true)
	}
}

// APISSHUser returns Settings.sshUser as the API reports it: the
// configuration's (Config.APISSHUser), or ssh://<user> once a remote
// runner listens off port 22 (noteAddress).
func (s *Service) APISSHUser() string {
	u := s.Config.APISSHUser()
	if s.sshURI.Load() && !strings.HasPrefix(u, "ssh://") {
		return "ssh://" + u
	}
	return u
}
