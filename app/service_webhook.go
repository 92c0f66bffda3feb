package app

import (
	"context"
	"fmt"
	"net/url"
	"time"
)

// WebhookInput is createUserWebhook's config.
type WebhookInput struct {
	URL    string
	Events []WebhookEvent
	Query  string
}

// CreateWebhook subscribes the caller's token to events. The GraphQL layer
// validates Query against the schema before calling this.
func (s *Service) CreateWebhook(ctx context.Context, in WebhookInput) (*WebhookSubscription, error) {
	a := AuthFromContext(ctx)
	if a == nil || a.User == nil {
		return nil, Errorf(EUNAUTHORIZED, "authentication required")
	}
	if a.Kind != AuthToken && a.Kind != AuthSession {
		return nil, Errorf(EFORBIDDEN, "webhooks cannot be created in this context")
	}
	u, err := url.Parse(in.URL)
	if err != nil || u.Host == "" {
		return nil, Errorf(EINVALID, "Cannot use URL without host")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, Errorf(EINVALID, "Cannot use non-HTTP or HTTPS URL")
	}
	if len(in.Events) == 0 {
		return nil, Errorf(EINVALID, "Must specify at least one event")
	}
	seen := map[WebhookEvent]bool{}
	for _, ev := range in.Events {
		if ev != EventJobCreated && ev != EventJobUpdated {
			return nil, Errorf(EINVALID, "unknown webhook event %q", ev)
		}
		if seen[ev] {
			return nil, Errorf(EINVALID, "Duplicate event %s", ev)
		}
		seen[ev] = true
		if !a.Can(ScopeJobs, RO) {
			return nil, Errorf(EFORBIDDEN, "Insufficient access granted for webhook event %s", ev)
		}
	}
	w := &WebhookSubscription{UserID: a.User.ID, URL: in.URL, Events: in.Events, Query: in.Query, Grants: a.Grants.String()}
	if a.Kind == AuthToken {
		w.TokenID = &a.TokenID
	}
	if err := s.Store.CreateWebhook(ctx, w); err != nil {
		return nil, fmt.Errorf("create webhook: %w", err)
	}
	return w, nil
}

// WebhookList is a page of subscriptions.
type WebhookList struct {
	Webhooks []*WebhookSubscription
	Cursor   string
}

// Webhooks lists the caller's subscriptions.
func (s *Service) Webhooks(ctx context.Context, cursor *string) (*WebhookList, error) {
	u, err := requireUser(ctx)
	if err != nil {
		return nil, err
	}
	list, next, err := paginate(s.cursors, "webhooks", cursor, PageSize, func(w *WebhookSubscription) int64 { return w.ID },
		func(before *int64, limit int) ([]*WebhookSubscription, error) {
			return s.Store.FindWebhooks(ctx, u.ID, Page{BeforeID: before, Limit: limit})
		})
	if err != nil {
		return nil, err
	}
	return &WebhookList{Webhooks: list, Cursor: next}, nil
}

// Webhook returns one of the caller's subscriptions.
func (s *Service) Webhook(ctx context.Context, id int64) (*WebhookSubscription, error) {
	u, err := requireUser(ctx)
	if err != nil {
		return nil, err
	}
	w, err := s.Store.FindWebhookByID(ctx, id)
	if err != nil || w.UserID != u.ID {
		return nil, Errorf(ENOTFOUND, "No user webhook by ID %d found for this user", id)
	}
	return w, nil
}

// DeleteWebhook removes one of the caller's subscriptions.
func (s *Service) DeleteWebhook(ctx context.Context, id int64) (*WebhookSubscription, error) {
	w, err := s.Webhook(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.Store.DeleteWebhook(ctx, id); err != nil {
		return nil, err
	}
	return w, nil
}

// DeliveryList is a page of webhook deliveries.
type DeliveryList struct {
	Deliveries []*WebhookDelivery
	Cursor     string
}

// WebhookDeliveries lists deliveries of one of the caller's subscriptions.
func (s *Service) WebhookDeliveries(ctx context.Context, w *WebhookSubscription, cursor *string) (*DeliveryList, error) {
	if _, err := s.Webhook(ctx, w.ID); err != nil {
		return nil, err
	}
	list, next, err := paginate(s.cursors, "deliveries", cursor, PageSize, func(d *WebhookDelivery) int64 { return d.ID },
		func(before *int64, limit int) ([]*WebhookDelivery, error) {
			return s.Store.FindWebhookDeliveries(ctx, w.ID, Page{BeforeID: before, Limit: limit})
		})
	if err != nil {
		return nil, err
	}
	return &DeliveryList{Deliveries: list, Cursor: next}, nil
}

// WebhookPayload is one event as a webhook query sees it (GraphQL
// JobEvent): the delivery's UUID, the event, when it happened and the job.
type WebhookPayload struct {
	UUID  string
	Event WebhookEvent
	Date  time.Time
	Job   *Job
}

// NewWebhookPayload returns a payload for event on job with a fresh UUID.
func (s *Service) NewWebhookPayload(event WebhookEvent, job *Job) WebhookPayload {
	return WebhookPayload{UUID: newUUID(), Event: event, Date: s.now(), Job: job}
}

// WebhookAuth returns the identity a subscription's query runs with: its
// creator, limited to the creating token's grants and read-only. It fails
// when the creator is gone, or the creating token was revoked or expired.
func (s *Service) WebhookAuth(ctx context.Context, sub *WebhookSubscription) (*Auth, error) {
	u, err := s.Store.FindUserByID(ctx, sub.UserID)
	if err != nil {
		return nil, fmt.Errorf("find webhook owner: %w", err)
	}
	now := s.now()
	if sub.Expires != nil && !now.Before(*sub.Expires) {
		return nil, Errorf(EFORBIDDEN, "webhook subscription %d has expired", sub.ID)
	}
	if sub.TokenID != nil {
		t, err := s.Store.FindTokenByID(ctx, *sub.TokenID)
		if ErrorCode(err) == ENOTFOUND {
			return nil, Errorf(EFORBIDDEN, "the token that created webhook subscription %d was revoked", sub.ID)
		} else if err != nil {
			return nil, fmt.Errorf("find webhook token: %w", err)
		}
		if t.Expired(now) {
			return nil, Errorf(EFORBIDDEN, "the token that created webhook subscription %d has expired", sub.ID)
		}
	}
	g, err := ParseGrants(sub.Grants)
	if err != nil {
		return nil, fmt.Errorf("grants of webhook subscription %d: %w", sub.ID, err)
	}
	return &Auth{Kind: AuthWebhook, User: u, Grants: g}, nil
}
