package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"builds/app"
)

// Writer writes one backup into an empty directory.
type Writer struct {
	dir     string
	data    *os.Root // the data dir, read only
	files   []File
	noLinks bool // a link crossed filesystems: copy from now on
	Stats   Stats
}

// Stats counts what a backup holds.
type Stats struct {
	Jobs, Logs, Artifacts int
	Linked, Copied        int
	Growing               int   // logs of jobs not settled, copied as they were
	Bytes                 int64 // of every file, linked ones included
	// GoneArtifacts are artifacts of the snapshot whose files were
	// removed before they were copied (the pruner, a deleted job).
	GoneArtifacts []int64
}

// Create makes dir (0700) for a backup of dataDir. dir must not exist or
// be an empty directory, and must not be inside the data dir.
func Create(dir, dataDir string) (*Writer, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	dataAbs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if rel, err := filepath.Rel(dataAbs, abs); err == nil && filepath.IsLocal(rel) || abs == dataAbs {
		return nil, fmt.Errorf("backup: %s is inside the data dir %s: put backups elsewhere", abs, dataAbs)
	}
	if err := emptyDir(abs); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := os.Chmod(abs, 0o700); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	root, err := os.OpenRoot(dataAbs)
	if err != nil {
		return nil, fmt.Errorf("backup: data dir: %w", err)
	}
	return &Writer{dir: abs, data: root}, nil
}

// emptyDir refuses a dir that exists and is not an empty directory.
func emptyDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s exists and is not a directory", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("%s is not empty (%s, ...): give a new or empty directory", dir, ents[0].Name())
	}
	return nil
}

// Dir is the backup's directory.
func (w *Writer) Dir() string { return w.dir }

// Close releases the data dir.
func (w *Writer) Close() error { return w.data.Close() }

// AddDatabase lists the database copy, written by the store to
// Dir()/DatabaseName; call it once the copy is final.
func (w *Writer) AddDatabase() error {
	f, err := os.Open(filepath.Join(w.dir, DatabaseName))
	if err != nil {
		return fmt.Errorf("backup database: %w", err)
	}
	defer f.Close()
	sum, n, err := hashReader(f)
	if err != nil {
		return fmt.Errorf("backup database: %w", err)
	}
	w.add(File{Path: DatabaseName, Kind: KindDatabase, Size: n, SHA256: sum}, false)
	return nil
}

// AddKey copies the key file at src (any path) into the backup as name.
// A key that does not exist is skipped (false): the server makes it when
// it first needs it.
func (w *Writer) AddKey(src, name string) (bool, error) {
	in, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("backup key %s: %w", name, err)
	}
	defer in.Close()
	f := File{Path: name, Kind: KindKey}
	if err := f.checkPath(); err != nil {
		return false, fmt.Errorf("backup key: %w", err)
	}
	if err := w.copyFrom(in, &f); err != nil {
		return false, fmt.Errorf("backup key %s: %w", name, err)
	}
	w.add(f, false)
	return true, nil
}

// AddData copies (or links) what the snapshot idx names from the data
// dir: every log of its jobs and the file of each of its artifacts. A
// settled job's files are hard-linked when the backup is on the data
// dir's filesystem (nothing writes them any more; the pruner replaces a
// log by a rename and removes an artifact, which leaves the link as it
// was); a job that is not settled has its files copied, its logs as far
// as they are written now. An artifact whose file is gone is reported in
// Stats.GoneArtifacts.
func (w *Writer) AddData(idx *app.BackupIndex) error {
	settled := make(map[int64]bool, len(idx.Jobs))
	for _, j := range idx.Jobs {
		settled[j.ID] = j.Settled
		w.Stats.Jobs++
		if err := w.addLogs(j); err != nil {
			return err
		}
	}
	for _, a := range idx.Artifacts {
		f := File{Path: path.Join("artifacts", a.File), Kind: KindArtifact}
		if err := f.checkPath(); err != nil || path.Dir(path.Dir(a.File)) != strconv.FormatInt(a.JobID, 10) {
			return fmt.Errorf("backup artifact %d: file %q is not where artifacts are stored", a.ID, a.File)
		}
		ok, err := w.addDataFile(f, settled[a.JobID])
		if err != nil {
			return err
		}
		if !ok {
			w.Stats.GoneArtifacts = append(w.Stats.GoneArtifacts, a.ID)
			continue
		}
		w.Stats.Artifacts++
	}
	return nil
}

