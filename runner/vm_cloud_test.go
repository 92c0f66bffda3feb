package runner

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"builds/app"
	"builds/images"
	"builds/images/imagestest"

	"golang.org/x/crypto/ssh"
)

// cloudImage returns the test-made cloud image (imagestest.CloudImage)
// imported the way `builds image import-cloud` does it: staged, booted
// once through SeaBIOS with builds' NoCloud seed, recorded in image.json.
func cloudImage(t testing.TB) *images.Image {
	t.Helper()
	return importedCloud(t, imagestest.CloudName, imagestest.CloudImage(t))
}

// importedCloud imports file as name (cached: imagestest.PreparedCloud).
func importedCloud(t testing.TB, name, file string) *images.Image {
	t.Helper()
	return imagestest.PreparedCloud(t, name, file, func(catDir, file string) error {
		ctx, cancel := context.WithTimeout(context.Background(), DefaultPrepareTimeout)
		defer cancel()
		ci, err := images.NewCatalog(catDir, nil).StartCloudImport(ctx, name, file, images.CloudOptions{})
		if err != nil {
			return err
		}
		log, err := os.Create(ci.Log)
		if err != nil {
			ci.Abort()
			return err
		}
		defer log.Close()
		work, err := os.MkdirTemp(ci.Dir, "prepare-")
		if err != nil {
			ci.Abort()
			return err
		}
		res, err := PrepareCloudImage(ctx, PrepareConfig{
			VM:   VMConfig{Image: ci.PreparingImage(), CPUs: 2, MemoryMiB: 1024, Accel: "tcg", WorkDir: work, Console: log},
			Seed: ci.Seed,
		})
		os.RemoveAll(work)
		if err != nil {
			ci.Abort()
			return fmt.Errorf("%w (log: %s)", err, ci.FailedLog())
		}
		_, err = ci.Finish(res)
		return err
	})
}

