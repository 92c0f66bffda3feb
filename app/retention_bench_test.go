package app_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"builds/app"
	"builds/store"
)

// seedJobs inserts n final jobs of alice's, finished one every span/n
// up to minAge ago, in one transaction (raw SQL: 100 000 jobs through the
// Service would take minutes). setPruned marks the logs of those past
// logsAge pruned, as a pruner that ran before would have.
func seedJobs(tb testing.TB, e *testEnv, n int, minAge, span, logsAge time.Duration) {
	tb.Helper()
	raw, err := sql.Open("sqlite", filepath.Join(e.svc.Config.Builds.DataDir, "builds.db"))
	if err != nil {
		tb.Fatal(err)
	}
	defer raw.Close()
	tx, err := raw.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	st, err := tx.Prepare(`INSERT INTO jobs (created, updated, owner_id, manifest, visibility, image, runner, status, started, finished, logs_pruned)
		VALUES (?, ?, ?, 'image: debian/stable', 'PUBLIC', 'debian/stable', 'local', 'success', ?, ?, ?)`)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now().Unix()
	for i := range n {
		fin := now - int64(minAge.Seconds()) - int64(span.Seconds())*int64(n-i)/int64(n)
		var pruned any
		if logsAge > 0 && now-fin > int64(logsAge.Seconds()) {
			pruned = now
		}
		if _, err := st.Exec(fin-60, fin, e.alice.ID, fin-30, fin, pruned); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
}

// benchEnv is a Service on a real SQLite file with the user alice.
func benchEnv(b *testing.B) *testEnv {
	b.Helper()
	dir := b.TempDir()
	db, err := store.Open(context.Background(), filepath.Join(dir, "builds.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	cfg := app.DefaultConfig()
	cfg.Builds.DataDir = dir
	svc, err := app.NewService(db, cfg, make([]byte, 32), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	alice, err := svc.CreateUser(context.Background(), "alice", "alice@example.org", false, "")
	if err != nil {
		b.Fatal(err)
	}
	return &testEnv{svc: svc, db: db, alice: alice}
}

// BenchmarkPrune measures the pruner on a 100 000-job database:
//   - idle: a pass with nothing due (the hourly steady state: older logs
//     already pruned), against a baseline of one full count of the jobs
//     table (ratio idle/count);
//   - logs: pruning the logs of 1 000 jobs (setup and task log files),
//     per job, against a baseline of removing the same files directly
//     (ratio prune/unlink).
func BenchmarkPrune(b *testing.B) {
	e := benchEnv(b)
	rc := &e.svc.Config.Retention
	rc.Artifacts, rc.Logs, rc.Jobs = 90*day, 30*day, 365*day
	seedJobs(b, e, 100_000, 0, 360*day, 30*day)
	ctx := context.Background()
	raw, _ := sql.Open("sqlite", filepath.Join(e.svc.Config.Builds.DataDir, "builds.db"))
	defer raw.Close()

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
	b.Run("idle", func(b *testing.B) {
		for b.Loop() {
			res, err := e.svc.Prune(ctx)
			if err != nil || res != (app.PruneResult{}) {
				b.Fatal(res, err)
			}
		}
		per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(per/1e6, "ms/pass")
		if countNS > 0 {
			b.ReportMetric(per/countNS, "idle/count")
		}
	})

	const batch = 1000
	mkLogs := func(ids []int64) {
		for _, id := range ids {
			for _, task := range []string{"", "build"} {
				p := e.svc.LogPath(id, task)
				os.MkdirAll(filepath.Dir(p), 0o700)
				os.WriteFile(p, make([]byte, 8<<10), 0o600)
			}
		}
	}
	var unlinkNS float64
	b.Run("unlink", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			ids := make([]int64, batch)
			for i := range ids {
				ids[i] = int64(10_000_000 + i)
			}
			mkLogs(ids)
			b.StartTimer()
			for _, id := range ids {
				os.RemoveAll(filepath.Join(e.svc.Config.Builds.DataDir, "logs", fmt.Sprint(id)))
			}
		}
		unlinkNS = float64(b.Elapsed().Nanoseconds()) / float64(b.N*batch)
	})
	b.Run("logs", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			// batch jobs just past the log age, with their files
			seedJobs(b, e, batch, 31*day, time.Hour, 0)
			ids, err := e.db.ExpiredLogs(ctx, time.Now().Add(-30*day), batch)
			if err != nil || len(ids) != batch {
				b.Fatal(len(ids), err)
			}
			mkLogs(ids)
			b.StartTimer()
			res, err := e.svc.Prune(ctx)
			if err != nil || res.Logs != batch {
				b.Fatal(res, err)
			}
		}
		per := float64(b.Elapsed().Nanoseconds()) / float64(b.N*batch)
		b.ReportMetric(per/1e3, "µs/job")
		if unlinkNS > 0 {
			b.ReportMetric(per/unlinkNS, "prune/unlink")
		}
	})
}
