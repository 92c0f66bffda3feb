package images

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// pvhELF returns a minimal ELF64 file with one PT_NOTE segment holding a
// note of the given owner and type.
func pvhELF(owner string, typ uint32) []byte {
	le := binary.LittleEndian
	name := append([]byte(owner), 0)
	for len(name)%4 != 0 {
		name = append(name, 0)
	}
	note := le.AppendUint32(nil, uint32(len(owner)+1))
	note = le.AppendUint32(note, 4)
	note = le.AppendUint32(note, typ)
	note = append(note, name...)
	note = le.AppendUint32(note, 0x1000000) // entry address
	b := []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	b = le.AppendUint16(b, 2)  // ET_EXEC
	b = le.AppendUint16(b, 62) // EM_X86_64
	b = le.AppendUint32(b, 1)
	b = le.AppendUint64(b, 0x1000000) // entry
	b = le.AppendUint64(b, 64)        // phoff
	b = le.AppendUint64(b, 0)         // shoff
	b = le.AppendUint32(b, 0)
	b = le.AppendUint16(b, 64) // ehsize
	b = le.AppendUint16(b, 56) // phentsize
	b = le.AppendUint16(b, 1)  // phnum
	b = le.AppendUint16(b, 64) // shentsize
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, 4) // PT_NOTE
	b = le.AppendUint32(b, 4)
	b = le.AppendUint64(b, 120) // offset of the note
	b = le.AppendUint64(b, 0)
	b = le.AppendUint64(b, 0)
	b = le.AppendUint64(b, uint64(len(note)))
	b = le.AppendUint64(b, uint64(len(note)))
	b = le.AppendUint64(b, 4)
	return append(b, note...)
}

// fakeBzImage hides a compressed ELF after some setup-code-like bytes.
func fakeBzImage(t *testing.T, payload []byte, compress string) []byte {
	t.Helper()
	var z []byte
	switch compress {
	case "gzip":
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(payload)
		zw.Close()
		z = buf.Bytes()
	default:
		if _, err := exec.LookPath(compress); err != nil {
			t.Skipf("%s not installed", compress)
		}
		cmd := exec.Command(compress, "-c")
		if compress == "lz4" {
			cmd = exec.Command("lz4", "-l", "-c") // legacy frame, as the kernel uses
		}
		cmd.Stdin = bytes.NewReader(payload)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		z = out
	}
	head := bytes.Repeat([]byte{0x90}, 4096)
	return append(append(head, z...), bytes.Repeat([]byte{0xAB}, 256)...) // trailing bytes, as in a bzImage
}

func TestExtractVMLinux(t *testing.T) {
	tests := []struct {
		name     string
		payload  []byte
		compress string
		want     bool
	}{
		{name: "gzip pvh", payload: pvhELF("Xen", xenPVHNote), compress: "gzip", want: true},
		{name: "lz4 pvh", payload: pvhELF("Xen", xenPVHNote), compress: "lz4", want: true},
		{name: "zstd pvh", payload: pvhELF("Xen", xenPVHNote), compress: "zstd", want: true},
		{name: "no pvh note", payload: pvhELF("GNU", 3), compress: "gzip"},
		{name: "not elf", payload: []byte("just some data"), compress: "gzip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			bz := filepath.Join(dir, "vmlinuz")
			os.WriteFile(bz, fakeBzImage(t, tt.payload, tt.compress), 0o644)
			out := filepath.Join(dir, "vmlinux")
			ok, err := extractVMLinux(context.Background(), bz, out)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.want {
				t.Fatalf("extracted = %v, want %v", ok, tt.want)
			}
			_, serr := os.Stat(out)
			if ok && serr != nil || !ok && serr == nil {
				t.Fatalf("vmlinux presence wrong: %v", serr)
			}
		})
	}
}

func TestInstalledPackages(t *testing.T) {
	status := `Package: bash
Status: install ok installed
Version: 5.2.15-2+b7

Package: removed
Status: deinstall ok config-files
Version: 1.0

Package: git
Status: install ok installed
Priority: optional
Version: 1:2.39.5-0+deb12u2
Description: fast
 multi-line
`
	p := filepath.Join(t.TempDir(), "status")
	os.WriteFile(p, []byte(status), 0o644)
	got, err := installedPackages(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"bash 5.2.15-2+b7", "git 1:2.39.5-0+deb12u2"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestRecipes(t *testing.T) {
	rels, err := Releases("debian")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Release{}
	for _, r := range rels {
		byName[r.Name] = r
	}
	if r := byName["bookworm"]; !r.Updates || !r.Security || r.NoValidUntil {
		t.Fatalf("bookworm: %+v", r)
	}
	if r := byName["sid"]; r.Updates || r.Security || !r.NoValidUntil {
		t.Fatalf("sid: %+v", r)
	}
	pkgs, err := Packages("debian")
	if err != nil || !slices.Contains(pkgs, "openssh-server") || !slices.Contains(pkgs, "tiny-initramfs-core") {
		t.Fatalf("packages %v, %v", pkgs, err)
	}
	h1, err := RecipeHash("debian")
	h2, _ := RecipeHash("debian")
	if err != nil || len(h1) != 16 || h1 != h2 {
		t.Fatalf("RecipeHash %q %q %v", h1, h2, err)
	}
	if _, err := RecipeHash("alpine"); err == nil {
		t.Fatal("hash for a distro without recipe")
	}
	if s, err := SanityScript("debian"); err != nil || s == "" {
		t.Fatalf("sanity script: %v", err)
	}
	// the shell recipes must at least parse
	for _, f := range []string{"customize.sh", "sanity.sh"} {
		b, _ := recipeFile("debian", f)
		if out, err := exec.Command("sh", "-n", "-c", string(b)).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s", f, err, out)
		}
	}
}

func TestCheckCertFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	if err := checkCertFile(write("empty.crt", "")); err == nil {
		t.Fatal("empty file accepted")
	}
	if err := checkCertFile(write("key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")); err == nil {
		t.Fatal("private key accepted")
	}
	if err := checkCertFile(filepath.Join(dir, "missing.crt")); err == nil {
		t.Fatal("missing file accepted")
	}
	host, _ := filepath.Glob("/etc/ssl/certs/*.pem")
	if len(host) > 0 {
		if err := checkCertFile(host[0]); err != nil {
			t.Fatalf("host CA %s rejected: %v", host[0], err)
		}
	}
}
