package store_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"builds/app"
)

func TestCreateUser(t *testing.T) {
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		db := MustOpenDB(t)
		defer MustCloseDB(t, db)
		u := &app.User{Username: "alice", Email: "alice@example.org", URL: "https://a.example", Location: "Earth",
			Bio: "hi", Admin: true, PasswordHash: "$2a$hash"}
		if err := db.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		if u.ID == 0 || !u.Created.Equal(nowSec) || !u.Updated.Equal(nowSec) {
			t.Fatalf("unexpected id/times: %+v", u)
		}
		got, err := db.FindUserByID(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, u) {
			t.Fatalf("got %+v, want %+v", got, u)
		}
		if got.Created.Location() != time.UTC {
			t.Fatalf("time not in UTC: %v", got.Created)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		db := MustOpenDB(t)
		defer MustCloseDB(t, db)
		MustCreateUser(t, db, "alice")
		err := db.CreateUser(ctx, &app.User{Username: "alice", Email: "other@example.org"})
		wantCode(t, err, app.ECONFLICT)
		wantMessage(t, err, "a user with this username already exists")
	})
}

func TestFindUser(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	bob := MustCreateUser(t, db, "bob")

	t.Run("OK", func(t *testing.T) {
		if u, err := db.FindUserByName(ctx, "bob"); err != nil {
			t.Fatal(err)
		} else if u.ID != bob.ID {
			t.Fatalf("found user %d, want %d", u.ID, bob.ID)
		}
		users, err := db.FindUsers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(users) != 2 || users[0].ID != alice.ID || users[1].ID != bob.ID {
			t.Fatalf("FindUsers = %+v", users)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := db.FindUserByID(ctx, 999)
		wantCode(t, err, app.ENOTFOUND)
		wantMessage(t, err, "no such user")
		_, err = db.FindUserByName(ctx, "carol")
		wantCode(t, err, app.ENOTFOUND)
	})
}

func TestUpdateUser(t *testing.T) {
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		db := MustOpenDB(t)
		defer MustCloseDB(t, db)
		u := MustCreateUser(t, db, "alice")
		later := now.Add(time.Hour)
		db.Now = func() time.Time { return later }
		got, err := db.UpdateUser(ctx, u.ID, app.UserUpdate{Email: ptr("new@example.org"), Admin: ptr(true),
			Bio: ptr("bio"), URL: ptr("https://x"), Location: ptr("Mars"), PasswordHash: ptr("h")})
		if err != nil {
			t.Fatal(err)
		}
		want := *u
		want.Email, want.Admin, want.Bio, want.URL, want.Location, want.PasswordHash = "new@example.org", true, "bio", "https://x", "Mars", "h"
		want.Updated = later.Truncate(time.Second)
		if !reflect.DeepEqual(got, &want) {
			t.Fatalf("got %+v, want %+v", got, &want)
		}
		// An empty update only touches Updated.
		if got, err := db.UpdateUser(ctx, u.ID, app.UserUpdate{}); err != nil {
			t.Fatal(err)
		} else if got.Email != "new@example.org" {
			t.Fatalf("empty update changed email to %q", got.Email)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		db := MustOpenDB(t)
		defer MustCloseDB(t, db)
		_, err := db.UpdateUser(ctx, 42, app.UserUpdate{Bio: ptr("x")})
		wantCode(t, err, app.ENOTFOUND)
	})
}

