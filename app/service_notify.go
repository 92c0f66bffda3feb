package app

import (
	"context"
	"time"
)

// JobEvent is the payload of a user webhook about a job (GraphQL JobEvent,
// reached through `query { webhook { ... on JobEvent { job { ... } } } }`).
// Job is the job as it was when the event happened.
type JobEvent struct {
	UUID  string // also the delivery's X-Webhook-Delivery header
	Event WebhookEvent
	Date  time.Time
	Job   *Job
}

// TriggerDeliveries lists the recorded trigger delivery attempts (manifest
// and group triggers) of a job, oldest first. Only the job's owner sees
// them; everybody else gets an empty list, as trigger targets (email
// addresses, webhook URLs) are private.
func (s *Service) TriggerDeliveries(ctx context.Context, job *Job) ([]*TriggerDelivery, error) {
	if !isOwner(ctx, job) {
		return []*TriggerDelivery{}, nil
	}
	return s.Store.FindTriggerDeliveries(ctx, job.ID)
}
