package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"builds/app"
)

const webhookColumns = `id, created, user_id, url, events, query, token_id, grants, client_id, expires`

// eventsCol scans the JSON events column.
type eventsCol struct{ p *[]app.WebhookEvent }

// Scan implements sql.Scanner.
func (c eventsCol) Scan(v any) error {
	var b []byte
	switch v := v.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("scan webhook events: want JSON text, got %T", v)
	}
	*c.p = []app.WebhookEvent{}
	if err := json.Unmarshal(b, c.p); err != nil {
		return fmt.Errorf("scan webhook events: %w", err)
	}
	return nil
}

func scanWebhook(r rowScanner) (*app.WebhookSubscription, error) {
	var w app.WebhookSubscription
	err := r.Scan(&w.ID, timeCol{&w.Created}, &w.UserID, &w.URL, eventsCol{&w.Events}, &w.Query,
		nullCol[int64]{&w.TokenID}, &w.Grants, nullCol[string]{&w.ClientID}, nullTimeCol{&w.Expires})
	if err != nil {
		return nil, err
	}
	return &w, nil
}

// CreateWebhook inserts w, setting its ID and Created.
func (db *DB) CreateWebhook(ctx context.Context, w *app.WebhookSubscription) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("create webhook: %w", err)
	}
	defer t.Rollback()
	events := w.Events
	if events == nil {
		events = []app.WebhookEvent{}
	}
	ev, err := json.Marshal(events)
	if err != nil {
		return fmt.Errorf("create webhook: encode events: %w", err)
	}
	id, err := insert(ctx, t, `INSERT INTO webhook_subscriptions (created, user_id, url, events, query, token_id, grants, client_id, expires)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		unix(t.now), w.UserID, w.URL, string(ev), w.Query, nullable(w.TokenID), w.Grants, nullable(w.ClientID),
		unixPtr(w.Expires))
	if err != nil {
		return fmt.Errorf("create webhook: %w", formatError(err, "webhook"))
	}
	w.ID, w.Created = id, t.now
	return t.commit("create webhook")
}

// FindWebhooks returns a keyset page of the user's webhooks, newest first.
func (db *DB) FindWebhooks(ctx context.Context, userID int64, p app.Page) ([]*app.WebhookSubscription, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find webhooks: %w", err)
	}
	defer t.Rollback()
	cond, args := pageClause("user_id = ?", []any{userID}, p)
	list, err := queryList(ctx, t, scanWebhook, `SELECT `+webhookColumns+` FROM webhook_subscriptions WHERE `+cond, args...)
	if err != nil {
		return nil, fmt.Errorf("find webhooks of user %d: %w", userID, formatError(err, "webhook"))
	}
	return list, t.commit("find webhooks")
}

// FindWebhookByID returns the webhook subscription with the given id.
func (db *DB) FindWebhookByID(ctx context.Context, id int64) (*app.WebhookSubscription, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find webhook: %w", err)
	}
	defer t.Rollback()
	w, err := scanWebhook(t.QueryRowContext(ctx, `SELECT `+webhookColumns+` FROM webhook_subscriptions WHERE id = ?`, id))
	if err != nil {
		return nil, fmt.Errorf("find webhook %d: %w", id, formatError(err, "webhook"))
	}
	return w, t.commit("find webhook")
}

// DeleteWebhook deletes the subscription and, by cascade, its deliveries.
func (db *DB) DeleteWebhook(ctx context.Context, id int64) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("delete webhook: %w", err)
	}
	defer t.Rollback()
	if err := execOne(ctx, t, `DELETE FROM webhook_subscriptions WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete webhook %d: %w", id, formatError(err, "webhook"))
	}
	return t.commit("delete webhook")
}

// FindWebhooksForEvent returns the user's subscriptions to event, oldest
// first. Expiry is left to the caller.
func (db *DB) FindWebhooksForEvent(ctx context.Context, userID int64, event app.WebhookEvent) ([]*app.WebhookSubscription, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find webhooks: %w", err)
	}
	defer t.Rollback()
	// events is a JSON array of names; each database has its own JSON functions
	has := `EXISTS (SELECT 1 FROM json_each(events) WHERE value = ?)`
	if db.postgres {
		has = `EXISTS (SELECT 1 FROM json_array_elements_text(events::json) AS e (value) WHERE value = ?)`
	}
	list, err := queryList(ctx, t, scanWebhook, `SELECT `+webhookColumns+` FROM webhook_subscriptions
		WHERE user_id = ? AND `+has+` ORDER BY id`, userID, event)
	if err != nil {
		return nil, fmt.Errorf("find webhooks of user %d for %s: %w", userID, event, formatError(err, "webhook"))
	}
	return list, t.commit("find webhooks")
}

