// Package imagestest gives tests a real guest image: built from the host's
// Debian mirror on first use and cached between runs on the same machine,
// keyed by the recipe hash, so a recipe change builds a fresh one.
//
// Tests that boot or build images are opt-in: they run when
// BUILDS_VM_TESTS=1 (CI sets it) and skip with the reason otherwise. With
// BUILDS_VM_TESTS=1 a missing tool fails the test instead of skipping it, so
// CI cannot silently lose the VM suite.
package imagestest

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"builds/images"
)

// EnvVMTests enables the expensive tests.
const EnvVMTests = "BUILDS_VM_TESTS"

// EnvCache overrides the image cache directory.
const EnvCache = "BUILDS_TEST_IMAGE_CACHE"

// DefaultCache is where built test images are kept between runs.
const DefaultCache = "/var/cache/builds-test/images"

// RequireVM skips tb unless VM tests are enabled, and fails it when they
// are enabled but QEMU is missing.
func RequireVM(tb testing.TB) {
	tb.Helper()
	if os.Getenv(EnvVMTests) != "1" {
		tb.Skipf("VM test: set %s=1 to build and boot a real guest image under QEMU", EnvVMTests)
	}
	requireTools(tb, "qemu-system-x86_64", "qemu-img")
}

// requireTools fails tb when a host tool is missing.
func requireTools(tb testing.TB, tools ...string) {
	tb.Helper()
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			tb.Fatalf("%s=1 but %s is not installed (CI installs: qemu-system-x86 qemu-utils mmdebstrap e2fsprogs lz4 zstd)", EnvVMTests, t)
		}
	}
}

// Bookworm returns a debian/bookworm amd64 image from the cache, building
// it first when the cache has none for the current recipe.
func Bookworm(tb testing.TB) *images.Image {
	tb.Helper()
	RequireVM(tb)
	hash, err := images.RecipeHash("debian")
	if err != nil {
		tb.Fatal(err)
	}
	cache := os.Getenv(EnvCache)
	if cache == "" {
		cache = DefaultCache
	}
	dir := filepath.Join(cache, hash)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatalf("image cache: %v", err)
	}
	// Test binaries of several packages may want the image at once: the
	// first builds, the others wait here and then find it.
	lock, err := os.OpenFile(filepath.Join(cache, hash+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		tb.Fatalf("image cache: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		tb.Fatalf("image cache lock: %v", err)
	}
	cat := images.NewCatalog(dir, nil)
	if img, err := cat.Lookup("debian/bookworm", "amd64"); err == nil {
		return img
	}
	requireTools(tb, "mmdebstrap", "mkfs.ext4", "lz4", "zstd")
	if os.Geteuid() != 0 {
		tb.Fatalf("%s=1: building the test image needs root (mmdebstrap), and %s has none", EnvVMTests, dir)
	}
	mirror, err := images.HostMirror("/")
	if err != nil {
		tb.Fatalf("test image: %v", err)
	}
	// Sites behind an intercepting proxy keep its CA here; tests may read
	// the host's directory, product code only uses [images] extra-ca.
	cas, _ := filepath.Glob("/usr/local/share/ca-certificates/*.crt")
	b := &images.Builder{
		Catalog: cat, Mirror: mirror, ExtraCA: cas,
		Progress: func(p images.Progress) {
			tb.Logf("build %5.1fs %s: %s", p.Elapsed.Seconds(), p.Step, p.Detail)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	img, err := b.Build(ctx, "debian/bookworm", "amd64")
	if err != nil {
		tb.Fatalf("build test image: %v", err)
	}
	tb.Logf("built test image %s in %s (cached in %s)", img.Name, time.Since(start).Round(100*time.Millisecond), dir)
	return img
}

// mkcloudScript makes the test's cloud image (CloudImage).
//
//go:embed mkcloud.sh
var mkcloudScript []byte

// The names tests import the test cloud images as.
const (
	CloudName     = "testcloud/bookworm"      // CloudImage: MBR, GRUB for BIOS
	CloudUEFIName = "testcloud/bookworm-uefi" // CloudImageUEFI: GPT, ESP, GRUB for UEFI
)

// CloudImage returns a cloud image file made the way distributions make
// theirs (mkcloud.sh: a partitioned disk with GRUB, Debian's kernel and
// its cloud-init package, nothing of builds), built on first use from the
// host's Debian mirror and cached, keyed by the script's hash.
func CloudImage(tb testing.TB) string {
	tb.Helper()
	return cloudFile(tb, "bookworm-cloud.qcow2")
}

// CloudImageUEFI returns the same system as CloudImage on a UEFI-only
// disk (GPT with an EFI system partition, no BIOS boot partition).
func CloudImageUEFI(tb testing.TB) string {
	tb.Helper()
	return cloudFile(tb, "bookworm-cloud-uefi.qcow2")
}

// cloudFile returns one of the files mkcloud.sh makes, making both when
// the cache lacks them.
func cloudFile(tb testing.TB, name string) string {
	tb.Helper()
	RequireVM(tb)
	sum := sha256.Sum256(mkcloudScript)
	key := "cloud-" + hex.EncodeToString(sum[:8])
	dir, unlock := cacheDir(tb, key)
	defer unlock()
	file := filepath.Join(dir, "bookworm-cloud.qcow2")
	if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
		return filepath.Join(dir, name)
	}
	requireTools(tb, "mmdebstrap", "mkfs.ext4", "sfdisk", "mkfs.vfat", "mcopy")
	if os.Geteuid() != 0 {
		tb.Fatalf("%s=1: making the test cloud image needs root (mmdebstrap), and %s has none", EnvVMTests, dir)
	}
	mirror, err := images.HostMirror("/")
	if err != nil {
		tb.Fatalf("test cloud image: %v", err)
	}
	security := mirror.Security
	if security == "" {
		security = "none"
	}
	script := filepath.Join(dir, "mkcloud.sh")
	if err := os.WriteFile(script, mkcloudScript, 0o755); err != nil {
		tb.Fatal(err)
	}
	cas, _ := filepath.Glob("/usr/local/share/ca-certificates/*.crt")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "sh", append([]string{script, file, mirror.Archive, security}, cas...)...)
	// a private mount namespace: mmdebstrap's bind mounts vanish with it
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("make the test cloud image: %v\n%s", err, out)
	}
	tb.Logf("made the test cloud images in %s (cached in %s)", time.Since(start).Round(100*time.Millisecond), dir)
	return filepath.Join(dir, name)
}

