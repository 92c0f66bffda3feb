package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"builds/app"
)

// Why a job's context ended, besides its deadline.
var (
	errCancelled  = errors.New("the job was cancelled")
	errShutdown   = errors.New("the builds service is shutting down")
	errTerminated = errors.New("the last SSH session logged out")
)

// cancellation is the cause of a run's end when its job was cancelled:
// it says by whom (the job's stored reason, "cancelled by alice") and
// when, for the log of the task it stopped.
type cancellation struct {
	reason string
	at     time.Time
}

func (c *cancellation) Error() string   { return errCancelled.Error() }
func (c *cancellation) Is(e error) bool { return e == errCancelled }

// cancelledBy says by whom and when a run was cancelled ("by alice at
// 2026-12-04 03:52:10 UTC"), or "" when cause does not tell.
func cancelledBy(cause error) string {
	var c *cancellation
	if !errors.As(cause, &c) {
		return ""
	}
	by, ok := strings.CutPrefix(c.reason, "cancelled ")
	switch {
	case ok && by != "":
	case c.reason != "":
		by = "(" + c.reason + ")"
	default:
		by = "by its owner"
	}
	return by + " at " + c.at.UTC().Format("2006-01-02 15:04:05 UTC")
}

// withBy appends cancelledBy(cause) to s.
func withBy(s string, cause error) string {
	if by := cancelledBy(cause); by != "" {
		return s + " " + by
	}
	return s
}

// Pool runs up to [runner] slots jobs at once. The jobs table is the
// queue. The pool listens to the Service's job changes: a job that
// becomes queued wakes an idle slot at once (a slow ticker is only a
// fallback), and a job of the pool's that leaves running (cancelled by
// its owner, say) has its VM stopped.
type Pool struct {
	srv    Server
	cfg    *app.Config
	booter Booter
	log    *slog.Logger

	// IdlePoll is how often idle slots look at the queue without a Wake.
	IdlePoll time.Duration

	wake     chan struct{}
	quit     chan struct{}
	quitOnce sync.Once
	wg       sync.WaitGroup
	base     context.Context
	stop     context.CancelCauseFunc

	mu   sync.Mutex
	jobs map[int64]*jobRun
	busy atomic.Int32 // slots running a job (not counting standbys)
}

var _ app.JobListener = (*Pool)(nil)

// NewPool returns a pool that boots guests with booter and listens to
// srv's job changes.
func NewPool(srv Server, cfg *app.Config, booter Booter, log *slog.Logger) *Pool {
	if log == nil {
		log = slog.Default()
	}
	base, stop := context.WithCancelCause(context.Background())
	return &Pool{
		srv: srv, cfg: cfg, booter: booter, log: log,
		IdlePoll: 30 * time.Second,
		wake:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		base:     base,
		stop:     stop,
		jobs:     map[int64]*jobRun{},
	}
}

// Start recovers from a previous process (jobs it left running are
// failed, its VMs killed and their work dirs removed) and starts the slots.
// With [runner] slots = 0 only the recovery runs.
func (p *Pool) Start(ctx context.Context) error {
	if err := p.srv.Start(ctx, p); err != nil {
		return err
	}
	if err := cleanWorkDir(p.cfg.Runner.WorkDir, p.log); err != nil {
		return err
	}
	for i := 0; i < p.cfg.Runner.Slots; i++ {
		p.wg.Add(1)
		go p.slot()
	}
	p.Wake()
	return nil
}

// Wake makes an idle slot look at the queue now. It never blocks.
func (p *Pool) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// JobChanged implements app.JobListener: queued jobs wake a slot; a job
// this pool runs that the Service moved out of running (not by the pool
// itself) is stopped, its VM torn down within seconds.
func (p *Pool) JobChanged(ctx context.Context, event app.WebhookEvent, job *app.Job) {
	switch job.Status {
	case app.JobQueued:
		p.Wake()
	case app.JobRunning, app.JobPending:
	default:
		if r := p.job(job.ID); r != nil {
			r.statusChanged(job)
		}
	}
}

// stopRun ends a run this pool holds, whatever its state, as a cancel
// would (a failed job's standby ends at once); tests and benchmarks use
// it to free a VM.
func (p *Pool) stopRun(id int64) bool {
	r := p.job(id)
	if r == nil {
		return false
	}
	r.cancel(errCancelled)
	return true
}

