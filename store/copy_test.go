package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"builds/app"
	"builds/store"
	"builds/store/storetest"
)

// seedAll puts rows in every table through the store's own methods and
// returns the id of a job deleted afterwards, so the jobs sequence is
// above the highest id left.
func seedAll(t *testing.T, db *store.DB) (deletedJob int64) {
	t.Helper()
	ctx := context.Background()
	alice := MustCreateUser(t, db, "alice")
	bob := MustCreateUser(t, db, "bob")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(db.CreateSSHKey(ctx, &app.SSHKey{UserID: alice.ID, Key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl", Fingerprint: "SHA256:abc", Comment: "alice@laptop"}))
	tok := &app.Token{UserID: alice.ID, Hash: strings.Repeat("ab", 32), Grants: "JOBS:RO", Comment: "ci", Expires: ptr(nowSec.Add(time.Hour))}
	must(db.CreateToken(ctx, tok))
	must(db.CreateSession(ctx, &app.Session{UserID: bob.ID, Hash: strings.Repeat("cd", 32), Expires: nowSec.Add(time.Hour)}))
	must(db.CreateSecret(ctx, &app.Secret{UserID: alice.ID, UUID: "5b4e0c86-0b5e-4d1c-9c36-0d4a4d8e2f11", Name: ptr("deploy"),
		Type: app.SecretFile, Data: []byte{0, 1, 2, 0xff, 'x'}, Path: ptr("~/.deploy"), Mode: ptr(0o600)}))

	var jobs []int64
	for i, st := range []app.JobStatus{app.JobSuccess, app.JobFailed, app.JobQueued, app.JobRunning, app.JobCancelled, app.JobPending, app.JobPending} {
		j := newJob(alice.ID, st)
		j.Note = ptr(fmt.Sprintf("note %d with 'quotes' and \"double\"", i))
		j.Tags = "a/b c"
		if _, err := db.CreateJob(ctx, j, []string{"build", "test"}); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j.ID)
	}
	gone := MustCreateJob(t, db, bob.ID, app.JobSuccess)
	must(db.CreateGroup(ctx, &app.JobGroup{OwnerID: alice.ID, Note: ptr("group")}, jobs[5:],
		[]*app.GroupTrigger{{Action: "email", Condition: "always", To: "a@example.org"}}, nil))
	must(db.CreateArtifact(ctx, &app.Artifact{JobID: jobs[0], Name: "out.tar", Path: "out.tar", Size: 10, File: "1/out.tar"}))
	w := &app.WebhookSubscription{UserID: alice.ID, URL: "https://hooks.example.org/x", Events: []app.WebhookEvent{app.WebhookEvent("JOB_CREATED")}, Query: "query { version { major } }", TokenID: &tok.ID}
	must(db.CreateWebhook(ctx, w))
	must(db.CreateWebhookDelivery(ctx, &app.WebhookDelivery{UUID: "9d6e7a4c-3b1f-4b7e-8f1a-2c3d4e5f6a7b", SubscriptionID: w.ID, Event: app.WebhookEvent("JOB_CREATED"), JobID: jobs[0], RequestBody: "{}", State: "pending", NextAttempt: ptr(nowSec)}))
	must(db.CreateTriggerDelivery(ctx, &app.TriggerDelivery{JobID: &jobs[1], Action: "email", Target: "a@example.org", Status: "sent", Attempts: 1}))
	r := &app.Runner{Name: "r1", Hash: strings.Repeat("ef", 32)}
	must(db.CreateRunner(ctx, r))
	if _, err := db.ClaimJobForRunner(ctx, jobs[2], []app.JobStatus{app.JobQueued}, claim("r1.example.org", time.Hour), r.ID, nowSec.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.DeleteJobs(ctx, []int64{gone.ID}); err != nil {
		t.Fatal(err)
	}
	return gone.ID
}

// dump reads every table's rows in a canonical text form.
func dump(t *testing.T, db *store.DB) map[string][]string {
	t.Helper()
	tables := tableNames(t, db)
	out := map[string][]string{}
	for _, table := range tables {
		if table == "migrations" {
			continue
		}
		rows, err := db.SQL().Query(`SELECT * FROM ` + table + ` ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for i, v := range vals {
				if b.Len() > 0 {
					b.WriteString(" | ")
				}
				switch x := v.(type) {
				case []byte:
					fmt.Fprintf(&b, "%s=%x", cols[i], x)
				case nil:
					fmt.Fprintf(&b, "%s=NULL", cols[i])
				default:
					fmt.Fprintf(&b, "%s=%v", cols[i], x)
				}
			}
			out[table] = append(out[table], b.String())
		}
		rows.Close()
	}
	return out
}

func tableNames(t *testing.T, db *store.DB) []string {
	t.Helper()
	q := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`
	if db.Postgres() {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name`
	}
	rows, err := db.SQL().Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		names = append(names, n)
	}
	return names
}

func openKind(t *testing.T, kind string) *store.DB {
	t.Helper()
	var src string
	if kind == "PostgreSQL" {
		src = storetest.PostgresSource(t)
	} else {
		src = filepath.Join(t.TempDir(), "builds.db")
	}
	db := MustOpenDBAt(t, src)
	t.Cleanup(func() { db.Close() })
	return db
}

// CopyDatabase moves every row between the databases, in each direction:
// the destination holds the same rows, counts are reported per table,
// and it never hands out an id the source has used.
func TestCopyDatabase(t *testing.T) {
	storetest.SQLiteOnly(t) // it opens both kinds itself
	for _, c := range []struct{ from, to string }{
		{"SQLite", "SQLite"}, {"SQLite", "PostgreSQL"}, {"PostgreSQL", "SQLite"}, {"PostgreSQL", "PostgreSQL"},
	} {
		t.Run(c.from+"To"+c.to, func(t *testing.T) {
			src := openKind(t, c.from)
			gone := seedAll(t, src)
			dst := openKind(t, c.to)
			counts, err := store.CopyDatabase(context.Background(), src, dst)
			if err != nil {
				t.Fatal(err)
			}
			want := dump(t, src)
			for table, rows := range want {
				if len(rows) == 0 {
					t.Errorf("the fixture leaves table %s empty", table)
				}
			}
			if got := dump(t, dst); !reflect.DeepEqual(got, want) {
				for table := range want {
					if !reflect.DeepEqual(got[table], want[table]) {
						t.Errorf("table %s:\n got %q\nwant %q", table, got[table], want[table])
					}
				}
			}
			seen := map[string]bool{}
			for _, n := range counts {
				seen[n.Table] = true
				if n.Source != int64(len(want[n.Table])) || n.Dest != n.Source {
					t.Errorf("count %+v, want %d", n, len(want[n.Table]))
				}
			}
			for table := range want {
				if !seen[table] {
					t.Errorf("no count for table %s", table)
				}
			}
			// the store works on the copy, with fresh ids past the source's
			j, err := dst.FindJobByID(context.Background(), gone-1)
			if err != nil || j.Note == nil || !strings.Contains(*j.Note, "'quotes'") {
				t.Fatalf("job %d on the copy: %v %v", gone-1, j, err)
			}
			u, err := dst.FindUserByName(context.Background(), "alice")
			if err != nil {
				t.Fatal(err)
			}
			next := MustCreateJob(t, dst, u.ID, app.JobQueued)
			if next.ID <= gone {
				t.Errorf("new job id %d on the copy reuses the source's deleted job %d", next.ID, gone)
			}
			s, err := dst.FindSecretByRef(context.Background(), u.ID, "deploy")
			if err != nil || string(s.Data) != "\x00\x01\x02\xffx" {
				t.Errorf("secret on the copy: %v %v", s, err)
			}
		})
	}
}

// A destination with rows, or of another schema version, is refused and
// left as it was.
func TestCopyDatabaseRefuses(t *testing.T) {
	storetest.SQLiteOnly(t)
	ctx := context.Background()
	src := openKind(t, "SQLite")
	seedAll(t, src)

	t.Run("NotEmpty", func(t *testing.T) {
		dst := openKind(t, "SQLite")
		MustCreateUser(t, dst, "carol")
		_, err := store.CopyDatabase(ctx, src, dst)
		if err == nil || !strings.Contains(err.Error(), "the destination is not empty: table users has 1 rows") {
			t.Fatalf("err = %v", err)
		}
		if us, _ := dst.FindUsers(ctx); len(us) != 1 {
			t.Fatalf("destination changed: %d users", len(us))
		}
	})
	t.Run("OtherSchema", func(t *testing.T) {
		dst := openKind(t, "SQLite")
		if _, err := dst.SQL().Exec(`INSERT INTO migrations (name, applied) VALUES ('9999_future.sql', 0)`); err != nil {
			t.Fatal(err)
		}
		_, err := store.CopyDatabase(ctx, src, dst)
		if err == nil || !strings.Contains(err.Error(), "different schema versions (source 00") || !strings.Contains(err.Error(), "destination 9999_future.sql") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("FailureLeavesEmpty", func(t *testing.T) {
		// a row the destination refuses (a CHECK there that the source
		// lacks) rolls the whole copy back
		dst := openKind(t, "SQLite")
		if _, err := src.SQL().Exec(`UPDATE users SET username = 'x' || username WHERE username = 'bob'`); err != nil {
			t.Fatal(err)
		}
		defer src.SQL().Exec(`UPDATE users SET username = 'bob' WHERE username = 'xbob'`)
		if _, err := dst.SQL().Exec(`CREATE TRIGGER no_x BEFORE INSERT ON users WHEN NEW.username = 'xbob' BEGIN SELECT RAISE(ABORT, 'no xbob'); END`); err != nil {
			t.Fatal(err)
		}
		if _, err := store.CopyDatabase(ctx, src, dst); err == nil || !strings.Contains(err.Error(), "table users") {
			t.Fatalf("err = %v", err)
		}
		for _, table := range []string{"users", "jobs", "tasks"} {
			var n int
			dst.SQL().QueryRow(`SELECT count(*) FROM ` + table).Scan(&n)
			if n != 0 {
				t.Errorf("table %s has %d rows after a failed copy", table, n)
			}
		}
	})
}

// Backup on PostgreSQL writes a SQLite file holding the same rows, on
// its own (no WAL beside it) and private.
func TestBackupPostgres(t *testing.T) {
	storetest.SQLiteOnly(t)
	src := openKind(t, "PostgreSQL")
	seedAll(t, src)
	path := filepath.Join(t.TempDir(), "backup.db")
	if err := src.Backup(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %v", fi.Mode().Perm())
	}
	for _, p := range []string{path + "-wal", path + "-shm"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left beside the backup", p)
		}
	}
	raw, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	var mode string
	raw.QueryRow(`PRAGMA journal_mode`).Scan(&mode)
	raw.Close()
	if mode != "delete" {
		t.Errorf("journal_mode %q, want delete", mode)
	}
	back := MustOpenDBAt(t, path)
	defer back.Close()
	if got, want := dump(t, back), dump(t, src); !reflect.DeepEqual(got, want) {
		t.Errorf("backup differs from the database:\n got %v\nwant %v", got, want)
	}
	if err := src.Backup(context.Background(), path); err == nil {
		t.Error("a second backup overwrote the first")
	}
}
