package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"builds/backup"
	"builds/store"
	"builds/store/storetest"
)

const backupManifest = "image: debian/stable\ntasks:\n  - build: echo hi\n  - test: echo ok\nartifacts:\n  - out/report.txt\n"

// fakeRunner runs jobs on a server the way a remote runner does (app/
// runners.go: the claim mutation, log uploads at offsets, createArtifact,
// updateTask, finish), with no VM: the root package has none, and this
// writes the server's logs and artifacts exactly as a runner's jobs do.
type fakeRunner struct {
	t           *testing.T
	base, token string
	tasks       map[int64]map[string]int64 // job → task name → task id
	sent        map[string]int64           // log URL → bytes uploaded
}

func newFakeRunner(t *testing.T, s *served) *fakeRunner {
	t.Helper()
	out, _, err := run(t, s.cfg, "", "runner-token", "create", "r1")
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRunner{t: t, base: s.base, token: strings.TrimSpace(out), tasks: map[int64]map[string]int64{}, sent: map[string]int64{}}
	r.call("POST", "/worker/v1/poll", `{"version":"test","address":"127.0.0.1:2222","slots":4,"free":4,"images":[{"name":"debian/stable","arch":"x86_64"}],"running":[],"wait_ms":0}`, nil)
	return r
}

// call makes one worker API call and returns the body; non-2xx fails.
func (r *fakeRunner) call(method, path, body string, hdr map[string]string) []byte {
	r.t.Helper()
	req, _ := http.NewRequest(method, r.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		r.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return b
}

// claim claims a queued job.
func (r *fakeRunner) claim(id int64) {
	r.t.Helper()
	d := gql(r.t, r.base, r.token, `mutation($id: Int!) { claim(jobId: $id) { id tasks { id name } } }`, map[string]any{"id": id})
	r.tasks[id] = map[string]int64{}
	for _, tk := range d["claim"].(map[string]any)["tasks"].([]any) {
		tk := tk.(map[string]any)
		r.tasks[id][tk["name"].(string)] = int64(tk["id"].(float64))
	}
}

// log appends text to a job's setup log (task "") or a task's log.
func (r *fakeRunner) log(id int64, task, text string) {
	r.t.Helper()
	p := fmt.Sprintf("/worker/v1/jobs/%d/log", id)
	if task != "" {
		p = fmt.Sprintf("/worker/v1/jobs/%d/tasks/%s/log", id, task)
	}
	r.call("PUT", p, text, map[string]string{"Builds-Log-Offset": fmt.Sprint(r.sent[p])})
	r.sent[p] += int64(len(text))
}

// appendUntil appends lines to a job's setup log until stop is closed
// (from a goroutine of its own: it reports errors instead of failing).
func (r *fakeRunner) appendUntil(id int64, stop chan struct{}) error {
	p := fmt.Sprintf("/worker/v1/jobs/%d/log", id)
	off := r.sent[p]
	for i := 0; ; i++ {
		select {
		case <-stop:
			r.sent[p] = off
			return nil
		default:
		}
		line := fmt.Sprintf("tick %d\n", i)
		req, _ := http.NewRequest("PUT", r.base+p, strings.NewReader(line))
		req.Header.Set("Authorization", "Bearer "+r.token)
		req.Header.Set("Builds-Log-Offset", fmt.Sprint(off))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("PUT %s: %d", p, resp.StatusCode)
		}
		off += int64(len(line))
	}
}

func (r *fakeRunner) task(id int64, task, status string) {
	r.t.Helper()
	gql(r.t, r.base, r.token, `mutation($id: Int!, $st: TaskStatus!) { updateTask(taskId: $id, status: $st) { id } }`,
		map[string]any{"id": r.tasks[id][task], "st": status})
}

// artifact uploads an artifact of a job (createArtifact, multipart).
func (r *fakeRunner) artifact(id int64, guestPath string, content []byte) {
	r.t.Helper()
	ops, _ := json.Marshal(map[string]any{
		"query":     `mutation($id: Int!, $path: String!, $file: File!) { createArtifact(jobId: $id, path: $path, contents: $file) { id } }`,
		"variables": map[string]any{"id": id, "path": guestPath, "file": nil},
	})
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("operations", string(ops))
	mw.WriteField("map", `{"0": ["variables.file"]}`)
	fw, _ := mw.CreateFormFile("0", filepath.Base(guestPath))
	fw.Write(content)
	mw.Close()
	req, _ := http.NewRequest("POST", r.base+"/query", &body)
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || bytes.Contains(b, []byte(`"errors"`)) {
		r.t.Fatalf("createArtifact: %d %s", resp.StatusCode, b)
	}
}

