package backup_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"builds/app"
	"builds/backup"
)

// writeFile writes a file and its directories under dir.
func writeFile(t *testing.T, dir, rel, text string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// dataDir is a data dir with job 1 (settled: setup and task log, an
// artifact), job 2 (running: a setup log) and the file of artifact 3,
// which the index says was stored and which is gone.
func dataDir(t *testing.T) (string, *app.BackupIndex) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "logs/1/log", "setup of 1\n")
	writeFile(t, dir, "logs/1/build/log", "build of 1\n")
	writeFile(t, dir, "logs/1/build/log.pruned", "not a log\n")
	writeFile(t, dir, "logs/2/log", "setup of 2, so far\n")
	writeFile(t, dir, "artifacts/1/00aa/out.txt", "artifact of 1")
	writeFile(t, dir, "secret.key", "c2VjcmV0\n")
	idx := &app.BackupIndex{
		Jobs: []app.BackupJob{{ID: 1, Settled: true}, {ID: 2}, {ID: 3}},
		Artifacts: []app.BackupArtifact{
			{ID: 1, JobID: 1, File: "1/00aa/out.txt"},
			{ID: 3, JobID: 2, File: "2/00bb/gone.txt"},
		},
	}
	return dir, idx
}

// writeBackup backs up data into a new dir, with a stand-in database file.
func writeBackup(t *testing.T, data string, idx *app.BackupIndex) (string, *backup.Writer, *backup.Manifest) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bk")
	w, err := backup.Create(dir, data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	writeFile(t, dir, backup.DatabaseName, "SQLite format 3\x00 stand-in")
	if ok, err := w.AddKey(filepath.Join(data, "secret.key"), "secret.key"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, err := w.AddKey(filepath.Join(data, "webhook.key"), "webhook.key"); ok || err != nil {
		t.Fatal("a missing key:", ok, err)
	}
	if err := w.AddData(idx); err != nil {
		t.Fatal(err)
	}
	if err := w.AddDatabase(); err != nil {
		t.Fatal(err)
	}
	m, err := w.Finish("test", "sqlite", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return dir, w, m
}

func TestBackup(t *testing.T) {
	data, idx := dataDir(t)
	dir, w, m := writeBackup(t, data, idx)
	st := w.Stats
	if st.Jobs != 3 || st.Logs != 3 || st.Artifacts != 1 || st.Growing != 1 || st.Linked != 3 ||
		len(st.GoneArtifacts) != 1 || st.GoneArtifacts[0] != 3 {
		t.Errorf("stats %+v", st)
	}
	byPath := map[string]backup.File{}
	for _, f := range m.Files {
		byPath[f.Path] = f
	}
	if len(byPath) != 6 {
		t.Errorf("files %v", m.Files)
	}
	for p, linked := range map[string]bool{"logs/1/log": true, "logs/1/build/log": true, "artifacts/1/00aa/out.txt": true,
		"logs/2/log": false, "secret.key": false, backup.DatabaseName: false} {
		f, ok := byPath[p]
		if !ok {
			t.Errorf("%s not in the manifest", p)
			continue
		}
		a, _ := os.Stat(filepath.Join(dir, p))
		b, _ := os.Stat(filepath.Join(data, p))
		if f.Linked != linked || linked != (b != nil && os.SameFile(a, b)) {
			t.Errorf("%s: linked %v, same file %v, want %v", p, f.Linked, os.SameFile(a, b), linked)
		}
		if a.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", p, a.Mode())
		}
	}
	if !byPath["logs/2/log"].Growing || byPath["logs/1/log"].Growing {
		t.Error("growing: only job 2's log")
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("backup dir mode %v", fi.Mode())
	}
	// the running job's log grows; the backup keeps what it copied
	f, _ := os.OpenFile(filepath.Join(data, "logs/2/log"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("more\n")
	f.Close()
	if _, err := backup.Open(dir); err != nil {
		t.Fatalf("verify after the live log grew: %v", err)
	}

	// restore into a new place, byte for byte
	to := t.TempDir()
	created, err := backup.Restore(dir, m, func(f backup.File) string { return filepath.Join(to, filepath.FromSlash(f.Path)) })
	if err != nil || len(created) != 6 {
		t.Fatal(created, err)
	}
	for p := range byPath {
		got, _ := os.ReadFile(filepath.Join(to, p))
		want, _ := os.ReadFile(filepath.Join(dir, p))
		if !bytes.Equal(got, want) {
			t.Errorf("%s restored as %q, want %q", p, got, want)
		}
		if fi, _ := os.Stat(filepath.Join(to, p)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s restored with mode %v", p, fi.Mode())
		}
	}
	if _, err := backup.Restore(dir, m, func(f backup.File) string { return filepath.Join(to, filepath.FromSlash(f.Path)) }); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("restore over existing files: %v", err)
	}
}

func TestBackupCopiesAcrossFilesystems(t *testing.T) {
	data, idx := dataDir(t)
	if _, err := os.Stat("/dev/shm"); err != nil {
		t.Skip("needs /dev/shm (a tmpfs) for a second filesystem")
	}
	dir, err := os.MkdirTemp("/dev/shm", "bk")
	if err != nil {
		t.Skip(err)
	}
	defer os.RemoveAll(dir)
	w, err := backup.Create(dir, data)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.AddData(idx); err != nil {
		t.Fatal(err)
	}
	a, _ := os.Stat(data)
	b, _ := os.Stat(dir)
	if a.Sys().(*syscall.Stat_t).Dev == b.Sys().(*syscall.Stat_t).Dev {
		t.Skip("/dev/shm is on the temp dir's filesystem")
	}
	if w.Stats.Logs != 3 || w.Stats.Linked != 0 || w.Stats.Copied != 4 {
		t.Errorf("stats %+v, want 4 files copied, none linked", w.Stats)
	}
}

func TestCreateRefuses(t *testing.T) {
	data, _ := dataDir(t)
	full := t.TempDir()
	writeFile(t, full, "x", "")
	file := filepath.Join(full, "x")
	for _, tc := range []struct{ name, dir, want string }{
		{"ErrNotEmpty", full, "is not empty"},
		{"ErrFile", file, "not a directory"},
		{"ErrInsideDataDir", filepath.Join(data, "backups"), "inside the data dir"},
		{"ErrDataDir", data, "inside the data dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := backup.Create(tc.dir, data); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestOpenRefuses: a backup that was changed after it was written is
// refused, naming the file, and so is a manifest naming files a backup
// never holds.
func TestOpenRefuses(t *testing.T) {
	data, idx := dataDir(t)
	src, _, _ := writeBackup(t, data, idx)
	editManifest := func(edit func(m map[string]any)) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, backup.ManifestName)
			b, _ := os.ReadFile(p)
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			edit(m)
			b, _ = json.Marshal(m)
			os.WriteFile(p, b, 0o600)
		}
	}
	file0 := func(m map[string]any) map[string]any { return m["files"].([]any)[0].(map[string]any) }
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, dir string)
		want   string
	}{
		{"ErrTampered", func(t *testing.T, dir string) {
			writeFile(t, dir, "logs/1/build/log", "build of 2\n")
		}, "logs/1/build/log: SHA-256"},
		{"ErrTruncated", func(t *testing.T, dir string) {
			os.Truncate(filepath.Join(dir, "artifacts/1/00aa/out.txt"), 3)
		}, "artifacts/1/00aa/out.txt: 3 bytes, the manifest says 13: truncated"},
		{"ErrGrown", func(t *testing.T, dir string) {
			writeFile(t, dir, "secret.key", "c2VjcmV0\nmore")
		}, "secret.key: 13 bytes, the manifest says 9"},
		{"ErrMissing", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "logs/2/log"))
		}, "logs/2/log: missing"},
		{"ErrNoManifest", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, backup.ManifestName))
		}, "not a complete backup"},
		{"ErrSymlink", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "logs/1/log")
			os.Remove(p)
			os.Symlink("/etc/passwd", p)
		}, "logs/1/log: not a regular file"},
		{"ErrDotDot", editManifest(func(m map[string]any) { file0(m)["path"] = "logs/1/../../../etc/passwd" }), "not a clean relative path"},
		{"ErrDotDotClean", editManifest(func(m map[string]any) { file0(m)["path"] = "../outside" }), "not a clean relative path"},
		{"ErrAbsolute", editManifest(func(m map[string]any) { file0(m)["path"] = "/etc/passwd" }), "not a clean relative path"},
		{"ErrKindPlace", editManifest(func(m map[string]any) {
			for _, f := range m["files"].([]any) {
				if f := f.(map[string]any); f["kind"] == "log" {
					f["path"] = "artifacts/1/x"
				}
			}
		}), "no log lives there"},
		{"ErrTwice", editManifest(func(m map[string]any) {
			fs := m["files"].([]any)
			m["files"] = append(fs, fs[0])
		}), "listed twice"},
		{"ErrFormat", editManifest(func(m map[string]any) { m["format"] = 99 }), "format 99"},
		{"ErrUnknownField", editManifest(func(m map[string]any) { m["extra"] = 1 }), "unknown field"},
		{"ErrChecksum", editManifest(func(m map[string]any) { file0(m)["sha256"] = "zz" }), "bad size or checksum"},
		{"ErrNotJSON", func(t *testing.T, dir string) {
			writeFile(t, dir, backup.ManifestName, "{")
		}, "manifest.json: unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "bk")
			if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
				t.Fatal(err)
			}
			if _, err := backup.Open(dir); err != nil {
				t.Fatalf("the copy does not verify: %v", err)
			}
			tc.change(t, dir)
			if _, err := backup.Open(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
