package runner

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"builds/app"
	"builds/store/storetest"
)

// BenchmarkRemoteClaim measures the server handing jobs to 10 idle
// remote runners (one slot each, in-process test guests) over HTTP on
// 127.0.0.1, on SQLite and (with BUILDS_TEST_POSTGRES) on PostgreSQL:
//   - claim: from Submit's return to the job running on a runner, one
//     job at a time (its long poll wakes, it claims, it reports running);
//   - burst: 100 jobs submitted at once, until all are final, as jobs
//     handed out and run per minute.
func BenchmarkRemoteClaim(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchRemoteClaim(b, "") })
	if os.Getenv(storetest.EnvPostgres) == "" {
		b.Logf("%s is not set: no PostgreSQL benchmark", storetest.EnvPostgres)
		return
	}
	b.Run("postgres", func(b *testing.B) { benchRemoteClaim(b, storetest.PostgresSource(b)) })
}

func benchRemoteClaim(b *testing.B, source string) {
	const manifest = "image: debian/stable\ntasks:\n  - t: \"true\"\n"
	e := newRemoteEnvOn(b, source)
	e.timeout = 5 * time.Minute
	for i := range 10 {
		e.runner(fmt.Sprintf("r%d", i), 1)
	}
	ctx := context.Background()
	status := func(id int64) app.JobStatus {
		j, err := e.db.FindJobByID(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		return j.Status
	}
	e.waitFinal(e.submit(manifest).ID) // every runner polls by now
	for b.Loop() {
		var claims []time.Duration
		for range 20 {
			time.Sleep(50 * time.Millisecond) // the runner that ran the last job polls again
			job := e.submit(manifest)
			start := time.Now()
			for status(job.ID) == app.JobQueued || status(job.ID) == app.JobPending {
				if time.Since(start) > time.Minute {
					b.Fatalf("job %d not claimed in a minute", job.ID)
				}
				time.Sleep(time.Millisecond)
			}
			claims = append(claims, time.Since(start))
			e.waitFinal(job.ID)
		}
		slices.Sort(claims)
		b.ReportMetric(float64(claims[len(claims)/2].Microseconds())/1000, "ms/claim(median)")
		b.ReportMetric(float64(claims[len(claims)*9/10].Microseconds())/1000, "ms/claim(p90)")

		start := time.Now()
		var jobs []*app.Job
		for range 100 {
			jobs = append(jobs, e.submit(manifest))
		}
		for _, j := range jobs {
			if st := e.waitFinal(j.ID).Status; st != app.JobSuccess {
				b.Fatalf("job %d: %s", j.ID, st)
			}
		}
		b.ReportMetric(100/time.Since(start).Minutes(), "jobs/min")
	}
}
