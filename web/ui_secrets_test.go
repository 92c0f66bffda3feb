package web_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"builds/app"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"golang.org/x/crypto/ssh"
)

// testSSHKey returns a fresh private key in OpenSSH PEM form and its
// public key in authorized_keys form.
func testSSHKey(t *testing.T) (private, public string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "test key")
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block)), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " alice@laptop"
}

// postMultipart sends the add-secret form.
func (e *uiEnv) postMultipart(c *http.Client, path string, fields map[string]string, fileName string, file []byte, headers ...string) uiResp {
	e.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	if fileName != "" {
		fw, _ := mw.CreateFormFile("file", fileName)
		fw.Write(file)
	}
	mw.Close()
	req, _ := http.NewRequest("POST", e.url+path, &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return e.do(c, req)
}

// testPGPKey returns an armored, unprotected PGP private key.
func testPGPKey(t *testing.T) string {
	t.Helper()
	ent, err := openpgp.NewEntity("UI Test", "", "ui@example.org", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
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
	return buf.String()
}

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

func TestUISecrets(t *testing.T) {
	e := newUIEnv(t)
	alice, bob := e.user("alice"), e.user("bob")
	ca, cb := e.client(alice), e.client(bob)
	priv, _ := testSSHKey(t)
	e.get(e.client(nil), "/secrets").want(t, http.StatusSeeOther)

	r := e.postMultipart(ca, "/secrets", map[string]string{"name": "deploy-key", "type": "ssh_key", "secret": priv}, "", nil)
	r.want(t, http.StatusSeeOther)
	r = e.get(ca, "/secrets")
	r.want(t, http.StatusOK, "Successfully added secret ", "deploy-key", "SSH key")
	r.lacks(t, "OPENSSH PRIVATE KEY", strings.Split(priv, "\n")[1])
	uuid := uuidRE.FindString(r.body)
	if uuid == "" {
		t.Fatal("no secret UUID on the page")
	}

	// A file secret, uploaded.
	r = e.postMultipart(ca, "/secrets", map[string]string{"type": "plaintext_file", "path": "~/.netrc", "mode": "600"}, "netrc", []byte("machine x login y password z\n"))
	r.want(t, http.StatusSeeOther)
	e.get(ca, "/secrets").want(t, http.StatusOK, "~/.netrc", "mode <code>600</code>")

	// A PGP key, pasted.
	e.postMultipart(ca, "/secrets", map[string]string{"type": "pgp_key", "name": "signing", "secret": testPGPKey(t)}, "", nil).
		want(t, http.StatusSeeOther)
	e.get(ca, "/secrets").want(t, http.StatusOK, "signing", "PGP key")

	tests := []struct {
		name    string
		fields  map[string]string
		file    []byte
		status  int
		message string
	}{
		{"nothing given", map[string]string{"type": "ssh_key"}, nil, 400, "Either secret text or file have to be provided"},
		{"not a key", map[string]string{"type": "ssh_key", "secret": "hello"}, nil, 400, "not an SSH private key"},
		{"bad mode", map[string]string{"type": "plaintext_file", "path": "~/x", "mode": "9z", "secret": "x"}, nil, 400, "Must be specified in octal"},
		{"short name", map[string]string{"type": "plaintext_file", "path": "~/x", "mode": "600", "secret": "x", "name": "ab"}, nil, 400, "Name must be between 3 and 512 characters"},
		{"file over 16 KiB", map[string]string{"type": "plaintext_file", "path": "~/x", "mode": "600"}, bytes.Repeat([]byte("a"), 20<<10), 400, "limited to 16384 bytes"},
		{"request far too large", map[string]string{"type": "plaintext_file", "path": "~/x", "mode": "600"}, bytes.Repeat([]byte("a"), 200<<10), 413, "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := ""
			if tt.file != nil {
				name = "upload"
			}
			e.postMultipart(ca, "/secrets", tt.fields, name, tt.file).want(t, tt.status, tt.message)
		})
	}
	e.postMultipart(ca, "/secrets", map[string]string{"type": "ssh_key", "secret": priv}, "", nil, "Sec-Fetch-Site", "cross-site").
		want(t, http.StatusForbidden)

	// Share with bob: bob's list shows it as shared by alice.
	e.get(ca, "/secret/share/"+uuid).want(t, http.StatusOK, "cannot be undone")
	e.get(cb, "/secret/share/"+uuid).want(t, http.StatusNotFound)
	e.post(ca, "/secret/share/"+uuid, url.Values{"username": {"nobody"}}).want(t, http.StatusNotFound, "No such user")
	e.post(ca, "/secret/share/"+uuid, url.Values{"username": {"~bob"}}).want(t, http.StatusSeeOther)
	e.get(ca, "/secrets").want(t, http.StatusOK, "deploy-key successfully shared with ~bob.")
	e.get(cb, "/secrets").want(t, http.StatusOK, uuid, "shared by ~alice")
	e.post(ca, "/secret/share/"+uuid, url.Values{"username": {"bob"}}).want(t, http.StatusConflict, "already has this secret")

	// Delete: confirm page, then the post; bob cannot delete alice's copy.
	e.get(ca, "/secret/delete/"+uuid).want(t, http.StatusOK, "Delete")
	e.get(ca, "/secret/delete/00000000-0000-4000-8000-000000000000").want(t, http.StatusNotFound)
	e.post(cb, "/secret/delete", url.Values{"uuid": {uuid}}).want(t, http.StatusSeeOther) // deletes bob's own copy
	e.post(ca, "/secret/delete", url.Values{"uuid": {uuid}}).want(t, http.StatusSeeOther)
	e.get(ca, "/secrets").want(t, http.StatusOK, "Successfully removed secret "+uuid+" (deploy-key).")
	e.post(ca, "/secret/delete", url.Values{"uuid": {uuid}}).want(t, http.StatusNotFound)
	list, _ := e.svc.Secrets(as(alice), nil)
	if len(list.Secrets) != 2 {
		t.Errorf("alice has %d secrets, want 2 (the file and the PGP key)", len(list.Secrets))
	}
}

func TestUISettings(t *testing.T) {
	e := newUIEnv(t)
	alice, bob := e.user("alice"), e.user("bob")
	c := e.client(alice)
	other := e.client(alice) // a second session of alice's
	e.get(c, "/settings").want(t, http.StatusOK, "Password", "SSH keys", "Personal access tokens")

	// SSH keys.
	_, pub := testSSHKey(t)
	e.post(c, "/settings/ssh-keys", url.Values{"key": {"not a key"}}).want(t, http.StatusBadRequest, "invalid SSH public key")
	e.post(c, "/settings/ssh-keys", url.Values{"key": {pub}}).want(t, http.StatusSeeOther)
	r := e.get(c, "/settings")
	r.want(t, http.StatusOK, "SSH key SHA256:", "alice@laptop")
	keys, _ := e.svc.SSHKeys(as(alice))
	if len(keys) != 1 {
		t.Fatalf("%d keys", len(keys))
	}
	keyPath := "/settings/ssh-keys/" + itoa(keys[0].ID) + "/delete"
	e.post(e.client(bob), keyPath, nil).want(t, http.StatusNotFound)
	e.post(c, keyPath, nil).want(t, http.StatusSeeOther)

	// Tokens: shown once, usable, revocable.
	r = e.post(c, "/settings/tokens", url.Values{"comment": {"ci"}, "scope-PROFILE": {"none"}, "scope-JOBS": {"RW"},
		"scope-LOGS": {"RO"}, "scope-SECRETS": {"none"}, "expires": {"30d"}})
	r.want(t, http.StatusOK, "not shown again", "JOBS:RW LOGS:RO")
	m := regexp.MustCompile(`<pre class="cmd token" id="new-token">([A-Za-z0-9_-]+)</pre>`).FindStringSubmatch(r.body)
	if m == nil {
		t.Fatal("token not shown")
	}
	auth, err := e.svc.Authenticate(context.Background(), m[1])
	if err != nil || auth.User.ID != alice.ID || !auth.Grants.Has(app.ScopeJobs, app.RW) || auth.Grants.Has(app.ScopeSecrets, app.RO) {
		t.Fatalf("token auth = %+v, %v", auth, err)
	}
	e.get(c, "/settings").lacks(t, m[1])
	e.post(c, "/settings/tokens", url.Values{"scope-JOBS": {"ALL"}}).want(t, http.StatusBadRequest, "invalid access")
	e.post(c, "/settings/tokens", url.Values{"scope-JOBS": {"none"}}).want(t, http.StatusBadRequest, "at least one grant")
	e.post(c, "/settings/tokens", url.Values{"scope-JOBS": {"RO"}, "expires": {"soon"}}).want(t, http.StatusBadRequest, "invalid expiry")
	tokens, _ := e.svc.Tokens(as(alice))
	e.post(e.client(bob), "/settings/tokens/"+itoa(tokens[0].ID)+"/revoke", nil).want(t, http.StatusNotFound)
	e.post(c, "/settings/tokens/"+itoa(tokens[0].ID)+"/revoke", nil).want(t, http.StatusSeeOther)
	if _, err := e.svc.Authenticate(context.Background(), m[1]); err == nil {
		t.Error("revoked token still works")
	}

	// Password: checked, confirmed, and other sessions end.
	e.post(c, "/settings/password", url.Values{"current": {"wrong"}, "new": {"new-password-1"}, "confirm": {"new-password-1"}}).
		want(t, http.StatusBadRequest, "current password is wrong")
	e.post(c, "/settings/password", url.Values{"current": {"password-alice"}, "new": {"new-password-1"}, "confirm": {"other"}}).
		want(t, http.StatusBadRequest, "do not match")
	e.post(c, "/settings/password", url.Values{"current": {"password-alice"}, "new": {"short"}, "confirm": {"short"}}).
		want(t, http.StatusBadRequest, "at least 8")
	e.post(c, "/settings/password", url.Values{"current": {"password-alice"}, "new": {"new-password-1"}, "confirm": {"new-password-1"}}).
		want(t, http.StatusSeeOther)
	e.get(c, "/settings").want(t, http.StatusOK, "Your password was changed")
	e.get(other, "/settings").want(t, http.StatusSeeOther)
	if _, err := e.svc.Login(context.Background(), "alice", "new-password-1"); err != nil {
		t.Errorf("login with the new password: %v", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
