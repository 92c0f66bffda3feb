package runner

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builds/app"
	"builds/images"
	"builds/images/imagestest"
)

// The VM suite runs whole jobs in real QEMU guests of the test image
// (BUILDS_VM_TESTS=1; without it the tests skip and say why, with it they
// never skip). It is a handful of jobs because every boot costs seconds
// under TCG.

// newVMHarness is a harness whose pool boots QEMU guests of the test image.
func newVMHarness(t testing.TB, opts ...func(*app.Config)) (*harness, *images.Image) {
	t.Helper()
	return newVMHarnessOf(t, imagestest.Bookworm(t), opts...)
}

// newVMHarnessOf is a harness whose pool boots QEMU guests of img, the one
// image of its catalogue's <distro>/<release>/<arch> directory.
func newVMHarnessOf(t testing.TB, img *images.Image, opts ...func(*app.Config)) (*harness, *images.Image) {
	t.Helper()
	opts = append([]func(*app.Config){func(c *app.Config) {
		c.Runner.Accel = "tcg" // the VM engineer's probe decides "auto"; CI machines have no usable KVM
		c.Runner.Memory = 1024
		c.Runner.CPUs = 1
		c.Runner.BootTimeout = 2 * time.Minute
		c.Runner.JobTimeout = 10 * time.Minute
		if a := os.Getenv("BUILDS_TEST_ACCEL"); a != "" {
			c.Runner.Accel = a
		}
	}}, opts...)
	h := openHarness(t, opts...)
	h.timeout = 8 * time.Minute // TCG on a busy CI machine
	// The image lives in <catalogue>/<distro>/<release>/<arch>.
	catDir := filepath.Dir(filepath.Dir(filepath.Dir(img.Dir)))
	booter, err := NewQEMUBooter(h.cfg, images.NewCatalog(catDir, nil), h.cfg.Runner.Accel)
	if err != nil {
		t.Fatal(err)
	}
	h.pool.booter = booter
	h.start()
	t.Cleanup(func() {
		if pids := qemusUsing(h.cfg.Runner.WorkDir); len(pids) > 0 {
			t.Errorf("QEMU processes left behind: %v", pids)
		}
	})
	return h, img
}

// gitServer serves bare repositories over git's "dumb" HTTP protocol on
// the host's loopback; guests reach it at 10.0.2.2 once its address is in
// [runner] guest-allow.
func gitServer(t *testing.T, root string) (guestURL string, addr netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(root))}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr = netip.MustParseAddrPort(ln.Addr().String())
	return fmt.Sprintf("http://10.0.2.2:%d", addr.Port()), addr
}

// bareRepo clones work into root/<name>.git as a bare repository ready for
// dumb HTTP.
func bareRepo(t *testing.T, work, root, name string) {
	t.Helper()
	dst := filepath.Join(root, name+".git")
	git(t, "", "clone", "-q", "--bare", work, dst)
	git(t, dst, "update-server-info")
}

