package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builds/app"
	"builds/images"
	"builds/images/imagestest"
)

// imageConfig returns a configuration whose image catalogue is dir.
func imageConfig(t *testing.T, dir string) *app.Config {
	t.Helper()
	cfg := app.DefaultConfig()
	cfg.Images.Dir = dir
	cfg.Runner.WorkDir = t.TempDir()
	return cfg
}

// writeFakeImage writes a small image directory an operator could bring.
func writeFakeImage(t *testing.T, root, name, arch string) {
	t.Helper()
	d := filepath.Join(root, name, arch)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"rootfs.qcow2":           strings.Repeat("x", 5000),
		"vmlinux":                "kernel",
		"initrd.img":             "initrd",
		images.HostKeyFile:       "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl host\n",
		"id_ed25519.pub":         "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl c\n",
		"unrelated-notes.txt.gz": "x",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(d, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	distro, release, _ := strings.Cut(name, "/")
	m := &images.Metadata{Name: name, Arch: arch, Distro: distro, Release: release, Kernel: "vmlinux",
		KernelVersion: "6.1.0-test", Initrd: "initrd.img", Disk: "rootfs.qcow2", Cmdline: "root=/dev/vda rw",
		ReadyMarker: images.ReadyMarker, User: "build", Home: "/home/build", Packages: []string{"bash 5", "git 2"},
		Built: time.Date(2026, 11, 2, 10, 30, 0, 0, time.UTC)}
	if err := images.WriteMetadata(filepath.Join(d, images.MetadataFile), m); err != nil {
		t.Fatal(err)
	}
}

// image runs "builds image ARGS" against cfg.
func image(cfg *app.Config, stdin []byte, args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	err := runImage(context.Background(), cfg, args, bytes.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

func TestImageCommands(t *testing.T) {
	src := imageConfig(t, t.TempDir())
	dst := imageConfig(t, t.TempDir())
	writeFakeImage(t, src.Images.Dir, "debian/bookworm", "amd64")
	var archive []byte
	notDisk := filepath.Join(t.TempDir(), "notes.img")
	if err := os.WriteFile(notDisk, bytes.Repeat([]byte("not a disk image\n"), 1<<16), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cfg     *app.Config
		stdin   func() []byte
		args    []string
		wantErr string
		wantOut string // in stdout+stderr
		keep    func(out string)
	}{
		{name: "list", cfg: src, args: []string{"list"}, wantOut: "debian/bookworm  amd64"},
		{name: "list shows aliases", cfg: src, args: []string{"list"}, wantOut: "debian/oldstable"},
		{name: "list empty", cfg: dst, args: []string{"list"}, wantOut: "no images"},
		{name: "export", cfg: src, args: []string{"export", "debian/bookworm"}, wantOut: "exported debian/bookworm (amd64)",
			keep: func(out string) { archive = []byte(out) }},
		{name: "import", cfg: dst, stdin: func() []byte { return archive }, args: []string{"import"}, wantOut: "imported debian/bookworm (amd64)"},
		{name: "ErrImportExists", cfg: dst, stdin: func() []byte { return archive }, args: []string{"import"}, wantErr: "already exists"},
		{name: "import replace", cfg: dst, stdin: func() []byte { return archive }, args: []string{"import", "--replace"}, wantOut: "imported"},
		{name: "ErrImportTruncated", cfg: dst, stdin: func() []byte { return archive[:len(archive)/2] }, args: []string{"import", "--replace"}, wantErr: "truncated"},
		{name: "imported image listed", cfg: dst, args: []string{"list"}, wantOut: "6.1.0-test"},
		{name: "ErrExportMissing", cfg: src, args: []string{"export", "debian/trixie"}, wantErr: "Image 'debian/trixie' does not exist"},
		{name: "ErrCheckArch", cfg: src, args: []string{"check", "debian/bookworm", "--arch", "arm64"}, wantErr: "is not available for arch 'arm64'"},
		{name: "ErrRmAlias", cfg: dst, args: []string{"rm", "debian/oldstable"}, wantErr: "is an alias of"},
		{name: "rm", cfg: dst, args: []string{"rm", "debian/bookworm"}, wantOut: "removed debian/bookworm (amd64)"},
		{name: "ErrRmAgain", cfg: dst, args: []string{"rm", "debian/bookworm"}, wantErr: "does not exist"},
		{name: "ErrBadName", cfg: src, args: []string{"rm", "../etc"}, wantErr: "invalid image name"},
		{name: "ErrBuildNoName", cfg: src, args: []string{"build"}, wantErr: "want one image name"},
		{name: "ErrBuildArch", cfg: src, args: []string{"build", "debian/bookworm", "--arch", "s390x", "--mirror", "http://127.0.0.1:9/debian"}, wantErr: "cannot build arch"},
		{name: "ErrBuildMirror", cfg: src, args: []string{"build", "debian/bookworm", "--mirror", "a b c"}, wantErr: "debian-mirror"},
		{name: "ErrImportCloudArgs", cfg: src, args: []string{"import-cloud", "ubuntu/noble"}, wantErr: "want NAME FILE"},
		{name: "ErrImportCloudMissing", cfg: src, args: []string{"import-cloud", "ubuntu/noble", filepath.Join(t.TempDir(), "noble.img")}, wantErr: "no such file"},
		{name: "ErrImportCloudNotDisk", cfg: src, args: []string{"import-cloud", "ubuntu/noble", notDisk}, wantErr: "without a partition table"},
		{name: "ErrImportCloudFamily", cfg: src, args: []string{"import-cloud", "ubuntu/noble", notDisk, "--family", "yum"}, wantErr: `unknown package family "yum"`},
		{name: "ErrImportCloudArch", cfg: src, args: []string{"import-cloud", "ubuntu/noble", notDisk, "--arch", "arm64"}, wantErr: "amd64"},
		{name: "ErrImportCloudBadArch", cfg: src, args: []string{"import-cloud", "ubuntu/noble", notDisk, "--arch", "../x"}, wantErr: "invalid arch"},
		{name: "ErrImportCloudDotDot", cfg: src, args: []string{"import-cloud", "ubuntu/../../etc", notDisk}, wantErr: "invalid image name"},
		{name: "ErrImportCloudAlias", cfg: src, args: []string{"import-cloud", "ubuntu/lts", notDisk}, wantErr: "import the image as ubuntu/noble"},
		{name: "ErrImportCloudFirmware", cfg: src, args: []string{"import-cloud", "ubuntu/noble", notDisk, "--firmware", "coreboot"}, wantErr: `firmware "coreboot"`},
		{name: "ErrUnknown", cfg: src, args: []string{"frobnicate"}, wantErr: "unknown command"},
		{name: "ErrNoSub", cfg: src, args: nil, wantErr: "want build, list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdin []byte
			if tc.stdin != nil {
				stdin = tc.stdin()
			}
			out, errs, err := image(tc.cfg, stdin, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q (stderr %s)", err, tc.wantErr, errs)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v (stderr %s)", err, errs)
			}
			if !strings.Contains(out+errs, tc.wantOut) {
				t.Fatalf("output lacks %q:\n%s%s", tc.wantOut, out, errs)
			}
			if tc.keep != nil {
				tc.keep(out)
			}
		})
	}
}

func TestImageCheck(t *testing.T) {
	img := imagestest.Bookworm(t)
	cfg := imageConfig(t, filepath.Dir(filepath.Dir(filepath.Dir(img.Dir))))
	cfg.Runner.Accel = "tcg"
	cfg.Runner.CPUs = 2
	cfg.Runner.Memory = 1024
	out, errs, err := image(cfg, nil, "check", "debian/bookworm")
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errs)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"boot to SSH:", "sudo: passwordless", "git version", "Hello, world!", "check passed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
