package store_test

import (
	"context"
	"reflect"
	"testing"

	"builds/app"
)

func TestSecrets(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	defer MustCloseDB(t, db)
	alice := MustCreateUser(t, db, "alice")
	bob := MustCreateUser(t, db, "bob")
	key := &app.Secret{UserID: alice.ID, UUID: "11111111-1111-1111-1111-111111111111", Name: ptr("deploy"),
		Type: app.SecretSSHKey, Data: []byte("-----BEGIN-----\x00\xff")}
	file := &app.Secret{UserID: alice.ID, UUID: "22222222-2222-2222-2222-222222222222",
		Type: app.SecretFile, Data: []byte("token"), Path: ptr("~/.token"), Mode: ptr(0o600)}

	t.Run("OK", func(t *testing.T) {
		for _, s := range []*app.Secret{key, file} {
			if err := db.CreateSecret(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.FindSecretByUUID(ctx, alice.ID, file.UUID)
		if err != nil {
			t.Fatal(err)
		} else if !reflect.DeepEqual(got, file) {
			t.Fatalf("got %+v, want %+v", got, file)
		}
		if got, err := db.FindSecretByRef(ctx, alice.ID, "deploy"); err != nil || !reflect.DeepEqual(got, key) {
			t.Fatalf("by name: %+v, %v", got, err)
		}
		if got, err := db.FindSecretByRef(ctx, alice.ID, file.UUID); err != nil || got.ID != file.ID {
			t.Fatalf("by uuid: %+v, %v", got, err)
		}
		// Sharing: bob gets a copy with the same UUID.
		shared := &app.Secret{UserID: bob.ID, UUID: key.UUID, Name: key.Name, FromUserID: &alice.ID, Type: key.Type, Data: key.Data}
		if err := db.CreateSecret(ctx, shared); err != nil {
			t.Fatal(err)
		}
		if got, err := db.FindSecretByUUID(ctx, bob.ID, key.UUID); err != nil || *got.FromUserID != alice.ID {
			t.Fatalf("bob's copy: %+v, %v", got, err)
		}
	})
	t.Run("RefPrefersUUID", func(t *testing.T) {
		// A secret named like another secret's UUID.
		s := &app.Secret{UserID: alice.ID, UUID: "33333333-3333-3333-3333-333333333333", Name: ptr(file.UUID),
			Type: app.SecretFile, Data: []byte("x"), Path: ptr("/x"), Mode: ptr(0o644)}
		if err := db.CreateSecret(ctx, s); err != nil {
			t.Fatal(err)
		}
		if got, err := db.FindSecretByRef(ctx, alice.ID, file.UUID); err != nil || got.ID != file.ID {
			t.Fatalf("got %+v, %v; want the UUID match %d", got, err, file.ID)
		}
		if err := db.DeleteSecret(ctx, alice.ID, s.UUID); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Paging", func(t *testing.T) {
		all, err := db.FindSecrets(ctx, alice.ID, app.Page{})
		if err != nil {
			t.Fatal(err)
		} else if len(all) != 2 || all[0].ID != file.ID || all[1].ID != key.ID {
			t.Fatalf("FindSecrets = %+v", all)
		}
		page, err := db.FindSecrets(ctx, alice.ID, app.Page{BeforeID: &key.ID, Limit: 1})
		if err != nil || len(page) != 1 || page[0].ID != key.ID {
			t.Fatalf("page = %+v, %v", page, err)
		}
		page, err = db.FindSecrets(ctx, alice.ID, app.Page{Limit: 1})
		if err != nil || len(page) != 1 || page[0].ID != file.ID {
			t.Fatalf("first page = %+v, %v", page, err)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		err := db.CreateSecret(ctx, &app.Secret{UserID: alice.ID, UUID: key.UUID, Type: app.SecretFile, Data: []byte("x")})
		wantCode(t, err, app.ECONFLICT)
		wantMessage(t, err, "secret already exists for this user")
		err = db.CreateSecret(ctx, &app.Secret{UserID: alice.ID, UUID: "44444444", Name: ptr("deploy"), Type: app.SecretFile, Data: []byte("x")})
		wantCode(t, err, app.ECONFLICT)
		wantMessage(t, err, "a secret with this name already exists for this user")
		err = db.CreateSecret(ctx, &app.Secret{UserID: 999, UUID: "55555555", Type: app.SecretFile, Data: []byte("x")})
		wantCode(t, err, app.ECONFLICT)
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		err := db.CreateSecret(ctx, &app.Secret{UserID: alice.ID, UUID: "66666666", Type: "password", Data: []byte("x")})
		wantCode(t, err, app.EINVALID)
		err = db.CreateSecret(ctx, &app.Secret{UserID: alice.ID, Type: app.SecretFile, Data: []byte("x")})
		wantCode(t, err, app.EINVALID)
		wantMessage(t, err, "secret UUID is required")
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := db.FindSecretByUUID(ctx, bob.ID, file.UUID)
		wantCode(t, err, app.ENOTFOUND)
		wantMessage(t, err, "no such secret")
		_, err = db.FindSecretByRef(ctx, alice.ID, "nope")
		wantCode(t, err, app.ENOTFOUND)
		wantCode(t, db.DeleteSecret(ctx, bob.ID, file.UUID), app.ENOTFOUND)
	})
	t.Run("Delete", func(t *testing.T) {
		if err := db.DeleteSecret(ctx, alice.ID, key.UUID); err != nil {
			t.Fatal(err)
		}
		_, err := db.FindSecretByUUID(ctx, alice.ID, key.UUID)
		wantCode(t, err, app.ENOTFOUND)
		// Bob's shared copy stays.
		if _, err := db.FindSecretByUUID(ctx, bob.ID, key.UUID); err != nil {
			t.Fatal(err)
		}
	})
}
