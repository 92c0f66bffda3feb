package runner

import (
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
)

// cloudImage returns the test-made cloud image (imagestest.CloudImage)
// imported the way `builds image import-cloud` does it: staged, booted
// once through SeaBIOS with builds' NoCloud seed, recorded in image.json.
func cloudImage(t testing.TB) *images.Image {
	t.Helper()
	return imagestest.PreparedCloud(t, func(catDir, file string) error {
		ctx, cancel := context.WithTimeout(context.Background(), DefaultPrepareTimeout)
		defer cancel()
		ci, err := images.NewCatalog(catDir, nil).StartCloudImport(ctx, imagestest.CloudName, file, images.CloudOptions{})
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
// artifacts, the environment, as TestVMJob does on our own image.
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
	})
	h.secret(app.SecretInput{Type: app.SecretFile, Name: "cloud-key", Data: []byte("cloud-secret-value-7\n"), Path: "~/.config/cloud-key", Mode: 0o600})
	job := h.submit(fmt.Sprintf(`image: %s
packages: [jq, hello]
sources:
  - %s/app.git
secrets: [cloud-key]
environment:
  GREETING: hi from the cloud
artifacts: [out/report.json]
tasks:
  - check: |
      test "$(id -un)" = build && test "$(id -u)" = 1000 && test "$HOME" = /home/build
      test "$(readlink -f "$(getent passwd build | cut -d: -f7)")" = "$(readlink -f /bin/bash)"
      sudo -n true
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
