package images

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// The disk side of import-cloud: what file builds accepts, how the disk
// boots (its partition table) and what it is (its os-release), all read
// without booting it or mounting anything.

// qemuImgInfo is the part of `qemu-img info --output=json` we check.
type qemuImgInfo struct {
	Format          string `json:"format"`
	VirtualSize     int64  `json:"virtual-size"`
	BackingFilename string `json:"backing-filename"`
	FullBacking     string `json:"full-backing-filename"`
	Encrypted       bool   `json:"encrypted"`
	FormatSpecific  struct {
		Data struct {
			DataFile string `json:"data-file"`
		} `json:"data"`
	} `json:"format-specific"`
}

// compressedMagic names the compressions cloud images are shipped in.
var compressedMagic = []struct {
	magic []byte
	name  string
	cmd   string
}{
	{[]byte{0xfd, '7', 'z', 'X', 'Z', 0}, "xz", "xz -d"},
	{[]byte{0x1f, 0x8b}, "gzip", "gzip -d"},
	{[]byte{0x28, 0xb5, 0x2f, 0xfd}, "zstd", "zstd -d"},
	{[]byte("BZh"), "bzip2", "bzip2 -d"},
}

// InspectCloudFile checks that file is a qcow2 or raw disk image builds
// can import and returns its format. Compressed files, other formats,
// encrypted images and qcow2 files naming a backing or data file (which
// would make QEMU read another file of the host) are refused.
func InspectCloudFile(ctx context.Context, file string) (string, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return "", fmt.Errorf("cloud image: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("cloud image %s: not a regular file", file)
	}
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("cloud image: %w", err)
	}
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	f.Close()
	head = head[:n]
	for _, c := range compressedMagic {
		if bytes.HasPrefix(head, c.magic) {
			return "", fmt.Errorf("cloud image %s is %s-compressed: decompress it first (%s %s)", file, c.name, c.cmd, file)
		}
	}
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", "--", file).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return "", fmt.Errorf("cloud image %s: qemu-img info: %v %s", file, err, msg)
	}
	var info qemuImgInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("cloud image %s: qemu-img info: %w", file, err)
	}
	switch {
	case info.Format != "qcow2" && info.Format != "raw":
		return "", fmt.Errorf("cloud image %s is %s: want qcow2 or raw (qemu-img convert -O qcow2 it first)", file, info.Format)
	case info.BackingFilename != "" || info.FullBacking != "":
		return "", fmt.Errorf("cloud image %s has a backing file (%s): flatten it first (qemu-img convert -O qcow2)", file, info.BackingFilename)
	case info.FormatSpecific.Data.DataFile != "":
		return "", fmt.Errorf("cloud image %s has an external data file: flatten it first (qemu-img convert -O qcow2)", file)
	case info.Encrypted:
		return "", fmt.Errorf("cloud image %s is encrypted", file)
	case info.VirtualSize < 1<<20:
		return "", fmt.Errorf("cloud image %s is %d bytes: too small to hold a system", file, info.VirtualSize)
	case info.VirtualSize > maxCloudVirtual:
		return "", fmt.Errorf("cloud image %s has %d GiB of virtual disk, at most %d", file, info.VirtualSize>>30, maxCloudVirtual>>30)
	}
	if info.Format == "raw" && (len(head) < 512 || head[510] != 0x55 || head[511] != 0xaa) {
		return "", fmt.Errorf("cloud image %s: a raw image without a partition table or boot sector (no 55 AA at byte 510): want a whole-disk image", file)
	}
	return info.Format, nil
}

// qemuImg runs one qemu-img command.
func qemuImg(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "qemu-img", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("qemu-img %s: %w: %s", args[0], err, bytes.TrimSpace(out))
	}
	return nil
}

// growDisk makes a disk at least FSSize large.
func growDisk(ctx context.Context, disk string) error {
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", "-f", "qcow2", disk).Output()
	if err != nil {
		return fmt.Errorf("grow disk: qemu-img info: %w", err)
	}
	var info qemuImgInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return fmt.Errorf("grow disk: %w", err)
	}
	want, _ := strconv.ParseInt(strings.TrimSuffix(FSSize, "G"), 10, 64)
	if info.VirtualSize >= want<<30 {
		return nil
	}
	return qemuImg(ctx, "resize", "-f", "qcow2", disk, FSSize)
}