func (r *fakeRunner) finish(id int64, status string) {
	r.t.Helper()
	r.call("POST", fmt.Sprintf("/worker/v1/jobs/%d/logs-done", id), "{}", nil)
	r.call("POST", fmt.Sprintf("/worker/v1/jobs/%d/finish", id), `{"status":"`+status+`","reason":""}`, nil)
}

// jobsQuery is what a restored server must answer as the backed-up one
// did (URLs aside, which name each server's origin).
const jobsQuery = `query { jobs { results { id created updated status note tags visibility image runner
	owner { canonicalName } log { fullURL }
	tasks { id name status log { fullURL } }
	artifacts { id created path size url } } } }`

// served answers: the jobs as JSON with the server's base URL taken out,
// and every log and artifact the answer links to, by URL path.
func servedJobs(t *testing.T, s *served, token string) (string, map[string][]byte) {
	t.Helper()
	d := gql(t, s.base, token, jobsQuery, nil)
	b, _ := json.MarshalIndent(d, "", " ")
	files := map[string][]byte{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if u, ok := x.(string); ok && (k == "fullURL" || k == "url") {
					st, body := get(t, u, token)
					if st != 200 {
						t.Fatalf("GET %s: %d %s", u, st, body)
					}
					files[strings.TrimPrefix(u, s.base)] = []byte(body)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(d)
	return strings.ReplaceAll(string(b), s.base, "BASE"), files
}

// TestBackupRestore backs up a running server while one of its jobs is
// still running (a remote runner's, writing its log), restores the
// backup into a fresh data dir (and into PostgreSQL), and starts a new
// server there: it serves the same jobs, logs and artifacts, byte for
// byte. Hostile backups and targets are refused, naming what is wrong,
// and leave the target as it was.
func TestBackupRestore(t *testing.T) {
	cfg := testConfig(t, "")
	s := serveConfig(t, cfg, freePort(t))
	token := adminToken(t, s)
	r := newFakeRunner(t, s)
	var ids []int64
	for range 3 {
		d := gql(t, s.base, token, `mutation($m: String!) { submit(manifest: $m, note: "backed up", tags: ["a", "b"]) { id } }`, map[string]any{"m": backupManifest})
		ids = append(ids, int64(d["submit"].(map[string]any)["id"].(float64)))
	}
	done, running := ids[0], ids[1] // the third stays queued
	r.claim(done)
	r.log(done, "", "booting\nready\n")
	r.log(done, "build", "hi\n")
	r.task(done, "build", "SUCCESS")
	r.log(done, "test", "ok\x00binary\xff\n")
	r.task(done, "test", "SUCCESS")
	report := bytes.Repeat([]byte("report\x00\x01"), 10_000)
	r.artifact(done, "/home/build/out/report.txt", report)
	r.finish(done, "success")
	r.claim(running)
	r.log(running, "", "booting\n")
	r.task(running, "build", "RUNNING")
	r.log(running, "build", "half of the output")

	// the running job's setup log grows while the backup runs
	setupLog := fmt.Sprintf("/query/log/%d/log", running)
	stop, appended := make(chan struct{}), make(chan error, 1)
	go func() { appended <- r.appendUntil(running, stop) }()
	bk := filepath.Join(t.TempDir(), "backup")
	out, _, err := run(t, cfg, "", "backup", bk)
	close(stop)
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	want, wantFiles := servedJobs(t, s, token)
	if !bytes.Contains(wantFiles[setupLog], []byte("tick 0\n")) {
		t.Fatalf("nothing was appended to %s while the backup ran", setupLog)
	}
	for _, w := range []string{"3 jobs, 5 logs, 1 artifacts", "5 logs of jobs not settled", "not in it: images"} {
		if !strings.Contains(out, w) {
			t.Errorf("backup output lacks %q:\n%s", w, out)
		}
	}
	m, err := backup.ReadManifest(bk)
	if err != nil {
		t.Fatal(err)
	}
	growing := 0
	for _, f := range m.Files {
		if f.Linked {
			t.Errorf("%s linked: no job of the backup has settled", f.Path)
		}
		if f.Growing {
			growing++
		}
		fi, err := os.Stat(filepath.Join(bk, f.Path))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f.Path, fi, err)
		}
	}
	if growing != 5 {
		t.Errorf("%d growing logs, want the 5 of jobs finished less than a settle time ago", growing)
	}
	if fi, _ := os.Stat(bk); fi.Mode().Perm() != 0o700 {
		t.Errorf("backup dir mode %v", fi.Mode())
	}
	if m.Version != version || m.Source != "sqlite" {
		t.Errorf("manifest %s %s", m.Version, m.Source)
	}
	// the running job goes on after the backup; the backup is unchanged
	r.log(running, "build", " and the rest\n")
	r.task(running, "build", "SUCCESS")
	r.finish(running, "failed")
	if _, err := backup.Open(bk); err != nil {
		t.Fatalf("the backup changed with the live job: %v", err)
	}
	// the data dir is in use: a restore onto it is refused
	if _, _, err := run(t, cfg, "", "restore", bk); err == nil || !strings.Contains(err.Error(), "the data dir is in use") {
		t.Errorf("restore onto a running server: %v", err)
	}
	if _, _, err := run(t, cfg, "", "backup", bk); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Errorf("backup into a backup: %v", err)
	}

	cfg2 := testConfig(t, "")
	out, _, err = run(t, cfg2, "", "restore", bk)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "3 jobs, 1 users; 5 logs, 1 artifacts, 2 keys; every checksum verified") {
		t.Errorf("restore output:\n%s", out)
	}
	s2 := serveConfig(t, cfg2, freePort(t))
	if strings.Contains(s2.out.String(), "API token: ") {
		t.Fatal("the restored server made a new admin")
	}
	got, gotFiles := servedJobs(t, s2, token)
	if got != want {
		t.Errorf("restored server's jobs:\n%s\nwant:\n%s", got, want)
	}
	if len(gotFiles) != 6 || len(wantFiles) != 6 {
		t.Errorf("%d files served, %d before (want 5 logs and 1 artifact)", len(gotFiles), len(wantFiles))
	}
	for u, b := range wantFiles {
		if u == setupLog {
			// as far as it was when the backup copied it
			if g := gotFiles[u]; !bytes.HasPrefix(b, g) || !bytes.HasPrefix(g, []byte("booting\n")) {
				t.Errorf("%s: restored %q, want a prefix of %q", u, g, b)
			}
			continue
		}
		if !bytes.Equal(gotFiles[u], b) {
			t.Errorf("%s: restored %q, want %q", u, gotFiles[u], b)
		}
	}
	foundReport := false
	for _, b := range gotFiles {
		foundReport = foundReport || bytes.Equal(b, report)
	}
	if !foundReport {
		t.Error("the artifact is not served byte for byte")
	}
	if err := s2.stop(t); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, cfg2, "", "restore", bk); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Errorf("restore onto a restored data dir: %v", err)
	}
	// a backup of the stopped, restored server restores too
	bk2 := filepath.Join(t.TempDir(), "backup2")
	if out, _, err := run(t, cfg2, "", "backup", bk2); err != nil || !strings.Contains(out, "3 jobs, 5 logs, 1 artifacts") {
		t.Fatalf("backup of a stopped server: %v\n%s", err, out)
	}
	if out, _, err := run(t, testConfig(t, ""), "", "restore", bk2); err != nil || !strings.Contains(out, "3 jobs, 1 users; 5 logs, 1 artifacts") {
		t.Fatalf("restore of the second backup: %v\n%s", err, out)
	}

	t.Run("Restore", func(t *testing.T) { testRestoreCases(t, bk) })
	t.Run("PostgreSQL", func(t *testing.T) {
		pg := storetest.PostgresSource(t)
		cfg := testConfig(t, "[builds]\ndatabase = "+pg+"\n")
		out, _, err := run(t, cfg, "", "restore", bk)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "3 jobs, 1 users") || !strings.Contains(out, "database postgres://") {
			t.Errorf("restore output:\n%s", out)
		}
		ents, _ := os.ReadDir(filepath.Join(filepath.Dir(cfg), "data"))
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".db") || strings.Contains(e.Name(), ".db-") {
				t.Errorf("restore left %s in the data dir", e.Name())
			}
		}
		s3 := serveConfig(t, cfg, freePort(t))
		got, gotFiles := servedJobs(t, s3, token)
		if got != want {
			t.Errorf("jobs on PostgreSQL:\n%s\nwant:\n%s", got, want)
		}
		for u, b := range wantFiles {
			if u != setupLog && !bytes.Equal(gotFiles[u], b) || !bytes.HasPrefix(b, gotFiles[u]) {
				t.Errorf("%s on PostgreSQL: %q, want %q", u, gotFiles[u], b)
			}
		}
		// a backup of the server on PostgreSQL restores onto SQLite
		bk3 := filepath.Join(t.TempDir(), "backup3")
		if out, _, err := run(t, cfg, "", "backup", bk3); err != nil || !strings.Contains(out, "3 jobs, 5 logs, 1 artifacts") {
			t.Fatalf("backup on PostgreSQL: %v\n%s", err, out)
		}
		if m, err := backup.ReadManifest(bk3); err != nil || m.Source != "postgres" {
			t.Fatalf("manifest of the PostgreSQL backup: %v", err)
		}
		s3.stop(t)
		cfg5 := testConfig(t, "")
		if out, _, err := run(t, cfg5, "", "restore", bk3); err != nil || !strings.Contains(out, "3 jobs, 1 users; 5 logs, 1 artifacts") {
			t.Fatalf("restore of the PostgreSQL backup onto SQLite: %v\n%s", err, out)
		}
		s5 := serveConfig(t, cfg5, freePort(t))
		if got, _ := servedJobs(t, s5, token); got != want {
			t.Errorf("jobs restored from PostgreSQL onto SQLite:\n%s\nwant:\n%s", got, want)
		}
		s5.stop(t)
		// the database has rows now: a restore with a fresh data dir is refused
		cfg4 := testConfig(t, "[builds]\ndatabase = "+pg+"\n")
		if _, _, err := run(t, cfg4, "", "restore", bk); err == nil || !strings.Contains(err.Error(), "is not empty") {
			t.Errorf("restore into a PostgreSQL database with rows: %v", err)
		}
		if ents, _ := os.ReadDir(filepath.Join(filepath.Dir(cfg4), "data")); len(ents) > 1 {
			t.Errorf("a refused restore left files: %v", ents)
		}
	})
}

