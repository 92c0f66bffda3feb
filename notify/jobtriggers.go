package notify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"builds/app"
)

// This file is the main trigger path: what happens to a job that reached
// a final status (processJob: its manifest's triggers, then its group's)
// and the start-up scan that resumes jobs an earlier process left
// unfinished (resume). trigger.go runs one trigger; email.go and
// webhook.go send it.
//
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

// resume processes the triggers of final jobs that no process finished
// processing, oldest first, at most Concurrency at a time. Jobs finishing
// now are handled by their events and skipped here while busy.
func (d *Dispatcher) resume(ctx context.Context) {
	defer close(d.resumeDone)
	sem := make(chan struct{}, max(d.Concurrency, 1))
	var after int64
	started := 0
	for {
		jobs, err := d.svc.JobsAwaitingTriggers(ctx, after, resumeBatch)
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

// processJob runs a final job's triggers and its group's, unless they are
// marked done, and marks them done when both ran to the end.
func (d *Dispatcher) processJob(ctx context.Context, job *app.Job) {
	done, err := d.svc.TriggersDone(ctx, job.ID)
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
	set, err := d.svc.MarkTriggersDone(mctx, job.ID)
	switch {
	case app.ErrorCode(err) == app.ENOTFOUND:
	case err != nil:
		d.log.Error("notify: mark triggers done; they resume at the next start", "job_id", job.ID, "err", err)
	case !set:
		d.log.Warn("notify: triggers were marked done by someone else too", "job_id", job.ID)
	}
}

// jobTriggers runs the manifest's triggers of a job that reached a final
// status. They never change the job. An error means processing did not
// finish (a store error, or ctx ended) and should be resumed later; a
// manifest that no longer parses is logged and counts as processed.
func (d *Dispatcher) jobTriggers(ctx context.Context, job *app.Job) error {
	m, err := app.ParseManifest([]byte(job.Manifest), max(len(job.Manifest), app.DefaultManifestMaxSize))
	if err != nil {
		d.log.Error("notify: manifest of finished job does not parse", "job_id", job.ID, "err", err)
		return nil
	}
	if len(m.Triggers) == 0 {
		return nil
	}
	owner, err := d.svc.User(ctx, job.OwnerID)
	if err != nil {
		return fmt.Errorf("find job owner: %w", err)
	}
	tasks, err := d.svc.Tasks(ctx, job)
	if err != nil {
		return fmt.Errorf("find tasks: %w", err)
	}
	sent, err := d.sentBefore(ctx, []*app.Job{job}, nil)
	if err != nil {
		return err
	}
	r := &run{
		jobID:  job.ID,
		status: job.Status,
		email: func() (string, string) {
			return jobEmail(d.cfg, job, owner, tasks, jobEnd(job, d.svc.Now()))
		},
		payload: func() any { return newJobPayload(d.cfg, job, owner, tasks) },
		sent:    sent,
	}
	d.svc.SetupLogf(job.ID, "Processing post-%s triggers...", job.Status)
	for _, t := range m.Triggers {
		d.runTrigger(ctx, r, trigger{action: t.Action, condition: t.Condition, to: t.To, cc: t.Cc, inReplyTo: t.InReplyTo, url: t.URL})
	}
	return interrupted(ctx)
}

// jobEnd is when a job finished (now if the store has no time).
func jobEnd(job *app.Job, now time.Time) time.Time {
	if job.Finished != nil {
		return *job.Finished
	}
	return now
}

// groupTriggers runs a group's triggers if job's group is complete and
// its triggers have not fired. Each caller reads the group after its own
// job's final status was committed, so the last one to finish always sees
// the group complete. Of the callers that do, the first to claim the group
// in this process sends the triggers and then sets the group's fired flag;
// the others find the group claimed or fired and leave it. Setting the
// flag after sending means a crash in between leaves it unset, and the
// sender's job (not marked done either) resumes the triggers at the next
// start. An error means processing did not finish, as for jobTriggers.
func (d *Dispatcher) groupTriggers(ctx context.Context, job *app.Job) error {
	gid := *job.GroupID
	g, err := d.svc.Group(ctx, gid)
	if err != nil {
		return fmt.Errorf("find group %d: %w", gid, err)
	}
	jobs, err := d.svc.GroupJobs(ctx, g)
	if err != nil {
		return fmt.Errorf("find jobs of group %d: %w", gid, err)
	}
	for _, j := range jobs {
		if !j.Status.Final() {
			return nil
		}
	}
	if !d.claimGroup(gid) {
		return nil
	}
	defer d.releaseGroup(gid)
	// Read the fired flag again, under the claim: another job of the
	// group may have sent the triggers and let go of the claim since the
	// first read.
	if g, err = d.svc.Group(ctx, gid); err != nil {
		return fmt.Errorf("find group %d: %w", gid, err)
	}
	if g.Fired {
		return nil
	}
	if err := d.sendGroupTriggers(ctx, job, g, jobs); err != nil {
		return err
	}
	fired, err := d.svc.MarkGroupFired(ctx, gid)
	if err != nil {
		return fmt.Errorf("mark group %d fired: %w", gid, err)
	}
	if !fired {
		d.log.Warn("notify: group triggers were fired by someone else too", "group_id", gid)
	}
	return nil
}

// sendGroupTriggers runs the triggers of complete group g from job,
// skipping those an interrupted earlier run sent.
func (d *Dispatcher) sendGroupTriggers(ctx context.Context, job *app.Job, g *app.JobGroup, jobs []*app.Job) error {
	triggers, err := d.svc.GroupTriggers(ctx, g)
	if err != nil {
		return fmt.Errorf("find triggers of group %d: %w", g.ID, err)
	}
	if len(triggers) == 0 {
		return nil
	}
	owner, err := d.svc.User(ctx, g.OwnerID)
	if err != nil {
		return fmt.Errorf("find owner of group %d: %w", g.ID, err)
	}
	sent, err := d.sentBefore(ctx, jobs, &g.ID)
	if err != nil {
		return err
	}
	slices.SortFunc(jobs, func(a, b *app.Job) int { return int(a.ID - b.ID) })
	status := groupStatus(jobs)
	r := &run{
		jobID:   job.ID,
		groupID: &g.ID,
		status:  status,
		email: func() (string, string) {
			return groupEmail(d.cfg, g, status, jobs, owner, jobEnd(job, d.svc.Now()))
		},
		payload: func() any { return d.newGroupPayload(ctx, g, status, jobs, owner) },
		sent:    sent,
	}
	d.svc.SetupLogf(job.ID, "Processing post-%s triggers of job group #%d...", status, g.ID)
	for _, t := range triggers {
		d.runTrigger(ctx, r, trigger{action: t.Action, condition: t.Condition, to: t.To, cc: t.Cc, inReplyTo: t.InReplyTo, url: t.URL})
	}
	return interrupted(ctx)
}

// groupStatus is SUCCESS when every job succeeded, else the status of the
// last job (by id) that did not.
func groupStatus(jobs []*app.Job) app.JobStatus {
	status := app.JobSuccess
	for _, j := range jobs {
		if j.Status != app.JobSuccess {
			status = j.Status
		}
	}
	return status
}

// interrupted is the error of trigger processing that ctx cut short, nil
// when ctx is still live.
func interrupted(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted by shutdown: %w", err)
	}
	return nil
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
		recs, err := d.svc.TriggerDeliveries(ctx, j)
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
