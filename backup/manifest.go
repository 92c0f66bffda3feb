// Package backup writes and reads the files of `builds backup DIR`: a
// copy of the data dir's database (written by the store), its keys, and
// the logs and artifacts the database names, with a manifest of their
// sizes and SHA-256 checksums. It knows files only: the command (main)
// takes the database snapshot and reads which jobs and artifacts it
// names (app.BackupIndex), and this package copies or links their files
// and later verifies and restores them.
//
// Not in a backup: guest images, snapshots, package layers and VM work
// dirs (they are rebuilt: `builds image build`, and jobs make the rest
// again), a remote runner's spool.
package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ManifestName is the manifest's file in a backup; it is written last,
// so a backup without one is incomplete.
const ManifestName = "manifest.json"

// DatabaseName is the database copy in a backup: a SQLite file, also
// when the server ran on PostgreSQL.
const DatabaseName = "builds.db"

// format is the manifest's format version.
const format = 1

// maxManifest bounds the manifest a restore reads (some 100 bytes per
// file: a million files).
const maxManifest = 128 << 20

// The kinds of files in a backup.
const (
	KindDatabase = "database"
	KindKey      = "key"
	KindLog      = "log"
	KindArtifact = "artifact"
)

// Manifest lists every file of a backup.
type Manifest struct {
	Format  int       `json:"format"`
	Version string    `json:"version"` // the builds version that wrote it
	Created time.Time `json:"created"` // when the database snapshot was taken
	// Source is what the database copy was taken from: "sqlite" or
	// "postgres" (the copy is a SQLite file either way).
	Source string `json:"source"`
	Files  []File `json:"files"`
}

// File is one file of a backup.
type File struct {
	Path   string `json:"path"` // slash-separated, relative to the backup dir
	Kind   string `json:"kind"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // hex
	// Linked: a hard link to the data dir's file (a settled job's),
	// not a copy.
	Linked bool `json:"linked,omitempty"`
	// Growing: the log of a job that was not settled at the snapshot (it
	// may have been running): the copy holds what the log had when it
	// was copied, which may be more than the snapshot knew of, or less
	// than the job wrote in the end.
	Growing bool `json:"growing,omitempty"`
}

// ReadManifest reads and checks dir's manifest: its format, and that
// every path is one a backup may hold (no "..", no absolute paths, each
// where its kind lives), listed once.
func ReadManifest(dir string) (*Manifest, error) {
	f, err := os.Open(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w (not a complete backup)", dir, err)
	}
	defer f.Close()
	dec := json.NewDecoder(io.LimitReader(f, maxManifest))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("backup %s: %s: %w", dir, ManifestName, err)
	}
	if m.Format != format {
		return nil, fmt.Errorf("backup %s: %s: format %d, this build reads format %d", dir, ManifestName, m.Format, format)
	}
	seen := make(map[string]bool, len(m.Files))
	db := 0
	for _, fl := range m.Files {
		if err := fl.check(); err != nil {
			return nil, fmt.Errorf("backup %s: %s: %w", dir, ManifestName, err)
		}
		if seen[fl.Path] {
			return nil, fmt.Errorf("backup %s: %s: %s is listed twice", dir, ManifestName, fl.Path)
		}
		seen[fl.Path] = true
		if fl.Kind == KindDatabase {
			db++
		}
	}
	if db != 1 {
		return nil, fmt.Errorf("backup %s: %s: no database listed", dir, ManifestName)
	}
	return &m, nil
}

// check refuses a file a backup never holds, or listed with a size or
// checksum that no file has.
func (f File) check() error {
	if f.Size < 0 || len(f.SHA256) != 64 || strings.Trim(f.SHA256, "0123456789abcdef") != "" {
		return fmt.Errorf("%s: bad size or checksum in the manifest", f.Path)
	}
	return f.checkPath()
}

// checkPath refuses a path that is not where a file of f's kind lives.
func (f File) checkPath() error {
	p := f.Path
	if p == "" || p != path.Clean(p) || path.IsAbs(p) || strings.ContainsRune(p, 0) {
		return fmt.Errorf("path %q: not a clean relative path", p)
	}
	parts := strings.Split(p, "/")
	for _, e := range parts {
		if e == ".." || e == "." || e == "" {
			return fmt.Errorf("path %q: not a clean relative path", p)
		}
	}
	ok := false
	switch f.Kind {
	case KindDatabase:
		ok = p == DatabaseName
	case KindKey:
		ok = len(parts) == 1 && p != DatabaseName && p != ManifestName
	case KindLog:
		ok = parts[0] == "logs" && isID(parts[1]) && parts[len(parts)-1] == "log" && (len(parts) == 3 || len(parts) == 4)
	case KindArtifact:
		ok = parts[0] == "artifacts" && len(parts) >= 3 && isID(parts[1])
	default:
		return fmt.Errorf("%s: unknown kind %q", p, f.Kind)
	}
	if !ok {
		return fmt.Errorf("path %q: no %s lives there", p, f.Kind)
	}
	return nil
}

func isID(s string) bool {
	n, err := strconv.ParseInt(s, 10, 64)
	return err == nil && n > 0 && strconv.FormatInt(n, 10) == s
}

// writeManifest writes m as dir's manifest (through a temporary file,
// synced, so that a manifest is there only once it is complete).
func writeManifest(dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ManifestName+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, ManifestName))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write manifest: %w", err)
	}
	return syncDir(dir)
}

// syncDir makes a directory's entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, os.ErrInvalid) {
		return nil
	}
	return err
}
