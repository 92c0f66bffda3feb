package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func testSSHKeyPEM(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(pem.EncodeToMemory(block)), "\n") // no final newline: the command adds it
}

func TestSecretCommands(t *testing.T) {
	cfg := testConfig(t, "")
	if _, _, err := run(t, cfg, "", "user", "add", "alice", "--email", "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	uuidRE := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n$`)
	key := testSSHKeyPEM(t)
	for _, tc := range []struct {
		name    string
		stdin   string
		args    []string
		wantErr string
	}{
		{"AddSSH", key, []string{"secret", "add", "--user", "alice", "--type", "ssh", "--name", "deploy"}, ""},
		{"AddFileFlagsFirst", "machine example.org\n", []string{"secret", "--user", "~alice", "--type=file", "--path", "~/.netrc", "--mode", "0640", "add"}, ""},
		{"AddFileDefaultMode", "x", []string{"secret", "add", "--user", "alice", "--type", "file", "--path", "/tmp/x"}, ""},
		{"ErrNoSubcommand", "", []string{"secret", "--user", "alice"}, "want add or list"},
		{"ErrUnknownSubcommand", "", []string{"secret", "rm", "--user", "alice"}, `unknown subcommand "rm"`},
		{"ErrNoUser", key, []string{"secret", "add", "--type", "ssh"}, "--user is required"},
		{"ErrUnknownUser", key, []string{"secret", "add", "--user", "bob", "--type", "ssh"}, `no such user "bob"`},
		{"ErrNoType", key, []string{"secret", "add", "--user", "alice"}, "--type is required"},
		{"ErrBadType", key, []string{"secret", "add", "--user", "alice", "--type", "gpg"}, `unknown --type "gpg"`},
		{"ErrFileWithoutPath", "x", []string{"secret", "add", "--user", "alice", "--type", "file"}, "needs --path"},
		{"ErrBadMode", "x", []string{"secret", "add", "--user", "alice", "--type", "file", "--path", "p", "--mode", "0999"}, "not an octal file mode"},
		{"ErrPathOnKey", key, []string{"secret", "add", "--user", "alice", "--type", "ssh", "--path", "p"}, "only apply to --type file"},
		{"ErrEmptyStdin", "\n", []string{"secret", "add", "--user", "alice", "--type", "file", "--path", "p"}, "standard input is empty"},
		{"ErrNotAKey", "hello\n", []string{"secret", "add", "--user", "alice", "--type", "ssh"}, "not an SSH private key"},
		{"ErrNotPGP", "hello\n", []string{"secret", "add", "--user", "alice", "--type", "pgp"}, "not a PGP key"},
		{"ErrTooBig", strings.Repeat("x", 16*1024+1), []string{"secret", "add", "--user", "alice", "--type", "file", "--path", "p"}, "the limit is 16384 bytes"},
		{"ErrDuplicateName", key, []string{"secret", "add", "--user", "alice", "--type", "ssh", "--name", "deploy"}, `a secret named "deploy" already exists`},
		{"ErrListWithType", "", []string{"secret", "list", "--user", "alice", "--type", "ssh"}, "takes only --user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := run(t, cfg, tc.stdin, tc.args...)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !uuidRE.MatchString(out) {
					t.Errorf("stdout %q, want a UUID", out)
				}
				return
			}
			if err == nil || !strings.Contains(errorText(err), tc.wantErr) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
	out, _, err := run(t, cfg, "", "secret", "list", "--user", "alice")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "UUID") ||
		!regexp.MustCompile(`\sfile\s+-\s+/tmp/x \(0600\)\s+-\s`).MatchString(lines[1]) ||
		!regexp.MustCompile(`\sfile\s+-\s+~/.netrc \(0640\)\s`).MatchString(lines[2]) ||
		!regexp.MustCompile(`\sssh\s+deploy\s+-\s+-\s`).MatchString(lines[3]) {
		t.Errorf("list:\n%s", out)
	}
	if bytes.Contains([]byte(out), []byte("machine example.org")) {
		t.Error("list shows secret material")
	}
}
