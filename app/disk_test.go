package app_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"builds/app"
	"builds/store"
)

// smallFS mounts a tmpfs of size bytes for the test, or returns "" when
// this host cannot (not root, no mount rights) and says why.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fs")
	os.Mkdir(dir, 0o700)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Logf("no tmpfs (%v): the gate is checked against the real filesystem instead", err)
		return ""
	}
	t.Cleanup(func() { syscall.Unmount(dir, 0) })
	return dir
}

// envAt is newEnv with the data dir at dir.
func envAt(t *testing.T, dir string) *testEnv {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(dir, "builds.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := app.DefaultConfig()
	cfg.Builds.DataDir = dir
	key := make([]byte, 32)
	rand.Read(key)
	svc, err := app.NewService(db, cfg, key, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{svc: svc, db: db}
	e.alice = mustUser(t, svc, "alice")
	e.aliceCtx = tokenCtx(t, svc, e.alice, "")
	return e
}

// fill writes a file of about n bytes (all that fits when n < 0).
func fill(t *testing.T, path string, n int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for written := int64(0); n < 0 || written < n; written += int64(len(buf)) {
		if n >= 0 && n-written < int64(len(buf)) {
			buf = buf[:n-written]
		}
		if _, err := f.Write(buf); err != nil {
			if n < 0 && errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}

// TestDiskGate fills a small filesystem holding the data dir: with free
// space under [runner] min-free-disk a queued job is not claimed and
// says why in its setup log (once), the admin gate shows it; a full disk
// loses and corrupts nothing; once space is freed the job may start.
func TestDiskGate(t *testing.T) {
	ctx := context.Background()
	dir := smallFS(t, "48m")
	if dir == "" {
		dir = t.TempDir()
	}
	e := envAt(t, dir)
	e.svc.Config.Runner.MinFreeDisk = 16 << 20
	job, err := e.svc.Submit(e.aliceCtx, app.SubmitInput{Manifest: okManifest})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.DiskReady(ctx); err != nil {
		t.Fatalf("gate shut with room: %v", err)
	}
	filler := filepath.Join(dir, "filler")
	if isTmpfs(dir) {
		var st syscall.Statfs_t
		syscall.Statfs(dir, &st)
		fill(t, filler, int64(st.Bavail)*st.Bsize-8<<20) // leave 8 MiB, under the 16 MiB asked for
	} else {
		var st syscall.Statfs_t
		syscall.Statfs(dir, &st)
		e.svc.Config.Runner.MinFreeDisk = int64(st.Bavail)*st.Bsize + 1<<30
	}
	for range 2 {
		err := e.svc.DiskReady(ctx)
		if app.ErrorCode(err) != app.ENOTFOUND || !strings.Contains(app.ErrorMessage(err), "min-free-disk") {
			t.Fatalf("gate open under min-free-disk: %v", err)
		}
	}
	g := e.svc.DiskGate()
	if !g.Low || g.Min != e.svc.Config.Runner.MinFreeDisk || g.Since.IsZero() {
		t.Errorf("gate = %+v", g)
	}
	log, _ := os.ReadFile(e.svc.LogPath(job.ID, ""))
	if strings.Count(string(log), "Waiting: only") != 1 || !strings.Contains(string(log), "stays queued until space is freed") {
		t.Errorf("setup log: %q", log)
	}
	if j, _ := e.db.FindJobByID(ctx, job.ID); j.Status != app.JobQueued {
		t.Errorf("job %s", j.Status)
	}
	if isTmpfs(dir) {
		// a full disk: writes fail cleanly, nothing already stored is lost
		fill(t, filler+"2", -1)
		_, err := e.svc.Submit(e.aliceCtx, app.SubmitInput{Manifest: okManifest})
		t.Logf("submit on a full disk: %v", err)
		os.Remove(filler + "2")
		os.Remove(filler)
	} else {
		e.svc.Config.Runner.MinFreeDisk = 1
	}
	if err := e.svc.DiskReady(ctx); err != nil {
		t.Fatalf("gate still shut: %v", err)
	}
	if e.svc.DiskGate().Low {
		t.Error("gate reported low")
	}
	if j, err := e.db.FindJobByID(ctx, job.ID); err != nil || j.Status != app.JobQueued {
		t.Errorf("job after the full disk: %v %v", j, err)
	}
	sdb, err := sql.Open("sqlite", filepath.Join(dir, "builds.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	var check string
	if err := sdb.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check: %q %v", check, err)
	}
}

func isTmpfs(dir string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(dir, &st) == nil && st.Type == 0x01021994 // TMPFS_MAGIC
}
