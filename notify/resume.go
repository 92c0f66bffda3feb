package notify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"builds/app"
)

// Trigger processing is durable and at least once. The JOB_UPDATED event
// that starts a final job's triggers lives only in memory, so the database
// keeps the state: a job's triggers are marked done (MarkTriggersDone) only
// once they have been processed to the end, and every Start resumes the
// final jobs left unmarked by a process that died or was stopped first.
//
// Marking at the end rather than claiming in the database up front means a
// crash can never lose a trigger; the price is that one in flight at the
// crash may be sent again. Resuming skips every trigger already recorded
// as sent, so that is the only duplicate. Within one process a job is
// processed by one goroutine at a time (jobsBusy), and each one first
// re-reads the durable mark, so the live event and the start-up scan never
// both send: whichever comes second finds the job busy or marked.
//
// Group triggers ride on the processing of the member job that completes
// the group, and their durable mark is the group's fired flag, set after
// they were sent. A job whose group triggers were cut short is not marked
// done either, so it resumes them.

// resumeBatch is how many unprocessed jobs the start-up scan reads at once.
const resumeBatch = 50

// startJob processes a final job's triggers in a goroutine, unless this
// process is processing them already. The event loop calls it also while
// draining at Close; the start-up scan sets whileOpen to start nothing once
// Close has begun. done, if not nil, runs when processing ends. startJob
// reports whether it started.
func (d *Dispatcher) startJob(job *app.Job, whileOpen bool, done func()) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if (whileOpen && d.closing) || d.jobsBusy[job.ID] {
		return false
	}
	d.jobsBusy[job.ID] = true
	d.goTriggers(func() {
		defer func() {
			// After processJob's mark: the next claimant sees it.
			d.mu.Lock()
			delete(d.jobsBusy, job.ID)
			d.mu.Unlock()
			if done != nil {
				done()
			}
		}()
		d.processJob(d.ctx, job)
	})
	return true
}

// processJob runs a final job's triggers and its group's, unless they are
// marked done, and marks them done when both ran to the end.
func (d *Dispatcher) processJob(ctx context.Context, job *app.Job) {
	done, err := d.svc.Store.TriggersDone(ctx, job.ID)
	if app.ErrorCode(err) == app.ENOTFOUND {
		return // deleted with its owner meanwhile
	}
	if err != nil {
		d.log.Error("notify: read trigger state; triggers resume at the next start", "job_id", job.ID, "err", err)
		return
	}
	if done {
		return
	}
	var jobErr, groupErr error
	var wg sync.WaitGroup
	wg.Go(func() { jobErr = d.jobTriggers(ctx, job) })
	if job.GroupID != nil {
		wg.Go(func() { groupErr = d.groupTriggers(ctx, job) })
	}
	wg.Wait()
	if err := errors.Join(jobErr, groupErr); err != nil {
		d.log.Warn("notify: triggers not finished; they resume at the next start", "job_id", job.ID, "err", err)
		return
	}
	// Record the end even if Close cuts network work short just now.
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	set, err := d.svc.Store.MarkTriggersDone(mctx, job.ID)
	switch {
	case app.ErrorCode(err) == app.ENOTFOUND:
	case err != nil:
		d.log.Error("notify: mark triggers done; they resume at the next start", "job_id", job.ID, "err", err)
	case !set:
		d.log.Warn("notify: triggers were marked done by someone else too", "job_id", job.ID)
	}
}

// interrupted is the error of trigger processing that ctx cut short, nil
// when ctx is still live.
func interrupted(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted by shutdown: %w", err)
	}
	return nil
}

// resume processes the triggers of final jobs that no process finished
// processing, oldest first, at most Concurrency at a time. Jobs finishing
// now are handled by their events and skipped here while busy.
func (d *Dispatcher) resume(ctx context.Context) {
	defer close(d.resumeDone)
	sem := make(chan struct{}, max(d.Concurrency, 1))
	var after int64
	started := 0
	for {
		jobs, err := d.svc.Store.FindJobsAwaitingTriggers(ctx, after, resumeBatch)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Error("notify: find jobs awaiting triggers; they resume at the next start", "err", err)
			}
			return
		}
		for _, job := range jobs {
			after = job.ID
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			if d.startJob(job, true, func() { <-sem }) {
				started++
				continue
			}
			<-sem
			if d.isClosing() {
				return
			}
		}
		if len(jobs) < resumeBatch {
			break
		}
	}
	if started > 0 {
		d.log.Info("notify: resumed triggers of jobs that finished while they could not run", "jobs", started)
	}
}

func (d *Dispatcher) isClosing() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closing
}

// claimGroup reserves sending a group's triggers to the caller within this
// process; false means another job of the group is sending them.
func (d *Dispatcher) claimGroup(groupID int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.groupsBusy[groupID] {
		return false
	}
	d.groupsBusy[groupID] = true
	return true
}

func (d *Dispatcher) releaseGroup(groupID int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.groupsBusy, groupID)
}

// sentBefore counts the triggers recorded as sent on jobs (by target)
// for the manifest (groupID nil) or for group groupID, so that resumed
// processing does not send them again.
func (d *Dispatcher) sentBefore(ctx context.Context, jobs []*app.Job, groupID *int64) (map[string]int, error) {
	sent := map[string]int{}
	for _, j := range jobs {
		recs, err := d.svc.Store.FindTriggerDeliveries(ctx, j.ID)
		if err != nil {
			return nil, fmt.Errorf("find trigger deliveries: %w", err)
		}
		for _, r := range recs {
			if r.Status != "sent" || (r.GroupID == nil) != (groupID == nil) || (groupID != nil && *r.GroupID != *groupID) {
				continue
			}
			sent[sentKey(r.Action, r.Target)]++
		}
	}
	return sent, nil
}

func sentKey(action, target string) string { return action + "\x00" + target }