// detectFirmware reads the disk's partition table: GPT without a BIOS
// boot partition (or a legacy-BIOS-bootable one) but with an EFI system
// partition boots only through UEFI; everything else through SeaBIOS.
func detectFirmware(ctx context.Context, disk string) (string, error) {
	head, err := diskHead(ctx, disk)
	if err != nil {
		return "", err
	}
	return FirmwareFor(head)
}

// GPT partition type GUIDs, in their on-disk (mixed-endian) byte order.
var (
	gptBIOSBoot = guidBytes("21686148-6449-6E6F-744E-656564454649")
	gptESP      = guidBytes("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
)

// guidBytes returns a GUID's on-disk bytes.
func guidBytes(s string) []byte {
	h, _ := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	b := make([]byte, 16)
	b[0], b[1], b[2], b[3] = h[3], h[2], h[1], h[0]
	b[4], b[5] = h[5], h[4]
	b[6], b[7] = h[7], h[6]
	copy(b[8:], h[8:])
	return b
}

// FirmwareFor decides from a disk's first 34 sectors how it boots.
func FirmwareFor(head []byte) (string, error) {
	if len(head) < 1024 || head[510] != 0x55 || head[511] != 0xaa {
		return "", errors.New("the disk has no partition table (no 55 AA boot signature): is it a whole-disk cloud image?")
	}
	if !bytes.Equal(head[512:520], []byte("EFI PART")) {
		return FirmwareBIOS, nil // MBR: the boot code in sector 0
	}
	gpt := head[512:1024]
	entriesLBA := binary.LittleEndian.Uint64(gpt[72:])
	count := binary.LittleEndian.Uint32(gpt[80:])
	size := binary.LittleEndian.Uint32(gpt[84:])
	if entriesLBA != 2 || size < 128 || size > 512 || count == 0 {
		return FirmwareBIOS, nil // unusual layout: try SeaBIOS (--firmware overrides)
	}
	var esp bool
	for i := uint32(0); i < count; i++ {
		off := 1024 + int(i)*int(size)
		if off+128 > len(head) {
			break
		}
		e := head[off : off+128]
		typ := e[:16]
		attrs := binary.LittleEndian.Uint64(e[48:])
		switch {
		case bytes.Equal(typ, gptBIOSBoot), attrs&(1<<2) != 0 && !bytes.Equal(typ, make([]byte, 16)):
			return FirmwareBIOS, nil
		case bytes.Equal(typ, gptESP):
			esp = true
		}
	}
	if esp {
		return FirmwareUEFI, nil
	}
	return FirmwareBIOS, nil
}

// Partition type GUIDs of Linux root filesystems.
var (
	gptLinuxData = guidBytes("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
	gptRootX8664 = guidBytes("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709")
)

// Partition is one Linux partition of a disk, in bytes.
type Partition struct {
	Offset, Size int64
}

// LinuxPartitions lists the partitions of a disk's first 34 sectors'
// partition table (MBR type 83, GPT Linux filesystem or x86-64 root)
// that may hold the root filesystem, largest first.
func LinuxPartitions(head []byte) []Partition {
	if len(head) < 1024 || head[510] != 0x55 || head[511] != 0xaa {
		return nil
	}
	var out []Partition
	if !bytes.Equal(head[512:520], []byte("EFI PART")) {
		for i := 0; i < 4; i++ {
			e := head[446+16*i : 446+16*(i+1)]
			start, n := binary.LittleEndian.Uint32(e[8:]), binary.LittleEndian.Uint32(e[12:])
			if e[4] == 0x83 && start > 0 && n > 0 {
				out = append(out, Partition{Offset: int64(start) * 512, Size: int64(n) * 512})
			}
		}
	} else {
		gpt := head[512:1024]
		count := binary.LittleEndian.Uint32(gpt[80:])
		size := binary.LittleEndian.Uint32(gpt[84:])
		if binary.LittleEndian.Uint64(gpt[72:]) == 2 && size >= 128 && size <= 512 {
			for i := uint32(0); i < count; i++ {
				off := 1024 + int(i)*int(size)
				if off+128 > len(head) {
					break
				}
				e := head[off : off+128]
				first, last := binary.LittleEndian.Uint64(e[32:]), binary.LittleEndian.Uint64(e[40:])
				if (bytes.Equal(e[:16], gptLinuxData) || bytes.Equal(e[:16], gptRootX8664)) && first > 0 && last >= first && last < 1<<40 {
					out = append(out, Partition{Offset: int64(first) * 512, Size: int64(last-first+1) * 512})
				}
			}
		}
	}
	// the root filesystem is the big one (/boot partitions are small)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Size > out[j-1].Size; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// diskHead returns a qcow2 disk's first 34 sectors: MBR, GPT header and
// 128 GPT entries.
func diskHead(ctx context.Context, disk string) ([]byte, error) {
	head, err := os.CreateTemp(filepath.Dir(disk), ".head-")
	if err != nil {
		return nil, fmt.Errorf("partition table: %w", err)
	}
	head.Close()
	defer os.Remove(head.Name())
	if err := qemuImg(ctx, "dd", "-f", "qcow2", "-O", "raw", "bs=512", "count=34",
		"if="+disk, "of="+head.Name()); err != nil {
		return nil, fmt.Errorf("partition table: %w", err)
	}
	b, err := os.ReadFile(head.Name())
	if err != nil {
		return nil, fmt.Errorf("partition table: %w", err)
	}
	return b, nil
}

// GuessFamily reads the os-release of a qcow2 disk's root filesystem
// (ext2/3/4, read with e2fsprogs' debugfs, nothing mounted) and returns
// the family it names and the os-release text. Other filesystems
// (Fedora's btrfs, FreeBSD's UFS) cannot be read here: then the caller
// asks for --family.
func GuessFamily(ctx context.Context, disk string) (Family, string, error) {
	head, err := diskHead(ctx, disk)
	if err != nil {
		return "", "", err
	}
	parts := LinuxPartitions(head)
	if len(parts) == 0 {
		return "", "", errors.New("the partition table lists no Linux partition")
	}
	if _, err := exec.LookPath("debugfs"); err != nil {
		return "", "", errors.New("debugfs is not installed (Debian package e2fsprogs)")
	}
	var errs []string
	for _, p := range parts {
		text, err := partitionOSRelease(ctx, disk, p)
		if err != nil {
			errs = append(errs, fmt.Sprintf("partition at %d MiB: %v", p.Offset>>20, err))
			continue
		}
		f, err := FamilyFromOSRelease(text)
		return f, text, err
	}
	return "", "", fmt.Errorf("no readable os-release (%s)", strings.Join(errs, "; "))
}

// maxOSRelease bounds what is read of an os-release file.
const maxOSRelease = 64 << 10

// partitionOSRelease copies one partition out of the disk (sparse, so
// only what it holds) and reads its os-release with debugfs.
func partitionOSRelease(ctx context.Context, disk string, p Partition) (string, error) {
	raw, err := os.CreateTemp(filepath.Dir(disk), ".part-")
	if err != nil {
		return "", err
	}
	raw.Close()
	defer os.Remove(raw.Name())
	src := fmt.Sprintf("driver=raw,offset=%d,size=%d,file.driver=qcow2,file.file.filename=%s",
		p.Offset, p.Size, strings.ReplaceAll(disk, ",", ",,"))
	if err := qemuImg(ctx, "convert", "--image-opts", "-O", "raw", src, raw.Name()); err != nil {
		return "", err
	}
	var last string
	// /etc/os-release is usually a symlink to ../usr/lib/os-release,
	// which debugfs's cat does not follow
	for _, f := range []string{"/usr/lib/os-release", "/etc/os-release"} {
		var out, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, "debugfs", "-R", "cat "+f, raw.Name())
		cmd.Stdout, cmd.Stderr = &limitedBuffer{b: &out, n: maxOSRelease}, &stderr
		err := cmd.Run()
		if err == nil && out.Len() > 0 {
			return out.String(), nil
		}
		last = lastLine(stderr.String())
		if err != nil {
			last = fmt.Sprintf("debugfs: %v %s", err, last)
		}
	}
	if last == "" {
		last = "no os-release"
	}
	return "", errors.New(last)
}

// lastLine returns the last non-empty line of s, at most 200 bytes.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if len(l) > 200 {
		l = l[:200]
	}
	return l
}

// limitedBuffer keeps the first n bytes written to it and drops the rest.
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (w *limitedBuffer) Write(p []byte) (int, error) {
	if room := w.n - w.b.Len(); room > 0 {
		w.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
