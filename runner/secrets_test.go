package runner

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"builds/app"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"golang.org/x/crypto/ssh"
)

func newSSHKey(t testing.TB) []byte {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

func newPGPKey(t testing.TB) []byte {
	t.Helper()
	e, err := openpgp.NewEntity("Build Bot", "", "bot@example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PrivateKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SerializePrivate(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return b.Bytes()
}

func (h *harness) secret(in app.SecretInput) *app.Secret {
	h.t.Helper()
	s, err := h.svc.CreateSecret(h.ctx, h.user.ID, in)
	if err != nil {
		h.t.Fatalf("create secret: %v", err)
	}
	return s
}

func TestSecrets(t *testing.T) {
	h := newHarness(t)
	key1, key2 := newSSHKey(t), newSSHKey(t)
	h.secret(app.SecretInput{Type: app.SecretSSHKey, Name: "deploy-key", Data: key1})
	k2 := h.secret(app.SecretInput{Type: app.SecretSSHKey, Data: key2})
	h.secret(app.SecretInput{Type: app.SecretPGPKey, Name: "signing", Data: newPGPKey(t)})
	h.secret(app.SecretInput{Type: app.SecretFile, Name: "netrc", Data: []byte("machine example.org password hunter2-hunter2\n"), Path: "~/deep/dir/.netrc", Mode: 0o640})
	h.secret(app.SecretInput{Type: app.SecretFile, Name: "relative", Data: []byte("relative-secret-content"), Path: "rel/file.txt", Mode: 0o600})
	job := h.submit(`image: debian/stable
secrets: [deploy-key, ` + k2.UUID + `, signing, netrc, relative]
tasks:
  - check: |
      gpg --batch --list-secret-keys bot@example.org
`)
	got := h.wait(job.ID)
	home := h.home(job.ID)
	t.Cleanup(func() { exec.Command("gpgconf", "--homedir", filepath.Join(home, ".gnupg"), "--kill", "all").Run() })
	setup := h.log(job.ID, "")
	if got.Status != app.JobSuccess {
		t.Fatalf("status = %s; log:\n%s", got.Status, setup)
	}
	linesInOrder(t, setup, "Sending secrets", "Resolving secret deploy-key", "Resolving secret "+k2.UUID,
		"Resolving secret signing", "secret key imported", "Resolving secret netrc", "Resolving secret relative")
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{".ssh/deploy-key", key1, 0o600},
		{".ssh/" + k2.UUID, key2, 0o600},
		{"deep/dir/.netrc", []byte("machine example.org password hunter2-hunter2\n"), 0o640},
		{"rel/file.txt", []byte("relative-secret-content"), 0o600},
	}
	for _, f := range files {
		p := filepath.Join(home, f.path)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%s: %v", f.path, err)
			continue
		}
		if !bytes.Equal(b, f.data) {
			t.Errorf("%s = %q, want %q", f.path, b, f.data)
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != f.mode {
			t.Errorf("%s mode = %v, want %v", f.path, fi.Mode().Perm(), f.mode)
		}
	}
	if dst, err := os.Readlink(filepath.Join(home, ".ssh/id_rsa")); err != nil || filepath.Base(dst) != "deploy-key" {
		t.Errorf("id_rsa -> %q (%v), want the first key", dst, err)
	}
	if !strings.Contains(h.log(job.ID, "check"), "bot@example.org") {
		t.Errorf("pgp key not imported:\n%s", h.log(job.ID, "check"))
	}
}

func TestSecretsDisabled(t *testing.T) {
	h := newHarness(t)
	h.secret(app.SecretInput{Type: app.SecretFile, Name: "netrc", Data: []byte("secret-material"), Path: "~/.netrc", Mode: 0o600})
	no := false
	job, err := h.svc.Submit(h.ctx, app.SubmitInput{Secrets: &no, Manifest: "image: debian/stable\nsecrets: [netrc]\noauth: builds.sr.ht/JOBS\ntasks:\n  - a: test ! -e ~/.netrc && test -z \"$OAUTH2_TOKEN\"\n"})
	if err != nil {
		t.Fatal(err)
	}
	if got := h.wait(job.ID); got.Status != app.JobSuccess {
		t.Fatalf("status = %s; log:\n%s\n%s", got.Status, h.log(job.ID, ""), h.log(job.ID, "a"))
	}
	if strings.Contains(h.log(job.ID, ""), "Sending secrets") {
		t.Error("secrets sent although disabled")
	}
}

func TestMasking(t *testing.T) {
	h := newHarness(t)
	h.secret(app.SecretInput{Type: app.SecretFile, Name: "creds", Data: []byte("first-secret-line\nsecond-secret-line\n"), Path: "~/creds", Mode: 0o600})
	job := h.submit(`image: debian/stable
secrets: [creds]
oauth: builds.sr.ht/JOBS:RO
tasks:
  - leak: |
      cat ~/creds
      echo "token is $OAUTH2_TOKEN"
      set +x
      printf 'split: first-sec'; sleep 0.3; printf 'ret-line done\n'
      printf '%s' "$OAUTH2_TOKEN" | head -c 10; sleep 0.3; printf '%s\n' "$OAUTH2_TOKEN" | tail -c +11
      echo almost first-secret-lin
`)
	got := h.wait(job.ID)
	if got.Status != app.JobSuccess {
		t.Fatalf("status = %s; log:\n%s", got.Status, h.log(job.ID, ""))
	}
	env, _ := os.ReadFile(filepath.Join(h.home(job.ID), ".buildenv"))
	token := regexp.MustCompile(`OAUTH2_TOKEN=(\S+)`).FindSubmatch(env)
	if token == nil {
		t.Fatalf("no token in .buildenv:\n%s", env)
	}
	leak := h.log(job.ID, "leak")
	for _, secret := range []string{"first-secret-line", "second-secret-line", string(token[1])} {
		if strings.Contains(leak, secret) {
			t.Errorf("log contains %q:\n%s", secret, leak)
		}
	}
	for _, want := range []string{"[masked]\n[masked]\n", "token is [masked]", "split: [masked] done", "almost first-secret-lin\n"} {
		if !strings.Contains(leak, want) {
			t.Errorf("log lacks %q:\n%s", want, leak)
		}
	}
	if strings.Count(leak, "[masked]") < 6 {
		t.Errorf("too few masks:\n%s", leak)
	}
}

func TestOAuthToken(t *testing.T) {
	h := newHarness(t, func(c *app.Config) { c.Builds.SiteName = `my "site"` })
	job := h.submit(`image: debian/stable
oauth: builds.sr.ht/JOBS:RO git.sr.ht/OBJECTS:RW
tasks:
  - wait: while [ ! -e ~/go ]; do sleep 0.05; done
`)
	h.waitLog(job.ID, "wait", "Running task wait")
	home := h.home(job.ID)
	env, _ := os.ReadFile(filepath.Join(home, ".buildenv"))
	m := regexp.MustCompile(`export OAUTH2_TOKEN=(\S+)`).FindSubmatch(env)
	if m == nil {
		t.Fatalf("no OAUTH2_TOKEN in .buildenv:\n%s", env)
	}
	token := string(m[1])
	auth, err := h.svc.Authenticate(context.Background(), token)
	if err != nil {
		t.Fatalf("token does not authenticate during the job: %v", err)
	}
	if auth.User.ID != h.user.ID || !auth.Can(app.ScopeJobs, app.RO) || auth.Can(app.ScopeJobs, app.RW) || auth.Can(app.ScopeSecrets, app.RO) {
		t.Errorf("token grants = %v for user %d", auth.Grants, auth.User.ID)
	}
	hut := filepath.Join(home, ".config/hut/config")
	b, err := os.ReadFile(hut)
	if err != nil {
		t.Fatal(err)
	}
	want := "instance \"my \\\"site\\\"\" {\n\taccess-token \"" + token + "\"\n\tbuilds {\n\t\torigin \"http://builds.test\"\n\t}\n}\n"
	if string(b) != want {
		t.Errorf("hut config =\n%s\nwant\n%s", b, want)
	}
	if fi, _ := os.Stat(hut); fi.Mode().Perm() != 0o600 {
		t.Errorf("hut config mode %v", fi.Mode().Perm())
	}
	linesInOrder(t, h.log(job.ID, ""), "OAuth grant git.sr.ht/OBJECTS:RW is for another service")
	os.WriteFile(filepath.Join(home, "go"), nil, 0o644)
	if got := h.wait(job.ID); got.Status != app.JobSuccess {
		t.Fatalf("status = %s", got.Status)
	}
	if _, err := h.svc.Authenticate(context.Background(), token); err == nil {
		t.Error("token still valid after the job")
	}
}
