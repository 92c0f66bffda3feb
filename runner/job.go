package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"builds/app"
)

// jobRun is one job from claim to teardown.
type jobRun struct {
	p        *Pool
	srv      Server
	cfg      *app.Config
	cj       *app.ClaimedJob
	job      *app.Job
	owner    *app.User
	m        *app.Manifest
	tasks    []*app.Task
	deadline time.Time

	ctx     context.Context // ends at the deadline, on cancel or shutdown
	cancel  context.CancelCauseFunc
	release context.CancelFunc // frees the deadline timer

	setup       *app.LogWriter
	mask        *app.Masker
	guest       Guest
	revoke      func(context.Context) error // deletes the job-scoped API token
	tokenSecret string

	stepsDone chan struct{} // closed when the manifest's steps are over
	finished  chan struct{} // closed once the final status is stored

	mu        sync.Mutex
	sessions  int  // `connect` shells attached to the VM
	claimed   bool // someone connected: keep the VM until the deadline
	claimedCh chan struct{}
	stepsOnce sync.Once
	finOnce   sync.Once
	finishing atomic.Bool // this run is storing the final status itself
}

func newJobRun(p *Pool, cj *app.ClaimedJob) *jobRun {
	deadline := time.Now().Add(p.cfg.Runner.JobTimeout)
	if cj.Job.Deadline != nil {
		deadline = *cj.Job.Deadline
	}
	ctx, cancel := context.WithCancelCause(p.base)
	ctx, release := context.WithDeadline(ctx, deadline)
	m := cj.Manifest
	if !cj.Job.Secrets {
		// Secrets disabled for this job: nothing is installed and no
		// token is minted (behaviour.md §1.7).
		cp := *m
		cp.Secrets, cp.OAuth = nil, ""
		m = &cp
	}
	return &jobRun{
		p: p, srv: p.srv, cfg: p.cfg, cj: cj,
		job: cj.Job, owner: cj.Owner, m: m, tasks: cj.Tasks, deadline: deadline,
		ctx: ctx, cancel: cancel, release: release,
		mask:      &app.Masker{},
		stepsDone: make(chan struct{}),
		finished:  make(chan struct{}),
		claimedCh: make(chan struct{}),
	}
}

// logf writes a runner line to the setup log.
func (r *jobRun) logf(format string, args ...any) { r.setup.Printf(format, args...) }

// run executes the job up to its final status. It reports whether the
// failed job's VM should now be kept for `connect` (standby); either way
// the caller ends with cleanup.
func (r *jobRun) run() (standby bool) {
	id := r.job.ID
	setup, err := r.srv.OpenLog(id, "", r.mask)
	if err != nil {
		r.p.log.Error("open setup log", "job_id", id, "err", err)
		r.finish(app.JobFailed, err.Error())
		return false
	}
	r.setup = setup
	r.p.log.Info("job started", "job_id", id, "image", r.m.Image, "deadline", r.deadline)

	err = r.checkNetwork()
	if err == nil {
		err = r.boot()
	}
	if err == nil {
		if r.m.Shell {
			r.shellBanner()
		}
		err = r.steps()
	}
	r.endSteps()
	if err == nil {
		if r.m.Shell {
			r.waitShell()
		}
		if errors.Is(context.Cause(r.ctx), errCancelled) {
			r.fail(errCancelled)
			return false
		}
		r.finish(app.JobSuccess, "")
		return false
	}
	st := r.fail(err)
	return st == app.JobFailed && r.guest != nil && r.cfg.Runner.FailedKeepalive > 0 &&
		!errors.Is(context.Cause(r.ctx), errShutdown)
}

// cleanup tears the VM down, revokes the job's token and closes the logs.
func (r *jobRun) cleanup() {
	defer r.release()
	defer r.cancel(nil)
	r.endSteps()
	if r.guest != nil {
		r.teardown()
	}
	r.revokeToken()
	if r.setup != nil {
		r.setup.Close()
	}
	r.endLogs()
}

// endLogs tells the server the job's logs are complete.
func (r *jobRun) endLogs() {
	names := make([]string, len(r.tasks))
	for i, t := range r.tasks {
		names[i] = t.Name
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), time.Minute)
	defer cancel()
	r.srv.EndLogs(ctx, r.job.ID, names)
}

// boot starts the guest.
func (r *jobRun) boot() error {
	arch := r.m.Arch
	if arch == "" {
		arch = "default"
	}
	spec := BootSpec{JobID: r.job.ID, Image: r.m.Image, Arch: r.m.Arch, Console: r.setup, Logf: r.logf,
		Install: r.m, NoLayer: noLayer(r.m)}
	start := time.Now()
	g, err := r.p.booter.Boot(r.ctx, spec)
	if err != nil {
		if cause := context.Cause(r.ctx); cause != nil {
			return cause
		}
		return fmt.Errorf("boot: %w", err)
	}
	r.guest = g
	r.p.log.Debug("guest ready", "job_id", r.job.ID, "image", r.m.Image, "arch", arch, "boot", time.Since(start))
	return nil
}

// checkNetwork fails a job that needs a package mirror up front when the
// runner's guests reach nothing at all, rather than after a boot and a
// long apt timeout.
func (r *jobRun) checkNetwork() error {
	rc := r.cfg.Runner
	if rc.GuestNetwork != app.GuestNone || len(rc.GuestAllow) > 0 {
		return nil
	}
	what := ""
	switch {
	case len(r.m.Packages) > 0:
		what = "packages"
	case len(r.m.Repositories) > 0:
		what = "repositories"
	default:
		return nil
	}
	return fmt.Errorf("%s: build VMs on this runner have no network ([runner] guest-network = none), so no package mirror can be reached", what)
}