// testRestoreCases restores changed copies of the backup bk: damaged
// ones are refused with the file named, leaving nothing in the data dir;
// one of an older schema is migrated.
func testRestoreCases(t *testing.T, bk string) {
	editManifest := func(t *testing.T, dir string, edit func(f *backup.File)) {
		m, err := backup.ReadManifest(dir)
		if err != nil {
			t.Fatal(err)
		}
		for i := range m.Files {
			edit(&m.Files[i])
		}
		b, _ := json.Marshal(m)
		os.WriteFile(filepath.Join(dir, backup.ManifestName), b, 0o600)
	}
	firstLog := func(dir string) string {
		m, _ := backup.ReadManifest(dir)
		for _, f := range m.Files {
			if f.Kind == backup.KindLog {
				return f.Path
			}
		}
		return ""
	}
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, dir string) string // returns what the error names
	}{
		{"Tampered", func(t *testing.T, dir string) string {
			p := firstLog(dir)
			b, _ := os.ReadFile(filepath.Join(dir, p))
			b[0] ^= 1
			os.WriteFile(filepath.Join(dir, p), b, 0o600)
			return p + ": SHA-256"
		}},
		{"TruncatedDatabase", func(t *testing.T, dir string) string {
			os.Truncate(filepath.Join(dir, backup.DatabaseName), 4096)
			return "builds.db: 4096 bytes"
		}},
		{"Missing", func(t *testing.T, dir string) string {
			p := firstLog(dir)
			os.Remove(filepath.Join(dir, p))
			return p + ": missing"
		}},
		{"DotDot", func(t *testing.T, dir string) string {
			editManifest(t, dir, func(f *backup.File) {
				if f.Kind == backup.KindArtifact {
					f.Path = "artifacts/1/../../../../outside"
				}
			})
			return "not a clean relative path"
		}},
		{"UnknownKey", func(t *testing.T, dir string) string {
			editManifest(t, dir, func(f *backup.File) {
				if f.Path == "secret.key" {
					f.Path = ".profile"
				}
			})
			os.Rename(filepath.Join(dir, "secret.key"), filepath.Join(dir, ".profile"))
			return ".profile: builds has no key of that name"
		}},
		{"CorruptDatabase", func(t *testing.T, dir string) string {
			// a damaged database with a manifest to match: the file's
			// own check catches it
			p := filepath.Join(dir, backup.DatabaseName)
			b, _ := os.ReadFile(p)
			for i := 200; i < len(b); i += 512 {
				b[i] ^= 0xff
			}
			os.WriteFile(p, b, 0o600)
			sum, n := sha256File(t, p)
			editManifest(t, dir, func(f *backup.File) {
				if f.Kind == backup.KindDatabase {
					f.SHA256, f.Size = sum, n
				}
			})
			return "builds.db"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "bk")
			if err := os.CopyFS(dir, os.DirFS(bk)); err != nil {
				t.Fatal(err)
			}
			want := tc.change(t, dir)
			cfg := testConfig(t, "")
			_, _, err := run(t, cfg, "", "restore", dir)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v, want %q", err, want)
			}
			data := filepath.Join(filepath.Dir(cfg), "data")
			ents, _ := os.ReadDir(data)
			for _, e := range ents {
				if e.Name() != serverLockName {
					t.Errorf("a refused restore left %s in the data dir", e.Name())
				}
			}
		})
	}
	t.Run("ArtifactNotInBackup", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "bk")
		if err := os.CopyFS(dir, os.DirFS(bk)); err != nil {
			t.Fatal(err)
		}
		m, _ := backup.ReadManifest(dir)
		var keep []backup.File
		for _, f := range m.Files {
			if f.Kind == backup.KindArtifact {
				os.Remove(filepath.Join(dir, f.Path))
				continue
			}
			keep = append(keep, f)
		}
		m.Files = keep
		b, _ := json.Marshal(m)
		os.WriteFile(filepath.Join(dir, backup.ManifestName), b, 0o600)
		cfg := testConfig(t, "")
		if _, _, err := run(t, cfg, "", "restore", dir); err == nil || !strings.Contains(err.Error(), "which is not in the backup") {
			t.Fatalf("err = %v", err)
		}
		if ents, _ := os.ReadDir(filepath.Join(filepath.Dir(cfg), "data")); len(ents) != 1 {
			t.Errorf("a refused restore left files: %v", ents)
		}
	})
	// a backup of a build before migration 0006 (retention) is migrated
	t.Run("OlderSchema", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "bk")
		if err := os.CopyFS(dir, os.DirFS(bk)); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, backup.DatabaseName)
		raw, err := sql.Open("sqlite", p)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			`DROP INDEX artifacts_unpruned`, `DROP INDEX jobs_logs_unpruned`, `DROP INDEX jobs_finished`,
			`ALTER TABLE artifacts DROP COLUMN pruned`, `ALTER TABLE jobs DROP COLUMN logs_pruned`,
			`DELETE FROM migrations WHERE name = '0006_retention.sql'`,
		} {
			if _, err := raw.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		raw.Close()
		sum, n := sha256File(t, p)
		editManifest(t, dir, func(f *backup.File) {
			if f.Kind == backup.KindDatabase {
				f.SHA256, f.Size = sum, n
			}
		})
		cfg := testConfig(t, "")
		if out, _, err := run(t, cfg, "", "restore", dir); err != nil || !strings.Contains(out, "3 jobs, 1 users; 5 logs, 1 artifacts") {
			t.Fatalf("restore of an older backup: %v\n%s", err, out)
		}
		db, err := store.Open(context.Background(), filepath.Join(filepath.Dir(cfg), "data", "builds.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if pruned, err := db.LogsPruned(context.Background(), 1); err != nil || pruned != nil {
			t.Errorf("logs_pruned after the migration: %v %v", pruned, err)
		}
	})
	t.Run("NotEmpty", func(t *testing.T) {
		cfg := testConfig(t, "")
		data := filepath.Join(filepath.Dir(cfg), "data")
		writeTestFile(t, filepath.Join(data, "notes.txt"), "mine")
		if _, _, err := run(t, cfg, "", "restore", bk); err == nil || !strings.Contains(err.Error(), "not empty (it has notes.txt)") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("Usage", func(t *testing.T) {
		cfg := testConfig(t, "")
		for _, args := range [][]string{{"restore"}, {"backup"}, {"backup", "a", "b"}} {
			if _, _, err := run(t, cfg, "", args...); err == nil || !strings.Contains(err.Error(), "usage: builds "+args[0]+" DIR") {
				t.Errorf("%q: %v", args, err)
			}
		}
		if _, _, err := run(t, cfg, "", "backup", t.TempDir()+"/x"); err == nil || !strings.Contains(err.Error(), "no database to back up") {
			t.Errorf("backup of a data dir without a database: %v", err)
		}
	})
}

// sha256File returns a file's hex SHA-256 and size.
func sha256File(t *testing.T, path string) (string, int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), int64(len(b))
}

// writeTestFile writes a file, making its directories.
func writeTestFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
