package web_test

import (
	"context"
	"fmt"
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

// TestUIAdminRunners: the admin page lists remote runners with what they
// reported, and revokes one; others get 404 for both.
func TestUIAdminRunners(t *testing.T) {
	e := newUIEnv(t)
	root, err := e.svc.CreateUser(context.Background(), "root", "root@example.org", true, "password-root")
	if err != nil {
		t.Fatal(err)
	}
	admin := e.client(root)
	e.get(admin, "/admin").want(t, http.StatusOK, "No remote runners.")

	sys := app.SystemContext(context.Background())
	token, rn, err := e.svc.CreateRunner(sys, "build-2")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.CreateRunner(sys, "build-3"); err != nil {
		t.Fatal(err)
	}
	a, err := e.svc.AuthenticateRunner(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	rep := app.RunnerReport{Version: "v9", Address: "build-2.lan:2222", Slots: 4, Free: 3,
		Images: []app.RunnerImage{{Name: "debian/stable", Arch: "amd64"}}}
	if _, err := e.svc.RunnerPoll(app.NewContextWithAuth(context.Background(), a), rep); err != nil {
		t.Fatal(err)
	}
	r := e.get(admin, "/admin")
	r.want(t, http.StatusOK, `id="admin-runners"`, "build-2", "build-3", "answering", "never polled",
		"<code>build-2.lan:2222</code>", "3 free of 4", "debian/stable (amd64)", "v9")
	r.lacks(t, token)

	// alice is no admin: the page and the revoke are not there for her
	alice := e.client(e.user("alice"))
	e.get(alice, "/admin").want(t, http.StatusNotFound)
	e.post(alice, fmt.Sprintf("/admin/runners/%d/revoke", rn.ID), nil).want(t, http.StatusNotFound)

	e.post(admin, fmt.Sprintf("/admin/runners/%d/revoke", rn.ID), nil).want(t, http.StatusSeeOther)
	r = e.get(admin, "/admin")
	r.want(t, http.StatusOK, "Runner build-2 was revoked.", "build-3")
	r.lacks(t, "build-2.lan")
	if _, err := e.svc.AuthenticateRunner(context.Background(), token); app.ErrorCode(err) != app.EUNAUTHORIZED {
		t.Fatalf("revoked token: %v", err)
	}
	e.post(admin, "/admin/runners/99999/revoke", nil).want(t, http.StatusNotFound)
	e.post(admin, "/admin/runners/x/revoke", nil).want(t, http.StatusNotFound)
}
