package forge_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"builds/app"
	"builds/forge"
	"builds/forge/forgetest"
)

// limitWriter refuses to hold more than max bytes.
type limitWriter struct {
	bytes.Buffer
	max int
}

var errFull = app.Errorf(app.EINVALID, "bundle too large")

func (w *limitWriter) Write(p []byte) (int, error) {
	if w.Len()+len(p) > w.max {
		return 0, errFull
	}
	return w.Buffer.Write(p)
}

// TestBundleRepository: the bundle clones into a repository with every
// branch and tag, and a commit no ref holds any more (force-pushed away)
// can still be checked out when it was named.
func TestBundleRepository(t *testing.T) {
	ctx := context.Background()
	r := forgetest.NewLocal(t, "proj")
	first := r.Commit("main", "first", map[string]string{"README": "one"})
	r.Git(r.Work, "tag", "v1")
	r.Git(r.Work, "push", "-q", r.Bare, "v1")
	r.Commit("topic", "on topic", map[string]string{"topic.txt": "t"})
	gone := r.Commit("main", "soon gone", map[string]string{"README": "two"})
	r.Git(r.Work, "reset", "-q", "--hard", first)
	r.Git(r.Work, "push", "-q", "-f", r.Bare, "HEAD:refs/heads/main")

	clone := func(t *testing.T, gitDir, commit string) string {
		t.Helper()
		var buf bytes.Buffer
		if err := (&forge.Adapter{}).BundleRepository(ctx, gitDir, commit, &buf); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		file := filepath.Join(dir, "src.bundle")
		if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		r.Git(dir, "clone", "-q", file, "proj")
		return filepath.Join(dir, "proj")
	}

	t.Run("OK", func(t *testing.T) {
		dir := clone(t, r.Bare, gone)
		refs := r.Git(dir, "for-each-ref", "--format=%(refname)")
		for _, want := range []string{"refs/heads/main", "refs/remotes/origin/topic", "refs/tags/v1"} {
			if !strings.Contains(refs, want) {
				t.Errorf("clone has no %s:\n%s", want, refs)
			}
		}
		if got := r.Git(dir, "rev-parse", "HEAD"); got != first {
			t.Errorf("HEAD %s, want main's %s", got, first)
		}
		r.Git(dir, "checkout", "-q", gone)
		if b, _ := os.ReadFile(filepath.Join(dir, "README")); string(b) != "two" {
			t.Errorf("README at the pinned commit is %q", b)
		}
	})
	t.Run("WorkTree", func(t *testing.T) {
		// a repository with a work tree, named by its top directory
		dir := clone(t, r.Work, "")
		if got := r.Git(dir, "rev-parse", "HEAD"); got != first {
			t.Errorf("HEAD %s, want %s", got, first)
		}
	})
	t.Run("ErrNotARepository", func(t *testing.T) {
		err := (&forge.Adapter{}).BundleRepository(ctx, t.TempDir(), "", &bytes.Buffer{})
		if app.ErrorCode(err) != app.EINVALID || !strings.Contains(err.Error(), "not a git repository") {
			t.Errorf("err %v", err)
		}
	})
	t.Run("ErrUnknownCommit", func(t *testing.T) {
		err := (&forge.Adapter{}).BundleRepository(ctx, r.Bare, strings.Repeat("ab", 20), &bytes.Buffer{})
		if app.ErrorCode(err) != app.EINVALID {
			t.Errorf("err %v", err)
		}
	})
	t.Run("ErrNotACommitID", func(t *testing.T) {
		for _, c := range []string{"main", "--all", "HEAD~1"} {
			err := (&forge.Adapter{}).BundleRepository(ctx, r.Bare, c, &bytes.Buffer{})
			if app.ErrorCode(err) != app.EINVALID || !strings.Contains(err.Error(), "is not a commit id") {
				t.Errorf("%s: err %v", c, err)
			}
		}
	})
	t.Run("ErrWriterFull", func(t *testing.T) {
		err := (&forge.Adapter{}).BundleRepository(ctx, r.Bare, "", &limitWriter{max: 100})
		if !errors.Is(err, errFull) {
			t.Errorf("err %v, want the writer's", err)
		}
	})
	t.Run("OtherOwner", func(t *testing.T) {
		// pushes often go to a git account's repositories: git refuses
		// "dubious ownership" only in repositories it discovers
		if os.Getuid() != 0 {
			t.Skip("needs root to give the repository to another user")
		}
		if err := filepath.Walk(r.Bare, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, 65534, 65534)
		}); err != nil {
			t.Fatal(err)
		}
		clone(t, r.Bare, "")
	})
}
