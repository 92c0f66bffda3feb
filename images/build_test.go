package images_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builds/images"
	"builds/images/imagestest"
)

// TestBuildBookworm checks the image the integration tests boot: it is
// built from the host's mirror (or taken from the cache for this recipe).
func TestBuildBookworm(t *testing.T) {
	img := imagestest.Bookworm(t)
	m := img.Meta
	if m.Name != "debian/bookworm" || m.Arch != "amd64" || m.BootMode != images.BootSystemd {
		t.Fatalf("metadata %+v", m)
	}
	if m.Kernel != "vmlinux" {
		t.Errorf("kernel %q: the PVH vmlinux was not extracted", m.Kernel)
	}
	for _, f := range []string{img.Disk(), img.Kernel(), img.Initrd(), img.ClientKeyPath(),
		filepath.Join(img.Dir, images.StockKernelFile), filepath.Join(img.Dir, images.StockInitrdFile),
		filepath.Join(img.Dir, images.BuildLogFile)} {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
	if fi, err := os.Stat(img.Disk()); err != nil || fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("base disk is writable: %v", fi.Mode())
	}
	if _, err := img.HostKey(); err != nil {
		t.Error(err)
	}
	installed := map[string]bool{}
	for _, p := range m.Packages {
		name, _, _ := strings.Cut(p, " ")
		installed[name] = true
	}
	// what the trimmed boot needs, then builds.sr.ht's own Debian set
	for _, p := range append([]string{"openssh-server", "linux-image-cloud-amd64", "tiny-initramfs-core", "systemd-sysv", "iproute2"},
		upstreamDebianPackages...) {
		if !installed[p] {
			t.Errorf("package %s is not in the image (image.json); manifests written for builds.sr.ht rely on it", p)
		}
	}
	hash, _ := images.RecipeHash("debian")
	if m.RecipeHash != hash || !strings.HasPrefix(m.Digest, "sha256:") {
		t.Errorf("recipe hash %q (want %q), digest %q", m.RecipeHash, hash, m.Digest)
	}
}

// upstreamDebianPackages is what builds.sr.ht's images/debian/genimg
// installs (behaviour.md §3.5, debootstrap --include=gnupg2 and the
// apt-get install line), plus what those bring that manifests call
// by name: make, gcc, cc and python3 (through mercurial).
var upstreamDebianPackages = []string{
	"gnupg2", "locales", "build-essential", "git", "mercurial", "ssh", "sudo", "gnupg", "dirmngr",
	"ca-certificates", "apt-transport-https", "curl", "dbus", "systemd-timesyncd",
	"make", "gcc", "g++", "libc6-dev", "python3", "openssh-client",
}

// TestExportImportRealImage moves the real image through an archive.
func TestExportImportRealImage(t *testing.T) {
	img := imagestest.Bookworm(t)
	src := images.NewCatalog(filepath.Dir(filepath.Dir(filepath.Dir(img.Dir))), nil)
	var buf bytes.Buffer
	start := time.Now()
	if err := src.Export(img, &buf); err != nil {
		t.Fatal(err)
	}
	t.Logf("export: %d MiB in %s", buf.Len()>>20, time.Since(start).Round(time.Millisecond))
	dst := images.NewCatalog(t.TempDir(), nil)
	start = time.Now()
	got, err := dst.Import(&buf, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("import: %s", time.Since(start).Round(time.Millisecond))
	if got.Meta.Digest != img.Meta.Digest || got.Meta.Kernel != img.Meta.Kernel {
		t.Fatalf("imported metadata differs: %+v", got.Meta)
	}
}

// TestBuildFailureKeepsImage: a build that fails, or is interrupted in the
// middle of mmdebstrap, leaves the existing image and no staging directory.
func TestBuildFailureKeepsImage(t *testing.T) {
	img := imagestest.Bookworm(t)
	root := t.TempDir()
	dst := images.NewCatalog(root, nil)
	var buf bytes.Buffer
	if err := images.NewCatalog("", nil).Export(img, &buf); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Import(&buf, false); err != nil {
		t.Fatal(err)
	}
	mirror, err := images.HostMirror("/")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mirror  images.Mirror
		timeout time.Duration
		want    string
	}{
		{name: "missing suite", mirror: images.Mirror{Archive: "file://" + t.TempDir()}, timeout: time.Minute, want: "does not serve suite"},
		{name: "interrupted", mirror: mirror, timeout: 4 * time.Second, want: "interrupted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			b := &images.Builder{Catalog: dst, Mirror: tt.mirror}
			_, err := b.Build(ctx, "debian/bookworm", "amd64")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build = %v, want %q", err, tt.want)
			}
			still, err := dst.Lookup("debian/bookworm", "amd64")
			if err != nil || still.Meta.Digest != img.Meta.Digest {
				t.Fatalf("existing image damaged: %v", err)
			}
			ents, _ := os.ReadDir(filepath.Join(root, "debian/bookworm"))
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".amd64.") && e.Name() != ".amd64.lock" && e.Type()&os.ModeSymlink == 0 {
					if target, _ := os.Readlink(filepath.Join(root, "debian/bookworm/amd64")); target != e.Name() {
						t.Errorf("staging directory %s left behind", e.Name())
					}
				}
			}
			if _, err := os.Stat(filepath.Join(root, "debian/bookworm/amd64-build-failed.log")); err != nil {
				t.Errorf("no failure log: %v", err)
			}
		})
	}
}
