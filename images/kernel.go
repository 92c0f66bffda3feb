package images

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
)

// xenPVHNote is the ELF note type (XEN_ELFNOTE_PHYS32_ENTRY, owner "Xen")
// that lets QEMU enter an uncompressed kernel directly in 32-bit mode (PVH),
// skipping the firmware's bzImage loader and the decompression stage.
const xenPVHNote = 18

// maxVMLinux bounds the decompressed kernel, so a wrong guess at a payload
// cannot fill the disk.
const maxVMLinux = 512 << 20

// payloadFormat is a compressed payload magic a bzImage may carry and the
// host command that decompresses it (nil: gzip, done in Go).
type payloadFormat struct {
	magic []byte
	cmd   []string
}

// payloadFormats lists them; Debian's cloud kernels use lz4 (bookworm) and
// zstd (trixie).
func payloadFormats() []payloadFormat {
	return []payloadFormat{
		{[]byte{0x02, 0x21, 0x4c, 0x18}, []string{"lz4", "-dc"}},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd}, []string{"zstd", "-dc", "--memory=2048MB"}},
		{[]byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, []string{"xz", "-dc"}},
		{[]byte{0x1f, 0x8b, 0x08}, nil},
	}
}

// extractVMLinux writes the uncompressed kernel of bzImage to out if it is an
// ELF with a PVH entry note. It reports false (and removes out) when no
// payload decompresses to such an ELF; the caller then boots the bzImage.
func extractVMLinux(ctx context.Context, bzImage, out string) (bool, error) {
	data, err := os.ReadFile(bzImage)
	if err != nil {
		return false, fmt.Errorf("read kernel: %w", err)
	}
	type cand struct {
		off int
		cmd []string
	}
	var cands []cand
	for _, f := range payloadFormats() {
		if i := bytes.Index(data, f.magic); i >= 0 {
			cands = append(cands, cand{i, f.cmd})
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].off < cands[j].off })
	for _, c := range cands {
		if err := decompress(ctx, data[c.off:], c.cmd, out); err != nil {
			return false, err
		}
		if ok, _ := hasPVHNote(out); ok {
			return true, nil
		}
	}
	os.Remove(out)
	return false, nil
}

// decompress writes the decompression of payload to out. Trailing bytes after
// the compressed frame make the tools exit non-zero, so their status is
// ignored; the ELF check decides.
func decompress(ctx context.Context, payload []byte, command []string, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("extract kernel: %w", err)
	}
	defer f.Close()
	w := &limitWriter{w: f, n: maxVMLinux}
	if command == nil {
		zr, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil
		}
		zr.Multistream(false)
		io.Copy(w, zr)
		return nil
	}
	if _, err := exec.LookPath(command[0]); err != nil {
		return fmt.Errorf("extract kernel: %s not found (install it: apt-get install %s)", command[0], command[0])
	}
	cmd := exec.CommandContext(ctx, command[0], command[1:]...)
	cmd.Stdin = bytes.NewReader(payload)
	cmd.Stdout = w
	cmd.Run()
	return ctx.Err()
}

// limitWriter fails writes beyond n bytes.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, fmt.Errorf("decompressed kernel larger than %d bytes", maxVMLinux)
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}

// hasPVHNote reports whether path is an ELF file with a Xen PVH entry note.
func hasPVHNote(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(p.Open(), 1<<20))
		if err != nil {
			return false, err
		}
		if notesHave(b, f.ByteOrder, "Xen", xenPVHNote) {
			return true, nil
		}
	}
	return false, nil
}

// notesHave scans an ELF note segment for a note with the given owner and type.
func notesHave(b []byte, bo binary.ByteOrder, owner string, typ uint32) bool {
	align := func(n uint32) int { return int((n + 3) &^ 3) }
	for len(b) >= 12 {
		namesz, descsz, t := bo.Uint32(b[0:]), bo.Uint32(b[4:]), bo.Uint32(b[8:])
		b = b[12:]
		if align(namesz) > len(b) {
			return false
		}
		name := strings.TrimRight(string(b[:namesz]), "\x00")
		b = b[align(namesz):]
		if align(descsz) > len(b) {
			return name == owner && t == typ
		}
		b = b[align(descsz):]
		if name == owner && t == typ {
			return true
		}
	}
	return false
}

// installedPackages reads a dpkg status file and returns "name version" for
// every installed package, sorted.
func installedPackages(statusFile string) ([]string, error) {
	f, err := os.Open(statusFile)
	if err != nil {
		return nil, fmt.Errorf("read package list: %w", err)
	}
	defer f.Close()
	var out []string
	var pkg, ver, status string
	flush := func() {
		if pkg != "" && strings.HasSuffix(status, " installed") {
			out = append(out, pkg+" "+ver)
		}
		pkg, ver, status = "", "", ""
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		switch k {
		case "Package":
			pkg = v
		case "Version":
			ver = v
		case "Status":
			status = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read package list: %w", err)
	}
	flush()
	sort.Strings(out)
	return out, nil
}