// teardown stops the VM.
func (r *jobRun) teardown() {
	r.logf("Tearing down build VM")
	if err := r.guest.Close(); err != nil {
		r.p.log.Error("tear down VM", "job_id", r.job.ID, "err", err)
	}
}

func (r *jobRun) endSteps() { r.stepsOnce.Do(func() { close(r.stepsDone) }) }

// status maps how the job ended to its final status.
func (r *jobRun) status(err error) app.JobStatus {
	switch cause := context.Cause(r.ctx); {
	case errors.Is(cause, errCancelled):
		return app.JobCancelled
	case errors.Is(cause, context.DeadlineExceeded):
		return app.JobTimeout
	case errors.Is(err, context.DeadlineExceeded):
		return app.JobTimeout
	}
	return app.JobFailed
}

// fail records a failed, timed-out or cancelled job and returns the
// status.
func (r *jobRun) fail(err error) app.JobStatus {
	st := r.status(err)
	msg := err.Error()
	switch st {
	case app.JobTimeout:
		msg = fmt.Sprintf("the job exceeded its time limit of %s", r.cfg.JobTimeoutString())
	case app.JobCancelled:
		msg = withBy(errCancelled.Error(), context.Cause(r.ctx))
	}
	r.logf("Error: %s", msg)
	r.finish(st, msg)
	return st
}

// finish stores the final status once.
func (r *jobRun) finish(st app.JobStatus, reason string) {
	r.finOnce.Do(func() {
		defer close(r.finished)
		r.finishing.Store(true)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), 30*time.Second)
		defer cancel()
		job, err := r.srv.FinishJob(ctx, r.job.ID, st, reason)
		if err != nil {
			r.p.log.Error("finish job", "job_id", r.job.ID, "status", st, "err", err)
			return
		}
		r.p.log.Debug("final status stored", "job_id", r.job.ID, "status", job.Status)
	})
}

// statusChanged is told that the stored status left RUNNING: the owner
// cancelled the job, or the worker API moved it. Unless this run is
// storing its own final status, the run stops.
func (r *jobRun) statusChanged(job *app.Job) {
	if r.finishing.Load() {
		return
	}
	if job.Status == app.JobCancelled {
		r.cancel(&cancellation{reason: job.Reason, at: job.Updated})
	} else {
		r.cancel(fmt.Errorf("the job's status changed to %s", strings.ToUpper(string(job.Status))))
	}
}

// shellBanner tells the user how to log in (shell: true).
func (r *jobRun) shellBanner() {
	r.logf("Shell access for this build was requested.")
	r.logf("To log in with SSH, use the following command:")
	r.logf("\t%s", r.connectCommand())
}

func (r *jobRun) connectCommand() string {
	return r.cfg.ConnectCommand(r.job.ID)
}

// waitShell keeps a successful shell: true job's VM until the deadline,
// a cancel, or the last connected user logging out.
func (r *jobRun) waitShell() {
	<-r.ctx.Done()
}

// standby keeps a failed job's VM for [runner] failed-keepalive so the
// owner can connect (behaviour.md §1.11); a connection extends it to the
// job deadline. The job's status is already final, so the pool runs this
// outside its slots: an idle failed VM does not hold up the queue.
func (r *jobRun) standby() {
	keep := r.cfg.Runner.FailedKeepalive
	r.logf("Build failed.")
	r.logf("The build environment will be kept alive for %s.", humanDuration(keep))
	r.logf("To log in with SSH and examine it, use the following command:")
	r.setup.Write([]byte("\n"))
	r.setup.Write([]byte("\t" + r.connectCommand() + "\n"))
	r.setup.Write([]byte("\n"))
	r.logf("After logging in, the deadline is increased to your remaining build time.")
	timer := time.NewTimer(keep)
	defer timer.Stop()
	select {
	case <-timer.C:
		r.mu.Lock()
		claimed := r.claimed
		r.mu.Unlock()
		if !claimed {
			r.logf("Deadline elapsed. Terminating build environment.")
			return
		}
		<-r.ctx.Done()
	case <-r.claimedCh:
		<-r.ctx.Done()
	case <-r.ctx.Done():
	}
	switch cause := context.Cause(r.ctx); {
	case errors.Is(cause, errTerminated):
		r.logf("Logged out. Terminating build environment.")
	case errors.Is(cause, context.DeadlineExceeded):
		r.logf("Deadline elapsed. Terminating build environment.")
	case errors.Is(cause, errShutdown):
		r.logf("Error: %s. Terminating build environment.", errShutdown)
	default:
		r.logf("Build cancelled. Terminating build environment.")
	}
}

// attach registers a `connect` session; the returned func detaches it.
// The first attach claims the VM (standby lasts until the deadline); when
// the last session detaches, the job's VM is torn down.
func (r *jobRun) attach() (detach func()) {
	r.mu.Lock()
	r.sessions++
	if !r.claimed {
		r.claimed = true
		close(r.claimedCh)
	}
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			r.sessions--
			last := r.sessions == 0
			r.mu.Unlock()
			if last {
				r.cancel(errTerminated)
			}
		})
	}
}

// humanDuration renders a duration the way the banners say it:
// "10 minutes", "1 hour", "45 seconds".
func humanDuration(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return plural(int64(d/time.Hour), "hour")
	case d >= time.Minute:
		return plural(int64((d+30*time.Second)/time.Minute), "minute")
	}
	return plural(int64((d+500*time.Millisecond)/time.Second), "second")
}
