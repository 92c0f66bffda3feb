package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"strings"
	"testing"
)

// exportFake builds a fake image and returns its export archive.
func exportFake(t *testing.T) []byte {
	t.Helper()
	src := t.TempDir()
	fakeImage(t, src, "debian/bookworm", "amd64")
	c := NewCatalog(src, nil)
	img, err := c.Lookup("debian/bookworm", "")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := c.Export(img, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExportImport(t *testing.T) {
	arc := exportFake(t)
	dst := NewCatalog(t.TempDir(), nil)
	img, err := dst.Import(bytes.NewReader(arc), false)
	if err != nil {
		t.Fatal(err)
	}
	if img.Name != "debian/bookworm" || img.Arch != "amd64" || len(img.Meta.Packages) != 2 {
		t.Fatalf("imported %+v", img)
	}
	if _, err := dst.Import(bytes.NewReader(arc), false); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second import without replace: %v", err)
	}
	if _, err := dst.Import(bytes.NewReader(arc), true); err != nil {
		t.Fatalf("replace: %v", err)
	}
}

// tarGz packs entries (name -> content, or a header for special types).
func tarGz(t *testing.T, entries []tar.Header, contents []string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for i, h := range entries {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(contents[i]))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(contents[i]))
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestImportRefuses(t *testing.T) {
	good := exportFake(t)
	manifest := func(files ...archiveFile) string {
		b, _ := json.Marshal(archiveManifest{Format: 1, Name: "debian/bookworm", Arch: "amd64", Files: files})
		return string(b)
	}
	sum := strings.Repeat("0", 64)
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0xff
	tests := []struct {
		name string
		arc  []byte
		err  string
	}{
		{name: "empty", arc: nil, err: "not an image archive"},
		{name: "not gzip", arc: []byte("hello world, not an archive"), err: "not an image archive"},
		{name: "truncated", arc: good[:len(good)*2/3], err: "truncated"},
		{name: "truncated trailer", arc: good[:len(good)-4], err: "truncated"},
		{name: "corrupt byte", arc: flipped, err: "import"},
		{name: "path escape", arc: tarGz(t,
			[]tar.Header{{Name: manifestName, Typeflag: tar.TypeReg}, {Name: "../../evil", Typeflag: tar.TypeReg}},
			[]string{manifest(archiveFile{Name: MetadataFile, SHA256: sum}), "x"}), err: "unexpected entry"},
		{name: "manifest escape", arc: tarGz(t,
			[]tar.Header{{Name: manifestName, Typeflag: tar.TypeReg}},
			[]string{manifest(archiveFile{Name: "../evil", SHA256: sum}, archiveFile{Name: MetadataFile, SHA256: sum})}), err: "unsafe file"},
		{name: "symlink", arc: tarGz(t,
			[]tar.Header{{Name: manifestName, Typeflag: tar.TypeReg}, {Name: MetadataFile, Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}},
			[]string{manifest(archiveFile{Name: MetadataFile, SHA256: sum}), ""}), err: "not a regular file"},
		{name: "manifest not first", arc: tarGz(t,
			[]tar.Header{{Name: MetadataFile, Typeflag: tar.TypeReg}},
			[]string{"{}"}), err: "not an image archive"},
		{name: "bad image name", arc: tarGz(t,
			[]tar.Header{{Name: manifestName, Typeflag: tar.TypeReg}},
			[]string{`{"format":1,"name":"../../etc","arch":"amd64","files":[]}`}), err: "invalid image name"},
		{name: "checksum mismatch", arc: tarGz(t,
			[]tar.Header{{Name: manifestName, Typeflag: tar.TypeReg}, {Name: MetadataFile, Typeflag: tar.TypeReg}},
			[]string{manifest(archiveFile{Name: MetadataFile, Size: 2, SHA256: sum}), "{}"}), err: "checksum mismatch"},
		{name: "missing file", arc: tarGz(t,
			[]tar.Header{{Name: manifestName, Typeflag: tar.TypeReg}},
			[]string{manifest(archiveFile{Name: MetadataFile, Size: 2, SHA256: sum})}), err: "missing"},
		{name: "wrong format", arc: tarGz(t,
			[]tar.Header{{Name: manifestName, Typeflag: tar.TypeReg}},
			[]string{`{"format":9}`}), err: "format 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCatalog(t.TempDir(), nil)
			_, err := c.Import(bytes.NewReader(tt.arc), false)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Import = %v, want error containing %q", err, tt.err)
			}
			imgs, lerr := c.List()
			if lerr != nil || len(imgs) != 0 {
				t.Fatalf("a refused import left an image behind: %v %v", imgs, lerr)
			}
		})
	}
}
