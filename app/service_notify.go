package app

import "context"

// TriggerDeliveries lists the recorded trigger delivery attempts (manifest
// and group triggers) of a job, oldest first. Only the job's owner sees
// them; everybody else gets an empty list, as trigger targets (email
// addresses, webhook URLs) are private. Notifications call it with
// SystemContext to learn which triggers an interrupted run already sent.
func (s *Service) TriggerDeliveries(ctx context.Context, job *Job) ([]*TriggerDelivery, error) {
	if !isOwner(ctx, job) {
		return []*TriggerDelivery{}, nil
	}
	return s.Store.FindTriggerDeliveries(ctx, job.ID)
}

// The methods below are the bookkeeping of notifications (package
// notify): trigger processing state, trigger delivery records, and the
// durable queue of user webhook deliveries. Like the runner's methods
// (service_runner.go) they act with the appliance's own authority, check
// no caller and are not reachable from the API; notify calls them with
// SystemContext. What notify reads besides them (jobs, tasks, owners,
// groups) it reads through the ordinary methods, which let the system see
// everything.

// JobsAwaitingTriggers returns up to limit final jobs with id > afterID
// whose triggers are not marked done, oldest first: the work a process
// that stopped early left, which the next start resumes.
func (s *Service) JobsAwaitingTriggers(ctx context.Context, afterID int64, limit int) ([]*Job, error) {
	return s.Store.FindJobsAwaitingTriggers(ctx, afterID, limit)
}

// TriggersDone reports whether a final job's triggers (and its group's,
// which ride on them) were processed to the end. ENOTFOUND means the job
// is gone.
func (s *Service) TriggersDone(ctx context.Context, jobID int64) (bool, error) {
	return s.Store.TriggersDone(ctx, jobID)
}

// MarkTriggersDone records that a final job's triggers were processed to
// the end, so no later start resumes them. It reports whether this call
// set the mark (false: someone else had).
func (s *Service) MarkTriggersDone(ctx context.Context, jobID int64) (bool, error) {
	return s.Store.MarkTriggersDone(ctx, jobID)
}

// MarkGroupFired records that a complete group's triggers were sent; it
// reports whether this call set the flag (false: someone else had). It is
// set after sending, so a crash in between resends rather than loses them.
func (s *Service) MarkGroupFired(ctx context.Context, groupID int64) (bool, error) {
	return s.Store.MarkGroupFired(ctx, groupID)
}

// RecordTriggerDelivery stores one attempt at a manifest or group
// trigger; the job's owner reads them back with TriggerDeliveries.
func (s *Service) RecordTriggerDelivery(ctx context.Context, d *TriggerDelivery) error {
	s.Metrics.Delivery(d.Action, d.Status)
	return s.Store.CreateTriggerDelivery(ctx, d)
}

// WebhooksForEvent returns a user's webhook subscriptions to event,
// whether or not they can still act (WebhookAuth says that).
func (s *Service) WebhooksForEvent(ctx context.Context, userID int64, event WebhookEvent) ([]*WebhookSubscription, error) {
	return s.Store.FindWebhooksForEvent(ctx, userID, event)
}

// WebhookForDelivery returns the subscription a queued delivery belongs
// to. ENOTFOUND means it was deleted, and its deliveries with it.
func (s *Service) WebhookForDelivery(ctx context.Context, d *WebhookDelivery) (*WebhookSubscription, error) {
	return s.Store.FindWebhookByID(ctx, d.SubscriptionID)
}

// QueueWebhookDelivery stores a rendered user webhook delivery, to be sent
// once its NextAttempt is due. Storing before sending is what lets a
// delivery survive a restart.
func (s *Service) QueueWebhookDelivery(ctx context.Context, d *WebhookDelivery) error {
	return s.Store.CreateWebhookDelivery(ctx, d)
}

// DueWebhookDeliveries returns up to limit pending deliveries whose next
// attempt is due by the Service's clock: the clock notify stamps due
// times with, so that the two never disagree about what is due.
func (s *Service) DueWebhookDeliveries(ctx context.Context, limit int) ([]*WebhookDelivery, error) {
	return s.Store.FindDueWebhookDeliveries(ctx, s.Now().UTC(), limit)
}

// RecordWebhookAttempt stores the outcome of an attempt at a delivery:
// its response, attempt count, state and, if it stays pending, when it is
// due again.
func (s *Service) RecordWebhookAttempt(ctx context.Context, d *WebhookDelivery) error {
	outcome := d.State
	if outcome == "pending" {
		outcome = "retry" // failed this time, tried again later
	}
	s.Metrics.Delivery("user_webhook", outcome)
	return s.Store.UpdateWebhookDelivery(ctx, d)
}
