package images

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeImage writes a small but complete image directory the way Build
// lays it out (staging dir + symlink) and returns its metadata.
func fakeImage(t *testing.T, root, name, arch string) *Metadata {
	t.Helper()
	d, r, err := SplitName(name)
	if err != nil {
		t.Fatal(err)
	}
	rel := filepath.Join(root, d, r)
	staged, err := newStagingDir(rel, arch)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"rootfs.qcow2": strings.Repeat("disk-"+name, 1000),
		"vmlinux":      "kernel",
		"initrd.img":   "initrd",
		HostKeyFile:    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl host\n",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(staged, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := fileSHA256(filepath.Join(staged, "rootfs.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	m := &Metadata{
		Name: name, Arch: arch, Distro: d, Release: r, Kernel: "vmlinux", KernelVersion: "6.1.0-test",
		Initrd: "initrd.img", Disk: "rootfs.qcow2", Cmdline: "root=/dev/vda rw", ReadyMarker: ReadyMarker,
		User: "build", Home: "/home/build", Packages: []string{"bash 5.2", "git 2.39"},
		Built: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC), Digest: "sha256:" + sum, BootMode: BootSystemd,
	}
	if err := WriteMetadata(filepath.Join(staged, MetadataFile), m); err != nil {
		t.Fatal(err)
	}
	if err := install(rel, arch, staged); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSplitName(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{name: "plain", in: "debian/bookworm", ok: true},
		{name: "dots", in: "freebsd/14.x", ok: true},
		{name: "no release", in: "archlinux"},
		{name: "three parts", in: "debian/bookworm/amd64"},
		{name: "dotdot", in: "debian/.."},
		{name: "dotdot inside", in: "debian/a..b"},
		{name: "absolute", in: "/etc/passwd"},
		{name: "upper", in: "Debian/bookworm"},
		{name: "empty part", in: "debian/"},
		{name: "space", in: "debian/book worm"},
		{name: "hidden", in: "debian/.bookworm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := SplitName(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("SplitName(%q) err = %v, want ok=%v", tt.in, err, tt.ok)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	c := NewCatalog(t.TempDir(), map[string]string{
		"debian/stable":    "debian/bookworm", // override a default
		"debian/oldstable": "",                // delete a default
		"debian/loop1":     "debian/loop2",
		"debian/loop2":     "debian/loop1",
		"debian/chain":     "debian/stable",
		"debian/testing":   "debian/testing",
		"debian/broken":    "../../etc",
	})
	tests := []struct {
		name, in, want, err string
	}{
		{name: "canonical", in: "debian/bookworm", want: "debian/bookworm"},
		{name: "override", in: "debian/stable", want: "debian/bookworm"},
		{name: "default", in: "debian/unstable", want: "debian/sid"},
		{name: "deleted default", in: "debian/oldstable", want: "debian/oldstable"},
		{name: "chain", in: "debian/chain", want: "debian/bookworm"},
		{name: "self", in: "debian/testing", want: "debian/testing"},
		{name: "loop", in: "debian/loop1", err: "loop"},
		{name: "bad target", in: "debian/broken", err: "invalid image name"},
		{name: "bad name", in: "../x", err: "invalid image name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Resolve(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Resolve(%q) = %q, %v; want error %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Resolve(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
	if got := c.AliasesFor("debian/bookworm"); !slices.Equal(got, []string{"debian/chain", "debian/stable"}) {
		t.Fatalf("AliasesFor = %v", got)
	}
}

func TestLookup(t *testing.T) {
	root := t.TempDir()
	fakeImage(t, root, "debian/bookworm", "amd64")
	fakeImage(t, root, "debian/bookworm", "arm64")
	fakeImage(t, root, "debian/sid", "arm64")
	c := NewCatalog(root, map[string]string{"debian/stable": "debian/bookworm"})
	tests := []struct {
		name, img, arch   string
		wantName, wantArc string
		err               string
	}{
		{name: "default arch", img: "debian/bookworm", wantName: "debian/bookworm", wantArc: "amd64"},
		{name: "explicit arch", img: "debian/bookworm", arch: "arm64", wantName: "debian/bookworm", wantArc: "arm64"},
		{name: "alias", img: "debian/stable", wantName: "debian/bookworm", wantArc: "amd64"},
		{name: "only arch", img: "debian/sid", wantName: "debian/sid", wantArc: "arm64"},
		{name: "missing image", img: "debian/trixie", err: "Image 'debian/trixie' does not exist"},
		{name: "missing arch", img: "debian/stable", arch: "ppc64el", err: "Image 'debian/stable' is not available for arch 'ppc64el'"},
		{name: "bad arch", img: "debian/bookworm", arch: "../x", err: "invalid arch"},
		{name: "escape", img: "../../etc", err: "invalid image name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := c.Lookup(tt.img, tt.arch)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err && !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Lookup = %v; want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if img.Name != tt.wantName || img.Arch != tt.wantArc || img.Meta.Arch != tt.wantArc {
				t.Fatalf("got %s/%s", img.Name, img.Arch)
			}
			if img.Disk() != filepath.Join(root, "debian/bookworm", tt.wantArc, "rootfs.qcow2") && tt.wantName == "debian/bookworm" {
				t.Fatalf("Disk() = %s", img.Disk())
			}
			if _, err := img.HostKey(); err != nil {
				t.Fatal(err)
			}
		})
	}
	_, err := c.Lookup("debian/trixie", "")
	var nf *NotFoundError
	if !errors.As(err, &nf) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing image error %T does not unwrap to fs.ErrNotExist", err)
	}
}

