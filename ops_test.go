package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeRefusesRoot: as root, serve stops with the reason unless
// --allow-root or [builds] allow-root says otherwise; as another user it
// starts.
func TestServeRefusesRoot(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "builds.ini")
	os.WriteFile(cfg, []byte("[builds]\ndata-dir = "+filepath.Join(dir, "data")+"\nlisten = 127.0.0.1:0\n[runner]\nslots = 0\nssh-listen =\n"), 0o600)
	serve := func(euid int, args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		m := NewMain(strings.NewReader(""), &syncBuffer{}, &syncBuffer{})
		m.ops.euid = func() int { return euid }
		m.ConfigPath = cfg
		return m.cmdServe(ctx, args)
	}
	err := serve(0)
	if err == nil || !strings.Contains(err.Error(), "refusing to run as root") || !strings.Contains(err.Error(), "--allow-root") {
		t.Fatalf("as root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("the data dir was made before the refusal")
	}
	if err := serve(0, "--allow-root"); err != nil {
		t.Errorf("--allow-root: %v", err)
	}
	if err := serve(1000); err != nil {
		t.Errorf("as a user: %v", err)
	}
	os.WriteFile(cfg, []byte("[builds]\nallow-root = true\ndata-dir = "+filepath.Join(dir, "data")+"\nlisten = 127.0.0.1:0\n[runner]\nslots = 0\nssh-listen =\n"), 0o600)
	if err := serve(0); err != nil {
		t.Errorf("allow-root = true: %v", err)
	}
}

// TestServiceUnit: contrib/builds.service passes systemd's own checks and
// has what the README promises (an unprivileged user with /dev/kvm,
// sandboxing, restart on failure, time for the graceful stop).
func TestServiceUnit(t *testing.T) {
	b, err := os.ReadFile("contrib/builds.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{"User=builds", "SupplementaryGroups=kvm", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"ReadWritePaths=/var/lib/builds", "PrivateTmp=yes", "Restart=on-failure", "TimeoutStopSec=", "DeviceAllow=/dev/kvm rw"} {
		if !strings.Contains(unit, want+"\n") && !strings.Contains(unit, want) {
			t.Errorf("unit lacks %s", want)
		}
	}
	if strings.Contains(unit, "MemoryDenyWriteExecute") {
		t.Error("MemoryDenyWriteExecute breaks QEMU's TCG")
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: the unit's syntax is not checked")
	}
	bin := filepath.Join(t.TempDir(), "builds")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, out)
	}
	path := filepath.Join(t.TempDir(), "builds.service")
	os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/builds", bin)), 0o644)
	if out, err := exec.Command(analyze, "verify", path).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
