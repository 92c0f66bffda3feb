package store_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"builds/app"
)

func TestSessions(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	s1 := &app.Session{UserID: alice.ID, Hash: "h1", Expires: nowSec.Add(time.Hour)}
	s2 := &app.Session{UserID: alice.ID, Hash: "h2", Expires: nowSec.Add(time.Hour)}

	t.Run("OK", func(t *testing.T) {
		for _, s := range []*app.Session{s1, s2} {
			if err := db.CreateSession(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.FindSessionByHash(ctx, "h1")
		if err != nil {
			t.Fatal(err)
		} else if !reflect.DeepEqual(got, s1) {
			t.Fatalf("got %+v, want %+v", got, s1)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		err := db.CreateSession(ctx, &app.Session{UserID: alice.ID, Hash: "h1", Expires: nowSec.Add(time.Hour)})
		wantCode(t, err, app.ECONFLICT)
		err = db.CreateSession(ctx, &app.Session{UserID: 999, Hash: "h9", Expires: nowSec.Add(time.Hour)})
		wantCode(t, err, app.ECONFLICT)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := db.FindSessionByHash(ctx, "nope")
		wantCode(t, err, app.ENOTFOUND)
		wantMessage(t, err, "no such session")
		wantCode(t, db.DeleteSession(ctx, "nope"), app.ENOTFOUND)
	})
	t.Run("DeleteUserSessions", func(t *testing.T) {
		if err := db.DeleteUserSessions(ctx, alice.ID, "h2"); err != nil {
			t.Fatal(err)
		}
		_, err := db.FindSessionByHash(ctx, "h1")
		wantCode(t, err, app.ENOTFOUND)
		if err := db.DeleteSession(ctx, "h2"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SweepExpired", func(t *testing.T) {
		old := &app.Session{UserID: alice.ID, Hash: "old", Expires: nowSec.Add(time.Minute)}
		if err := db.CreateSession(ctx, old); err != nil {
			t.Fatal(err)
		}
		db.Now = func() time.Time { return now.Add(time.Hour) }
		defer func() { db.Now = func() time.Time { return now } }()
		if err := db.CreateSession(ctx, &app.Session{UserID: alice.ID, Hash: "new", Expires: nowSec.Add(2 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		_, err := db.FindSessionByHash(ctx, "old")
		wantCode(t, err, app.ENOTFOUND)
	})
}