func TestList(t *testing.T) {
	root := t.TempDir()
	fakeImage(t, root, "debian/trixie", "amd64")
	fakeImage(t, root, "debian/bookworm", "amd64")
	os.MkdirAll(filepath.Join(root, "debian/empty/amd64"), 0o755)       // no image.json
	os.MkdirAll(filepath.Join(root, "debian/bookworm/.amd64.x"), 0o755) // staging leftover
	c := NewCatalog(root, nil)
	imgs, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, i := range imgs {
		got = append(got, i.Name+"/"+i.Arch)
	}
	if !slices.Equal(got, []string{"debian/bookworm/amd64", "debian/trixie/amd64"}) {
		t.Fatalf("List = %v", got)
	}
	if sz, err := imgs[0].Size(); err != nil || sz <= 0 {
		t.Fatalf("Size = %d, %v", sz, err)
	}
	// a release directory (and a distribution directory) may be a
	// symlink, to another disk or to another release; a dangling one is
	// skipped
	elsewhere := t.TempDir()
	fakeImage(t, elsewhere, "debian/sid", "amd64")
	if err := os.Symlink(filepath.Join(elsewhere, "debian/sid"), filepath.Join(root, "debian/sid")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("bookworm", filepath.Join(root, "debian/12")); err != nil {
		t.Fatal(err)
	}
	os.Symlink(filepath.Join(root, "nowhere"), filepath.Join(root, "debian/gone"))
	fakeImage(t, elsewhere, "alpine/edge", "amd64")
	if err := os.Symlink(filepath.Join(elsewhere, "alpine"), filepath.Join(root, "alpine")); err != nil {
		t.Fatal(err)
	}
	imgs, err = c.List()
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, i := range imgs {
		got = append(got, i.Name+"/"+i.Arch)
	}
	if !slices.Equal(got, []string{"alpine/edge/amd64", "debian/12/amd64", "debian/bookworm/amd64", "debian/sid/amd64", "debian/trixie/amd64"}) {
		t.Fatalf("List with symlinks = %v", got)
	}
	if img, err := c.Lookup("debian/sid", ""); err != nil || img.Meta.Release != "sid" {
		t.Fatalf("Lookup through a symlink: %v %v", img, err)
	}
	// removing through a link would delete what it points at
	if _, err := c.Remove("debian/12", ""); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("Remove through a symlink: %v", err)
	}
	if _, err := c.Lookup("debian/bookworm", ""); err != nil {
		t.Fatalf("the link's target went: %v", err)
	}

	empty, err := NewCatalog(filepath.Join(root, "nope"), nil).List()
	if err != nil || len(empty) != 0 {
		t.Fatalf("missing dir: %v %v", empty, err)
	}
}