const deliveryColumns = `id, uuid, created, subscription_id, event, job_id, request_body, response_body,
	response_headers, response_status, attempts, next_attempt, state`

func scanDelivery(r rowScanner) (*app.WebhookDelivery, error) {
	var d app.WebhookDelivery
	err := r.Scan(&d.ID, &d.UUID, timeCol{&d.Created}, &d.SubscriptionID, &d.Event, &d.JobID, &d.RequestBody,
		nullCol[string]{&d.ResponseBody}, nullCol[string]{&d.ResponseHeaders}, nullCol[int]{&d.ResponseStatus},
		&d.Attempts, nullTimeCol{&d.NextAttempt}, &d.State)
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// CreateWebhookDelivery inserts d, setting its ID and Created. A pending
// delivery without NextAttempt is due at once: NextAttempt is set to now.
func (db *DB) CreateWebhookDelivery(ctx context.Context, d *app.WebhookDelivery) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("create webhook delivery: %w", err)
	}
	defer t.Rollback()
	next := d.NextAttempt
	if next == nil && d.State == "pending" {
		now := t.now
		next = &now
	}
	id, err := insert(ctx, t, `INSERT INTO webhook_deliveries (uuid, created, subscription_id, event, job_id, request_body,
			response_body, response_headers, response_status, attempts, next_attempt, state)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.UUID, unix(t.now), d.SubscriptionID, d.Event, d.JobID, d.RequestBody, nullable(d.ResponseBody),
		nullable(d.ResponseHeaders), nullable(d.ResponseStatus), d.Attempts, unixPtr(next), d.State)
	if err != nil {
		return fmt.Errorf("create webhook delivery %s: %w", d.UUID, formatError(err, "webhook delivery"))
	}
	d.ID, d.Created, d.NextAttempt = id, t.now, next
	return t.commit("create webhook delivery")
}

// FindWebhookDeliveries returns a keyset page of a subscription's
// deliveries, newest first.
func (db *DB) FindWebhookDeliveries(ctx context.Context, subscriptionID int64, p app.Page) ([]*app.WebhookDelivery, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find webhook deliveries: %w", err)
	}
	defer t.Rollback()
	cond, args := pageClause("subscription_id = ?", []any{subscriptionID}, p)
	list, err := queryList(ctx, t, scanDelivery, `SELECT `+deliveryColumns+` FROM webhook_deliveries WHERE `+cond, args...)
	if err != nil {
		return nil, fmt.Errorf("find deliveries of webhook %d: %w", subscriptionID, formatError(err, "webhook delivery"))
	}
	return list, t.commit("find webhook deliveries")
}

// FindDueWebhookDeliveries returns up to limit (0 = all) pending deliveries
// whose NextAttempt is at or before now, most overdue first.
func (db *DB) FindDueWebhookDeliveries(ctx context.Context, now time.Time, limit int) ([]*app.WebhookDelivery, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find due webhook deliveries: %w", err)
	}
	defer t.Rollback()
	query := `SELECT ` + deliveryColumns + ` FROM webhook_deliveries
		WHERE state = 'pending' AND next_attempt <= ? ORDER BY next_attempt, id`
	args := []any{unix(now)}
	if limit > 0 {
		query += ` LIMIT ?`
		args = append(args, limit)
	}
	list, err := queryList(ctx, t, scanDelivery, query, args...)
	if err != nil {
		return nil, fmt.Errorf("find due webhook deliveries: %w", formatError(err, "webhook delivery"))
	}
	return list, t.commit("find due webhook deliveries")
}

// UpdateWebhookDelivery stores the outcome fields of d (response, attempts,
// next attempt and state) on the delivery with d.ID.
func (db *DB) UpdateWebhookDelivery(ctx context.Context, d *app.WebhookDelivery) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("update webhook delivery: %w", err)
	}
	defer t.Rollback()
	err = execOne(ctx, t, `UPDATE webhook_deliveries SET response_body = ?, response_headers = ?, response_status = ?,
			attempts = ?, next_attempt = ?, state = ?
		WHERE id = ?`,
		nullable(d.ResponseBody), nullable(d.ResponseHeaders), nullable(d.ResponseStatus), d.Attempts,
		unixPtr(d.NextAttempt), d.State, d.ID)
	if err != nil {
		return fmt.Errorf("update webhook delivery %d: %w", d.ID, formatError(err, "webhook delivery"))
	}
	return t.commit("update webhook delivery")
}
