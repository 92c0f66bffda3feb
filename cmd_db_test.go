package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"builds/store/storetest"
)

const copyManifest = "image: debian/stable\ntasks:\n  - hello: echo hello\n"

// TestDBCopy moves a server's SQLite database to PostgreSQL with `builds
// db copy` as the README says: refused while the server runs, then the
// server starts on PostgreSQL with the same users, token and jobs, and
// new jobs continue the id sequence. A copy onto a database that is not
// empty, or onto itself, is refused without touching it; a second server
// on the same data dir is refused.
func TestDBCopy(t *testing.T) {
	pg := storetest.PostgresSource(t)
	cfg := testConfig(t, "")
	port := freePort(t)
	s := serveConfig(t, cfg, port)
	out := s.out.String()
	token := strings.Fields(out[strings.Index(out, "API token: ")+len("API token: "):])[0]
	submit := `mutation($m: String!) { submit(manifest: $m, note: "copied") { id } }`
	var ids []float64
	for range 3 {
		d := gql(t, s.base, token, submit, map[string]any{"m": copyManifest})
		ids = append(ids, d["submit"].(map[string]any)["id"].(float64))
	}

	// a second server on the same data dir
	if _, _, err := run(t, cfg, "", "serve"); err == nil || !strings.Contains(err.Error(), "a builds server is running on this data dir") {
		t.Fatalf("second serve: %v", err)
	}
	if _, _, err := run(t, cfg, "", "db", "copy", "--to", pg); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Fatalf("db copy beside a running server: %v", err)
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"db", "copy"}, "usage: builds db copy --to DEST"},
		{[]string{"db", "move", "--to", pg}, "usage: builds db copy --to DEST"},
		{[]string{"db", "copy", "--to", filepath.Join(filepath.Dir(cfg), "data", "builds.db")}, "source and destination are the same"},
		{[]string{"db", "copy", "--from", filepath.Join(t.TempDir(), "missing.db"), "--to", filepath.Join(t.TempDir(), "x.db")}, "missing.db: stat"},
		{[]string{"db", "copy", "--to", "postgres://nobody@/nothing?host=" + t.TempDir()}, "db copy: destination"},
	} {
		if _, _, err := run(t, cfg, "", tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
	}

	stdout, _, err := run(t, cfg, "", "db", "copy", "--to", pg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"jobs", "users", "tokens", "database = postgres://", "copied "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("db copy output lacks %q:\n%s", want, stdout)
		}
	}
	// again: the destination now has rows
	if _, _, err := run(t, cfg, "", "db", "copy", "--to", pg); err == nil || !strings.Contains(err.Error(), "the destination is not empty") {
		t.Fatalf("copy into a copied database: %v", err)
	}
	// SQLite from the PostgreSQL copy (back again), and refused files
	// leave nothing behind
	back := filepath.Join(t.TempDir(), "back.db")
	if _, _, err := run(t, cfg, "", "db", "copy", "--from", pg, "--to", back); err != nil {
		t.Fatalf("copy back to SQLite: %v", err)
	}
	if fi, err := os.Stat(back); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("copied SQLite file: %v %v", fi, err)
	}

	appendConfig(t, cfg, "[builds]\ndatabase = "+pg+"\n")
	s = serveConfig(t, cfg, port)
	if strings.Contains(s.out.String(), "API token: ") {
		t.Fatal("the server on the copy made a new admin: the users were not copied")
	}
	d := gql(t, s.base, token, `query { me { username } jobs { results { id note status } } }`, nil)
	if d["me"].(map[string]any)["username"] != "admin" {
		t.Errorf("me = %v", d["me"])
	}
	jobs := d["jobs"].(map[string]any)["results"].([]any)
	if len(jobs) != len(ids) {
		t.Fatalf("%d jobs on PostgreSQL, want %d", len(jobs), len(ids))
	}
	for _, j := range jobs {
		if j := j.(map[string]any); j["note"] != "copied" || j["status"] != "PENDING" && j["status"] != "QUEUED" {
			t.Errorf("job %v", j)
		}
	}
	next := gql(t, s.base, token, submit, map[string]any{"m": copyManifest})["submit"].(map[string]any)["id"].(float64)
	if next != ids[len(ids)-1]+1 {
		t.Errorf("next job id %v after %v", next, ids)
	}
}
