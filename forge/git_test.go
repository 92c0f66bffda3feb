package forge_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"builds/app"
	"builds/forge"
)

// gitRepo is a real bare repository with a work tree that pushes to it.
type gitRepo struct {
	t          testing.TB
	bare, work string
}

func newGitRepo(t testing.TB) *gitRepo {
	t.Helper()
	dir := t.TempDir()
	r := &gitRepo{t: t, bare: filepath.Join(dir, "proj.git"), work: filepath.Join(dir, "work")}
	r.git(dir, "init", "-q", "--bare", "-b", "main", r.bare)
	r.git(dir, "init", "-q", "-b", "main", r.work)
	return r
}

func (r *gitRepo) git(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Ada Lovelace", "GIT_AUTHOR_EMAIL=ada@example.org",
		"GIT_COMMITTER_NAME=Ada Lovelace", "GIT_COMMITTER_EMAIL=ada@example.org", "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files (a "" content removes one), commits and pushes
// branch; it returns the commit.
func (r *gitRepo) commit(branch, msg string, files map[string]string) string {
	r.t.Helper()
	for name, text := range files {
		p := filepath.Join(r.work, name)
		if text == "" {
			os.Remove(p)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.git(r.work, "add", "-A")
	r.git(r.work, "commit", "-q", "--allow-empty", "-m", msg)
	r.git(r.work, "push", "-q", r.bare, "HEAD:refs/heads/"+branch)
	return r.git(r.work, "rev-parse", "HEAD")
}

const manifest = "image: debian/stable\ntasks:\n  - build: echo hi\n"

func TestFetchCommit(t *testing.T) {
	ctx := context.Background()
	r := newGitRepo(t)
	first := r.commit("main", "first\n\nbody", map[string]string{".build.yml": manifest, "README": "x"})
	second := r.commit("main", "second", map[string]string{
		".builds/b.yml": manifest, ".builds/a.yaml": manifest, ".builds/a.yml": manifest,
		".builds/notes.txt": "not a manifest", ".builds/sub/c.yml": manifest,
	})
	r.git(r.work, "tag", "-a", "-m", "release", "v1", first)
	r.git(r.work, "push", "-q", r.bare, "v1")
	a := &forge.Adapter{}
	url := "file://" + r.bare

	t.Run("BySHA", func(t *testing.T) {
		c, err := a.FetchCommit(ctx, app.FetchRequest{URL: url, Rev: first, MaxManifests: 4})
		if err != nil {
			t.Fatal(err)
		}
		if c.SHA != first || c.Ref != "" || c.AuthorName != "Ada Lovelace" || c.AuthorEmail != "ada@example.org" || c.Subject != "first" {
			t.Errorf("commit %+v", c)
		}
		if len(c.Manifests) != 1 || c.Manifests[0].Name != ".build.yml" || c.Manifests[0].Text != manifest {
			t.Errorf("manifests %+v", c.Manifests)
		}
	})
	t.Run("Builds", func(t *testing.T) {
		// .build.yml and .builds/ both count; a.yaml is a.yml's duplicate;
		// subdirectories and other files are not manifests
		c, err := a.FetchCommit(ctx, app.FetchRequest{URL: url, Rev: second, MaxManifests: 4})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, m := range c.Manifests {
			names = append(names, m.Name)
		}
		if got := strings.Join(names, " "); got != ".build.yml a.yaml b.yml" {
			t.Errorf("manifests %q", got)
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		c, err := a.FetchCommit(ctx, app.FetchRequest{URL: url, Rev: "HEAD", MaxManifests: 4})
		if err != nil {
			t.Fatal(err)
		}
		if c.SHA != second || c.Ref != "refs/heads/main" {
			t.Errorf("HEAD resolved to %s %s", c.Ref, c.SHA)
		}
	})
	t.Run("Tag", func(t *testing.T) {
		c, err := a.FetchCommit(ctx, app.FetchRequest{URL: url, Rev: "v1", MaxManifests: 4})
		if err != nil {
			t.Fatal(err)
		}
		if c.SHA != first || c.Ref != "refs/tags/v1" { // peeled to the commit
			t.Errorf("v1 resolved to %s %s", c.Ref, c.SHA)
		}
	})
	t.Run("ErrTooMany", func(t *testing.T) {
		_, err := a.FetchCommit(ctx, app.FetchRequest{URL: url, Rev: second, MaxManifests: 2})
		if app.ErrorCode(err) != app.EINVALID || !strings.Contains(err.Error(), "refusing to submit 3 builds") {
			t.Errorf("err %v", err)
		}
	})
	t.Run("ErrTooBig", func(t *testing.T) {
		_, err := a.FetchCommit(ctx, app.FetchRequest{URL: url, Rev: first, MaxManifests: 4, MaxSize: 10})
		if app.ErrorCode(err) != app.EINVALID || !strings.Contains(err.Error(), "larger than the 10 accepted") {
			t.Errorf("err %v", err)
		}
	})
	t.Run("ErrUnknownCommit", func(t *testing.T) {
		_, err := a.FetchCommit(ctx, app.FetchRequest{URL: url, Rev: strings.Repeat("ab", 20), MaxManifests: 4})
		if app.ErrorCode(err) != app.EINVALID {
			t.Errorf("err %v", err)
		}
	})
	t.Run("ErrUnknownBranch", func(t *testing.T) {
		_, err := a.FetchCommit(ctx, app.FetchRequest{URL: url, Rev: "nope", MaxManifests: 4})
		if app.ErrorCode(err) != app.EINVALID || !strings.Contains(err.Error(), `no branch or tag "nope"`) {
			t.Errorf("err %v", err)
		}
	})
	t.Run("ErrExtProtocol", func(t *testing.T) {
		// ext:: runs a command of the URL's choosing; git must refuse it
		mark := filepath.Join(t.TempDir(), "ran")
		_, err := a.FetchCommit(ctx, app.FetchRequest{URL: "ext::sh -c touch% " + mark, Rev: first, MaxManifests: 4})
		if err == nil {
			t.Fatal("ext:: URL fetched")
		}
		if _, serr := os.Stat(mark); serr == nil {
			t.Fatal("ext:: URL ran its command")
		}
	})
}

// TestFetchSymlinkManifest: a .build.yml that is a symbolic link (to
// /etc/passwd, say) is not read.
func TestFetchSymlinkManifest(t *testing.T) {
	r := newGitRepo(t)
	os.Symlink("/etc/passwd", filepath.Join(r.work, ".build.yml"))
	sha := r.commit("main", "link", nil)
	c, err := (&forge.Adapter{}).FetchCommit(context.Background(), app.FetchRequest{URL: "file://" + r.bare, Rev: sha, MaxManifests: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Manifests) != 0 {
		t.Errorf("read %+v", c.Manifests)
	}
}

func TestListBranches(t *testing.T) {
	r := newGitRepo(t)
	r.commit("main", "one", map[string]string{"a": "1"})
	r.commit("rel/1", "two", nil)
	r.git(r.work, "tag", "v1")
	r.git(r.work, "push", "-q", r.bare, "v1")
	got, err := (&forge.Adapter{}).ListBranches(context.Background(), app.FetchRequest{URL: "file://" + r.bare})
	if err != nil || strings.Join(got, " ") != "main rel/1" {
		t.Errorf("%q %v", got, err)
	}
	_, err = (&forge.Adapter{}).ListBranches(context.Background(), app.FetchRequest{URL: "file://" + r.bare + "-nope"})
	if app.ErrorCode(err) != app.EINVALID || !strings.Contains(err.Error(), "list branches of file://") {
		t.Errorf("missing repository: %v", err)
	}
}
