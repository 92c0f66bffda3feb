package web

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"builds/app"
)

// pgpKey returns an armored, unprotected PGP private key.
func pgpKey(t testing.TB) []byte {
	t.Helper()
	ent, err := openpgp.NewEntity("Build Bot", "", "bot@example.org", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PrivateKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ent.SerializePrivate(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return buf.Bytes()
}

func (e *apiEnv) secret(u *app.User, in app.SecretInput) *app.Secret {
	e.t.Helper()
	s, err := e.svc.CreateSecret(app.SystemContext(context.Background()), u.ID, in)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// hut's "builds secret list" operation.
const hutSecrets = "query secrets ($cursor: Cursor) {\n\tsecrets(cursor: $cursor) {\n\t\tresults {\n\t\t\tcreated\n\t\t\tuuid\n\t\t\tname\n" +
	"\t\t\tfromUser {\n\t\t\t\tcanonicalName\n\t\t\t}\n\t\t\t__typename\n\t\t\t... on SecretFile {\n\t\t\t\tpath\n\t\t\t\tmode\n\t\t\t}\n\t\t}\n\t\tcursor\n\t}\n}\n"

func TestSecrets(t *testing.T) {
	e := newAPIEnv(t)
	alice, tok := e.user("alice")
	bob, bobTok := e.user("bob")
	ssh := e.secret(alice, app.SecretInput{Type: app.SecretSSHKey, Name: "deploy key", Data: sshKeyPEM(t)})
	pgp := e.secret(alice, app.SecretInput{Type: app.SecretPGPKey, Data: pgpKey(t)})
	file := e.secret(alice, app.SecretInput{Type: app.SecretFile, Name: "netrc", Data: []byte("machine x\n"), Path: "~/.netrc", Mode: 0o600})

	d := e.mustQuery(tok, hutSecrets, nil)
	res := get(d, "secrets", "results").([]any)
	if len(res) != 3 || get(d, "secrets", "cursor") != nil {
		t.Fatalf("secrets = %v", d)
	}
	want := []string{
		fmt.Sprintf("map[__typename:SecretFile created:%s fromUser:<nil> mode:384 name:netrc path:~/.netrc uuid:%s]", file.Created.Format(time.RFC3339), file.UUID),
		fmt.Sprintf("map[__typename:PGPKey created:%s fromUser:<nil> name:<nil> uuid:%s]", pgp.Created.Format(time.RFC3339), pgp.UUID),
		fmt.Sprintf("map[__typename:SSHKey created:%s fromUser:<nil> name:deploy key uuid:%s]", ssh.Created.Format(time.RFC3339), ssh.UUID),
	}
	for i, w := range want {
		if got := fmt.Sprint(res[i]); got != w {
			t.Errorf("secret %d = %s, want %s", i, got, w)
		}
	}

	share := "mutation shareSecret ($uuid: String!, $user: String!) {\n\tshareSecret(uuid: $uuid, user: $user) {\n\t\tuuid\n\t}\n}\n"
	d = e.mustQuery(tok, share, map[string]any{"uuid": ssh.UUID, "user": "bob"})
	if get(d, "shareSecret", "uuid") != ssh.UUID {
		t.Errorf("shareSecret = %v", d)
	}
	d = e.mustQuery(bobTok, hutSecrets, nil)
	if fmt.Sprint(get(d, "secrets", "results", 0, "fromUser")) != "map[canonicalName:~alice]" || get(d, "secrets", "results", 0, "__typename") != "SSHKey" {
		t.Errorf("bob's secrets = %v", d)
	}
	for _, c := range []struct{ name, token, uuid, user, want string }{
		{"Twice", tok, ssh.UUID, "~bob", "already has this secret"},
		{"NoSuchUser", tok, ssh.UUID, "carol", "No such user"},
		{"NoSuchSecret", tok, "00000000-0000-4000-8000-000000000000", "bob", "No such secret"},
		{"NotMine", bobTok, pgp.UUID, "alice", "No such secret"},
		{"Myself", tok, pgp.UUID, "alice", "cannot share a secret with yourself"},
	} {
		t.Run("Share"+c.name, func(t *testing.T) {
			r := e.query(c.token, share, map[string]any{"uuid": c.uuid, "user": c.user})
			if !strings.Contains(r.errText(), c.want) || r.Data != nil {
				t.Errorf("got %s, want %q", r.Raw, c.want)
			}
		})
	}

	// Job.secrets: the secrets a job's manifest names, for its owner.
	manifest := "image: alpine/latest\nsecrets:\n  - deploy key\n  - " + file.UUID + "\ntasks:\n  - a: b\n"
	job, err := e.svc.Submit(as(alice), app.SubmitInput{Manifest: manifest, Visibility: ptr(app.Public)})
	if err != nil {
		t.Fatal(err)
	}
	q := fmt.Sprintf("{ job(id: %d) { secrets { __typename uuid name } } }", job.ID)
	d = e.mustQuery(tok, q, nil)
	if fmt.Sprint(get(d, "job", "secrets")) != fmt.Sprintf("[map[__typename:SSHKey name:deploy key uuid:%s] map[__typename:SecretFile name:netrc uuid:%s]]", ssh.UUID, file.UUID) {
		t.Errorf("job secrets = %v", d)
	}
	d = e.mustQuery(bobTok, q, nil)
	if fmt.Sprint(get(d, "job", "secrets")) != "[]" {
		t.Errorf("bob sees job secrets %v", d)
	}
	_ = bob
}

func TestSecretsPaging(t *testing.T) {
	e := newAPIEnv(t)
	alice, tok := e.user("alice")
	for i := 0; i < 30; i++ {
		e.secret(alice, app.SecretInput{Type: app.SecretFile, Name: fmt.Sprintf("file-%02d", i), Data: []byte("x"), Path: "~/x", Mode: 0o644})
	}
	d := e.mustQuery(tok, hutSecrets, nil)
	cursor := get(d, "secrets", "cursor")
	if n := len(get(d, "secrets", "results").([]any)); n != 25 || cursor == nil {
		t.Fatalf("first page: %d results, cursor %v", n, cursor)
	}
	d = e.mustQuery(tok, hutSecrets, map[string]any{"cursor": cursor})
	if n := len(get(d, "secrets", "results").([]any)); n != 5 || get(d, "secrets", "cursor") != nil || get(d, "secrets", "results", 4, "name") != "file-00" {
		t.Fatalf("second page: %v", d)
	}
	r := e.query(tok, "query q($c: Cursor) { jobs(cursor: $c) { cursor } }", map[string]any{"c": cursor})
	if r.errText() != "Invalid cursor" {
		t.Errorf("secrets cursor on jobs: %s", r.Raw)
	}
}
