package notify

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"builds/app"
)

// permutations returns every order of 0..n-1.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

// groupEnv is an env with a mail server and webhook receiver for groups.
type groupEnv struct {
	*env
	ms   *mailServer
	hook *hookServer
}

func newGroupEnv(t *testing.T) *groupEnv {
	ms := newMailServer(t, "none", nil)
	cfg := testConfig(t)
	cfg.Mail.SMTPHost, cfg.Mail.SMTPPort, cfg.Mail.SMTPEncryption = "127.0.0.1", ms.port, "none"
	e := newEnv(t, cfg)
	return &groupEnv{env: e, ms: ms, hook: newHookServer(t, e.publicKey())}
}

const groupJobManifest = "image: debian/stable\ntasks:\n  - build: make\n"

// createGroup makes n pending jobs tagged <name>/<i> and groups them with
// one trigger per condition (emails to <cond>-<name>@example.org) and an
// always webhook to the receiver with ?group=<name>.
func (g *groupEnv) createGroup(name string, n int) (*app.JobGroup, []*app.Job) {
	g.t.Helper()
	var jobs []*app.Job
	var ids []int64
	for i := range n {
		j := g.createJob(jobSpec{manifest: groupJobManifest, tags: fmt.Sprintf("%s/%d", name, i)}, app.JobPending)
		jobs = append(jobs, j)
		ids = append(ids, j.ID)
	}
	var triggers []app.TriggerInput
	for _, cond := range []string{"always", "success", "failure"} {
		triggers = append(triggers, app.TriggerInput{Action: "email", Condition: cond, To: cond + "-" + name + "@example.org"})
	}
	triggers = append(triggers, app.TriggerInput{Action: "webhook", Condition: "always", URL: g.hook.URL + "/?group=" + name})
	note := "group " + name
	grp, err := g.svc.CreateGroup(g.userContext(), ids, triggers, nil, &note)
	if err != nil {
		g.t.Fatal(err)
	}
	return grp, jobs
}

// groupMail returns the messages the server got for a group.
func (g *groupEnv) groupMail(name string) []*received {
	var out []*received
	for _, m := range g.ms.messages() {
		if strings.HasSuffix(m.to[0], "-"+name+"@example.org") {
			out = append(out, m)
		}
	}
	return out
}

func (g *groupEnv) groupHooks(name string) []*hookRequest {
	var out []*hookRequest
	for _, r := range g.hook.requests() {
		if strings.Contains(r.body, `"note":"group `+name+`"`) {
			out = append(out, r)
		}
	}
	return out
}

func TestGroupTriggersEveryOrder(t *testing.T) {
	g := newGroupEnv(t)
	outcomes := []struct {
		name     string
		statuses []app.JobStatus
		group    app.JobStatus
		mailTo   []string // conditions that mail
	}{
		{name: "AllSucceed", statuses: []app.JobStatus{app.JobSuccess, app.JobSuccess, app.JobSuccess}, group: app.JobSuccess, mailTo: []string{"always", "success"}},
		{name: "OneFails", statuses: []app.JobStatus{app.JobSuccess, app.JobFailed, app.JobSuccess}, group: app.JobFailed, mailTo: []string{"always", "failure"}},
		{name: "TimeoutAndCancel", statuses: []app.JobStatus{app.JobTimeout, app.JobSuccess, app.JobCancelled}, group: app.JobCancelled, mailTo: []string{"always", "failure"}},
	}
	for _, o := range outcomes {
		for pi, order := range permutations(3) {
			name := fmt.Sprintf("g%s%d", strings.ToLower(o.name), pi)
			t.Run(fmt.Sprintf("%s/order%v", o.name, order), func(t *testing.T) {
				grp, jobs := g.createGroup(name, 3)
				for _, j := range jobs {
					g.runJob(j, map[string]app.TaskStatus{"build": app.TaskSuccess})
				}
				for step, i := range order {
					g.finish(jobs[i], o.statuses[i])
					g.settle()
					fired := len(g.groupMail(name)) > 0 || len(g.groupHooks(name)) > 0
					if last := step == len(order)-1; fired != last {
						t.Fatalf("after %d of %d jobs finished: fired = %v", step+1, len(order), fired)
					}
				}
				var got []string
				for _, m := range g.groupMail(name) {
					got = append(got, strings.TrimSuffix(m.to[0], "-"+name+"@example.org"))
				}
				slices.Sort(got)
				if strings.Join(got, " ") != strings.Join(o.mailTo, " ") {
					t.Errorf("mailed %v, want %v", got, o.mailTo)
				}
				hooks := g.groupHooks(name)
				if len(hooks) != 1 || !hooks[0].verified || !strings.Contains(hooks[0].body, fmt.Sprintf(`"status":"%s"`, o.group)) {
					t.Errorf("webhooks: %+v", hooks)
				}
				lastJob := jobs[order[len(order)-1]]
				recs, _ := g.db.FindTriggerDeliveries(context.Background(), lastJob.ID)
				if len(recs) != 4 {
					t.Fatalf("last job has %d trigger records, want 4", len(recs))
				}
				for _, r := range recs {
					if r.GroupID == nil || *r.GroupID != grp.ID {
						t.Errorf("record %+v not tied to group %d", r, grp.ID)
					}
				}
				if gr, err := g.db.FindGroupByID(context.Background(), grp.ID); err != nil || !gr.Fired {
					t.Errorf("group not marked fired (%v)", err)
				}
				if !strings.Contains(g.setupLog(lastJob.ID), fmt.Sprintf("Processing post-%s triggers of job group #%d...", o.group, grp.ID)) {
					t.Errorf("setup log:\n%s", g.setupLog(lastJob.ID))
				}
			})
		}
	}
}

