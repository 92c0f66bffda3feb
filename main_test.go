package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// syncBuffer is a bytes.Buffer safe for a server goroutine and a test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testConfig writes a builds.ini for a temp data dir and returns its path.
func testConfig(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "builds.ini")
	// allow-root: the tests (and CI) run as root; TestServeRefusesRoot
	// tests the refusal.
	text := fmt.Sprintf("[builds]\ndata-dir = %s\nallow-root = true\n[runner]\nslots = 0\nssh-listen =\n%s", filepath.Join(dir, "data"), extra)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// run runs one command line against cfg and returns stdout, stderr, error.
func run(t *testing.T, cfg, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb syncBuffer
	if cfg != "" {
		args = append(args, "-config", cfg)
	}
	err := Run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

func TestUserCommands(t *testing.T) {
	cfg := testConfig(t, "")
	for _, tc := range []struct {
		name    string
		stdin   string
		args    []string
		wantErr string
		wantOut string
	}{
		{"add", "", []string{"user", "add", "alice", "--email", "alice@example.org"}, "", "created user alice"},
		{"add flags first", "", []string{"user", "add", "--admin", "--email=bob@example.org", "bob"}, "", "created user bob"},
		{"add with password", "s3cret-password\n", []string{"user", "add", "carol", "--email", "c@example.org", "--password-stdin"}, "", "created user carol"},
		{"ErrDuplicate", "", []string{"user", "add", "alice", "--email", "alice@example.org"}, `user "alice" already exists`, ""},
		{"ErrBadEmail", "", []string{"user", "add", "dave", "--email", "dave at example"}, "invalid email address", ""},
		{"ErrBadName", "", []string{"user", "add", "Dave!", "--email", "d@example.org"}, "invalid username", ""},
		{"ErrNoEmail", "", []string{"user", "add", "dave"}, "--email is required", ""},
		{"ErrShortPassword", "short\n", []string{"user", "add", "erin", "--email", "e@example.org", "--password-stdin"}, "at least 8 characters", ""},
		{"list", "", []string{"user", "list"}, "", "alice"},
		{"passwd", "another-password\n", []string{"user", "passwd", "alice"}, "", "password changed for alice"},
		{"ErrPasswdUnknown", "another-password\n", []string{"user", "passwd", "nobody"}, "no such user", ""},
		{"ErrPasswdEmpty", "", []string{"user", "passwd", "alice"}, "no password on standard input", ""},
		{"ErrKeyBad", "", []string{"user", "key", "add", "alice", "ssh-ed25519", "AAAAnotakey"}, "invalid SSH public key", ""},
		{"ErrUnknownSub", "", []string{"user", "frobnicate"}, "unknown subcommand", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := run(t, cfg, tc.stdin, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(errorText(err), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(out, tc.wantOut) {
				t.Fatalf("out %q err %v, want %q", out, err, tc.wantOut)
			}
		})
	}
	t.Run("key add", func(t *testing.T) {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		sp, _ := ssh.NewPublicKey(pub)
		line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " alice@laptop"
		out, _, err := run(t, cfg, "", append([]string{"user", "key", "add", "alice"}, strings.Fields(line)...)...)
		if err != nil || !strings.Contains(out, "added SSH key SHA256:") {
			t.Fatalf("%q %v", out, err)
		}
		_, _, err = run(t, cfg, "", append([]string{"user", "key", "add", "bob"}, strings.Fields(line)...)...)
		if err == nil || !strings.Contains(errorText(err), "already registered") {
			t.Fatalf("duplicate key: %v", err)
		}
	})
}

func TestTokenCommands(t *testing.T) {
	cfg := testConfig(t, "")
	if _, _, err := run(t, cfg, "", "user", "add", "alice", "--email", "a@example.org"); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := run(t, cfg, "", "token", "create", "alice", "--grants", "JOBS:RW LOGS:RO", "--expires", "90d", "--comment", "ci box")
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(out)
	if len(token) < 40 || !strings.Contains(errOut, "shown only this once") || !strings.Contains(errOut, "JOBS:RW LOGS:RO") {
		t.Fatalf("token %q stderr %q", token, errOut)
	}
	out, _, err = run(t, cfg, "", "token", "list", "alice")
	if err != nil || !strings.Contains(out, "JOBS:RW LOGS:RO") || !strings.Contains(out, "ci box") || strings.Contains(out, token) {
		t.Fatalf("list: %q %v", out, err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"ErrBadGrant", []string{"token", "create", "alice", "--grants", "JOBS:XX"}, "access must be RO or RW"},
		{"ErrBadScope", []string{"token", "create", "alice", "--grants", "REPOS:RO"}, "unknown scope"},
		{"ErrBadExpiry", []string{"token", "create", "alice", "--expires", "soon"}, "invalid expiry"},
		{"ErrUnknownUser", []string{"token", "create", "nobody"}, "no such user"},
		{"ErrRevokeBadID", []string{"token", "revoke", "abc"}, "not a token id"},
		{"ErrRevokeUnknown", []string{"token", "revoke", "999"}, "no such token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, cfg, "", tc.args...)
			if err == nil || !strings.Contains(errorText(err), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if out, _, err := run(t, cfg, "", "token", "revoke", "1"); err != nil || !strings.Contains(out, "revoked token 1") {
		t.Fatalf("revoke: %q %v", out, err)
	}
}

func TestManifestCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yml")
	bad := filepath.Join(dir, "bad.yml")
	os.WriteFile(good, []byte("image: debian/stable\ntasks:\n  - build: make\n  - test: make check\n"), 0o644)
	os.WriteFile(bad, []byte("image: debian/stable\npackages: curl\ntasks:\n  - Build: make\n  - test: a\n  - test: b\n"), 0o644)
	out, _, err := run(t, "", "", "manifest", "check", good)
	if err != nil || !strings.Contains(out, good+": ok (") || !strings.Contains(out, "build, test") {
		t.Fatalf("%q %v", out, err)
	}
	out, _, err = run(t, "", "", "manifest", "check", good, bad, filepath.Join(dir, "missing.yml"))
	if err == nil || !strings.Contains(err.Error(), "2 of 3 manifests have errors") {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{bad + ":2: packages", bad + ":4:", "Task name 'Build' is invalid", bad + ":6:", "Duplicate task 'test'", "missing.yml: open"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestConfigCommands(t *testing.T) {
	cfg := testConfig(t, "cpus = 2\n")
	out, _, err := run(t, cfg, "", "config", "dump")
	if err != nil || !strings.Contains(out, "cpus = 2") || !strings.Contains(out, "[limits]") {
		t.Fatalf("%q %v", out, err)
	}
	badKey := testConfig(t, "colour = blue\n")
	_, _, err = run(t, badKey, "", "config", "dump")
	if err == nil || !strings.Contains(err.Error(), "runner.colour") || !strings.Contains(err.Error(), ":7:") {
		t.Fatalf("unknown key: %v", err)
	}
	badVal := testConfig(t, "slots = two\n")
	_, _, err = run(t, badVal, "", "user", "list")
	if err == nil || !strings.Contains(err.Error(), "runner.slots") {
		t.Fatalf("bad value: %v", err)
	}
	t.Run("BUILDS_CONFIG", func(t *testing.T) {
		t.Setenv("BUILDS_CONFIG", cfg)
		out, _, err := run(t, "", "", "config", "dump")
		if err != nil || !strings.Contains(out, "cpus = 2") {
			t.Fatalf("%q %v", out, err)
		}
	})
	if out, _, err := run(t, "", "", "version"); err != nil || !strings.HasPrefix(out, "builds ") {
		t.Fatalf("version: %q %v", out, err)
	}
	if _, _, err := run(t, "", "", "frobnicate"); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("unknown command: %v", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestServe starts the real service, checks the first-start credentials
// work, and shuts it down with a cancelled context (as SIGTERM does).
func TestServe(t *testing.T) {
	port := freePort(t)
	cfg := testConfig(t, fmt.Sprintf("[builds]\nlisten = 127.0.0.1:%d\norigin = http://127.0.0.1:%d\n", port, port))
	// testConfig put [builds] first; a repeated section merges.
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan error, 1)
	go func() { done <- Run(ctx, []string{"serve", "-config", cfg}, strings.NewReader(""), &out, &errb) }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/query/api-meta.json")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("server did not come up: %v\nstderr: %s", err, errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	text := out.String()
	i := strings.Index(text, "API token: ")
	if i < 0 || !strings.Contains(text, "password:") {
		cancel()
		t.Fatalf("no first-start credentials printed: %q", text)
	}
	token := strings.Fields(text[i+len("API token: "):])[0]
	req, _ := http.NewRequest("POST", base+"/query", strings.NewReader(`{"query":"{ me { canonicalName } }"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"~admin"`) {
		t.Errorf("me query: %d %s", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not shut down")
	}
	// A second start prints no new credentials.
	ctx2, cancel2 := context.WithCancel(context.Background())
	var out2 syncBuffer
	go func() { done <- Run(ctx2, []string{"serve", "-config", cfg}, strings.NewReader(""), &out2, io.Discard) }()
	time.Sleep(500 * time.Millisecond)
	cancel2()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out2.String(), "API token") {
		t.Fatal("credentials printed on second start")
	}
}

// TestDataDirPrivate: an install from before (data dir 0755, builds.db and
// its WAL 0644) is made private at start-up, and what builds writes is
// the server user's alone.
func TestDataDirPrivate(t *testing.T) {
	cfg := testConfig(t, "")
	data := filepath.Join(filepath.Dir(cfg), "data")
	if _, _, err := run(t, cfg, "", "user", "add", "alice", "--email", "a@example.org"); err != nil {
		t.Fatal(err)
	}
	// what an older version left behind
	os.Chmod(data, 0o755)
	for _, f := range []string{"builds.db", "builds.db-wal", "secret.key"} {
		os.Chmod(filepath.Join(data, f), 0o644)
	}
	os.MkdirAll(filepath.Join(data, "logs", "1"), 0o755)
	os.WriteFile(filepath.Join(data, "logs", "1", "log"), []byte("private\n"), 0o644)
	if _, _, err := run(t, cfg, "", "user", "list"); err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{"": 0o700, "builds.db": 0o600, "secret.key": 0o600, "logs": 0o700}
	for name, mode := range want {
		fi, err := os.Stat(filepath.Join(data, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %o, want %o", filepath.Join("data", name), fi.Mode().Perm(), mode)
		}
	}
	filepath.WalkDir(data, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		if strings.HasSuffix(p, "-wal") || strings.HasSuffix(p, "-shm") {
			if fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s: mode %o", p, fi.Mode().Perm())
			}
		}
		return nil
	})
	// a fresh data dir is private from the start
	fresh := testConfig(t, "")
	if _, _, err := run(t, fresh, "", "user", "list"); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(filepath.Dir(fresh), "data")
	for _, name := range []string{"", "builds.db", "secret.key"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("fresh %s: %v %v", name, fi.Mode(), err)
		}
	}
}

func TestLayerCommands(t *testing.T) {
	cfg := testConfig(t, "layer-max-age = 1d\n")
	dir := filepath.Join(filepath.Dir(cfg), "data", "cache", "layers")
	mk := func(key string, age time.Duration) {
		d := filepath.Join(dir, key)
		os.MkdirAll(d, 0o700)
		os.WriteFile(filepath.Join(d, "mem"), []byte("state"), 0o600)
		os.WriteFile(filepath.Join(d, "disk.qcow2"), []byte("disk"), 0o600)
		created := time.Now().Add(-age).UTC().Truncate(time.Second)
		meta := fmt.Sprintf(`{"key":%q,"shape":{"image":"debian/bookworm","arch":"amd64"},"recipe":{"repositories":null,"packages":["cmake","hello"]},
			"backing":%q,"created":%q,"last_used":%q,"size":9,"mem_size":5,"disk_size":4}`,
			key, filepath.Join(d, "mem"), created.Format(time.RFC3339), created.Format(time.RFC3339))
		os.WriteFile(filepath.Join(d, "meta.json"), []byte(meta), 0o600)
	}
	mk("aaaa1111bbbb2222", time.Hour)
	mk("cccc3333dddd4444", 48*time.Hour)
	out, _, err := run(t, cfg, "", "layer", "list")
	if err != nil || !strings.Contains(out, "aaaa1111bbbb2222  debian/bookworm (amd64)  cmake hello") || !strings.Contains(out, "2 layers, 9 B") && !strings.Contains(out, "2 layers, 18 B") {
		t.Fatalf("list: %q %v", out, err)
	}
	if _, errOut, err := run(t, cfg, "", "layer", "prune"); err != nil || !strings.Contains(errOut, "removed 1 layers") {
		t.Fatalf("prune: %q %v", errOut, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cccc3333dddd4444")); !os.IsNotExist(err) {
		t.Errorf("expired layer kept: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"layer", "rm", "aa"}, "at least 4 characters"},
		{[]string{"layer", "rm", "ffff"}, "no layer ffff*"},
		{[]string{"layer", "rm"}, "want one or more layer keys"},
		{[]string{"layer", "frob"}, "unknown command"},
	} {
		if _, _, err := run(t, cfg, "", tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	if _, errOut, err := run(t, cfg, "", "layer", "rm", "aaaa"); err != nil || !strings.Contains(errOut, "removed layer aaaa1111bbbb2222") {
		t.Fatalf("rm: %q %v", errOut, err)
	}
	if out, _, _ := run(t, cfg, "", "layer", "list"); !strings.Contains(out, "no package layers yet") {
		t.Errorf("list after rm: %q", out)
	}
}

// The flags every command takes work before the command as well as after.
func TestGlobalFlagsFirst(t *testing.T) {
	cfg := testConfig(t, "")
	if _, _, err := run(t, cfg, "", "user", "add", "alice", "--email", "a@example.org"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-config", cfg, "user", "list"},
		{"--config=" + cfg, "user", "list"},
		{"-debug", "-config", cfg, "user", "list"},
		{"-config", cfg, "-debug", "user", "list", "-debug"},
	} {
		var out, errb syncBuffer
		err := Run(context.Background(), args, strings.NewReader(""), &out, &errb)
		if err != nil || !strings.Contains(out.String(), "alice") {
			t.Errorf("%q: out %q err %v", args, out.String(), err)
		}
	}
	// a flag after the command overrides the one before
	var out, errb syncBuffer
	err := Run(context.Background(), []string{"-config", "/nonexistent/builds.ini", "user", "list", "-config", cfg}, strings.NewReader(""), &out, &errb)
	if err != nil || !strings.Contains(out.String(), "alice") {
		t.Errorf("override: out %q err %v", out.String(), err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-config"}, "flag needs an argument: -config"},
		{[]string{"-frobnicate", "user", "list"}, "flag provided but not defined: -frobnicate"},
		{[]string{"-config", cfg}, "no command given"},
		{[]string{"-config", "/nonexistent/builds.ini", "user", "list"}, "/nonexistent/builds.ini"},
	} {
		err := Run(context.Background(), tc.args, strings.NewReader(""), io.Discard, io.Discard)
		if err == nil || !strings.Contains(errorText(err), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.args, err, tc.want)
		}
	}
	var v syncBuffer
	if err := Run(context.Background(), []string{"--version"}, nil, &v, io.Discard); err != nil || !strings.HasPrefix(v.String(), "builds ") {
		t.Errorf("--version: %q %v", v.String(), err)
	}
	v = syncBuffer{}
	if err := Run(context.Background(), []string{"-h"}, nil, &v, io.Discard); err != nil || !strings.Contains(v.String(), "usage: builds") {
		t.Errorf("-h: %q %v", v.String(), err)
	}
}