func TestMetadataValidate(t *testing.T) {
	good := Metadata{Name: "debian/bookworm", Arch: "amd64", Kernel: "vmlinux", Initrd: "initrd.img",
		Disk: "rootfs.qcow2", ReadyMarker: ReadyMarker, User: "build"}
	tests := []struct {
		name   string
		modify func(*Metadata)
		err    string
	}{
		{name: "ok", modify: func(*Metadata) {}},
		{name: "no initrd ok", modify: func(m *Metadata) { m.Initrd = "" }},
		{name: "kernel escapes", modify: func(m *Metadata) { m.Kernel = "../../boot/vmlinuz" }, err: "plain file name"},
		{name: "disk absolute", modify: func(m *Metadata) { m.Disk = "/etc/shadow" }, err: "plain file name"},
		{name: "no disk", modify: func(m *Metadata) { m.Disk = "" }, err: "disk is empty"},
		{name: "no marker", modify: func(m *Metadata) { m.ReadyMarker = "" }, err: "ready_marker"},
		{name: "bad name", modify: func(m *Metadata) { m.Name = "x" }, err: "invalid image name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := good
			tt.modify(&m)
			err := m.Validate()
			if (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Validate = %v, want %q", err, tt.err)
			}
		})
	}
	p := filepath.Join(t.TempDir(), MetadataFile)
	if err := WriteMetadata(p, &good); err != nil {
		t.Fatal(err)
	}
	back, err := ReadMetadata(p)
	if err != nil || back.Kernel != good.Kernel || back.Name != good.Name {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	os.WriteFile(p, []byte("{not json"), 0o644)
	if _, err := ReadMetadata(p); err == nil {
		t.Fatal("corrupt image.json accepted")
	}
}

func TestInstallAndRemove(t *testing.T) {
	root := t.TempDir()
	c := NewCatalog(root, nil)
	fakeImage(t, root, "debian/bookworm", "amd64")
	rel := filepath.Join(root, "debian/bookworm")
	first, _ := os.Readlink(filepath.Join(rel, "amd64"))
	fakeImage(t, root, "debian/bookworm", "amd64") // rebuild replaces
	second, _ := os.Readlink(filepath.Join(rel, "amd64"))
	if first == second {
		t.Fatal("rebuild did not switch the symlink")
	}
	if _, err := os.Stat(filepath.Join(rel, first)); !os.IsNotExist(err) {
		t.Fatal("previous image directory not removed")
	}
	// an operator's plain directory is replaced too
	plain := filepath.Join(root, "debian/trixie/amd64")
	os.MkdirAll(plain, 0o755)
	os.WriteFile(filepath.Join(plain, "marker"), nil, 0o644)
	fakeImage(t, root, "debian/trixie", "amd64")
	if _, err := os.Stat(filepath.Join(plain, "marker")); !os.IsNotExist(err) {
		t.Fatal("plain directory not replaced")
	}
	if _, err := c.Remove("debian/stable", ""); err == nil || !strings.Contains(err.Error(), "alias") {
		t.Fatalf("removing an alias: %v", err)
	}
	if _, err := c.Remove("debian/bookworm", "arm64"); err == nil {
		t.Fatal("removing a missing arch succeeded")
	}
	done, err := c.Remove("debian/bookworm", "")
	if err != nil || !slices.Equal(done, []string{"amd64"}) {
		t.Fatalf("Remove = %v, %v", done, err)
	}
	if ents, _ := os.ReadDir(rel); len(ents) != 0 {
		t.Fatalf("leftovers after remove: %v", ents)
	}
	if _, err := c.Lookup("debian/bookworm", ""); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("removed image still found: %v", err)
	}
}

