package notify

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"builds/app"
)

// maxPayload is the largest user webhook body queued; a query selecting
// more (whole logs) gets an error payload instead.
const maxPayload = 4 << 20

// Delivery states (app.WebhookDelivery.State).
const (
	statePending   = "pending"
	stateDelivered = "delivered"
	stateFailed    = "failed"
)

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// queueWebhooks renders the event for each of the job owner's
// subscriptions to it and stores the deliveries, to be sent by the
// delivery worker. Storing first means a restart loses none.
func (d *Dispatcher) queueWebhooks(ctx context.Context, ev jobEvent) {
	subs, err := d.svc.WebhooksForEvent(ctx, ev.job.OwnerID, ev.event)
	if err != nil {
		d.log.Error("notify: find webhooks", "job_id", ev.job.ID, "event", ev.event, "err", err)
		return
	}
	if len(subs) == 0 {
		return
	}
	if d.render == nil {
		d.log.Warn("notify: no webhook renderer configured; user webhooks not delivered", "job_id", ev.job.ID)
		return
	}
	queued := false
	for _, sub := range subs {
		if d.queueWebhook(ctx, ev, sub) {
			queued = true
		}
	}
	if queued {
		d.signal(d.wakeDeliveries)
	}
}

// queueWebhook stores one subscription's delivery of ev. Subscriptions
// that lapsed (token revoked or expired) or lack JOBS:RO get nothing.
func (d *Dispatcher) queueWebhook(ctx context.Context, ev jobEvent, sub *app.WebhookSubscription) bool {
	auth, err := d.svc.WebhookAuth(ctx, sub)
	if err != nil {
		d.log.Debug("notify: webhook subscription cannot act", "subscription_id", sub.ID, "err", err)
		return false
	}
	if !auth.Can(app.ScopeJobs, app.RO) {
		d.log.Debug("notify: webhook subscription lacks JOBS:RO", "subscription_id", sub.ID, "event", ev.event)
		return false
	}
	job := ev.job
	payload := app.WebhookPayload{UUID: newUUID(), Event: ev.event, Date: ev.date, Job: &job}
	body, err := d.render.ExecuteWebhookQuery(ctx, sub, payload)
	if err != nil {
		d.log.Info("notify: webhook delivery dropped", "subscription_id", sub.ID, "job_id", job.ID, "err", err)
		return false
	}
	if len(body) > maxPayload {
		body = errorPayload(fmt.Sprintf("the webhook query's result is %d bytes, more than the %d allowed", len(body), maxPayload))
	}
	now := d.svc.Now().UTC()
	del := &app.WebhookDelivery{UUID: payload.UUID, SubscriptionID: sub.ID, Event: ev.event, JobID: job.ID,
		RequestBody: string(body), NextAttempt: &now, State: statePending}
	if err := d.svc.QueueWebhookDelivery(ctx, del); err != nil {
		d.log.Error("notify: queue webhook delivery", "subscription_id", sub.ID, "job_id", job.ID, "err", err)
		return false
	}
	return true
}

// errorPayload is a GraphQL-shaped error response.
func errorPayload(msg string) []byte {
	b, _ := json.Marshal(map[string]any{"data": nil, "errors": []map[string]string{{"message": msg}}})
	return b
}

// deliveryLoop sends due deliveries: at start (what an earlier run left),
// when new ones are queued, and every PollInterval for retries.
func (d *Dispatcher) deliveryLoop(ctx context.Context) {
	sem := make(chan struct{}, max(d.Concurrency, 1))
	tick := time.NewTicker(d.PollInterval)
	defer tick.Stop()
	for {
		d.dispatchDue(ctx, sem)
		select {
		case <-ctx.Done():
			return
		case <-d.wakeDeliveries:
		case <-tick.C:
		}
	}
}

// dispatchDue starts a goroutine per due delivery while slots are free;
// the rest wait for the next round. A subscription has at most one
// delivery in flight, so a slow or dead endpoint holds one slot, not all
// of them, and each endpoint gets its events in order.
func (d *Dispatcher) dispatchDue(ctx context.Context, sem chan struct{}) {
	due, err := d.svc.DueWebhookDeliveries(ctx, 4*cap(sem))
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error("notify: find due webhook deliveries", "err", err)
		}
		return
	}
	for _, del := range due {
		if !d.claim(del) {
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			d.release(del)
			return
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer func() {
				<-sem
				d.release(del)
				d.signal(d.wakeDeliveries) // a slot is free
			}()
			d.deliver(ctx, del)
		}()
	}
}

// claim marks a delivery in flight unless its subscription already has one.
func (d *Dispatcher) claim(del *app.WebhookDelivery) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inflight[del.SubscriptionID] {
		return false
	}
	d.inflight[del.SubscriptionID] = true
	return true
}

func (d *Dispatcher) release(del *app.WebhookDelivery) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.inflight, del.SubscriptionID)
}

// deliver makes one attempt at a delivery and records its outcome. The
// webhook retry policy decides whether it stays pending, and until when;
// the queue, not a sleeping goroutine, waits for the retry.
func (d *Dispatcher) deliver(ctx context.Context, del *app.WebhookDelivery) {
	sub, err := d.svc.WebhookForDelivery(ctx, del)
	if err != nil {
		// Deleting a subscription deletes its deliveries; this one went
		// with it between the scan and now.
		if app.ErrorCode(err) != app.ENOTFOUND && ctx.Err() == nil {
			d.log.Error("notify: find webhook", "delivery", del.UUID, "err", err)
		}
		return
	}
	h := http.Header{}
	h.Set("X-Webhook-Event", string(del.Event))
	h.Set("X-Webhook-Delivery", del.UUID)
	res, err := d.post(ctx, sub.URL, []byte(del.RequestBody), h)
	if err != nil && ctx.Err() != nil {
		return // cut short by shutdown: not an attempt; the next run retries it
	}
	del.Attempts++
	outcome := err
	if err != nil {
		msg := "no response: " + err.Error()
		del.ResponseBody, del.ResponseHeaders, del.ResponseStatus = &msg, nil, nil
	} else {
		status := res.status
		del.ResponseStatus, del.ResponseBody, del.ResponseHeaders = &status, res.body, &res.headers
		outcome = res.err()
	}
	wait, again := d.webhookRetry().next(del.Attempts, outcome)
	switch {
	case outcome == nil:
		del.State, del.NextAttempt = stateDelivered, nil
	case again:
		next := d.svc.Now().UTC().Add(wait)
		del.State, del.NextAttempt = statePending, &next
	default:
		del.State, del.NextAttempt = stateFailed, nil
	}
	d.log.Debug("webhook delivery", "delivery", del.UUID, "url", sub.URL, "attempt", del.Attempts, "state", del.State, "err", err)
	if err := d.svc.RecordWebhookAttempt(context.WithoutCancel(ctx), del); err != nil {
		d.log.Error("notify: record webhook delivery", "delivery", del.UUID, "err", err)
	}
}
