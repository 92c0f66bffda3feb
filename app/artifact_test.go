package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"builds/app"
)

// TestArtifactStore: both the runner and the createArtifact mutation
// store artifacts through one writer with one set of limits.
func TestArtifactStore(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.svc.Config.Limits.ArtifactSize = 10
	e.svc.Config.Limits.ArtifactsPerJob = 2
	job := e.jobIn(t, app.JobRunning)

	w, err := e.svc.NewArtifact(ctx, job.ID, "out/app.bin")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("12345"))
	w.Write([]byte("67890"))
	a, err := w.Commit(ctx)
	if err != nil || a.Size != 10 || a.Name != "app.bin" {
		t.Fatalf("commit: %+v %v", a, err)
	}
	if b, _ := os.ReadFile(e.svc.ArtifactPath(a)); string(b) != "1234567890" {
		t.Errorf("stored %q", b)
	}

	w, _ = e.svc.NewArtifact(ctx, job.ID, "big.bin")
	if _, err := w.Write([]byte("12345678901")); err == nil || !w.TooLarge() {
		t.Fatalf("write past the limit: %v", err)
	}
	if _, err := w.Commit(ctx); err == nil || !strings.Contains(err.Error(), "grew past the 10 B allowed per artifact") {
		t.Fatalf("commit of an oversized artifact: %v", err)
	}
	w, _ = e.svc.NewArtifact(ctx, job.ID, "aborted.bin")
	w.Write([]byte("x"))
	w.Abort()
	if arts, _ := e.db.FindArtifacts(ctx, job.ID); len(arts) != 1 {
		t.Errorf("%d artifacts recorded", len(arts))
	}
	ents, _ := os.ReadDir(filepath.Join(e.svc.Config.Builds.DataDir, "artifacts", "1"))
	if len(ents) != 1 {
		t.Errorf("%d artifact dirs left, want 1", len(ents))
	}

	for _, tt := range []struct{ path, want string }{
		{"..", "invalid artifact path"}, {"", "invalid artifact path"}, {"a\nb", "invalid artifact path"},
	} {
		if _, err := e.svc.NewArtifact(ctx, job.ID, tt.path); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("path %q: %v", tt.path, err)
		}
	}
	// one committed and limit 2: a second is fine, a third is refused
	w, _ = e.svc.NewArtifact(ctx, job.ID, "two.bin")
	if _, err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.NewArtifact(ctx, job.ID, "three.bin"); err == nil || !strings.Contains(err.Error(), "no more than 2 artifacts per build are accepted (3 given)") {
		t.Errorf("third artifact: %v", err)
	}
	if _, err := e.svc.NewArtifact(ctx, 999, "x"); app.ErrorCode(err) != app.ENOTFOUND {
		t.Errorf("unknown job: %v", err)
	}
}
