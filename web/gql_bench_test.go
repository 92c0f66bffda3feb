package web

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"builds/app"
	"builds/store/storetest"
)

// BenchmarkJobsQuery measures the GraphQL `jobs` query (hut's "builds
// list": 25 jobs with their tasks, over real HTTP with a real token) on a
// database of 100 000 jobs, next to the same work at lower layers: the
// Service calls, and hand-written SQL reading the same rows.
//
//	go test ./web -run '^$' -bench BenchmarkJobsQuery -benchtime 200x
func BenchmarkJobsQuery(b *testing.B) {
	e := newAPIEnv(b)
	alice, tok := e.user("alice")
	bob, _ := e.user("bob")
	start := time.Now()
	raw := openRaw(b, e)
	seedBenchJobs(b, raw, 100_000, alice.ID, bob.ID)
	b.Logf("seeded 100000 jobs with 2 tasks each in %v", time.Since(start))

	first := e.mustQuery(tok, hutJobs, nil)
	cursor := get(first, "jobs", "cursor")
	if n := len(get(first, "jobs", "results").([]any)); n != 25 || cursor == nil {
		b.Fatalf("first page has %d jobs", n)
	}
	var perOp struct{ graphql time.Duration }
	// The client decodes the answer as hut does (gqlclient into generated
	// types), not into maps as the tests' helpers do.
	b.Run("graphql", func(b *testing.B) {
		for b.Loop() {
			if p := e.hutJobsPage(tok, nil); len(p.Data.Jobs.Results) != 25 {
				b.Fatal("short page")
			}
		}
		perOp.graphql = b.Elapsed() / time.Duration(b.N)
	})
	b.Run("graphql/page2", func(b *testing.B) {
		vars := map[string]any{"cursor": cursor}
		for b.Loop() {
			if p := e.hutJobsPage(tok, vars); len(p.Data.Jobs.Results) != 25 {
				b.Fatal("short page")
			}
		}
	})
	ctx := as(alice)
	// The same query without HTTP and token lookup: what the executor and
	// the Service cost.
	b.Run("execute", func(b *testing.B) {
		for b.Loop() {
			resp, rerr := e.srv.executeGraphQL(ctx, &gqlRequest{Query: hutJobs}, execOptions{})
			if rerr != nil || len(resp.Errors) > 0 {
				b.Fatal(rerr, resp.Errors)
			}
		}
	})
	// The Service calls the query makes, reading the fields it shows.
	b.Run("service", func(b *testing.B) {
		jobFields := app.JobFieldStatus | app.JobFieldNote | app.JobFieldTags
		taskFields := app.TaskFieldName | app.TaskFieldStatus
		for b.Loop() {
			list, err := e.svc.UserJobs(ctx, alice.ID, nil, app.JobFilter{Fields: &jobFields})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := e.svc.TasksForJobs(ctx, list.Jobs, &taskFields); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sql", func(b *testing.B) {
		for b.Loop() {
			if n := rawJobsPage(b, raw, alice.ID); n != 50 {
				b.Fatalf("read %d tasks", n)
			}
		}
		// the ratio the issue tracks, from this run's figures
		b.ReportMetric(float64(perOp.graphql)/float64(b.Elapsed()/time.Duration(b.N)), "graphql/sql")
	})
}

// hutJobsPage is the answer to hutJobs decoded into the types hut's
// generated client code has for it.
type hutJobsPage struct {
	Data struct {
		Jobs struct {
			Results []struct {
				ID     int32     `json:"id"`
				Status string    `json:"status"`
				Note   *string   `json:"note"`
				Tags   []*string `json:"tags"`
				Tasks  []struct {
					Name   string `json:"name"`
					Status string `json:"status"`
				} `json:"tasks"`
			} `json:"results"`
			Cursor *string `json:"cursor"`
		} `json:"jobs"`
	} `json:"data"`
	Errors []struct {
		Message string `json:"message"`
	} `json:"errors"`
}

// hutJobsPage posts hutJobs as hut does and decodes the answer.
func (e *apiEnv) hutJobsPage(token string, vars map[string]any) *hutJobsPage {
	e.t.Helper()
	body, err := json.Marshal(map[string]any{"query": hutJobs, "variables": vars})
	if err != nil {
		e.t.Fatal(err)
	}
	req, err := http.NewRequest("POST", e.url+"/query", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	var p hutJobsPage
	if err := json.Unmarshal(raw, &p); err != nil {
		e.t.Fatalf("decode %s: %v", raw, err)
	}
	if resp.StatusCode != http.StatusOK || len(p.Errors) > 0 {
		e.t.Fatalf("status %d: %s", resp.StatusCode, raw)
	}
	return &p
}

// openRaw opens a second connection pool on the test database, which
// must be SQLite (its statements are SQLite's, with ? placeholders).
func openRaw(tb testing.TB, e *apiEnv) *sql.DB {
	tb.Helper()
	storetest.SQLiteOnly(tb)
	db, err := sql.Open("sqlite", "file:"+e.source+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// seedBenchJobs inserts n finished jobs, alternating owners, with two
// tasks each, in one transaction.
func seedBenchJobs(tb testing.TB, db *sql.DB, n int, owners ...int64) {
	tb.Helper()
	tx, err := db.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	insJob, err := tx.Prepare(`INSERT INTO jobs (created, updated, owner_id, manifest, note, tags, visibility, image, runner, status, secrets)
		VALUES (?, ?, ?, ?, ?, 'ci/main', 'PUBLIC', 'alpine/latest', 'runner.example.org', 'success', 0)`)
	if err != nil {
		tb.Fatal(err)
	}
	insTask, err := tx.Prepare(`INSERT INTO tasks (created, updated, job_id, seq, name, status) VALUES (?, ?, ?, ?, ?, 'success')`)
	if err != nil {
		tb.Fatal(err)
	}
	ts := time.Now().Unix()
	for i := range n {
		res, err := insJob.Exec(ts, ts, owners[i%len(owners)], testManifest, fmt.Sprintf("release %d", i))
		if err != nil {
			tb.Fatal(err)
		}
		id, _ := res.LastInsertId()
		for seq, name := range []string{"build", "test"} {
			if _, err := insTask.Exec(ts, ts, id, seq, name); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
}

// rawJobsPage reads what the jobs query shows, with two fixed queries:
// the newest 26 jobs of owner, then the tasks of the first 25.
func rawJobsPage(tb testing.TB, db *sql.DB, owner int64) int {
	rows, err := db.Query(`SELECT id, status, note, tags FROM jobs WHERE owner_id = ? ORDER BY id DESC LIMIT 26`, owner)
	if err != nil {
		tb.Fatal(err)
	}
	var ids []any
	for rows.Next() {
		var (
			id           int64
			status, tags string
			note         sql.NullString
		)
		if err := rows.Scan(&id, &status, &note, &tags); err != nil {
			tb.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	ids = ids[:25]
	rows, err = db.Query(`SELECT job_id, name, status FROM tasks WHERE job_id IN (?`+strings.Repeat(",?", len(ids)-1)+`) ORDER BY job_id, seq`, ids...)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var (
			job          int64
			name, status string
		)
		if err := rows.Scan(&job, &name, &status); err != nil {
			tb.Fatal(err)
		}
		n++
	}
	return n
}
