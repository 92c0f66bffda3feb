package app

import "time"

// WebhookEvent is a user webhook event (GraphQL WebhookEvent).
type WebhookEvent string

// Webhook events.
const (
	EventJobCreated WebhookEvent = "JOB_CREATED"
	EventJobUpdated WebhookEvent = "JOB_UPDATED"
)

// WebhookSubscription is a user webhook created through the API.
type WebhookSubscription struct {
	ID       int64
	Created  time.Time
	UserID   int64
	URL      string
	Events   []WebhookEvent
	Query    string
	TokenID  *int64 // token that created it; deliveries stop if it is revoked
	Grants   string // the creating token's grants (ParseGrants syntax)
	ClientID *string
	Expires  *time.Time
}

// WebhookDelivery is one queued or attempted delivery of an event.
type WebhookDelivery struct {
	ID              int64
	UUID            string
	Created         time.Time
	SubscriptionID  int64
	Event           WebhookEvent
	JobID           int64
	RequestBody     string
	ResponseBody    *string
	ResponseHeaders *string
	ResponseStatus  *int
	Attempts        int
	NextAttempt     *time.Time
	State           string // "pending" | "delivered" | "failed"
}
