package images

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireDiskTools skips t unless the tools that make test disks exist
// (the Debian packages qemu-utils, fdisk, e2fsprogs: make deps).
func requireDiskTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"qemu-img", "sfdisk", "mkfs.ext4", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (make deps)", tool)
		}
	}
}

// run runs a command and fails t if it fails.
func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// testDisk makes a small whole-disk image with sfdisk's partition table
// script (partition 1 at 1 MiB is the root) and, unless osRelease is "",
// an ext4 root filesystem holding usr/lib/os-release; it returns the
// raw file, and a qcow2 copy when asQcow2.
func testDisk(t *testing.T, table, osRelease string, asQcow2 bool) string {
	t.Helper()
	requireDiskTools(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	run(t, "truncate", "-s", "64M", raw)
	cmd := exec.Command("sfdisk", "-q", raw)
	cmd.Stdin = strings.NewReader(table)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	if osRelease != "" {
		tree := filepath.Join(dir, "tree")
		os.MkdirAll(filepath.Join(tree, "usr/lib"), 0o755)
		os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
		os.WriteFile(filepath.Join(tree, "usr/lib/os-release"), []byte(osRelease), 0o644)
		os.Symlink("../usr/lib/os-release", filepath.Join(tree, "etc/os-release"))
		run(t, "mkfs.ext4", "-q", "-F", "-E", "offset=1048576", "-d", tree, raw, "40M")
	}
	if !asQcow2 {
		return raw
	}
	q := filepath.Join(dir, "disk.qcow2")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, q)
	return q
}

const (
	mbrTable      = "start=2048, size=81920, type=83, bootable\n"
	gptBIOSTable  = "label: gpt\nstart=2048, size=81920, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\nstart=83968, size=2048, type=21686148-6449-6E6F-744E-656564454649\n"
	gptUEFITable  = "label: gpt\nstart=2048, size=81920, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709\nstart=83968, size=20480, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n"
	noLinuxTable  = "start=2048, size=81920, type=c\n"
	alpineRelease = "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.23.0\nPRETTY_NAME=\"Alpine Linux v3.23\"\n"
)

func TestFirmwareAndPartitions(t *testing.T) {
	tests := []struct {
		name, table string
		firmware    string
		parts       int
	}{
		{name: "mbr", table: mbrTable, firmware: FirmwareBIOS, parts: 1},
		{name: "gpt with bios boot partition", table: gptBIOSTable, firmware: FirmwareBIOS, parts: 1},
		{name: "gpt with only an esp", table: gptUEFITable, firmware: FirmwareUEFI, parts: 1},
		{name: "no linux partition", table: noLinuxTable, firmware: FirmwareBIOS, parts: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := os.ReadFile(testDisk(t, tt.table, "", false))
			if err != nil {
				t.Fatal(err)
			}
			head := b[:34*512]
			if fw, err := FirmwareFor(head); err != nil || fw != tt.firmware {
				t.Errorf("FirmwareFor = %q, %v; want %q", fw, err, tt.firmware)
			}
			parts := LinuxPartitions(head)
			if len(parts) != tt.parts {
				t.Fatalf("LinuxPartitions = %v, want %d", parts, tt.parts)
			}
			if tt.parts > 0 && (parts[0].Offset != 1<<20 || parts[0].Size != 40<<20) {
				t.Errorf("partition = %+v, want 1 MiB + 40 MiB", parts[0])
			}
		})
	}
	for _, bad := range [][]byte{nil, make([]byte, 34*512), []byte("not a disk")} {
		if _, err := FirmwareFor(bad); err == nil || !strings.Contains(err.Error(), "no partition table") {
			t.Errorf("FirmwareFor(%d bytes) = %v", len(bad), err)
		}
		if p := LinuxPartitions(bad); p != nil {
			t.Errorf("LinuxPartitions(%d bytes) = %v", len(bad), p)
		}
	}
}

func TestGuessFamily(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name, table, osRelease string
		want                   Family
		err                    string
	}{
		{name: "alpine on mbr", table: mbrTable, osRelease: alpineRelease, want: FamilyApk},
		{name: "rocky on gpt", table: gptUEFITable, osRelease: "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n", want: FamilyDnf},
		{name: "unknown distribution", table: mbrTable, osRelease: "ID=gentoo\n", err: `os-release ID "gentoo"`},
		{name: "not ext4", table: mbrTable, err: "no readable os-release"},
		{name: "no linux partition", table: noLinuxTable, err: "no Linux partition"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, text, err := GuessFamily(ctx, testDisk(t, tt.table, tt.osRelease, true))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("GuessFamily = %q, %v; want error %q", f, err, tt.err)
				}
				return
			}
			if err != nil || f != tt.want || text != tt.osRelease {
				t.Fatalf("GuessFamily = %q, %q, %v; want %q", f, text, err, tt.want)
			}
		})
	}
}

