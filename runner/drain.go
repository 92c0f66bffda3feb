package runner

import (
	"fmt"
	"time"
)

// Drain is the graceful stop of the pool: it takes no new job (queued
// ones stay queued), waits up to grace for the jobs still running to
// reach their final status, then cancels those left, saying why in their
// logs, and stops everything else (failed jobs' kept VMs, warm guests)
// as Close does. It returns how many jobs it cancelled. Close must still
// be called to wait for the VMs to go.
func (p *Pool) Drain(grace time.Duration) int {
	cancelled := 0
	p.quitOnce.Do(func() {
		close(p.quit)
		deadline := time.NewTimer(grace)
		defer deadline.Stop()
		for _, r := range p.running() {
			select {
			case <-r.finished:
				continue
			case <-deadline.C:
			}
			break
		}
		reason := fmt.Sprintf("the builds service stopped and the job did not finish within [runner] shutdown-grace (%s)", grace)
		for _, r := range p.running() {
			select {
			case <-r.finished:
			default:
				r.cancel(&cancellation{reason: reason, at: time.Now()})
				cancelled++
			}
		}
		// wait (a while) for the cancelled jobs' final status, then stop
		// the rest
		stored := time.NewTimer(30 * time.Second)
		defer stored.Stop()
	wait:
		for _, r := range p.running() {
			select {
			case <-r.finished:
			case <-stored.C:
				break wait
			}
		}
		p.stop(errShutdown)
	})
	return cancelled
}

// running returns the runs the pool holds (kept VMs of final jobs too;
// their finished channel is closed).
func (p *Pool) running() []*jobRun {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*jobRun, 0, len(p.jobs))
	for _, r := range p.jobs {
		out = append(out, r)
	}
	return out
}
