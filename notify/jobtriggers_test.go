package notify

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"builds/app"
)

// finishUnseen finishes a running job as a process would that dies right
// after committing the final status: no event reaches the Dispatcher (and
// its start-up scan is over, so it does not see the job either).
func (e *env) finishUnseen(job *app.Job, status app.JobStatus) {
	e.t.Helper()
	e.settle()
	e.gate.muted.Store(true)
	e.finish(job, status)
	e.gate.muted.Store(false)
}

// triggersDone waits until a job's triggers are marked done.
func (e *env) triggersDone(jobID int64) {
	e.t.Helper()
	waitFor(e.t, fmt.Sprintf("triggers of job %d marked done", jobID), func() bool {
		done, err := e.db.TriggersDone(context.Background(), jobID)
		if err != nil {
			e.t.Fatal(err)
		}
		return done
	})
}

func TestTriggersResumeAfterKill(t *testing.T) {
	e := newEnv(t, testConfig(t))
	hook := newHookServer(t, e.publicKey())
	job := e.createJob(jobSpec{manifest: webhookManifest(hook.URL + "/hook")}, app.JobQueued)
	e.runJob(job, nil)
	e.finishUnseen(job, app.JobFailed)
	e.settle()
	e.close()
	if n := len(hook.requests()); n != 0 {
		t.Fatalf("%d webhook requests before the restart", n)
	}

	e.open()
	recs := e.deliveries(job.ID, 1)
	e.triggersDone(job.ID)
	e.settle()
	if r := recs[0]; r.Status != "sent" || r.Target != hook.URL+"/hook" || r.Attempts != 1 {
		t.Fatalf("record %+v", r)
	}
	reqs := hook.requests()
	if len(reqs) != 1 || !reqs[0].verified || !strings.Contains(reqs[0].body, `"status":"failed"`) {
		t.Fatalf("webhook requests %+v", reqs)
	}
	if log := e.setupLog(job.ID); !strings.Contains(log, "Processing post-failed triggers...\n") {
		t.Errorf("setup log:\n%s", log)
	}
}

func TestTriggersNotResentAfterRestart(t *testing.T) {
	e := newEnv(t, testConfig(t))
	hook := newHookServer(t, e.publicKey())
	job := e.runToEnd(jobSpec{manifest: webhookManifest(hook.URL)}, app.JobSuccess)
	e.deliveries(job.ID, 1)
	e.triggersDone(job.ID)
	for restart := range 2 {
		e.close()
		e.open()
		e.settle()
		if n := len(hook.requests()); n != 1 {
			t.Fatalf("after restart %d: %d webhook requests, want 1", restart+1, n)
		}
		if recs, err := e.db.FindTriggerDeliveries(context.Background(), job.ID); err != nil || len(recs) != 1 {
			t.Fatalf("after restart %d: %d records (%v), want 1", restart+1, len(recs), err)
		}
	}
}

// TestTriggersResumeSkipsSent stops the service while the second of two
// webhook triggers hangs: after the restart only that one is sent again.
func TestTriggersResumeSkipsSent(t *testing.T) {
	cfg := testConfig(t)
	cfg.Webhooks.Timeout = time.Minute // the hanging request lasts until Close
	e := newEnv(t, cfg, func(d *Dispatcher) { d.CloseGrace = 50 * time.Millisecond })
	first := newHookServer(t, e.publicKey())
	second := newHookServer(t, e.publicKey())
	second.hang.Store(true)
	manifest := fmt.Sprintf(`image: debian/stable
tasks:
  - build: make
triggers:
  - action: webhook
    condition: always
    url: %s
  - action: webhook
    condition: success
    url: %s
`, first.URL, second.URL)
	job := e.runToEnd(jobSpec{manifest: manifest}, app.JobSuccess)
	select {
	case <-second.arrived:
	case <-time.After(15 * time.Second):
		t.Fatal("second trigger never sent")
	}
	e.close()
	db, err := openStore(e.path)
	if err != nil {
		t.Fatal(err)
	}
	done, err := db.TriggersDone(context.Background(), job.ID)
	db.Close()
	if err != nil || done {
		t.Fatalf("interrupted triggers marked done = %v (%v)", done, err)
	}
	second.hang.Store(false)

	e.open()
	e.triggersDone(job.ID)
	e.settle()
	if n := len(first.requests()); n != 1 {
		t.Errorf("first webhook received %d requests, want 1", n)
	}
	if reqs := second.requests(); len(reqs) != 1 || !reqs[0].verified {
		t.Errorf("second webhook requests %+v", reqs)
	}
	recs, err := e.db.FindTriggerDeliveries(context.Background(), job.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%s:%s", strings.TrimPrefix(r.Target, "http://"), r.Status))
	}
	want := []string{
		strings.TrimPrefix(first.URL, "http://") + ":sent",
		strings.TrimPrefix(second.URL, "http://") + ":failed", // cut short by Close
		strings.TrimPrefix(second.URL, "http://") + ":sent",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("records %v, want %v", got, want)
	}
	if log := e.setupLog(job.ID); !strings.Contains(log, "Skipping trigger, already sent to "+first.URL+" before a restart\n") {
		t.Errorf("setup log:\n%s", log)
	}
}

