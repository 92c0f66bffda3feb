package web_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"builds/app"
)

// TestUIAdminDisk: the admin page shows what the data dir holds by kind,
// and, when free space is under [runner] min-free-disk, that new jobs
// wait.
func TestUIAdminDisk(t *testing.T) {
	e := newUIEnv(t)
	root, err := e.svc.CreateUser(context.Background(), "root", "root@example.org", true, "password-root")
	if err != nil {
		t.Fatal(err)
	}
	dir := e.svc.Config.Builds.DataDir
	os.MkdirAll(filepath.Join(dir, "artifacts", "1", "x"), 0o700)
	os.WriteFile(filepath.Join(dir, "artifacts", "1", "x", "a"), make([]byte, 3<<20), 0o600)
	admin := e.client(root)
	r := e.get(admin, "/admin")
	r.want(t, http.StatusOK, `id="admin-disk"`, "<th>Logs</th>", "<th>Artifacts</th>", "<th>Images</th>", "<th>Layers</th>", "<th>Database</th>", "3.0 MiB")
	r.lacks(t, `id="disk-low"`)

	e.svc.FreeSpace = func(string) (int64, error) { return 5 << 20, nil }
	e.svc.Config.Runner.MinFreeDisk = 1 << 30
	if err := e.svc.DiskReady(context.Background()); app.ErrorCode(err) != app.ENOTFOUND {
		t.Fatalf("gate: %v", err)
	}
	e.get(admin, "/admin").want(t, http.StatusOK, `id="disk-low"`, "new jobs wait queued", "(1 GiB)")
}
