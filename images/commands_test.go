package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstallCommand(t *testing.T) {
	img := &Image{}
	got := img.InstallCommand([]string{"jq", "libfoo-dev", "evil;rm -rf /"})
	if !strings.HasPrefix(got, "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq libfoo-dev 'evil;rm -rf /' || { ") {
		t.Fatalf("InstallCommand = %s", got)
	}
	// the command must be valid shell
	if out, err := exec.Command("sh", "-n", "-c", got).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v %s", err, out)
	}
}

// A failed install is retried after apt-get update, and the log says so
// before the update starts.
func TestInstallCommandRetry(t *testing.T) {
	bin := t.TempDir()
	state := filepath.Join(t.TempDir(), "updated")
	// sudo runs its arguments; apt-get fails to install until updated
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("sudo", `exec "$@"`+"\n")
	write("apt-get", `case "$1" in
update) echo "Reading package lists... (update)"; touch `+state+`;;
install) if [ -e `+state+` ]; then echo "Setting up jq"; else echo "E: Unable to locate package jq" >&2; exit 100; fi;;
esac
`)
	img := &Image{}
	for _, tc := range []struct {
		name    string
		updated bool
		want    []string
	}{
		{"retried", false, []string{"E: Unable to locate package jq", "Installing packages failed; refreshing the package lists (apt-get update) and retrying", "Reading package lists... (update)", "Setting up jq"}},
		{"first try", true, []string{"Setting up jq"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(state)
			if tc.updated {
				os.WriteFile(state, nil, 0o644)
			}
			cmd := exec.Command("sh", "-c", img.InstallCommand([]string{"jq"}))
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if strings.Join(lines, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("output:\n%s\nwant:\n%s", out, strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestAddRepoCommand(t *testing.T) {
	img := &Image{}
	tests := []struct {
		name, repo, source string
		want               []string
		err                string
	}{
		{name: "no key", repo: "llvm", source: "http://apt.example/llvm bookworm main",
			want: []string{"deb http://apt.example/llvm bookworm main", "deb-src http://apt.example/llvm bookworm main",
				"/etc/apt/sources.list.d/llvm.list", "apt-get update"}},
		{name: "key", repo: "pg", source: "http://apt.example/pg bookworm-pgdg main 0xACCC4CF8",
			want: []string{"--recv-keys ACCC4CF8", "signed-by=/etc/apt/keyrings/pg.gpg", "deb [signed-by=/etc/apt/keyrings/pg.gpg] http://apt.example/pg"}},
		{name: "options", repo: "local", source: "[trusted=yes] http://10.0.2.2:8080/repo ./ main",
			want: []string{"deb [trusted=yes] http://10.0.2.2:8080/repo ./ main"}},
		{name: "too few", repo: "x", source: "http://x bookworm", err: "want"},
		{name: "bad key", repo: "x", source: "http://x.example/ s main notakey", err: "key fingerprint"},
		{name: "bad name", repo: "../../etc/passwd", source: "http://x.example/ s main", err: "repository name"},
		{name: "injection url", repo: "x", source: "http://x.example/$(reboot) s main", err: "invalid url"},
		{name: "injection suite", repo: "x", source: "http://x.example/ s;reboot main", err: "invalid suite"},
		{name: "bad options", repo: "x", source: "[a=$(id)] http://x.example/ s main", err: "invalid options"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := img.AddRepoCommand(tt.repo, tt.source)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in\n%s", w, got)
				}
			}
			if out, err := exec.Command("sh", "-n", "-c", got).CombinedOutput(); err != nil {
				t.Fatalf("sh -n: %v %s\n%s", err, out, got)
			}
		})
	}
}
