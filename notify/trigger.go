package notify

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"slices"
	"strings"
	"time"

	"builds/app"
)

// fires reports whether a trigger with condition cond runs for a final
// status: always, success (SUCCESS) or failure (FAILED, TIMEOUT,
// CANCELLED).
func fires(cond string, status app.JobStatus) bool {
	switch cond {
	case "always":
		return status.Final()
	case "success":
		return status == app.JobSuccess
	case "failure":
		return status.Failure()
	}
	return false
}

// trigger is what a manifest or group trigger needs to run: where to write
// the log lines and delivery records, and how to build the payloads.
type trigger struct {
	action, condition string
	to, cc, inReplyTo string
	url               string
}

// target is what a delivery record names as the trigger's destination:
// the URL, or the email recipients.
func (t trigger) target() string {
	if t.action != "email" {
		return t.url
	}
	return strings.Trim(strings.TrimSpace(strings.Join([]string{t.to, t.cc}, ", ")), ", ")
}

// run is one batch of triggers about a final status.
type run struct {
	jobID   int64  // setup log and delivery records
	groupID *int64 // set for group triggers
	status  app.JobStatus
	email   func() (subject, body string)
	payload func() any // webhook JSON
	// sent counts, by sentKey, the triggers of this batch that an earlier,
	// interrupted processing already sent; they are not sent again.
	sent map[string]int
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
	owner, err := d.svc.Store.FindUserByID(ctx, job.OwnerID)
	if err != nil {
		return fmt.Errorf("find job owner: %w", err)
	}
	tasks, err := d.svc.Store.FindTasks(ctx, job.ID)
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
	jobs, err := d.svc.Store.FindJobs(ctx, app.JobFilter{GroupID: &gid})
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
	g, err := d.svc.Store.FindGroupByID(ctx, gid)
	if err != nil {
		return fmt.Errorf("find group %d: %w", gid, err)
	}
	if g.Fired {
		return nil
	}
	if err := d.sendGroupTriggers(ctx, job, g, jobs); err != nil {
		return err
	}
	fired, err := d.svc.Store.MarkGroupFired(ctx, gid)
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
	triggers, err := d.svc.Store.FindGroupTriggers(ctx, g.ID)
	if err != nil {
		return fmt.Errorf("find triggers of group %d: %w", g.ID, err)
	}
	if len(triggers) == 0 {
		return nil
	}
	owner, err := d.svc.Store.FindUserByID(ctx, g.OwnerID)
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

// runTrigger runs one trigger if its condition holds, logging and
// recording every attempt.
func (d *Dispatcher) runTrigger(ctx context.Context, r *run, t trigger) {
	if !fires(t.condition, r.status) {
		d.svc.SetupLogf(r.jobID, "Skipping trigger, condition unmet")
		d.record(r, t, "skipped", fmt.Sprintf("condition %s unmet by status %s", t.condition, r.status), 0)
		return
	}
	if k := sentKey(t.action, t.target()); r.sent[k] > 0 {
		r.sent[k]--
		d.svc.SetupLogf(r.jobID, "Skipping trigger, already sent to %s before a restart", t.target())
		return
	}
	switch t.action {
	case "email":
		d.emailTrigger(ctx, r, t)
	case "webhook":
		d.webhookTrigger(ctx, r, t)
	default:
		d.svc.SetupLogf(r.jobID, "Unknown trigger action '%s'", t.action)
		d.record(r, t, "failed", fmt.Sprintf("unknown trigger action %q", t.action), 0)
	}
}

// record stores one delivery attempt. A trigger cut short by shutdown is
// recorded with a background context so the record is not lost too.
func (d *Dispatcher) record(r *run, t trigger, status, msg string, attempt int) {
	jobID := r.jobID
	rec := &app.TriggerDelivery{JobID: &jobID, GroupID: r.groupID, Action: t.action, Target: t.target(),
		Status: status, Message: msg, Attempts: attempt}
	ctx, cancel := context.WithTimeout(app.SystemContext(context.Background()), 10*time.Second)
	defer cancel()
	if err := d.svc.Store.CreateTriggerDelivery(ctx, rec); err != nil {
		d.log.Error("notify: record trigger delivery", "job_id", r.jobID, "action", t.action, "err", err)
	}
}

// emailTrigger sends the results email, retrying transient failures
// (network errors, SMTP 4xx). Attempts and the per-attempt time limit are
// the [webhooks] max-attempts and timeout: one policy for every trigger.
func (d *Dispatcher) emailTrigger(ctx context.Context, r *run, t trigger) {
	msg, err := d.newMessage(t, r)
	if err != nil {
		d.svc.SetupLogf(r.jobID, "Error sending email: %v", err)
		d.record(r, t, "failed", err.Error(), 0)
		return
	}
	m := &mailer{cfg: d.cfg.Mail, tls: d.MailTLS, signer: d.signer, helo: d.heloName(), timeout: d.cfg.Webhooks.Timeout}
	for attempt := 1; ; attempt++ {
		err := m.send(ctx, msg)
		if err == nil {
			d.svc.SetupLogf(r.jobID, "Sent build results email to %s", strings.Join(msg.recipients(), ", "))
			d.record(r, t, "sent", "sent to "+strings.Join(msg.recipients(), ", "), attempt)
			return
		}
		if ctx.Err() != nil {
			err = errors.New("shutting down: " + err.Error())
		}
		d.svc.SetupLogf(r.jobID, "Error sending email: %v", err)
		d.record(r, t, "failed", err.Error(), attempt)
		if !retryable(err) || ctx.Err() != nil || attempt >= d.cfg.Webhooks.MaxAttempts {
			return
		}
		wait := d.backoff(attempt)
		d.svc.SetupLogf(r.jobID, "Retrying email in %s (attempt %d of %d)", wait, attempt+1, d.cfg.Webhooks.MaxAttempts)
		if !sleep(ctx, wait) {
			return
		}
	}
}

// newMessage builds the email of a trigger; bad addresses are errors.
func (d *Dispatcher) newMessage(t trigger, r *run) (*message, error) {
	from, err := mail.ParseAddress(d.cfg.Mail.From)
	if err != nil {
		return nil, fmt.Errorf("invalid [mail] from %q: %w", d.cfg.Mail.From, err)
	}
	to, err := parseAddresses("to", t.to)
	if err != nil {
		return nil, err
	}
	cc, err := parseAddresses("cc", t.cc)
	if err != nil {
		return nil, err
	}
	if len(to)+len(cc) == 0 {
		return nil, errors.New("Expected `to` in email trigger")
	}
	irt, err := normalizeMsgID(t.inReplyTo)
	if err != nil {
		return nil, err
	}
	subject, body := r.email()
	now := d.svc.Now()
	domain := from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	return &message{From: from, To: to, Cc: cc, Subject: subject, InReplyTo: irt,
		MessageID: newMessageID(now, domain), Date: now, Body: body}, nil
}

// heloName is the name given to the SMTP server: the public host name,
// or an address literal.
func (d *Dispatcher) heloName() string {
	name := d.cfg.RunnerName()
	if ip, err := netip.ParseAddr(name); err == nil {
		if ip.Is6() {
			return "[IPv6:" + ip.String() + "]"
		}
		return "[" + ip.String() + "]"
	}
	return name
}
