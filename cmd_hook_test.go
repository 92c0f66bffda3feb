package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// buildBinary builds the builds command into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "builds")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, out)
	}
	return bin
}

// gitPush runs git push in dir and returns what it printed (the hook's
// output comes back as "remote: ..." lines); the push itself must work.
func gitPush(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"push"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git push %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestPostReceiveHookE2E: `builds repo add --kind git` prints the hook to
// install; installed in a real bare repository, it runs the built binary
// on `git push`, which delivers the push to a running server, and a job
// group appears. A wrong secret, bad input lines and a server that never
// answers make the hook fail (the push itself stands) with a message.
func TestPostReceiveHookE2E(t *testing.T) {
	cfg := testConfig(t, "")
	if _, _, err := run(t, cfg, "", "user", "add", "alice", "--email", "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bare, work := filepath.Join(dir, "proj.git"), filepath.Join(dir, "work")
	gitIn(t, dir, "init", "-q", "--bare", "-b", "main", bare)
	gitIn(t, dir, "init", "-q", "-b", "main", work)
	s := serveConfig(t, cfg, freePort(t))
	bin := buildBinary(t)

	out, _, err := run(t, cfg, "", "repo", "add", "--user", "alice", "--kind", "git", "--url", bare, "--visibility", "public")
	if err != nil {
		t.Fatal(err)
	}
	hookURL := regexp.MustCompile(`webhook URL: +(\S+)`).FindStringSubmatch(out)
	secret := regexp.MustCompile(`webhook secret: +(\S+)`).FindStringSubmatch(out)
	script := regexp.MustCompile(`(?s)<<'EOF'\n(.*?\n)EOF\n`).FindStringSubmatch(out)
	if hookURL == nil || secret == nil || script == nil || !strings.HasPrefix(hookURL[1], s.base+"/forge/hook/") {
		t.Fatalf("repo add printed %q", out)
	}
	secretFile := filepath.Join(bare, "builds-hook.secret")
	wantScript := regexp.MustCompile(`^#!/bin/sh\nexec (\S+) hook post-receive --url ` + regexp.QuoteMeta(hookURL[1]) +
		` --secret-file ` + regexp.QuoteMeta(secretFile) + `\n$`)
	if !wantScript.MatchString(script[1]) {
		t.Fatalf("hook script %q", script[1])
	}
	for _, want := range []string{"(umask 077 && echo " + secret[1] + " > " + secretFile + ")",
		"cat > " + bare + "/hooks/post-receive <<'EOF'", "chmod +x " + bare + "/hooks/post-receive"} {
		if !strings.Contains(out, want) {
			t.Errorf("instructions lack %q:\n%s", want, out)
		}
	}
	// install it as printed, with the binary just built
	exe := wantScript.FindStringSubmatch(script[1])[1]
	hook := filepath.Join(bare, "hooks", "post-receive")
	os.WriteFile(hook, []byte(strings.Replace(script[1], "exec "+exe+" ", "exec "+bin+" ", 1)), 0o755)
	os.WriteFile(secretFile, []byte(secret[1]+"\n"), 0o600)

	push := func(t *testing.T, args ...string) string {
		t.Helper()
		return gitPush(t, work, args...)
	}
	os.WriteFile(filepath.Join(work, ".build.yml"), []byte("image: debian/stable\ntasks:\n  - build: echo hi\n"), 0o644)
	gitIn(t, work, "add", "-A")
	gitIn(t, work, "commit", "-q", "-m", "first")
	sha := gitIn(t, work, "rev-parse", "HEAD")
	got := push(t, bare, "HEAD:refs/heads/main")
	m := regexp.MustCompile(`remote: builds: refs/heads/main: job group \d+ submitted\s+remote: builds:   (\S+)`).FindStringSubmatch(got)
	if m == nil || !strings.HasPrefix(m[1], s.base+"/~alice/job/") {
		t.Fatalf("push printed:\n%s", got)
	}
	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "commits") || !strings.Contains(string(page), sha[:7]) {
		t.Errorf("job page %d", resp.StatusCode)
	}

	t.Run("Tag", func(t *testing.T) {
		gitIn(t, work, "tag", "v1")
		if got := push(t, bare, "refs/tags/v1"); !strings.Contains(got, "remote: builds: refs/tags/v1: job group") {
			t.Errorf("tag push printed:\n%s", got)
		}
	})
	t.Run("Deleted", func(t *testing.T) {
		push(t, bare, "HEAD:refs/heads/topic")
		if got := push(t, bare, "--delete", "refs/heads/topic"); !strings.Contains(got, "remote: builds: refs/heads/topic deleted, nothing to build") {
			t.Errorf("delete printed:\n%s", got)
		}
	})
	t.Run("NoManifest", func(t *testing.T) {
		gitIn(t, work, "rm", "-q", ".build.yml")
		gitIn(t, work, "commit", "-q", "-m", "no manifest")
		if got := push(t, bare, "HEAD:refs/heads/main"); !strings.Contains(got, "remote: builds: refs/heads/main: no build manifest") {
			t.Errorf("push printed:\n%s", got)
		}
	})
	t.Run("ErrWrongSecret", func(t *testing.T) {
		os.WriteFile(secretFile, []byte("not-the-secret\n"), 0o600)
		defer os.WriteFile(secretFile, []byte(secret[1]+"\n"), 0o600)
		gitIn(t, work, "commit", "-q", "--allow-empty", "-m", "again")
		got := push(t, bare, "HEAD:refs/heads/main")
		if !strings.Contains(got, "remote: builds: refs/heads/main: refused by the server (401 Unauthorized): bad signature in X-Builds-Signature") ||
			!strings.Contains(got, "1 of 1 lines not submitted") {
			t.Errorf("push printed:\n%s", got)
		}
	})

	hookCmd := func(t *testing.T, stdin string, args ...string) (string, string, error) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"hook", "post-receive"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	t.Run("ErrBadLines", func(t *testing.T) {
		_, stderr, err := hookCmd(t, "what is this\n"+sha+" "+sha+"\n", "--url", hookURL[1], "--secret-file", secretFile)
		if err == nil || !strings.Contains(stderr, "builds: line 1: want \"<old-sha> <new-sha> <ref>\"") || !strings.Contains(stderr, "line 2:") ||
			!strings.Contains(stderr, "2 of 2 lines not submitted") {
			t.Errorf("%v\n%s", err, stderr)
		}
	})
	t.Run("ErrUnknownHook", func(t *testing.T) {
		line := strings.Repeat("0", 40) + " " + sha + " refs/heads/main\n"
		_, stderr, err := hookCmd(t, line, "--url", s.base+"/forge/hook/00112233445566778899aabbccddeeff", "--secret-file", secretFile)
		if err == nil || !strings.Contains(stderr, "refused by the server (404 Not Found): no repository has this webhook") {
			t.Errorf("%v\n%s", err, stderr)
		}
	})
	t.Run("ErrNoAnswer", func(t *testing.T) {
		// a server that takes the connection and never answers
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		line := strings.Repeat("0", 40) + " " + sha + " refs/heads/main\n"
		start := time.Now()
		_, stderr, err := hookCmd(t, line, "--url", "http://"+ln.Addr().String()+"/forge/hook/x", "--secret-file", secretFile, "--timeout", "1s")
		if err == nil || !strings.Contains(stderr, "refs/heads/main: no answer within 1s") || time.Since(start) > 20*time.Second {
			t.Errorf("%v after %v\n%s", err, time.Since(start), stderr)
		}
	})
	t.Run("ErrUsage", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			msg  string
		}{
			{[]string{"--secret-file", secretFile}, "--url is required"},
			{[]string{"--url", "ftp://x/y", "--secret-file", secretFile}, "not an http(s) URL"},
			{[]string{"--url", hookURL[1]}, "--secret-file (or $BUILDS_HOOK_SECRET) is required"},
			{[]string{"--url", hookURL[1], "--secret-file", filepath.Join(dir, "nope")}, "read secret"},
		} {
			if _, stderr, err := hookCmd(t, "", tt.args...); err == nil || !strings.Contains(stderr, tt.msg) {
				t.Errorf("%v: %v %s", tt.args, err, stderr)
			}
		}
	})
	t.Run("SecretFromEnv", func(t *testing.T) {
		os.WriteFile(filepath.Join(work, ".build.yml"), []byte("image: debian/stable\ntasks:\n  - build: echo env\n"), 0o644)
		gitIn(t, work, "add", "-A")
		gitIn(t, work, "commit", "-q", "-m", "env")
		head := gitIn(t, work, "rev-parse", "HEAD")
		gitIn(t, work, "push", "-q", "--no-verify", bare, "HEAD:refs/heads/env")
		cmd := exec.Command(bin, "hook", "post-receive")
		cmd.Env = append(os.Environ(), "BUILDS_HOOK_URL="+hookURL[1], "BUILDS_HOOK_SECRET="+secret[1])
		cmd.Stdin = strings.NewReader(strings.Repeat("0", 40) + " " + head + " refs/heads/env\n")
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "refs/heads/env: job group") {
			t.Errorf("%v\n%s", err, out)
		}
	})
}
