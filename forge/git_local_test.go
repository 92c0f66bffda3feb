package forge_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"builds/app"
	"builds/forge"
	"builds/forge/forgetest"
)

// TestFetchOtherOwner: a plain git repository of another Unix user (the
// git account pushes go to, while builds runs as its own) is read by
// both URL forms, though git's upload-pack refuses repositories of other
// users it is not told to trust.
func TestFetchOtherOwner(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to give the repository to another user")
	}
	ctx := context.Background()
	r := forgetest.NewLocal(t, "proj")
	sha := r.Commit("main", "first", map[string]string{".build.yml": manifest})
	if err := filepath.Walk(r.Bare, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, 65534, 65534)
	}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{r.Bare, "file://" + r.Bare} {
		c, err := (&forge.Adapter{}).FetchCommit(ctx, app.FetchRequest{URL: u, Rev: "main", MaxManifests: 4})
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if c.SHA != sha || len(c.Manifests) != 1 {
			t.Errorf("%s: commit %s, %d manifests", u, c.SHA, len(c.Manifests))
		}
		if b, err := (&forge.Adapter{}).ListBranches(ctx, app.FetchRequest{URL: u}); err != nil || len(b) != 1 || b[0] != "main" {
			t.Errorf("%s: branches %v, %v", u, b, err)
		}
	}
}
