package app_test

import (
	"context"
	"testing"
	"time"

	"builds/app"
)

// TestDueWebhookDeliveries checks the one rule the delivery queue's
// methods hold: a delivery is due by the Service's clock, the same one
// notify stamps due times with, so moving that clock moves deliveries.
func TestDueWebhookDeliveries(t *testing.T) {
	e := newEnv(t)
	sys := app.SystemContext(context.Background())
	job := submit(t, e, e.aliceCtx, app.Public)
	sub, err := e.svc.CreateWebhook(e.aliceCtx, app.WebhookInput{URL: "https://example.org/hook",
		Events: []app.WebhookEvent{app.EventJobUpdated}, Query: "query { webhook { uuid } }"})
	if err != nil {
		t.Fatal(err)
	}
	due := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	del := &app.WebhookDelivery{UUID: "d-1", SubscriptionID: sub.ID, Event: app.EventJobUpdated, JobID: job.ID,
		RequestBody: "{}", NextAttempt: &due, State: "pending"}
	if err := e.svc.QueueWebhookDelivery(sys, del); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		now  time.Time
		want int
	}{
		{name: "Before", now: due.Add(-time.Second), want: 0},
		{name: "AtDueTime", now: due, want: 1},
		{name: "After", now: due.Add(time.Hour), want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.svc.Now = func() time.Time { return tt.now }
			list, err := e.svc.DueWebhookDeliveries(sys, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != tt.want {
				t.Fatalf("%d due at %s, want %d", len(list), tt.now, tt.want)
			}
			if tt.want > 0 {
				got, err := e.svc.WebhookForDelivery(sys, list[0])
				if err != nil || got.ID != sub.ID {
					t.Errorf("subscription of the due delivery: %v, %v", got, err)
				}
			}
		})
	}
}
