package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"builds/app"
	"builds/store"
	"builds/store/storetest"
)

// BenchmarkFindJobs100k measures listing one owner's jobs in a database of
// 100 000 jobs (one task each, two owners): the newest page, a page deep in
// the list, and the same rows read by a hand-written query for comparison,
// on SQLite and (with BUILDS_TEST_POSTGRES) on PostgreSQL, which gets the
// same rows by CopyDatabase from the seeded SQLite file.
func BenchmarkFindJobs100k(b *testing.B) {
	db := MustOpenDBAt(b, filepath.Join(b.TempDir(), "builds.db"))
	defer MustCloseDB(b, db)
	alice := MustCreateUser(b, db, "alice")
	bob := MustCreateUser(b, db, "bob")
	start := time.Now()
	seedJobs(b, db, 100_000, alice.ID, bob.ID)
	b.Logf("seeded 100000 jobs and tasks in %v", time.Since(start))
	b.Run("sqlite", func(b *testing.B) { benchFindJobs(b, db, alice.ID) })
	if os.Getenv(storetest.EnvPostgres) == "" {
		b.Logf("%s is not set: no PostgreSQL benchmark", storetest.EnvPostgres)
		return
	}
	pg := MustOpenDBAt(b, storetest.PostgresSource(b))
	defer MustCloseDB(b, pg)
	start = time.Now()
	if _, err := store.CopyDatabase(context.Background(), db, pg); err != nil {
		b.Fatal(err)
	}
	b.Logf("copied 100000 jobs and tasks to PostgreSQL in %v", time.Since(start))
	if _, err := pg.SQL().Exec(`ANALYZE`); err != nil {
		b.Fatal(err)
	}
	b.Run("postgres", func(b *testing.B) { benchFindJobs(b, pg, alice.ID) })
}

func benchFindJobs(b *testing.B, db *store.DB, aliceID int64) {
	ctx := context.Background()
	alice := &app.User{ID: aliceID}
	// Alice's 40 000th newest job starts the deep page.
	var deep int64
	if err := db.SQL().QueryRow(placeholders(db, `SELECT id FROM jobs WHERE owner_id = ? ORDER BY id DESC LIMIT 1 OFFSET 40000`),
		alice.ID).Scan(&deep); err != nil {
		b.Fatal(err)
	}
	pages := []struct {
		name   string
		before *int64
	}{{"newest", nil}, {"deep", &deep}}

	for _, p := range pages {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				jobs, err := db.FindJobs(ctx, app.JobFilter{OwnerID: &alice.ID, BeforeID: p.before, Limit: 26})
				if err != nil {
					b.Fatal(err)
				} else if len(jobs) != 26 {
					b.Fatalf("got %d jobs", len(jobs))
				}
			}
		})
	}
	for _, p := range pages {
		b.Run("raw/"+p.name, func(b *testing.B) {
			before := int64(1) << 62
			if p.before != nil {
				before = *p.before
			}
			for b.Loop() {
				if n := rawFindJobs(b, db, alice.ID, before); n != 26 {
					b.Fatalf("got %d jobs", n)
				}
			}
		})
	}
	b.Run("search", func(b *testing.B) {
		// Free-text search cannot use an index: a scan of alice's jobs.
		f := app.JobFilter{OwnerID: &alice.ID, Limit: 26, Search: []app.SearchTerm{{Value: "release 7"}}}
		for b.Loop() {
			if _, err := db.FindJobs(ctx, f); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// seedJobs inserts n jobs, alternating between the owners, with one task
// each, in one transaction of raw SQL.
func seedJobs(tb testing.TB, db *store.DB, n int, owners ...int64) {
	tb.Helper()
	tx, err := db.SQL().Begin()
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	insJob, err := tx.Prepare(`INSERT INTO jobs (created, updated, owner_id, manifest, note, tags, visibility, image, status, secrets)
		VALUES (?, ?, ?, ?, ?, ?, 'UNLISTED', 'alpine/latest', 'success', 1)`)
	if err != nil {
		tb.Fatal(err)
	}
	insTask, err := tx.Prepare(`INSERT INTO tasks (created, updated, job_id, seq, name, status) VALUES (?, ?, ?, 0, 'build', 'success')`)
	if err != nil {
		tb.Fatal(err)
	}
	manifest := "image: alpine/latest\npackages:\n  - go\nsources:\n  - https://git.example.org/~alice/project\ntasks:\n  - build: |\n      cd project\n      go test ./...\n"
	ts := nowSec.Unix()
	for i := range n {
		res, err := insJob.Exec(ts, ts, owners[i%len(owners)], manifest, fmt.Sprintf("release %d", i), "ci/main")
		if err != nil {
			tb.Fatal(err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := insTask.Exec(ts, ts, id); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
}

// rawFindJobs reads the same page as FindJobs with a fixed query and plain
// scans, returning the number of rows.
func rawFindJobs(tb testing.TB, db *store.DB, owner, before int64) int {
	rows, err := db.SQL().Query(placeholders(db, `SELECT id, created, updated, owner_id, group_id, manifest, note, tags, visibility, image,
		runner, status, secrets, started, finished, deadline, reason
		FROM jobs WHERE owner_id = ? AND id <= ? ORDER BY id DESC LIMIT 26`), owner, before)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var (
			j                       app.Job
			created, updated        int64
			group, started, fin, dl *int64
			note, runner            *string
		)
		if err := rows.Scan(&j.ID, &created, &updated, &j.OwnerID, &group, &j.Manifest, &note, &j.Tags, &j.Visibility,
			&j.Image, &runner, &j.Status, &j.Secrets, &started, &fin, &dl, &j.Reason); err != nil {
			tb.Fatal(err)
		}
		j.Created, j.Updated, j.GroupID, j.Note, j.Runner = time.Unix(created, 0).UTC(), time.Unix(updated, 0).UTC(), group, note, runner
		n++
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return n
}

// placeholders numbers a query's ? for PostgreSQL.
func placeholders(db *store.DB, q string) string {
	if !db.Postgres() {
		return q
	}
	for n := 1; strings.Contains(q, "?"); n++ {
		q = strings.Replace(q, "?", "$"+strconv.Itoa(n), 1)
	}
	return q
}