// Close stops taking jobs, stops the running ones (they are marked
// failed) and waits until every VM is gone.
func (p *Pool) Close() error {
	p.quitOnce.Do(func() {
		close(p.quit)
		p.stop(errShutdown)
	})
	p.wg.Wait()
	return nil
}

func (p *Pool) job(id int64) *jobRun {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.jobs[id]
}

// slot is one worker: claim, run, repeat.
func (p *Pool) slot() {
	defer p.wg.Done()
	tick := time.NewTicker(p.IdlePoll)
	defer tick.Stop()
	for {
		select {
		case <-p.quit:
			return
		default:
		}
		cj, err := p.srv.Claim(p.base)
		switch {
		case err == nil:
			// Another job may be queued behind this one: let the next
			// idle slot look too.
			p.Wake()
			p.busy.Add(1)
			p.run(cj)
			p.busy.Add(-1)
			if l, ok := p.srv.(interface{ SlotFreed() }); ok {
				l.SlotFreed()
			}
			continue
		case app.ErrorCode(err) != app.ENOTFOUND:
			if !errors.Is(context.Cause(p.base), errShutdown) {
				p.log.Error("claim job", "err", err)
			}
		}
		select {
		case <-p.quit:
			return
		case <-p.wake:
		case <-tick.C:
		}
	}
}

// run executes one claimed job to its end.
func (p *Pool) run(cj *app.ClaimedJob) {
	r := newJobRun(p, cj)
	p.mu.Lock()
	p.jobs[cj.Job.ID] = r
	p.mu.Unlock()
	// A change announced between the claim and the line above found no
	// run to stop: look once.
	if job, err := p.srv.CurrentJob(app.SystemContext(p.base), cj.Job.ID); err == nil && job.Status != app.JobRunning {
		r.statusChanged(job)
	}
	done := func() {
		r.cleanup()
		p.mu.Lock()
		delete(p.jobs, cj.Job.ID)
		p.mu.Unlock()
	}
	if !r.run() {
		done()
		return
	}
	// The slot is still counted in wg, so this Add cannot race Close's Wait.
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		r.standby()
		done()
	}()
}

// cleanWorkDir kills the QEMU processes a previous process left behind
// and removes their work dirs. A leftover QEMU is found through a pid file
// in a work dir or, as QEMU's own command line names its overlay in the
// work dir, by scanning /proc.
func cleanWorkDir(dir string, log *slog.Logger) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("clean work dir: %w", err)
	}
	ents, err := os.ReadDir(abs)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("clean work dir: %w", err)
	}
	pids := qemusUsing(abs)
	for _, e := range ents {
		pidFiles, _ := filepath.Glob(filepath.Join(abs, e.Name(), "*.pid"))
		for _, pf := range pidFiles {
			if pid := leftoverQEMU(pf); pid > 0 {
				pids[pid] = true
			}
		}
	}
	for pid := range pids {
		log.Warn("killing a VM left by a previous process", "pid", pid)
		killGroup(pid)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		d := filepath.Join(abs, e.Name())
		if err := os.RemoveAll(d); err != nil {
			log.Error("remove leftover VM dir", "dir", d, "err", err)
		}
	}
	return nil
}

// qemusUsing returns the QEMU processes with an argument inside dir.
func qemusUsing(dir string) map[int]bool {
	out := map[int]bool{}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if !strings.HasPrefix(filepath.Base(args[0]), "qemu") {
			continue
		}
		for _, a := range args[1:] {
			if strings.Contains(a, dir+string(filepath.Separator)) {
				out[pid] = true
				break
			}
		}
	}
	return out
}

// leftoverQEMU returns the pid in a pid file if that process is still a
// QEMU (pids get reused), else 0.
func leftoverQEMU(pidFile string) int {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0
	}
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmd), "qemu") {
		return 0
	}
	return pid
}

// killGroup kills a process (and its group if it leads one) and waits up
// to 5 s for it to disappear; it is not our child, so init reaps it.
func killGroup(pid int) {
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
		syscall.Kill(-pid, syscall.SIGKILL)
	} else {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for i := 0; i < 50; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