func TestLockImage(t *testing.T) {
	rel := t.TempDir()
	l, err := lockImage(rel, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockImage(rel, "amd64"); err == nil || !strings.Contains(err.Error(), "running") {
		t.Fatalf("second lock: %v", err)
	}
	l.unlock()
	l2, err := lockImage(rel, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	l2.unlock()
}

// builds.sr.ht's aliases of the other distributions resolve in every
// catalogue (aliases.txt), one-word ones too; the configuration repoints
// them, and Debian's stay the configuration's own.
func TestCloudAliases(t *testing.T) {
	c := NewCatalog(t.TempDir(), map[string]string{"fedora/latest": "fedora/44"})
	delete(c.Aliases, "debian/testing")
	for _, tt := range []struct{ in, want, err string }{
		{in: "ubuntu/lts", want: "ubuntu/noble"},
		{in: "alpine/latest", want: "alpine/3.23"},
		{in: "archlinux", want: "archlinux/rolling"},
		{in: "rockylinux/latest", want: "rockylinux/10"},
		{in: "freebsd/latest", want: "freebsd/15.x"},
		{in: "fedora/latest", want: "fedora/44"},       // repointed by the configuration
		{in: "debian/testing", want: "debian/testing"}, // removed by it: an image name, no fallback
		{in: "ubuntu", err: "want distro/release"},     // not an alias
		{in: "alpine/edge", want: "alpine/edge"},       // an image name of its own
		{in: "../archlinux", err: "invalid image name"},
	} {
		got, err := c.Resolve(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Resolve(%q) = %q, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if got := c.AliasesFor("ubuntu/noble"); !slices.Equal(got, []string{"ubuntu/24.04", "ubuntu/lts"}) {
		t.Errorf("AliasesFor(ubuntu/noble) = %v", got)
	}
	for alias, target := range CloudAliases() {
		if _, _, err := SplitName(target); err != nil {
			t.Errorf("aliases.txt: %s -> %s: %v", alias, target, err)
		}
		if strings.HasPrefix(alias, "debian/") {
			t.Errorf("CloudAliases has %s", alias)
		}
	}
	if d := DefaultAliases(); len(d) != 5 || d["debian/stable"] != "debian/trixie" {
		t.Errorf("DefaultAliases = %v", d)
	}
}

// An unknown image's error names the images there and how to add one.
func TestNotFoundNamesImages(t *testing.T) {
	root := t.TempDir()
	c := NewCatalog(root, nil)
	_, err := c.Lookup("ubuntu/lts", "")
	if err == nil || err.Error() != "Image 'ubuntu/lts' does not exist (an alias of ubuntu/noble); this server has no images yet. "+
		"An administrator adds it from the distribution's cloud image with `builds image import-cloud ubuntu/noble FILE` (images/README.md)" {
		t.Fatalf("empty catalogue: %v", err)
	}
	fakeImage(t, root, "debian/bookworm", "amd64")
	fakeImage(t, root, "debian/bookworm", "arm64")
	fakeImage(t, root, "alpine/3.23", "amd64")
	_, err = c.Lookup("debian/buster", "")
	want := "Image 'debian/buster' does not exist; images here: alpine/3.23 (amd64; alpine/latest), debian/bookworm (amd64, arm64; debian/oldstable). " +
		"An administrator adds it with `builds image build debian/buster`"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Error("does not unwrap to fs.ErrNotExist")
	}
	for i := 0; i < 25; i++ {
		fakeImage(t, root, fmt.Sprintf("many/r%02d", i), "amd64")
	}
	if _, err = c.Lookup("archlinux", ""); err == nil || !strings.Contains(err.Error(), "and 7 more") ||
		!strings.Contains(err.Error(), "import-cloud archlinux/rolling FILE") {
		t.Fatalf("err = %v", err)
	}
}
