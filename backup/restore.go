package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Open reads dir's manifest and verifies the backup before anything is
// restored: every file listed is there, a regular file of the size and
// SHA-256 the manifest says. The first file that is not is named in the
// error.
func Open(dir string) (*Manifest, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", dir, err)
	}
	defer root.Close()
	for _, f := range m.Files {
		in, err := openListed(root, f)
		if err != nil {
			return nil, fmt.Errorf("backup %s: %w", dir, err)
		}
		sum, n, err := hashReader(in)
		in.Close()
		if err == nil {
			err = f.compare(sum, n)
		}
		if err != nil {
			return nil, fmt.Errorf("backup %s: %w", dir, err)
		}
	}
	return m, nil
}

// openListed opens a listed file of the backup, which must be a regular
// file inside it.
func openListed(root *os.Root, f File) (*os.File, error) {
	p := filepath.FromSlash(f.Path)
	fi, err := root.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: missing (the manifest lists it)", f.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", f.Path)
	}
	in, err := root.Open(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	return in, nil
}

// compare checks what a file holds against the manifest.
func (f File) compare(sum string, size int64) error {
	switch {
	case size < f.Size:
		return fmt.Errorf("%s: %d bytes, the manifest says %d: truncated", f.Path, size, f.Size)
	case size > f.Size:
		return fmt.Errorf("%s: %d bytes, the manifest says %d: it was changed", f.Path, size, f.Size)
	case sum != f.SHA256:
		return fmt.Errorf("%s: SHA-256 %s, the manifest says %s: it was changed or is damaged", f.Path, sum, f.SHA256)
	}
	return nil
}

// Restore copies the files of m from the backup dir to where dest says
// (an absolute path; "" leaves the file out), creating directories 0700
// and files 0600, never over an existing file. Each file is checked
// against its checksum again as it is copied (it may have changed since
// Open). It returns the files it created, also on error, for the caller
// to remove.
func Restore(dir string, m *Manifest, dest func(File) string) (created []string, err error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer root.Close()
	for _, f := range m.Files {
		to := dest(f)
		if to == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
			return created, fmt.Errorf("restore %s: %w", f.Path, err)
		}
		in, err := openListed(root, f)
		if err != nil {
			return created, fmt.Errorf("restore: %w", err)
		}
		err = restoreFile(in, f, to, &created)
		in.Close()
		if err != nil {
			return created, fmt.Errorf("restore: %w", err)
		}
	}
	return created, nil
}

// restoreFile copies one file to `to`, checking it on the way.
func restoreFile(in io.Reader, f File, to string, created *[]string) error {
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	*created = append(*created, to)
	h := sha256.New()
	// one byte past the size: a file that grew since Open is caught
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(in, f.Size+1))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	return f.compare(hex.EncodeToString(h.Sum(nil)), n)
}
