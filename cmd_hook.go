package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"builds/app"
	"builds/forge"
)

// defaultHookTimeout bounds one post-receive run: git waits for the hook
// before the pusher's `git push` returns, so it must never hang.
const defaultHookTimeout = 60 * time.Second

// runHook implements "builds hook post-receive --url URL --secret-file F":
// git's post-receive input on stdin, each updated branch or tag POSTed,
// signed, to the repository's webhook URL. It needs no configuration or
// database, only HTTP to the server, so it runs on any machine that holds
// the bare repository. What it prints reaches the pusher as "remote:".
func runHook(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hookURL := fs.String("url", getenv("BUILDS_HOOK_URL"), "the repository's webhook URL (as builds repo add printed it; $BUILDS_HOOK_URL)")
	secretFile := fs.String("secret-file", getenv("BUILDS_HOOK_SECRET_FILE"), "file holding the webhook secret ($BUILDS_HOOK_SECRET_FILE, or the secret itself in $BUILDS_HOOK_SECRET)")
	timeout := fs.Duration("timeout", defaultHookTimeout, "give up on the server after this long")
	pos, err := parseFlags(fs, args, false)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "post-receive" {
		return usagef("hook: want post-receive")
	}
	if err := checkHookURL(*hookURL); err != nil {
		return err
	}
	if *timeout <= 0 {
		return usagef("hook: --timeout must be positive")
	}
	secret, err := hookSecret(*secretFile, getenv("BUILDS_HOOK_SECRET"))
	if err != nil {
		return err
	}
	updates, bad := forge.ParsePostReceive(stdin)
	for _, err := range bad {
		fmt.Fprintf(stderr, "builds: %v\n", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	client := &http.Client{Timeout: *timeout}
	failed := len(bad)
	for _, u := range updates {
		switch {
		case !u.Built():
			continue
		case u.Deleted():
			fmt.Fprintf(stdout, "builds: %s deleted, nothing to build\n", u.Ref)
			continue
		}
		ans, err := forge.SendHook(ctx, client, *hookURL, secret, u)
		if err != nil {
			failed++
			if ctx.Err() != nil {
				err = fmt.Errorf("no answer within %v", *timeout)
			}
			fmt.Fprintf(stderr, "builds: %s: %v\n", u.Ref, err)
			continue
		}
		if ans.GroupID != 0 {
			fmt.Fprintf(stdout, "builds: %s: job group %d submitted\n", u.Ref, ans.GroupID)
			for _, j := range ans.Jobs {
				fmt.Fprintf(stdout, "builds:   %s\n", j)
			}
		} else {
			fmt.Fprintf(stdout, "builds: %s: %s\n", u.Ref, ans.Message)
		}
	}
	if failed > 0 {
		return fmt.Errorf("hook post-receive: %d of %d lines not submitted", failed, len(updates)+len(bad))
	}
	return nil
}

func checkHookURL(raw string) error {
	if raw == "" {
		return usagef("hook post-receive: --url is required (the webhook URL builds repo add printed)")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("hook post-receive: --url %q is not an http(s) URL", raw)
	}
	return nil
}

// hookSecret reads the webhook secret from file, else takes env's.
func hookSecret(file, env string) ([]byte, error) {
	if file == "" {
		if env == "" {
			return nil, usagef("hook post-receive: --secret-file (or $BUILDS_HOOK_SECRET) is required")
		}
		return []byte(env), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("hook post-receive: read secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil, fmt.Errorf("hook post-receive: secret file %s is empty", file)
	}
	return []byte(s), nil
}

// hookInstructions is how to install the post-receive hook of a plain git
// repository r, whose webhook URL is hookURL: the secret file and the
// script, as commands to run where the repository is.
func hookInstructions(r *app.NewRepo, hookURL string) string {
	dir := repoDir(r.CloneURL, r.Name)
	secretFile := filepath.Join(dir, "builds-hook.secret")
	exe, err := os.Executable()
	if err != nil {
		exe = "/usr/local/bin/builds"
	}
	q := app.ShellQuote
	var b strings.Builder
	fmt.Fprintf(&b, "To build on every push, run this where the repository is (with the path of\n")
	fmt.Fprintf(&b, "builds on that machine, if it is another one):\n\n")
	fmt.Fprintf(&b, "  (umask 077 && echo %s > %s)\n", q(r.WebhookSecret), q(secretFile))
	fmt.Fprintf(&b, "  cat > %s <<'EOF'\n", q(filepath.Join(dir, "hooks", "post-receive")))
	fmt.Fprintf(&b, "%s", hookScript(exe, hookURL, secretFile))
	fmt.Fprintf(&b, "EOF\n")
	fmt.Fprintf(&b, "  chmod +x %s\n", q(filepath.Join(dir, "hooks", "post-receive")))
	return b.String()
}

// hookScript is the post-receive hook itself.
func hookScript(exe, hookURL, secretFile string) string {
	q := app.ShellQuote
	return fmt.Sprintf("#!/bin/sh\nexec %s hook post-receive --url %s --secret-file %s\n", q(exe), q(hookURL), q(secretFile))
}

// repoDir is where a plain git repository lies on its machine, as far as
// its clone URL tells: a local path or file:// URL, an ssh:// URL's path;
// else a placeholder.
func repoDir(cloneURL, name string) string {
	if strings.HasPrefix(cloneURL, "/") {
		return filepath.Clean(cloneURL)
	}
	if u, err := url.Parse(cloneURL); err == nil && (u.Scheme == "file" || u.Scheme == "ssh") && strings.HasPrefix(u.Path, "/") && !strings.HasPrefix(u.Path, "/~") {
		return filepath.Clean(u.Path)
	}
	return "/path/to/" + name + ".git"
}