// TestVMCloudJob runs a whole job on the imported cloud image, which
// boots through its own GRUB under SeaBIOS: packages, sources, secrets,
// artifacts, the environment, as TestVMJob does on our own image, and
// `connect` into the guest once its tasks end (shell: true).
func TestVMCloudJob(t *testing.T) {
	img := cloudImage(t)
	if img.Meta.Firmware != images.FirmwareBIOS || img.Meta.Family != images.FamilyApt || img.Meta.Kernel != "" {
		t.Fatalf("image.json: firmware %q family %q kernel %q, want bios, apt, none", img.Meta.Firmware, img.Meta.Family, img.Meta.Kernel)
	}
	root := t.TempDir()
	url, addr := gitServer(t, root)
	work := filepath.Join(t.TempDir(), "app")
	gitRepo(t, work, "app v1")
	bareRepo(t, work, root, "app")
	h, _ := newVMHarnessOf(t, img, func(c *app.Config) {
		c.Runner.GuestAllow = []netip.AddrPort{addr}
		c.Runner.BootTimeout = 4 * time.Minute // SeaBIOS, GRUB, the stock initrd and a full systemd under TCG
		c.Runner.SSHListen = "127.0.0.1:0"
	})
	// builds' SSH server, for `connect` into the guest once the tasks end
	srv := NewSSHServer(LocalServer(h.svc, nil), h.cfg, h.pool, h.svc.Log)
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	sh := &sshHarness{harness: h, srv: srv, alice: newSigner(t)}
	if _, err := h.svc.AddSSHKey(h.ctx, h.user.ID, string(ssh.MarshalAuthorizedKey(sh.alice.PublicKey()))); err != nil {
		t.Fatal(err)
	}
	h.secret(app.SecretInput{Type: app.SecretFile, Name: "cloud-key", Data: []byte("cloud-secret-value-7\n"), Path: "~/.config/cloud-key", Mode: 0o600})
	job := h.submit(fmt.Sprintf(`image: %s
packages: [jq, hello]
sources:
  - %s/app.git
secrets: [cloud-key]
environment:
  GREETING: hi from the cloud
artifacts: [out/report.json]
shell: true
tasks:
  - check: |
      test "$(id -un)" = build && test "$(id -u)" = 1000 && test "$HOME" = /home/build
      test "$(readlink -f "$(getent passwd build | cut -d: -f7)")" = "$(readlink -f /bin/bash)"
      test -z "$(sudo -n true 2>&1)" # no warnings either (the host name resolves)
      git --version
      hello
      test "$(cat app/file.txt)" = "app v1"
      test "$(stat -c %%a ~/.config/cloud-key)" = 600
      cat ~/.config/cloud-key
      test "$(hostname)" = build
      ip -4 addr show | grep -q '10.0.2.15/24'
      test ! -e /run/cloud-init/result.json # cloud-init ran once, at import
      grep PRETTY_NAME /etc/os-release
  - build: |
      mkdir -p out && jq -n --arg g "$GREETING" '{greeting: $g}' > out/report.json
`, imagestest.CloudName, url))
	// connect: it tails the logs while the tasks run, then runs the
	// command in the guest; the last session's logout ends the job
	banner := "connect " + itoa(job.ID) + "\n"
	h.waitFor("the connect banner or the job's end", func() bool {
		j, err := h.db.FindJobByID(context.Background(), job.ID)
		return strings.Contains(h.log(job.ID, ""), banner) || err == nil && j.Status.Final()
	})
	if !strings.Contains(h.log(job.ID, ""), banner) {
		t.Fatalf("the job ended before it offered a shell; setup log:\n%s", h.log(job.ID, ""))
	}
	c, err := sh.dial(sh.alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{b: &bytes.Buffer{}}
	sess.Stdout, sess.Stderr = out, out
	if err := sess.Run("connect " + itoa(job.ID) + " echo connected as $(id -un) on $(hostname): $(jq -c .greeting out/report.json)"); err != nil {
		t.Fatalf("connect: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), `connected as build on build: "hi from the cloud"`) {
		t.Errorf("connect output:\n%s", out.String())
	}
	got := h.wait(job.ID)
	setup := h.log(job.ID, "")
	if got.Status != app.JobSuccess {
		t.Fatalf("status = %s\nsetup log:\n%s\ncheck log:\n%s", got.Status, setup, h.log(job.ID, "check"))
	}
	linesInOrder(t, setup, "Booting image "+imagestest.CloudName+" (amd64)", "Guest ready after", "Installing packages",
		"Sending secrets", "Cloning repositories", "Running task check", "Running task build", "Uploading out/report.json", "Tearing down build VM")
	if m := regexp.MustCompile(`Guest ready after [0-9.]+m?s`).FindString(setup); m != "" {
		t.Logf("firmware boot: %s", m)
	}
	if b := h.log(job.ID, "check"); strings.Contains(b, "cloud-secret-value-7") || !strings.Contains(b, "[masked]") || !strings.Contains(b, "Hello, world!") {
		t.Errorf("check log:\n%s", b)
	}
	arts, err := h.svc.Artifacts(h.ctx, got)
	if err != nil || len(arts) != 1 {
		t.Fatalf("artifacts = %v, %v", arts, err)
	}
	if b, _ := os.ReadFile(h.svc.ArtifactPath(arts[0])); !strings.Contains(string(b), `"greeting": "hi from the cloud"`) {
		t.Errorf("artifact = %q", b)
	}
}

// TestVMCloudSnapshot: jobs on an imported cloud image use the fast
// start too: once a snapshot of the booted image exists, a job resumes
// it instead of booting through SeaBIOS and GRUB.
func TestVMCloudSnapshot(t *testing.T) {
	img := cloudImage(t)
	if img.Meta.Control == "" {
		t.Fatal("the imported image has no control channel (prepare.sh did not build ci-ctl): it can never resume")
	}
	h, _ := newVMHarnessOf(t, img, func(c *app.Config) { c.Runner.BootTimeout = 4 * time.Minute })
	b := h.pool.booter.(*QEMUBooter)
	b.UseSnapshots(context.Background(), t.TempDir(), 0)
	hello := "image: " + imagestest.CloudName + "\ntasks:\n  - hello: echo hello from the cloud guest\n"
	runJob := func(want string) string {
		t.Helper()
		job := h.submit(hello)
		got := h.wait(job.ID)
		setup := h.log(job.ID, "")
		if got.Status != app.JobSuccess || !strings.Contains(h.log(job.ID, "hello"), "\nhello from the cloud guest") {
			t.Fatalf("status %s\n%s\n%s", got.Status, setup, h.log(job.ID, "hello"))
		}
		m := regexp.MustCompile(want).FindString(setup)
		if m == "" {
			t.Fatalf("setup log lacks %q:\n%s", want, setup)
		}
		t.Log(m)
		return setup
	}
	runJob(`Guest ready after [0-9.]+m?s`)
	shape := shapeOf(img, VMConfig{CPUs: h.cfg.Runner.CPUs, MemoryMiB: h.cfg.Runner.Memory, CPUModel: h.cfg.Runner.CPUModel, Accel: "tcg"}, b.qemu())
	h.waitFor("the snapshot", func() bool {
		_, _, ok := b.snaps.find(shape)
		return ok
	})
	if setup := runJob(`Resumed ` + regexp.QuoteMeta(imagestest.CloudName) + ` from snapshot in [0-9.]+m?s`); strings.Contains(setup, "Guest ready after") {
		t.Errorf("a resumed job booted too:\n%s", setup)
	}
}

// TestVMCloudUEFI: a UEFI-only cloud image (GPT, an EFI system partition,
// no BIOS boot partition) is recognised as such, imported through OVMF and
// runs a job.
func TestVMCloudUEFI(t *testing.T) {
	img := importedCloud(t, imagestest.CloudUEFIName, imagestest.CloudImageUEFI(t))
	if img.Meta.Firmware != images.FirmwareUEFI || img.Meta.Family != images.FamilyApt {
		t.Fatalf("image.json: firmware %q family %q, want uefi, apt", img.Meta.Firmware, img.Meta.Family)
	}
	h, _ := newVMHarnessOf(t, img, func(c *app.Config) { c.Runner.BootTimeout = 4 * time.Minute })
	job := h.submit("image: " + imagestest.CloudUEFIName + "\ntasks:\n  - efi: test -d /sys/firmware/efi && echo booted through UEFI\n")
	got := h.wait(job.ID)
	setup := h.log(job.ID, "")
	if got.Status != app.JobSuccess || !strings.Contains(h.log(job.ID, "efi"), "\nbooted through UEFI") {
		t.Fatalf("status %s\n%s\n%s", got.Status, setup, h.log(job.ID, "efi"))
	}
	t.Log(regexp.MustCompile(`Guest ready after [0-9.]+m?s`).FindString(setup))
}
