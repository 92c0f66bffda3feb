package store_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"builds/app"
)

func TestWebhooks(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	bob := MustCreateUser(t, db, "bob")
	tok := &app.Token{UserID: alice.ID, Hash: "h"}
	if err := db.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	exp := nowSec.Add(time.Hour)
	created := &app.WebhookSubscription{UserID: alice.ID, URL: "https://a.example/hook", Events: []app.WebhookEvent{app.EventJobCreated},
		Query: "query { webhook { event } }", TokenID: &tok.ID, Grants: "JOBS:RO", ClientID: ptr("cli"), Expires: &exp}
	both := &app.WebhookSubscription{UserID: alice.ID, URL: "https://b.example/hook",
		Events: []app.WebhookEvent{app.EventJobUpdated, app.EventJobCreated}, Query: "q"}
	updated := &app.WebhookSubscription{UserID: alice.ID, URL: "https://c.example/hook",
		Events: []app.WebhookEvent{app.EventJobUpdated}, Query: "q"}
	bobs := &app.WebhookSubscription{UserID: bob.ID, URL: "https://d.example/hook",
		Events: []app.WebhookEvent{app.EventJobCreated}, Query: "q"}

	t.Run("OK", func(t *testing.T) {
		for _, w := range []*app.WebhookSubscription{created, both, updated, bobs} {
			if err := db.CreateWebhook(ctx, w); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.FindWebhookByID(ctx, created.ID)
		if err != nil {
			t.Fatal(err)
		} else if !reflect.DeepEqual(got, created) {
			t.Fatalf("got %+v, want %+v", got, created)
		}
		list, err := db.FindWebhooks(ctx, alice.ID, app.Page{})
		if err != nil || len(list) != 3 || list[0].ID != updated.ID || list[2].ID != created.ID {
			t.Fatalf("FindWebhooks = %+v, %v", list, err)
		}
		list, err = db.FindWebhooks(ctx, alice.ID, app.Page{BeforeID: &both.ID, Limit: 1})
		if err != nil || len(list) != 1 || list[0].ID != both.ID {
			t.Fatalf("page = %+v, %v", list, err)
		}
		list, err = db.FindWebhooksForEvent(ctx, alice.ID, app.EventJobCreated)
		if err != nil || len(list) != 2 || list[0].ID != created.ID || list[1].ID != both.ID {
			t.Fatalf("FindWebhooksForEvent = %+v, %v", list, err)
		}
	})
	t.Run("TokenDeleted", func(t *testing.T) {
		// The token id stays so the service can see the creator is gone.
		if err := db.DeleteToken(ctx, tok.ID); err != nil {
			t.Fatal(err)
		}
		got, err := db.FindWebhookByID(ctx, created.ID)
		if err != nil || got.TokenID == nil || *got.TokenID != tok.ID {
			t.Fatalf("webhook after token delete: %+v, %v", got, err)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		err := db.CreateWebhook(ctx, &app.WebhookSubscription{UserID: 999, URL: "u", Query: "q"})
		wantCode(t, err, app.ECONFLICT)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := db.FindWebhookByID(ctx, 999)
		wantCode(t, err, app.ENOTFOUND)
		wantMessage(t, err, "no such webhook")
		wantCode(t, db.DeleteWebhook(ctx, 999), app.ENOTFOUND)
	})
	t.Run("Delete", func(t *testing.T) {
		if err := db.DeleteWebhook(ctx, bobs.ID); err != nil {
			t.Fatal(err)
		}
		_, err := db.FindWebhookByID(ctx, bobs.ID)
		wantCode(t, err, app.ENOTFOUND)
	})
}

func TestWebhookDeliveries(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	w := &app.WebhookSubscription{UserID: alice.ID, URL: "https://a.example", Events: []app.WebhookEvent{app.EventJobCreated}, Query: "q"}
	if err := db.CreateWebhook(ctx, w); err != nil {
		t.Fatal(err)
	}
	later := nowSec.Add(10 * time.Minute)
	due := &app.WebhookDelivery{UUID: "d-due", SubscriptionID: w.ID, Event: app.EventJobCreated, JobID: 1,
		RequestBody: `{"data":{}}`, State: "pending"}
	notYet := &app.WebhookDelivery{UUID: "d-later", SubscriptionID: w.ID, Event: app.EventJobCreated, JobID: 2,
		RequestBody: "{}", State: "pending", NextAttempt: &later}
	done := &app.WebhookDelivery{UUID: "d-done", SubscriptionID: w.ID, Event: app.EventJobCreated, JobID: 3,
		RequestBody: "{}", State: "delivered", ResponseStatus: ptr(200), Attempts: 1}

	t.Run("OK", func(t *testing.T) {
		for _, d := range []*app.WebhookDelivery{due, notYet, done} {
			if err := db.CreateWebhookDelivery(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		if due.NextAttempt == nil || !due.NextAttempt.Equal(nowSec) {
			t.Fatalf("pending delivery without NextAttempt got %v, want now", due.NextAttempt)
		}
		if done.NextAttempt != nil {
			t.Fatalf("delivered delivery got NextAttempt %v", done.NextAttempt)
		}
		list, err := db.FindWebhookDeliveries(ctx, w.ID, app.Page{})
		if err != nil {
			t.Fatal(err)
		} else if !reflect.DeepEqual(list, []*app.WebhookDelivery{done, notYet, due}) {
			t.Fatalf("FindWebhookDeliveries = %+v", list)
		}
		list, err = db.FindWebhookDeliveries(ctx, w.ID, app.Page{BeforeID: &notYet.ID, Limit: 5})
		if err != nil || len(list) != 2 || list[0].ID != notYet.ID {
			t.Fatalf("page = %+v, %v", list, err)
		}
	})
	t.Run("Due", func(t *testing.T) {
		list, err := db.FindDueWebhookDeliveries(ctx, now, 10)
		if err != nil || len(list) != 1 || list[0].ID != due.ID {
			t.Fatalf("due now = %+v, %v", list, err)
		}
		list, err = db.FindDueWebhookDeliveries(ctx, later, 0)
		if err != nil || len(list) != 2 || list[0].ID != due.ID || list[1].ID != notYet.ID {
			t.Fatalf("due later = %+v, %v", list, err)
		}
		list, err = db.FindDueWebhookDeliveries(ctx, later, 1)
		if err != nil || len(list) != 1 {
			t.Fatalf("due later, limit 1 = %+v, %v", list, err)
		}
	})
	t.Run("Update", func(t *testing.T) {
		due.ResponseBody, due.ResponseHeaders, due.ResponseStatus = ptr("ok"), ptr("Content-Type: text/plain"), ptr(200)
		due.Attempts, due.State, due.NextAttempt = 1, "delivered", nil
		if err := db.UpdateWebhookDelivery(ctx, due); err != nil {
			t.Fatal(err)
		}
		list, err := db.FindWebhookDeliveries(ctx, w.ID, app.Page{BeforeID: &due.ID, Limit: 1})
		if err != nil || len(list) != 1 || !reflect.DeepEqual(list[0], due) {
			t.Fatalf("after update = %+v, %v; want %+v", list, err, due)
		}
		if list, err := db.FindDueWebhookDeliveries(ctx, later, 0); err != nil || len(list) != 1 {
			t.Fatalf("due after delivery = %+v, %v", list, err)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		err := db.UpdateWebhookDelivery(ctx, &app.WebhookDelivery{ID: 999, State: "failed"})
		wantCode(t, err, app.ENOTFOUND)
		wantMessage(t, err, "no such webhook delivery")
	})
	t.Run("ErrConflict", func(t *testing.T) {
		err := db.CreateWebhookDelivery(ctx, &app.WebhookDelivery{UUID: "d-due", SubscriptionID: w.ID, Event: app.EventJobCreated, State: "pending"})
		wantCode(t, err, app.ECONFLICT)
		wantMessage(t, err, "a webhook delivery with this UUID already exists")
		err = db.CreateWebhookDelivery(ctx, &app.WebhookDelivery{UUID: "d-x", SubscriptionID: 999, Event: app.EventJobCreated, State: "pending"})
		wantCode(t, err, app.ECONFLICT)
		wantMessage(t, err, "webhook subscription does not exist")
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		err := db.UpdateWebhookDelivery(ctx, &app.WebhookDelivery{ID: due.ID, State: "lost"})
		wantCode(t, err, app.EINVALID)
	})
	t.Run("CascadeOnWebhookDelete", func(t *testing.T) {
		if err := db.DeleteWebhook(ctx, w.ID); err != nil {
			t.Fatal(err)
		}
		list, err := db.FindWebhookDeliveries(ctx, w.ID, app.Page{})
		if err != nil || len(list) != 0 {
			t.Fatalf("deliveries after delete = %+v, %v", list, err)
		}
	})
}