// TestTriggersLiveEventAndScan hands the Dispatcher, as it starts, the
// event of a job its start-up scan also finds (as when RecoverJobs fails
// jobs at start): the triggers run once.
func TestTriggersLiveEventAndScan(t *testing.T) {
	e := newEnv(t, testConfig(t))
	hook := newHookServer(t, e.publicKey())
	var jobs []*app.Job
	for range 5 {
		job := e.createJob(jobSpec{manifest: webhookManifest(hook.URL)}, app.JobQueued)
		e.runJob(job, nil)
		e.finishUnseen(job, app.JobSuccess)
		final, err := e.db.FindJobByID(context.Background(), job.ID)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, final)
	}
	e.close()
	e.open()
	for i := len(jobs) - 1; i >= 0; i-- {
		e.d.JobChanged(context.Background(), app.EventJobUpdated, jobs[i])
	}
	for _, j := range jobs {
		e.triggersDone(j.ID)
	}
	e.settle()
	if n := len(hook.requests()); n != len(jobs) {
		t.Fatalf("%d webhook requests for %d jobs", n, len(jobs))
	}
}

func TestGroupTriggersResumeAfterKill(t *testing.T) {
	g := newGroupEnv(t)
	grp, jobs := g.createGroup("killed", 2)
	for _, j := range jobs {
		g.runJob(j, nil)
	}
	g.finish(jobs[0], app.JobSuccess)
	g.finishUnseen(jobs[1], app.JobSuccess)
	g.settle()
	g.close()
	if len(g.groupHooks("killed")) != 0 || len(g.groupMail("killed")) != 0 {
		t.Fatal("group triggers ran before the last job's event")
	}

	g.open()
	g.triggersDone(jobs[1].ID)
	g.settle()
	if hooks := g.groupHooks("killed"); len(hooks) != 1 || !hooks[0].verified {
		t.Errorf("group webhooks %+v", hooks)
	}
	if n := len(g.groupMail("killed")); n != 2 {
		t.Errorf("%d group emails, want 2 (always, success)", n)
	}
	if gr, err := g.db.FindGroupByID(context.Background(), grp.ID); err != nil || !gr.Fired {
		t.Errorf("group not marked fired (%v)", err)
	}
	// Once more: nothing is sent again.
	g.close()
	g.open()
	g.settle()
	if n := len(g.groupHooks("killed")); n != 1 {
		t.Errorf("after a second restart: %d group webhooks", n)
	}
}

// TestTriggersUpgrade opens a database written before trigger processing
// was recorded: jobs that had finished are not sent again, a job that was
// running then and finishes unseen afterwards is.
func TestTriggersUpgrade(t *testing.T) {
	e := newEnv(t, testConfig(t))
	hook := newHookServer(t, e.publicKey())
	e.settle()
	old := e.createJob(jobSpec{manifest: webhookManifest(hook.URL + "/old")}, app.JobFailed)
	running := e.createJob(jobSpec{manifest: webhookManifest(hook.URL + "/running")}, app.JobQueued)
	e.runJob(running, nil)
	e.close()

	// Undo migration 0003, as if the previous version wrote the database.
	raw, err := sql.Open("sqlite", e.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`DROP INDEX jobs_triggers_pending`,
		`ALTER TABLE jobs DROP COLUMN triggers_done`,
		`DELETE FROM migrations WHERE name = '0003_trigger_state.sql'`,
	} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	raw.Close()

	e.open()
	e.finishUnseen(running, app.JobSuccess)
	e.close()
	e.open()
	e.triggersDone(running.ID)
	e.settle()
	reqs := hook.requests()
	if len(reqs) != 1 || !strings.Contains(reqs[0].body, fmt.Sprintf(`"id":%d,`, running.ID)) {
		t.Fatalf("webhook requests %+v, want one for job %d", reqs, running.ID)
	}
	if recs, err := e.db.FindTriggerDeliveries(context.Background(), old.ID); err != nil || len(recs) != 0 {
		t.Fatalf("old job's trigger records %+v (%v)", recs, err)
	}
}
