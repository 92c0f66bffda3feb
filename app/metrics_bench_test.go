package app_test

import (
	"context"
	"database/sql"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builds/metrics"
)

// BenchmarkMetricsScrape measures one Prometheus scrape of /metrics over
// HTTP (metrics.Server on 127.0.0.1, the handler `builds serve` uses) on
// a 100 000-job database with 100 jobs queued, against a baseline of one
// full count of the jobs table (ratio scrape/count). Each scrape counts
// the jobs by status and finds the oldest queued one (store.CountJobs),
// and gathers the Go and process collectors; "jobstats" is the database
// part alone.
func BenchmarkMetricsScrape(b *testing.B) {
	e := benchEnv(b)
	seedJobs(b, e, 100_000, 0, 360*day, 0)
	raw, err := sql.Open("sqlite", filepath.Join(e.svc.Config.Builds.DataDir, "builds.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	now := time.Now().Unix()
	for i := range 100 {
		if _, err := raw.Exec(`INSERT INTO jobs (created, updated, owner_id, manifest, visibility, image, status)
			VALUES (?, ?, ?, 'image: debian/stable', 'PUBLIC', 'debian/stable', 'queued')`, now-int64(100-i), now, e.alice.ID); err != nil {
			b.Fatal(err)
		}
	}

	m := metrics.New(e.svc)
	srv := &metrics.Server{Addr: "127.0.0.1:0", Handler: m.Handler()}
	if err := srv.Open(); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	url := srv.URL() + "/metrics"

	var countNS float64
	b.Run("count", func(b *testing.B) {
		for b.Loop() {
			var n int
			if err := raw.QueryRow(`SELECT count(*) FROM jobs`).Scan(&n); err != nil || n < 100_000 {
				b.Fatal(n, err)
			}
		}
		countNS = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("jobstats", func(b *testing.B) {
		for b.Loop() {
			st, err := e.svc.JobStats(context.Background())
			if err != nil || st.ByStatus["success"] != 100_000 {
				b.Fatal(st, err)
			}
		}
		per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		if countNS > 0 {
			b.ReportMetric(per/countNS, "jobstats/count")
		}
	})
	b.Run("scrape", func(b *testing.B) {
		var size int
		for b.Loop() {
			resp, err := http.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), `builds_jobs{status="success"} 100000`) ||
				!strings.Contains(string(body), "builds_queue_length 100") {
				b.Fatalf("scrape: %d %v\n%s", resp.StatusCode, err, body)
			}
			size = len(body)
		}
		per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(per/1e6, "ms/scrape")
		b.ReportMetric(float64(size), "bytes/scrape")
		if countNS > 0 {
			b.ReportMetric(per/countNS, "scrape/count")
		}
	})
}