func TestVMJob(t *testing.T) {
	src, root := t.TempDir(), t.TempDir()
	url, addr := gitServer(t, root)
	h, _ := newVMHarness(t, func(c *app.Config) { c.Runner.GuestAllow = []netip.AddrPort{addr} })

	lib := filepath.Join(src, "lib")
	gitRepo(t, lib, "lib v1")
	bareRepo(t, lib, root, "lib")
	app1 := filepath.Join(src, "app")
	ids := gitRepo(t, app1, "app v1", "app v2")
	bareRepo(t, app1, root, "app")
	super := filepath.Join(src, "super")
	gitRepo(t, super, "super v1")
	git(t, super, "-c", "protocol.file.allow=always", "submodule", "add", "-q", lib, "vendor/lib")
	git(t, super, "config", "-f", ".gitmodules", "submodule.vendor/lib.url", url+"/lib.git")
	git(t, super, "add", ".gitmodules")
	git(t, super, "commit", "-q", "-m", "add lib")
	bareRepo(t, super, root, "super")

	h.secret(app.SecretInput{Type: app.SecretFile, Name: "api-key", Data: []byte("vm-secret-value-42\n"), Path: "~/.config/api-key", Mode: 0o600})
	job := h.submit(fmt.Sprintf(`image: debian/bookworm
packages: [jq]
sources:
  - %[1]s/app.git#%[2]s
  - %[1]s/super.git
secrets: [api-key]
environment:
  GREETING: "hello, world's"
  COUNT: 3
artifacts: [out/report.json]
tasks:
  - setup: |
      jq --version
      test "$(cat app/file.txt)" = "app v1"
      test "$(cat super/vendor/lib/file.txt)" = "lib v1"
      printf '\033[!p\033]104\a\033[?7hCONSOLE-RESET-LINE\r\n' | sudo tee /dev/console >/dev/null
  - build: |
      test "$GREETING" = "hello, world's" && test "$COUNT" = 3
      test "$(stat -c %%a ~/.config/api-key)" = 600
      cat ~/.config/api-key
      mkdir -p out && jq -n --arg g "$GREETING" '{greeting: $g}' > out/report.json
  - test: |
      echo "job $JOB_ID at $JOB_URL"
`, url, ids[0]))
	got := h.wait(job.ID)
	setup := h.log(job.ID, "")
	if got.Status != app.JobSuccess {
		t.Fatalf("status = %s\nsetup log:\n%s\nbuild log:\n%s", got.Status, setup, h.log(job.ID, "build"))
	}
	if testing.Verbose() {
		t.Logf("setup log:\n%s", setup)
	}
	linesInOrder(t, setup, "Booting image debian/bookworm (amd64)", "Waiting for guest to settle", "Guest ready after",
		"Installing packages", "Sending tasks", "Sending build environment", "Sending secrets", "Resolving secret api-key",
		"Cloning repositories", "Running task setup", "Running task build", "Running task test",
		"Uploading out/report.json", "Uploaded report.json", "Tearing down build VM")
	// the guest's console reaches the raw setup log as text (dpkg's own
	// progress keeps its carriage returns)
	h.waitFor("the console line", func() bool { return strings.Contains(h.log(job.ID, ""), "\nCONSOLE-RESET-LINE\n") })
	setup = h.log(job.ID, "")
	if i := strings.IndexFunc(setup, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' && r != '\r' }); i >= 0 {
		t.Errorf("control character %q in the setup log: %q", setup[i], setup[max(0, i-40):min(len(setup), i+40)])
	}
	if b := h.log(job.ID, "build"); strings.Contains(b, "vm-secret-value-42") || !strings.Contains(b, "[masked]") {
		t.Errorf("secret not masked in the build log:\n%s", b)
	}
	arts, err := h.svc.Artifacts(h.ctx, got)
	if err != nil || len(arts) != 1 {
		t.Fatalf("artifacts = %v, %v", arts, err)
	}
	if b, _ := os.ReadFile(h.svc.ArtifactPath(arts[0])); !strings.Contains(string(b), `"greeting": "hello, world's"`) {
		t.Errorf("artifact = %q", b)
	}
	if tl := h.log(job.ID, "test"); !strings.Contains(tl, fmt.Sprintf("job %d at http://builds.test/~alice/job/%d", job.ID, job.ID)) {
		t.Errorf("test log:\n%s", tl)
	}
	if _, err := os.Stat(filepath.Join(h.cfg.Runner.WorkDir, fmt.Sprintf("job-%d", job.ID))); !os.IsNotExist(err) {
		t.Errorf("VM work dir left behind: %v", err)
	}
}

