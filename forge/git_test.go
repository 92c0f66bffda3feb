package forge_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"builds/app"
	"builds/forge"
	"builds/forge/forgetest"
)

const manifest = "image: debian/stable\ntasks:\n  - build: echo hi\n"

func TestFetchCommit(t *testing.T) {
	ctx := context.Background()
	r := forgetest.NewLocal(t, "proj")
	first := r.Commit("main", "first\n\nbody", map[string]string{".build.yml": manifest, "README": "x"})
	second := r.Commit("main", "second", map[string]string{
		".builds/b.yml": manifest, ".builds/a.yaml": manifest, ".builds/a.yml": manifest,
		".builds/notes.txt": "not a manifest", ".builds/sub/c.yml": manifest,
	})
	r.Git(r.Work, "tag", "-a", "-m", "release", "v1", first)
	r.Git(r.Work, "push", "-q", r.Bare, "v1")
	a := &forge.Adapter{}
	url := "file://" + r.Bare

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
	r := forgetest.NewLocal(t, "proj")
	os.Symlink("/etc/passwd", filepath.Join(r.Work, ".build.yml"))
	sha := r.Commit("main", "link", nil)
	c, err := (&forge.Adapter{}).FetchCommit(context.Background(), app.FetchRequest{URL: "file://" + r.Bare, Rev: sha, MaxManifests: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Manifests) != 0 {
		t.Errorf("read %+v", c.Manifests)
	}
}

func TestListBranches(t *testing.T) {
	r := forgetest.NewLocal(t, "proj")
	r.Commit("main", "one", map[string]string{"a": "1"})
	r.Commit("rel/1", "two", nil)
	r.Git(r.Work, "tag", "v1")
	r.Git(r.Work, "push", "-q", r.Bare, "v1")
	got, err := (&forge.Adapter{}).ListBranches(context.Background(), app.FetchRequest{URL: "file://" + r.Bare})
	if err != nil || strings.Join(got, " ") != "main rel/1" {
		t.Errorf("%q %v", got, err)
	}
	_, err = (&forge.Adapter{}).ListBranches(context.Background(), app.FetchRequest{URL: "file://" + r.Bare + "-nope"})
	if app.ErrorCode(err) != app.EINVALID || !strings.Contains(err.Error(), "list branches of file://") {
		t.Errorf("missing repository: %v", err)
	}
}
