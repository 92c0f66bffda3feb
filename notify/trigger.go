package notify

import (
	"context"
	"fmt"
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
	if err := d.svc.RecordTriggerDelivery(ctx, rec); err != nil {
		d.log.Error("notify: record trigger delivery", "job_id", r.jobID, "action", t.action, "err", err)
	}
}

// logRetry returns what a trigger writes to the setup log before each
// retry of what ("email", "webhook") under policy p.
func (d *Dispatcher) logRetry(r *run, what string, p retryPolicy) func(wait time.Duration, attempt int) {
	return func(wait time.Duration, attempt int) {
		d.svc.SetupLogf(r.jobID, "Retrying %s in %s (attempt %d of %d)", what, wait, attempt, p.attempts)
	}
}