func TestGroupTriggersConcurrentFinish(t *testing.T) {
	g := newGroupEnv(t)
	for round := range 5 {
		name := fmt.Sprintf("race%d", round)
		_, jobs := g.createGroup(name, 4)
		for _, j := range jobs {
			g.runJob(j, nil)
		}
		var wg sync.WaitGroup
		for _, j := range jobs {
			wg.Go(func() { g.finish(j, app.JobSuccess) })
		}
		wg.Wait()
		g.settle()
		if n := len(g.groupHooks(name)); n != 1 {
			t.Errorf("round %d: group webhook fired %d times", round, n)
		}
		if n := len(g.groupMail(name)); n != 2 {
			t.Errorf("round %d: %d group emails, want 2 (always, success)", round, n)
		}
	}
}

func TestGroupEmail(t *testing.T) {
	g := newGroupEnv(t)
	_, jobs := g.createGroup("rel", 2)
	g.runJob(jobs[0], nil)
	g.runJob(jobs[1], nil)
	g.finish(jobs[0], app.JobSuccess)
	g.finish(jobs[1], app.JobTimeout)
	g.settle()
	mails := g.groupMail("rel")
	if len(mails) != 2 {
		t.Fatalf("%d mails", len(mails))
	}
	msg, body := parseMail(t, mails[0].data)
	if s := msg.Header.Get("Subject"); s != "[rel] build timeout" {
		t.Errorf("Subject = %q", s)
	}
	// Groups are created at the store's clock (t0) and end at the
	// service's (t0 + 3m12s).
	want := fmt.Sprintf("rel: TIMEOUT in 3m12s\n\ngroup rel\n\n"+
		"✓ #%d SUCCESS rel/0 https://ci.example.org/~alice/job/%d\n"+
		"✗ #%d TIMEOUT rel/1 https://ci.example.org/~alice/job/%d\n", jobs[0].ID, jobs[0].ID, jobs[1].ID, jobs[1].ID)
	if body != want {
		t.Errorf("body\n%q\nwant\n%q", body, want)
	}
}

func TestGroupEmailColumns(t *testing.T) {
	cfg := testConfig(t)
	owner := &app.User{Username: "bob"}
	g := &app.JobGroup{ID: 3, Created: t0}
	jobs := []*app.Job{
		{ID: 9, Status: app.JobSuccess, Tags: "site/docs"},
		{ID: 10, Status: app.JobCancelled, Image: "alpine/latest"},
		{ID: 11, Status: app.JobFailed, Tags: "site/web"},
	}
	subject, body := groupEmail(cfg, g, app.JobFailed, jobs, owner, t0.Add(65*time.Second))
	if subject != "[builds] build failed" {
		t.Errorf("subject %q", subject)
	}
	want := "Job group: FAILED in 1m5s\n\n" +
		"✓ #9 SUCCESS   site/docs     https://ci.example.org/~bob/job/9\n" +
		"✗ #10 CANCELLED alpine/latest https://ci.example.org/~bob/job/10\n" +
		"✗ #11 FAILED    site/web      https://ci.example.org/~bob/job/11\n"
	if body != want {
		t.Errorf("body\n%s\nwant\n%s", body, want)
	}
	if p := commonTagPrefix([]*app.Job{{Tags: "a/b/c"}, {Tags: "a/b/d"}, {Tags: "a/b"}}); p != "a/b" {
		t.Errorf("common prefix %q", p)
	}
}