// TestVMJobEndings runs a failing, a cancelled and a complete-build job
// side by side (two slots).
func TestVMJobEndings(t *testing.T) {
	h, _ := newVMHarness(t)
	failing := h.submit("image: debian/bookworm\ntasks:\n  - ok: uname -a\n  - broken: exit 42\n  - never: \"true\"\n")
	cancelled := h.submit("image: debian/bookworm\ntasks:\n  - long: sleep 600\n")
	h.waitLog(cancelled.ID, "long", "+ sleep 600")
	start := time.Now()
	if _, err := h.svc.Cancel(h.ctx, cancelled.ID); err != nil {
		t.Fatal(err)
	}
	if got := h.wait(cancelled.ID); got.Status != app.JobCancelled {
		t.Errorf("cancelled job: %s", got.Status)
	}
	t.Logf("cancel to VM gone: %s", time.Since(start).Round(time.Millisecond))
	complete := h.submit("image: debian/bookworm\ntasks:\n  - first: echo first\n  - done: complete-build\n  - skipped: \"false\"\n")

	if got := h.wait(failing.ID); got.Status != app.JobFailed {
		t.Errorf("failing job: %s\n%s", got.Status, h.log(failing.ID, ""))
	}
	if ts := h.tasks(failing.ID); !sameTasks(ts, map[string]app.TaskStatus{"ok": app.TaskSuccess, "broken": app.TaskFailed, "never": app.TaskPending}) {
		t.Errorf("failing job tasks: %v", ts)
	}
	linesInOrder(t, h.log(failing.ID, ""), "Error: task broken: exit status 42", "Tearing down build VM")
	if got := h.wait(complete.ID); got.Status != app.JobSuccess {
		t.Errorf("complete-build job: %s\n%s", got.Status, h.log(complete.ID, ""))
	}
	if ts := h.tasks(complete.ID); !sameTasks(ts, map[string]app.TaskStatus{"first": app.TaskSuccess, "done": app.TaskSuccess, "skipped": app.TaskSkipped}) {
		t.Errorf("complete-build tasks: %v", ts)
	}
}

// TestQEMUBooterMissingImage needs no VM: the catalogue is empty.
func TestQEMUBooterMissingImage(t *testing.T) {
	h := openHarness(t)
	booter, err := NewQEMUBooter(h.cfg, images.NewCatalog(t.TempDir(), nil), "tcg")
	if err != nil {
		t.Fatal(err)
	}
	h.pool.booter = booter
	h.start()
	job := h.submit("image: debian/bookworm\narch: arm64\ntasks:\n  - a: \"true\"\n")
	if got := h.wait(job.ID); got.Status != app.JobFailed {
		t.Fatalf("status = %s", got.Status)
	}
	linesInOrder(t, h.log(job.ID, ""), "Booting image debian/bookworm (arm64)", "Error: boot: Image 'debian/bookworm' does not exist")
}

// TestVMGuestNetworkNone: with guest-network = none a real guest resolves
// no names and reaches no address, not even the package mirror, and the
// setup log says why.
func TestVMGuestNetworkNone(t *testing.T) {
	mirror, err := images.HostMirror("/")
	if err != nil {
		t.Skipf("no host mirror to try: %v", err)
	}
	u, err := url.Parse(mirror.Archive)
	if err != nil || u.Hostname() == "" {
		t.Skipf("mirror %q has no host", mirror.Archive)
	}
	ips, err := net.LookupHost(u.Hostname())
	if err != nil || len(ips) == 0 {
		t.Skipf("the host cannot resolve its own mirror: %v", err)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443"}[u.Scheme]
		if port == "" {
			port = "80"
		}
	}
	h, _ := newVMHarness(t, func(c *app.Config) { c.Runner.GuestNetwork = app.GuestNone })
	job := h.submit(fmt.Sprintf(`image: debian/bookworm
tasks:
  - offline: |
      if timeout 20 getent hosts %[1]s; then echo "RESOLVED"; else echo "no name service"; fi
      if timeout 20 bash -c 'exec 3<>/dev/tcp/%[2]s/%[3]s'; then echo "REACHED"; else echo "mirror closed"; fi
`, u.Hostname(), ips[0], port))
	got := h.wait(job.ID)
	setup, task := h.log(job.ID, ""), h.log(job.ID, "offline")
	if got.Status != app.JobSuccess {
		t.Fatalf("status %s\n%s\n%s", got.Status, setup, task)
	}
	if strings.Contains(task, "\nRESOLVED") || strings.Contains(task, "\nREACHED") || !strings.Contains(task, "\nmirror closed") {
		t.Errorf("the guest reached the network:\n%s", task)
	}
	for _, want := range []string{"guest network: none", "Guest network refused udp 10.0.2.3:53: the guest network is off",
		"Guest network refused tcp " + ips[0] + ":" + port + ": the guest network is off"} {
		if !strings.Contains(setup, want) {
			t.Errorf("setup log lacks %q:\n%s", want, setup)
		}
	}
}