func TestInspectCloudFile(t *testing.T) {
	requireDiskTools(t)
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	qcow := testDisk(t, mbrTable, alpineRelease, true)
	backed := filepath.Join(dir, "backed.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", qcow, backed)
	vmdk := filepath.Join(dir, "disk.vmdk")
	run(t, "qemu-img", "create", "-q", "-f", "vmdk", vmdk, "64M")
	tests := []struct {
		name, file, format, err string
	}{
		{name: "qcow2", file: qcow, format: "qcow2"},
		{name: "raw", file: testDisk(t, gptUEFITable, "", false), format: "raw"},
		{name: "missing", file: filepath.Join(dir, "nope.img"), err: "no such file"},
		{name: "directory", file: dir, err: "not a regular file"},
		{name: "text", file: write("notes.txt", []byte(strings.Repeat("not a disk image\n", 100000))), err: "without a partition table"},
		{name: "xz", file: write("d.img.xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0, 1, 2}), err: "xz-compressed: decompress it first (xz -d"},
		{name: "gzip", file: write("d.img.gz", []byte{0x1f, 0x8b, 8, 0}), err: "gzip-compressed"},
		{name: "backing file", file: backed, err: "has a backing file"},
		{name: "vmdk", file: vmdk, err: "is vmdk: want qcow2 or raw"},
		{name: "tiny", file: write("tiny.img", append(make([]byte, 510), 0x55, 0xaa)), err: "too small to hold a system"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := InspectCloudFile(ctx, tt.file)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("= %q, %v; want error %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.format {
				t.Fatalf("= %q, %v; want %q", got, err, tt.format)
			}
		})
	}
}

func TestStartCloudImport(t *testing.T) {
	ctx := context.Background()
	alpine := testDisk(t, mbrTable, alpineRelease, true)
	btrfsLike := testDisk(t, gptBIOSTable, "", true) // a root filesystem debugfs cannot read
	notADisk := filepath.Join(t.TempDir(), "notes.img")
	os.WriteFile(notADisk, []byte(strings.Repeat("an operator's notes, not a disk\n", 1<<16)), 0o644)
	t.Run("OK", func(t *testing.T) {
		cat := NewCatalog(t.TempDir(), nil)
		ci, err := cat.StartCloudImport(ctx, "alpine/3.23", alpine, CloudOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ci.Family != FamilyApk || ci.Firmware != FirmwareBIOS || ci.Format != "qcow2" || !strings.Contains(ci.OSRelease, "ID=alpine") {
			t.Fatalf("import = %+v", ci)
		}
		img := ci.PreparingImage()
		if img.Kernel() != "" || img.Meta.Firmware != FirmwareBIOS || img.Meta.ReadyMarker != PreparedMarker {
			t.Fatalf("preparing image = %+v", img.Meta)
		}
		for _, f := range []string{cloudDisk, cloudSeed, HostKeyFile, ClientKeyFile} {
			if _, err := os.Stat(filepath.Join(ci.Dir, f)); err != nil {
				t.Errorf("staged %s: %v", f, err)
			}
		}
		if _, err := cat.StartCloudImport(ctx, "alpine/3.23", alpine, CloudOptions{}); err == nil || !strings.Contains(err.Error(), "is running") {
			t.Errorf("a second import while the first runs: %v", err)
		}
		// the preparing boot never said it was done
		if _, err := ParsePrepareConsole([]string{"CI-OS-RELEASE x"}); err == nil {
			t.Fatal("a console without CI-PREPARED parsed")
		}
		dir := ci.Dir
		ci.Abort()
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("staging dir after Abort: %v", err)
		}
		if _, err := cat.Lookup("alpine/3.23", ""); err == nil {
			t.Error("an aborted import is in the catalogue")
		}
	})
	t.Run("Finish", func(t *testing.T) {
		cat := NewCatalog(t.TempDir(), nil)
		ci, err := cat.StartCloudImport(ctx, "alpine/3.23", alpine, CloudOptions{Family: FamilyApk})
		if err != nil {
			t.Fatal(err)
		}
		img, err := ci.Finish(&PrepareResult{Family: FamilyApk, Kernel: "6.12.1-0-virt", Control: true})
		if err != nil {
			t.Fatal(err)
		}
		m := img.Meta
		if m.Family != FamilyApk || m.Firmware != FirmwareBIOS || m.Kernel != "" || m.OS != "Alpine Linux v3.23" ||
			m.KernelVersion != "6.12.1-0-virt" || m.Control != ControlPort || m.ReadyMarker != ReadyMarker || !strings.HasPrefix(m.Digest, "sha256:") {
			t.Fatalf("image.json = %+v", m)
		}
		if _, err := os.Stat(filepath.Join(img.Dir, cloudSeed)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the seed stayed in the image: %v", err)
		}
		if got, err := cat.Lookup("alpine/latest", ""); err != nil || got.Name != "alpine/3.23" {
			t.Errorf("alpine/latest = %v, %v", got, err)
		}
		if _, err := cat.StartCloudImport(ctx, "alpine/3.23", alpine, CloudOptions{}); err == nil || !strings.Contains(err.Error(), "give --replace") {
			t.Errorf("import over an existing image: %v", err)
		}
	})
	for _, tt := range []struct {
		name, image, file string
		opt               CloudOptions
		err               string
	}{
		{name: "ErrMissingFile", image: "alpine/3.23", file: "/nonexistent/alpine.qcow2", err: "no such file"},
		{name: "ErrNotADisk", image: "alpine/3.23", file: notADisk, err: "without a partition table"},
		{name: "ErrUnknownFamily", image: "alpine/3.23", file: alpine, opt: CloudOptions{Family: "yum"}, err: `unknown package family "yum"`},
		{name: "ErrBadArch", image: "alpine/3.23", file: alpine, opt: CloudOptions{Arch: "x86/64"}, err: `invalid arch "x86/64"`},
		{name: "ErrForeignArch", image: "alpine/3.23", file: alpine, opt: CloudOptions{Arch: "arm64"}, err: "amd64"},
		{name: "ErrBadFirmware", image: "alpine/3.23", file: alpine, opt: CloudOptions{Firmware: "coreboot"}, err: `firmware "coreboot"`},
		{name: "ErrDotDot", image: "alpine/../../etc", file: alpine, err: "invalid image name"},
		{name: "ErrDotDotRelease", image: "alpine/..", file: alpine, err: "invalid image name"},
		{name: "ErrOneWord", image: "alpine", file: alpine, err: "want distro/release"},
		{name: "ErrAlias", image: "alpine/latest", file: alpine, err: "is an alias of alpine/3.23: import the image as alpine/3.23"},
		{name: "ErrNoFamily", image: "fedora/43", file: btrfsLike, err: "cannot tell its package family: no readable os-release"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			ci, err := NewCatalog(root, nil).StartCloudImport(ctx, tt.image, tt.file, tt.opt)
			if err == nil {
				ci.Abort()
				t.Fatalf("import of %s as %s succeeded", tt.file, tt.image)
			}
			if !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err = %v, want %q", err, tt.err)
			}
			if strings.Contains(tt.err, "package family:") && !strings.Contains(err.Error(), "give --family (apt, apk, pacman, dnf, zypper, pkg)") {
				t.Errorf("err = %v: does not say to give --family", err)
			}
			// nothing staged is left behind
			left, _ := filepath.Glob(filepath.Join(root, "*", "*", ".*"))
			if len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

func TestParsePrepareConsole(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  PrepareResult
		err   string
	}{
		{name: "OK", lines: []string{"[  OK  ] noise", "CI-OS-RELEASE SUQ9ZGViaWFuCg==", "CI-PREPARED family=apt control=yes kernel=6.1.0-40-cloud-amd64"},
			want: PrepareResult{Family: FamilyApt, Control: true, Kernel: "6.1.0-40-cloud-amd64", OSRelease: "ID=debian\n"}},
		{name: "console prefix", lines: []string{"[  123.4] cloud-init[500]: CI-PREPARED family=apk control=no kernel=6.12"},
			want: PrepareResult{Family: FamilyApk, Kernel: "6.12"}},
		{name: "failed", lines: []string{"CI-PREPARE-FAILED exit 100"}, err: "preparing the image failed in the guest: exit 100"},
		{name: "bad family", lines: []string{"CI-PREPARED family=yum control=no kernel=x"}, err: `unknown package family "yum"`},
		{name: "nothing", lines: nil, err: "ended without CI-PREPARED"},
		{name: "no family", lines: []string{"CI-PREPARED control=yes"}, err: "ended without CI-PREPARED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePrepareConsole(tt.lines)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("= %+v, %v; want error %q", got, err, tt.err)
				}
				return
			}
			if err != nil || *got != tt.want {
				t.Fatalf("= %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