func TestDeleteUser(t *testing.T) {
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		db := MustOpenDB(t)
		defer MustCloseDB(t, db)
		alice := MustCreateUser(t, db, "alice")
		bob := MustCreateUser(t, db, "bob")

		// Give alice one of everything.
		job := MustCreateJob(t, db, alice.ID, app.JobPending)
		bobJob := MustCreateJob(t, db, bob.ID, app.JobPending)
		if err := db.CreateArtifact(ctx, &app.Artifact{JobID: job.ID, Name: "a", Path: "/a", File: "1/a"}); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateTriggerDelivery(ctx, &app.TriggerDelivery{JobID: &job.ID, Action: "email", Status: "sent"}); err != nil {
			t.Fatal(err)
		}
		g := &app.JobGroup{OwnerID: alice.ID}
		if err := db.CreateGroup(ctx, g, []int64{job.ID}, []*app.GroupTrigger{{Action: "email", Condition: "always"}}, nil); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateSSHKey(ctx, &app.SSHKey{UserID: alice.ID, Key: "ssh-ed25519 AAAA", Fingerprint: "SHA256:a"}); err != nil {
			t.Fatal(err)
		}
		tok := &app.Token{UserID: alice.ID, Hash: "h1"}
		if err := db.CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateSecret(ctx, &app.Secret{UserID: alice.ID, UUID: "u1", Type: app.SecretFile, Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		// A copy alice shared with bob survives her, without a sharer.
		if err := db.CreateSecret(ctx, &app.Secret{UserID: bob.ID, UUID: "u1", FromUserID: &alice.ID, Type: app.SecretFile, Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		w := &app.WebhookSubscription{UserID: alice.ID, URL: "https://h", Events: []app.WebhookEvent{app.EventJobCreated}, TokenID: &tok.ID}
		if err := db.CreateWebhook(ctx, w); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateWebhookDelivery(ctx, &app.WebhookDelivery{UUID: "d1", SubscriptionID: w.ID, Event: app.EventJobCreated, JobID: job.ID, State: "pending"}); err != nil {
			t.Fatal(err)
		}

		if err := db.DeleteUser(ctx, alice.ID); err != nil {
			t.Fatal(err)
		}
		counts := map[string]int{"ssh_keys": 0, "tokens": 0, "jobs": 1, "tasks": 1, "artifacts": 0,
			"job_groups": 0, "group_triggers": 0, "trigger_deliveries": 0, "webhook_subscriptions": 0,
			"webhook_deliveries": 0, "secrets": 1, "users": 1}
		for table, want := range counts {
			var n int
			if err := db.SQL().QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
				t.Fatal(err)
			} else if n != want {
				t.Errorf("%s: %d rows left, want %d", table, n, want)
			}
		}
		if _, err := db.FindJobByID(ctx, bobJob.ID); err != nil {
			t.Fatal(err)
		}
		s, err := db.FindSecretByUUID(ctx, bob.ID, "u1")
		if err != nil {
			t.Fatal(err)
		} else if s.FromUserID != nil {
			t.Fatalf("shared secret keeps FromUserID %d", *s.FromUserID)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		db := MustOpenDB(t)
		defer MustCloseDB(t, db)
		wantCode(t, db.DeleteUser(ctx, 7), app.ENOTFOUND)
	})
}

func TestSSHKeys(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	bob := MustCreateUser(t, db, "bob")
	k := &app.SSHKey{UserID: alice.ID, Key: "ssh-ed25519 AAAA", Fingerprint: "SHA256:abc", Comment: "laptop"}

	t.Run("OK", func(t *testing.T) {
		if err := db.CreateSSHKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		if k.ID == 0 || !k.Created.Equal(nowSec) {
			t.Fatalf("unexpected key %+v", k)
		}
		keys, err := db.FindSSHKeys(ctx, alice.ID)
		if err != nil {
			t.Fatal(err)
		} else if len(keys) != 1 || !reflect.DeepEqual(keys[0], k) {
			t.Fatalf("FindSSHKeys = %+v, want [%+v]", keys, k)
		}
		u, err := db.FindUserBySSHFingerprint(ctx, "SHA256:abc")
		if err != nil {
			t.Fatal(err)
		} else if !reflect.DeepEqual(u, alice) {
			t.Fatalf("got %+v, want %+v", u, alice)
		}
		if keys, err := db.FindSSHKeys(ctx, bob.ID); err != nil || len(keys) != 0 || keys == nil {
			t.Fatalf("bob's keys = %#v, %v; want empty", keys, err)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		err := db.CreateSSHKey(ctx, &app.SSHKey{UserID: bob.ID, Key: "ssh-ed25519 AAAA", Fingerprint: "SHA256:abc"})
		wantCode(t, err, app.ECONFLICT)
		wantMessage(t, err, "this SSH key is already registered")
		err = db.CreateSSHKey(ctx, &app.SSHKey{UserID: 999, Key: "k", Fingerprint: "SHA256:new"})
		wantCode(t, err, app.ECONFLICT)
		wantMessage(t, err, "user does not exist")
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := db.FindUserBySSHFingerprint(ctx, "SHA256:nope")
		wantCode(t, err, app.ENOTFOUND)
		// Someone else's key is not found either.
		wantCode(t, db.DeleteSSHKey(ctx, bob.ID, k.ID), app.ENOTFOUND)
	})
	t.Run("Delete", func(t *testing.T) {
		if err := db.DeleteSSHKey(ctx, alice.ID, k.ID); err != nil {
			t.Fatal(err)
		}
		wantCode(t, db.DeleteSSHKey(ctx, alice.ID, k.ID), app.ENOTFOUND)
	})
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	exp := nowSec.Add(24 * time.Hour)
	k := &app.Token{UserID: alice.ID, Expires: &exp, Hash: "abc123", Grants: "JOBS:RO", Comment: "ci"}

	t.Run("OK", func(t *testing.T) {
		if err := db.CreateToken(ctx, k); err != nil {
			t.Fatal(err)
		}
		got, u, err := db.FindTokenByHash(ctx, "abc123")
		if err != nil {
			t.Fatal(err)
		} else if !reflect.DeepEqual(got, k) {
			t.Fatalf("got %+v, want %+v", got, k)
		} else if !reflect.DeepEqual(u, alice) {
			t.Fatalf("token user %+v, want %+v", u, alice)
		}
		if got, err := db.FindTokenByID(ctx, k.ID); err != nil || got.Hash != "abc123" {
			t.Fatalf("FindTokenByID = %+v, %v", got, err)
		}
		later := now.Add(time.Minute)
		db.Now = func() time.Time { return later }
		defer func() { db.Now = func() time.Time { return now } }()
		if err := db.TouchToken(ctx, k.ID); err != nil {
			t.Fatal(err)
		}
		list, err := db.FindTokens(ctx, alice.ID)
		if err != nil {
			t.Fatal(err)
		} else if len(list) != 1 || list[0].LastUsed == nil || !list[0].LastUsed.Equal(later.Truncate(time.Second)) {
			t.Fatalf("FindTokens = %+v", list)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		err := db.CreateToken(ctx, &app.Token{UserID: alice.ID, Hash: "abc123"})
		wantCode(t, err, app.ECONFLICT)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, _, err := db.FindTokenByHash(ctx, "nope")
		wantCode(t, err, app.ENOTFOUND)
		wantMessage(t, err, "no such token")
		wantCode(t, db.TouchToken(ctx, 999), app.ENOTFOUND)
		wantCode(t, db.DeleteToken(ctx, 999), app.ENOTFOUND)
	})
	t.Run("Delete", func(t *testing.T) {
		if err := db.DeleteToken(ctx, k.ID); err != nil {
			t.Fatal(err)
		}
		_, err := db.FindTokenByID(ctx, k.ID)
		wantCode(t, err, app.ENOTFOUND)
	})
}