// TestVMSnapshots runs jobs from snapshots and through every fallback:
// none yet (boot, one is made), good (resume), corrupt (discarded, boot),
// stale (another VM shape: boot, remade, the old one pruned).
func TestVMSnapshots(t *testing.T) {
	h, img := newVMHarness(t)
	b := h.pool.booter.(*QEMUBooter)
	dir := t.TempDir()
	b.UseSnapshots(context.Background(), dir, 0)
	hello := "image: debian/bookworm\ntasks:\n  - hello: echo hello from the guest\n"
	runJob := func(want string) string {
		t.Helper()
		job := h.submit(hello)
		got := h.wait(job.ID)
		setup := h.log(job.ID, "")
		if got.Status != app.JobSuccess || !strings.Contains(h.log(job.ID, "hello"), "\nhello from the guest") {
			t.Fatalf("status %s\n%s\n%s", got.Status, setup, h.log(job.ID, "hello"))
		}
		if !strings.Contains(setup, want) {
			t.Fatalf("setup log lacks %q:\n%s", want, setup)
		}
		return setup
	}
	shape := func() vmShape {
		return shapeOf(img, VMConfig{CPUs: h.cfg.Runner.CPUs, MemoryMiB: h.cfg.Runner.Memory, CPUModel: h.cfg.Runner.CPUModel, Accel: "tcg"}, b.qemu())
	}
	waitSnapshot := func() *Resume {
		t.Helper()
		var r *Resume
		h.waitFor("the snapshot", func() bool {
			var ok bool
			r, _, ok = b.snaps.find(shape())
			return ok
		})
		return r
	}
	runJob("Waiting for guest to settle")
	r := waitSnapshot()
	setup := runJob("Resumed debian/bookworm from snapshot in")
	if strings.Contains(setup, "Waiting for guest to settle") {
		t.Errorf("a resumed job booted too:\n%s", setup)
	}

	// a state file damaged in place (same size): the resume fails, the
	// job boots, the snapshot is dropped and made again
	size := fileSize(r.Mem)
	if err := os.WriteFile(r.Mem, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	runJob("did not resume")
	waitSnapshot()
	runJob("Resumed debian/bookworm from snapshot in")

	// another VM shape: the old snapshot does not fit; a new one is made
	// and replaces it
	old := shape().key()
	h.cfg.Runner.Memory = 768
	runJob("Waiting for guest to settle")
	waitSnapshot()
	if _, err := os.Stat(filepath.Join(dir, old)); !os.IsNotExist(err) {
		t.Errorf("stale snapshot %s kept: %v", old, err)
	}
	runJob("Resumed debian/bookworm from snapshot in")
}

// TestVMLayers: a job's installed packages are saved as a layer that a
// later job with the same packages resumes, skipping the install; the
// layer holds nothing else of the job that made it (secret, environment,
// task, source, token); expired layers are remade, a layer removed while
// a job runs from it does not disturb the job, one in use is not evicted,
// and a manifest can opt out.
func TestVMLayers(t *testing.T) {
	src, root := t.TempDir(), t.TempDir()
	url, addr := gitServer(t, root)
	commitTree(t, filepath.Join(src, "proj"), map[string]string{"README": "LAYER-SOURCE-A\n"})
	bareRepo(t, filepath.Join(src, "proj"), root, "proj")
	h, img := newVMHarness(t, func(c *app.Config) { c.Runner.GuestAllow = []netip.AddrPort{addr} })
	b := h.pool.booter.(*QEMUBooter)
	b.UseSnapshots(context.Background(), t.TempDir(), 1) // one warm guest: the layer used last
	t.Cleanup(func() { b.Close() })
	layers := NewLayerStore(t.TempDir(), time.Hour, 10<<30, nil)
	b.UseLayers(layers)
	h.secret(app.SecretInput{Type: app.SecretFile, Name: "token-file", Data: []byte("LAYER-SECRET-A-1234\n"), Path: "~/.secret", Mode: 0o600})
	run := func(manifest string, want ...string) (*app.Job, string) {
		t.Helper()
		job := h.submit(manifest)
		got := h.wait(job.ID)
		logs := h.log(job.ID, "")
		if got.Status != app.JobSuccess {
			t.Fatalf("status %s\n%s\n%s", got.Status, logs, h.log(job.ID, "check"))
		}
		for _, w := range want {
			if !strings.Contains(logs, w) {
				t.Fatalf("setup log lacks %q:\n%s", w, logs)
			}
		}
		if strings.Contains(logs, "Formatting '") {
			t.Errorf("QEMU's own output (host paths) in the setup log:\n%s", logs)
		}
		return job, logs
	}
	// the base snapshot first, so that layers are made on resumed guests
	run("image: debian/bookworm\ntasks:\n  - a: \"true\"\n")
	shape := shapeOf(img, VMConfig{CPUs: h.cfg.Runner.CPUs, MemoryMiB: h.cfg.Runner.Memory, CPUModel: h.cfg.Runner.CPUModel, Accel: "tcg"}, b.qemu())
	h.waitFor("the snapshot", func() bool { _, _, ok := b.snaps.find(shape); return ok })

	// job A installs hello with everything of its own alongside
	run(fmt.Sprintf(`image: debian/bookworm
packages: [hello]
secrets: [token-file]
oauth: builds.sr.ht/JOBS:RO
environment:
  WHO: LAYER-ENV-A
sources:
  - %s/proj.git
tasks:
  - check: |
      echo LAYER-TASK-A
      hello
`, url), "Installing packages", "Saved the packages as layer")

	// job B asks for the same package and looks for anything of A's
	check := `image: debian/bookworm
packages: [hello]
tasks:
  - check: |
      hello
      p=LAYER-; hits=$(sudo grep -rlaI --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -e "${p}SECRET-A" -e "${p}ENV-A" -e "${p}TASK-A" -e "${p}SOURCE-A" -e "OAUTH2_""TOKEN=" / 2>/dev/null || true)
      env=$(sudo sh -c 'cat /proc/[0-9]*/environ' 2>/dev/null | tr '\0' '\n' | grep -c "${p}ENV" || true)
      echo "hits=[$hits] env=$env"
      test -z "$hits" && test "$env" = 0
      test ! -e ~/proj && test ! -e ~/.secret
`
	// the layer A saved is kept warm for the next job asking for it
	h.waitFor("a warm guest of the layer", func() bool {
		b.warm.mu.Lock()
		defer b.warm.mu.Unlock()
		return len(b.warm.guests) == 1 && b.warm.guests[0].layer != ""
	})
	_, logs := run(check, "Packages from layer", "from a layer in", "waiting")
	if strings.Contains(logs, "Installing packages") {
		t.Errorf("a job from a layer installed again:\n%s", logs)
	}
	list, _ := layers.List()
	if len(list) != 1 || list[0].Recipe.Packages[0] != "hello" || list[0].Size <= 0 {
		t.Fatalf("layers %+v", list)
	}
	key := list[0].Key

	// a layer in use is not evicted; free, it is
	layers.maxSize = 1
	layers.mu.Lock()
	layers.inUse[key]++
	layers.mu.Unlock()
	if n, _ := layers.Prune(); n != 0 {
		t.Errorf("pruned %d layers while one was in use", n)
	}
	layers.release(key)
	layers.maxSize = 10 << 30

	// removed while a job runs from it: the job is not disturbed
	job := h.submit("image: debian/bookworm\npackages: [hello]\ntasks:\n  - late: |\n      sleep 4\n      hello\n      sudo sh -c 'echo written >/var/tmp/x' && cat /var/tmp/x\n")
	h.waitLog(job.ID, "", "Packages from layer")
	if gone, err := layers.Remove(key[:8]); err != nil || len(gone) != 1 {
		t.Fatalf("remove: %v %v", gone, err)
	}
	if got := h.wait(job.ID); got.Status != app.JobSuccess || !strings.Contains(h.log(job.ID, "late"), "\nwritten") {
		t.Fatalf("job from a removed layer: %s\n%s", got.Status, h.log(job.ID, "late"))
	}

	// gone: installed again and saved again; expired: the same
	run("image: debian/bookworm\npackages: [hello]\ntasks:\n  - a: hello\n", "Installing packages", "Saved the packages as layer")
	layers.maxAge = time.Nanosecond
	run("image: debian/bookworm\npackages: [hello]\ntasks:\n  - a: hello\n", "Installing packages", "Saved the packages as layer")
	layers.maxAge = time.Hour

	// a manifest that opts out neither uses nor makes layers
	_, logs = run("image: debian/bookworm\npackages: [hello]\nenvironment:\n  BUILDS_NO_LAYER: 1\ntasks:\n  - a: hello\n", "Installing packages")
	if strings.Contains(logs, "layer") {
		t.Errorf("an opted-out job used layers:\n%s", logs)
	}
}
