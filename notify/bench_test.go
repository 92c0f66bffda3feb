package notify

import (
	"context"
	"testing"

	"builds/app"
)

// BenchmarkJobEvent measures what a job status change costs the caller
// (the runner or an API request): handing the event to the Dispatcher.
func BenchmarkJobEvent(b *testing.B) {
	e := newEnv(b, testConfig(b))
	job := &app.Job{ID: 1, OwnerID: e.user.ID, Status: app.JobRunning}
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		e.d.JobChanged(ctx, app.EventJobUpdated, job)
	}
	b.StopTimer()
	// Handling millions of events would take minutes; only the hand-over
	// is measured here.
	e.d.mu.Lock()
	e.d.queue = nil
	e.d.mu.Unlock()
}

// BenchmarkUserWebhookDelivery measures user webhook latency end to end:
// each event is rendered through the GraphQL API, queued in SQLite, POSTed
// (signed) to a local receiver and recorded, one after the other.
func BenchmarkUserWebhookDelivery(b *testing.B) {
	e := newEnv(b, testConfig(b))
	hook := newHookServer(b, e.publicKey())
	sub, err := e.svc.CreateWebhook(e.userContext(), app.WebhookInput{URL: hook.URL, Events: []app.WebhookEvent{app.EventJobUpdated}, Query: hookQuery})
	if err != nil {
		b.Fatal(err)
	}
	job := e.createJob(jobSpec{manifest: groupJobManifest}, app.JobQueued)
	ctx := context.Background()
	for b.Loop() {
		e.d.JobChanged(ctx, app.EventJobUpdated, job)
		<-hook.done
	}
	b.StopTimer()
	waitFor(b, "the last delivery's record", func() bool {
		list, _ := e.db.FindWebhookDeliveries(ctx, sub.ID, app.Page{Limit: 1})
		return len(list) == 1 && list[0].State == stateDelivered
	})
}
