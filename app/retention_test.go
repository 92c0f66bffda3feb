package app_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builds/app"
)

const day = 24 * time.Hour

// oldJob is a job of alice's that ran and ended finishedAgo ago (status
// final) or is still running (finishedAgo < 0), with a setup log, a task
// log and one artifact stored at artifactAgo.
type oldJob struct {
	job      *app.Job
	artifact *app.Artifact
}

func makeOldJob(t *testing.T, e *testEnv, finishedAgo, artifactAgo time.Duration) oldJob {
	t.Helper()
	ctx := context.Background()
	job, err := e.svc.Submit(e.aliceCtx, app.SubmitInput{Manifest: okManifest})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	started := now.Add(-finishedAgo - time.Minute)
	if finishedAgo < 0 {
		started = now.Add(-400 * day)
	}
	running, runner := app.JobRunning, "local"
	if _, err := e.db.TransitionJob(ctx, job.ID, []app.JobStatus{app.JobQueued}, app.JobUpdate{Status: &running, Runner: &runner, Started: &started}); err != nil {
		t.Fatal(err)
	}
	setup, err := e.svc.OpenLog(job.ID, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(setup, "setup of job %d\n", job.ID)
	tl, err := e.svc.OpenLog(job.ID, "build", nil)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(tl, "%s\n", strings.Repeat("build output ", 1000))
	tl.Close()
	e.db.Now = func() time.Time { return now.Add(-artifactAgo) }
	w, err := e.svc.NewArtifact(ctx, job.ID, "/home/build/out.tar")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(strings.Repeat("a", 64<<10)))
	a, err := w.Commit(ctx)
	e.db.Now = time.Now
	if err != nil {
		t.Fatal(err)
	}
	if finishedAgo >= 0 {
		setup.Close()
		e.svc.Logs.Forget(job.ID, "")
		st, fin := app.JobSuccess, now.Add(-finishedAgo)
		if _, err := e.db.TransitionJob(ctx, job.ID, []app.JobStatus{app.JobRunning}, app.JobUpdate{Status: &st, Finished: &fin}); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Cleanup(func() { setup.Close() })
	}
	return oldJob{job: job, artifact: a}
}

