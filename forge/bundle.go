package forge

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"builds/app"
)

// BundleTimeout bounds making one repository's bundle.
const BundleTimeout = 10 * time.Minute

// BundleRepository implements app.Forge: `git bundle create - --all` of
// the repository at gitDir, written to w. A commit given (a full hex id)
// is named too: git bundles only refs, but packs the commit's objects
// with theirs, so a clone of the bundle can still check out a pinned
// commit that a force push has since taken off every branch.
//
// git runs with gitEnv (no user's config, no prompts) and --git-dir, as
// a repository named outright: its owner may be another user (a git
// account the pushes go to), which git refuses only for repositories it
// has to discover. Creating a bundle runs no hooks.
func (a *Adapter) BundleRepository(ctx context.Context, gitDir, commit string, w io.Writer) error {
	if commit != "" && !app.IsCommitSHA(commit) {
		return app.Errorf(app.EINVALID, "bundle %s: %q is not a commit id", gitDir, commit)
	}
	ctx, cancel := context.WithTimeout(ctx, BundleTimeout)
	defer cancel()
	home, err := os.MkdirTemp("", "builds-bundle-")
	if err != nil {
		return fmt.Errorf("bundle %s: %w", gitDir, err)
	}
	defer os.RemoveAll(home)
	git := a.Git
	if git == "" {
		git = "git"
	}
	dir := gitDir
	if fi, err := os.Stat(filepath.Join(gitDir, ".git")); err == nil && fi.IsDir() {
		dir = filepath.Join(gitDir, ".git") // a repository with a work tree
	}
	if !isGitDir(dir) {
		return app.Errorf(app.EINVALID, "bundle %s: not a git repository", gitDir)
	}
	args := []string{"--git-dir=" + dir, "bundle", "create", "--quiet", "-", "--all"}
	if commit != "" {
		args = append(args, commit)
	}
	cmd := exec.CommandContext(ctx, git, args...)
	cmd.Env, cmd.Dir = gitEnv(home), home
	errOut := &limitedBuffer{max: 4096}
	out := &recordingWriter{w: w}
	cmd.Stdout, cmd.Stderr = out, errOut
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	switch {
	case out.err != nil:
		return out.err // w refused more (a size limit): git died of it
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return app.Errorf(app.EINVALID, "bundle %s: timed out after %v", gitDir, BundleTimeout)
	}
	msg := strings.TrimSpace(errOut.String())
	if msg == "" {
		msg = err.Error()
	}
	return app.Errorf(app.EINVALID, "bundle %s: %s", gitDir, msg)
}

// recordingWriter keeps the first error of w's.
type recordingWriter struct {
	w   io.Writer
	err error
}

func (r *recordingWriter) Write(p []byte) (int, error) {
	n, err := r.w.Write(p)
	if err != nil && r.err == nil {
		r.err = err
	}
	return n, err
}

// isGitDir reports whether dir looks like a repository's git directory.
func isGitDir(dir string) bool {
	head, err := os.Stat(filepath.Join(dir, "HEAD"))
	objects, err2 := os.Stat(filepath.Join(dir, "objects"))
	return err == nil && err2 == nil && head.Mode().IsRegular() && objects.IsDir()
}