// addLogs adds a job's setup log (logs/<id>/log) and task logs
// (logs/<id>/<task>/log), those that exist.
func (w *Writer) addLogs(j app.BackupJob) error {
	dir := path.Join("logs", strconv.FormatInt(j.ID, 10))
	names := []string{path.Join(dir, "log")}
	ents, err := fs.ReadDir(w.data.FS(), dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("backup logs of job %d: %w", j.ID, err)
	}
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, path.Join(dir, e.Name(), "log"))
		}
	}
	for _, p := range names {
		f := File{Path: p, Kind: KindLog, Growing: !j.Settled}
		if f.checkPath() != nil {
			continue // a directory no task log lives in
		}
		ok, err := w.addDataFile(f, j.Settled)
		if err != nil {
			return err
		}
		if ok {
			w.Stats.Logs++
			if f.Growing {
				w.Stats.Growing++
			}
		}
	}
	return nil
}

// addDataFile links or copies the data dir's file f.Path into the
// backup; false if it does not exist.
func (w *Writer) addDataFile(f File, link bool) (bool, error) {
	fi, err := w.data.Lstat(filepath.FromSlash(f.Path))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("backup %s: %w", f.Path, err)
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("backup %s: not a regular file", f.Path)
	}
	dst := filepath.Join(w.dir, filepath.FromSlash(f.Path))
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return false, fmt.Errorf("backup %s: %w", f.Path, err)
	}
	if link && !w.noLinks {
		err := os.Link(filepath.Join(w.data.Name(), filepath.FromSlash(f.Path)), dst)
		if err == nil {
			return true, w.hashLinked(&f, dst)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if errors.Is(err, syscall.EXDEV) {
			w.noLinks = true
		}
		// any other refusal (a filesystem without hard links): copy
	}
	in, err := w.data.Open(filepath.FromSlash(f.Path))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("backup %s: %w", f.Path, err)
	}
	defer in.Close()
	if err := w.copyFrom(in, &f); err != nil {
		return false, fmt.Errorf("backup %s: %w", f.Path, err)
	}
	w.add(f, false)
	return true, nil
}

// hashLinked lists a file linked into the backup.
func (w *Writer) hashLinked(f *File, dst string) error {
	in, err := os.Open(dst)
	if err != nil {
		return fmt.Errorf("backup %s: %w", f.Path, err)
	}
	defer in.Close()
	f.SHA256, f.Size, err = hashReader(in)
	if err != nil {
		return fmt.Errorf("backup %s: %w", f.Path, err)
	}
	w.add(*f, true)
	return nil
}

// copyFrom copies in to the backup's f.Path (0600, synced), setting
// f's size and checksum to what was written.
func (w *Writer) copyFrom(in io.Reader, f *File) error {
	dst := filepath.Join(w.dir, filepath.FromSlash(f.Path))
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return err
	}
	f.Size, f.SHA256 = n, hex.EncodeToString(h.Sum(nil))
	return nil
}

func (w *Writer) add(f File, linked bool) {
	f.Linked = linked
	w.files = append(w.files, f)
	w.Stats.Bytes += f.Size
	if linked {
		w.Stats.Linked++
	} else {
		w.Stats.Copied++
	}
}

// Finish writes the manifest: the backup is complete once it returns.
func (w *Writer) Finish(version, source string, created time.Time) (*Manifest, error) {
	m := &Manifest{Format: format, Version: version, Created: created.UTC(), Source: source, Files: w.files}
	if err := syncDir(w.dir); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := writeManifest(w.dir, m); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	return m, nil
}

// hashReader returns the hex SHA-256 and length of what r holds.
func hashReader(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