func (e *testEnv) readLog(t *testing.T, id int64, task string) string {
	t.Helper()
	b, err := os.ReadFile(e.svc.LogPath(id, task))
	if err != nil {
		t.Fatalf("log of job %d %q: %v", id, task, err)
	}
	return string(b)
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

// TestPrune: artifacts, logs and jobs go at their ages, oldest first, in
// batches; running jobs and jobs whose setup log is still open (a failed
// job's kept VM) are never touched; a second pass finds nothing.
func TestPrune(t *testing.T) {
	e := newEnv(t)
	rc := &e.svc.Config.Retention
	rc.Artifacts, rc.Logs, rc.Jobs = 90*day, 30*day, 365*day
	ctx := context.Background()

	gone := makeOldJob(t, e, 400*day, 400*day)                     // whole job deleted
	noArt := makeOldJob(t, e, 100*day, 100*day)                    // artifact and logs pruned
	logsOnly := makeOldJob(t, e, 40*day, 40*day)                   // logs pruned, artifact kept
	fresh := makeOldJob(t, e, day, day)                            // all kept
	running := makeOldJob(t, e, -1, 400*day)                       // running: untouched
	kept := makeOldJob(t, e, 100*day, 100*day)                     // final, but its VM is kept: untouched
	if _, err := e.svc.OpenLog(kept.job.ID, "", nil); err != nil { // as the runner's standby holds it
		t.Fatal(err)
	}
	// enough jobs past the log age for several batches
	var many []oldJob
	for range 230 {
		many = append(many, makeLogJob(t, e, 50*day))
	}

	res, err := e.svc.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Jobs != 1 || res.Artifacts != 1 || res.Logs != 2+len(many) || res.Bytes <= 0 {
		t.Errorf("result = %+v", res)
	}
	if _, err := e.db.FindJobByID(ctx, gone.job.ID); app.ErrorCode(err) != app.ENOTFOUND {
		t.Errorf("old job still there: %v", err)
	}
	if exists(filepath.Join(e.svc.Config.Builds.DataDir, "logs", fmt.Sprint(gone.job.ID))) || exists(e.svc.ArtifactPath(gone.artifact)) {
		t.Error("deleted job's files left")
	}
	arts, _ := e.db.FindArtifacts(ctx, noArt.job.ID)
	if len(arts) != 1 || arts[0].Pruned == nil || exists(e.svc.ArtifactPath(noArt.artifact)) {
		t.Errorf("artifact past 90 days: %+v", arts[0])
	}
	for _, j := range []oldJob{noArt, logsOnly, many[0], many[len(many)-1]} {
		for _, task := range []string{"", "build"} {
			if got := e.readLog(t, j.job.ID, task); !strings.Contains(got, "This log was pruned on") || !strings.Contains(got, "[retention] logs = 30d") {
				t.Errorf("job %d log %q = %.100q", j.job.ID, task, got)
			}
		}
	}
	if arts, _ := e.db.FindArtifacts(ctx, logsOnly.job.ID); arts[0].Pruned != nil || !exists(e.svc.ArtifactPath(logsOnly.artifact)) {
		t.Error("artifact younger than 90 days pruned")
	}
	for _, j := range []oldJob{fresh, running, kept} {
		if got := e.readLog(t, j.job.ID, "build"); strings.Contains(got, "pruned") {
			t.Errorf("job %d: log pruned", j.job.ID)
		}
		if arts, _ := e.db.FindArtifacts(ctx, j.job.ID); arts[0].Pruned != nil || !exists(e.svc.ArtifactPath(j.artifact)) {
			t.Errorf("job %d: artifact pruned", j.job.ID)
		}
	}
	if res, err := e.svc.Prune(ctx); err != nil || res != (app.PruneResult{}) {
		t.Errorf("second pass: %+v %v", res, err)
	}
	t.Run("Off", func(t *testing.T) {
		e := newEnv(t)
		e.svc.Config.Retention = app.RetentionConfig{Interval: time.Hour}
		j := makeOldJob(t, e, 4000*day, 4000*day)
		if res, err := e.svc.Prune(ctx); err != nil || res != (app.PruneResult{}) {
			t.Errorf("with ages 0: %+v %v", res, err)
		}
		if !exists(e.svc.ArtifactPath(j.artifact)) {
			t.Error("artifact pruned with retention off")
		}
	})
}

// makeLogJob is a final job with a setup log only, finished ago.
func makeLogJob(t *testing.T, e *testEnv, ago time.Duration) oldJob {
	t.Helper()
	ctx := context.Background()
	job, err := e.svc.Submit(e.aliceCtx, app.SubmitInput{Manifest: okManifest})
	if err != nil {
		t.Fatal(err)
	}
	e.svc.SetupLogf(job.ID, "a line")
	os.MkdirAll(filepath.Dir(e.svc.LogPath(job.ID, "build")), 0o700)
	os.WriteFile(e.svc.LogPath(job.ID, "build"), []byte("task\n"), 0o600)
	st, fin := app.JobCancelled, time.Now().Add(-ago)
	if _, err := e.db.TransitionJob(ctx, job.ID, []app.JobStatus{app.JobQueued}, app.JobUpdate{Status: &st, Finished: &fin}); err != nil {
		t.Fatal(err)
	}
	return oldJob{job: job}
}

// TestPruneMaxSize: over [retention] max-size, the oldest final jobs'
// artifacts and logs go until the data dir fits; the newest stay.
func TestPruneMaxSize(t *testing.T) {
	e := newEnv(t)
	e.svc.Config.Retention = app.RetentionConfig{Interval: time.Hour}
	ctx := context.Background()
	var jobs []oldJob
	for i := range 6 {
		jobs = append(jobs, makeOldJob(t, e, time.Duration(10-i)*day, time.Duration(10-i)*day))
	}
	admin := adminCtx(t, e)
	before, err := e.svc.DiskUsage(admin)
	if err != nil {
		t.Fatal(err)
	}
	if before.Artifacts < 6*64<<10 || before.Logs <= 0 || before.Database <= 0 || before.Total < before.Artifacts+before.Logs+before.Database {
		t.Fatalf("usage = %+v", before)
	}
	e.svc.Config.Retention.MaxSize = before.Total - 150<<10
	res, err := e.svc.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.MaxSizeJobs < 2 || res.MaxSizeJobs > 4 {
		t.Errorf("result = %+v", res)
	}
	arts, _ := e.db.FindArtifacts(ctx, jobs[0].job.ID)
	if arts[0].Pruned == nil || !strings.Contains(e.readLog(t, jobs[0].job.ID, "build"), "[retention] max-size =") {
		t.Error("oldest job not pruned")
	}
	if arts, _ := e.db.FindArtifacts(ctx, jobs[5].job.ID); arts[0].Pruned != nil {
		t.Error("newest job pruned")
	}
	e.svc.Config.Retention.MaxSize = 1 // less than the database alone: prunes all it can, then stops
	if _, err := e.svc.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if arts, _ := e.db.FindArtifacts(ctx, j.job.ID); arts[0].Pruned == nil {
			t.Errorf("job %d kept under max-size 1", j.job.ID)
		}
	}
}

// adminCtx returns a context acting as a new administrator.
func adminCtx(t *testing.T, e *testEnv) context.Context {
	t.Helper()
	u, err := e.svc.CreateUser(context.Background(), "root", "root@example.org", true, "")
	if err != nil {
		t.Fatal(err)
	}
	return tokenCtx(t, e.svc, u, "")
}