// PreparedCloud returns a test cloud image file imported as name into a
// cached catalogue; when the cache has none, importCloud imports file
// into the catalogue directory it is given (cloud-init's first boot:
// minutes under TCG). The cache is keyed by mkcloud.sh and the seed's
// recipe, so a changed recipe imports again.
func PreparedCloud(tb testing.TB, name, file string, importCloud func(catDir, file string) error) *images.Image {
	tb.Helper()
	hash, err := images.RecipeHash("cloud")
	if err != nil {
		tb.Fatal(err)
	}
	sum := sha256.Sum256(mkcloudScript)
	dir, unlock := cacheDir(tb, "prepared-"+hex.EncodeToString(sum[:4])+"-"+hash)
	defer unlock()
	cat := images.NewCatalog(dir, nil)
	if img, err := cat.Lookup(name, "amd64"); err == nil {
		return img
	}
	start := time.Now()
	if err := importCloud(dir, file); err != nil {
		tb.Fatalf("import the test cloud image: %v", err)
	}
	img, err := cat.Lookup(name, "amd64")
	if err != nil {
		tb.Fatalf("import the test cloud image: %v", err)
	}
	tb.Logf("imported the test cloud image %s in %s (cached in %s)", name, time.Since(start).Round(100*time.Millisecond), dir)
	return img
}

// cacheDir returns the cache directory key, locked against other test
// binaries until unlock.
func cacheDir(tb testing.TB, key string) (string, func()) {
	tb.Helper()
	cache := os.Getenv(EnvCache)
	if cache == "" {
		cache = DefaultCache
	}
	dir := filepath.Join(cache, key)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatalf("image cache: %v", err)
	}
	lock, err := os.OpenFile(filepath.Join(cache, key+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		tb.Fatalf("image cache: %v", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		tb.Fatalf("image cache lock: %v", err)
	}
	return dir, func() { lock.Close() }
}
