package app_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"builds/app"
)

func TestParseSchedule(t *testing.T) {
	for _, ok := range []string{"0 3 * * *", "*/15 * * * 1-5", "@daily", "@every 2h", "CRON_TZ=UTC 30 2 * * 0", " 0 3 * * * "} {
		if _, err := app.ParseSchedule(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, tt := range []struct{ text, msg string }{
		{"61 * * * *", `minute field "61": end of range (61) above maximum (59)`},
		{"0 25 * * *", `hour field "25": end of range (25) above maximum (23)`},
		{"0 3 32 * *", `day of month field "32"`},
		{"0 3 * 13 *", `month field "13"`},
		{"0 3 * * 8", `day of week field "8"`},
		{"0 x * * *", `hour field "x": failed to parse int from x`},
		{"0 3 * *", "expected exactly 5 fields, found 4"},
		{"", "invalid schedule: empty"},
		{"@sometimes", "unrecognized descriptor"},
		{"@every 10s", "at least a minute apart"},
		{"0 0 30 2 *", "never runs"},
	} {
		_, err := app.ParseSchedule(tt.text)
		if app.ErrorCode(err) != app.EINVALID || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%q: %v, want %q", tt.text, err, tt.msg)
		}
	}
}

// fakeClock is the Service's clock in a test: it moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// scheduleEnv is alice's repository "proj" with a manifest on main and
// a fake clock, scheduled at 03:00 UTC daily since 01:00 on 1 January.
func scheduleEnv(t *testing.T, in app.RepoInput) (*pushEnv, *fakeClock) {
	t.Helper()
	e := newPushEnv(t, in)
	clock := &fakeClock{now: time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)}
	e.svc.Now = clock.Now
	e.repo.Commit("main", "nightly", map[string]string{".build.yml": "image: debian/stable\ntasks:\n  - build: echo nightly\n"})
	sched := "0 3 * * *"
	r, err := e.svc.UpdateRepository(e.as, "proj", app.RepoUpdate{Schedule: &sched})
	if err != nil {
		t.Fatal(err)
	}
	if r.Schedule != sched || r.ScheduleLast == nil || !r.ScheduleLast.Equal(clock.Now()) {
		t.Fatalf("%+v", r)
	}
	return e, clock
}

// jan is a time of January 2026, UTC: day, hour, minute [, second].
func jan(d, h, m int, sec ...int) time.Time {
	s := 0
	if len(sec) > 0 {
		s = sec[0]
	}
	return time.Date(2026, 1, d, h, m, s, 0, time.UTC)
}

func (e *pushEnv) jobs(t *testing.T) []*app.Job {
	t.Helper()
	jobs, err := e.db.FindJobs(context.Background(), app.JobFilter{OwnerID: &e.alice.ID})
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

// TestSchedulerRunDue drives the scheduler by an injected clock: a run
// at each time the schedule names, none between, and a week of missed
// runs makes one run, not seven.
func TestSchedulerRunDue(t *testing.T) {
	e, _ := scheduleEnv(t, app.RepoInput{})
	sc := e.svc.NewScheduler()
	ctx := context.Background()
	for _, step := range []struct {
		now  time.Time
		jobs int
		next time.Time
	}{
		{jan(1, 2, 59), 0, jan(1, 3, 0)},
		{jan(1, 3, 0), 1, jan(2, 3, 0)},
		{jan(1, 3, 30), 1, jan(2, 3, 0)},
		{jan(2, 3, 0), 2, jan(3, 3, 0)},
		// the server was down from the 2nd to the 9th at noon
		{jan(9, 12, 0), 3, jan(10, 3, 0)},
		{jan(9, 12, 1), 3, jan(10, 3, 0)},
		{jan(10, 3, 0), 4, jan(11, 3, 0)},
	} {
		next := sc.RunDue(ctx, step.now)
		if n := e.jobCount(t); n != step.jobs || !next.Equal(step.next) {
			t.Fatalf("at %v: %d jobs, next %v; want %d, %v", step.now, n, next, step.jobs, step.next)
		}
	}
	j := e.jobs(t)[0]
	if j.Tags != "proj/commits/main/.build.yml" || !strings.Contains(j.Manifest, "BUILD_REASON: schedule") ||
		!strings.Contains(j.Manifest, "GIT_REF: refs/heads/main") || j.OwnerID != e.alice.ID {
		t.Errorf("job tags %q\n%s", j.Tags, j.Manifest)
	}
	// the schedule removed: nothing more
	none := ""
	if _, err := e.svc.UpdateRepository(e.as, "proj", app.RepoUpdate{Schedule: &none}); err != nil {
		t.Fatal(err)
	}
	if next := sc.RunDue(ctx, jan(20, 3, 0)); !next.IsZero() || e.jobCount(t) != 4 {
		t.Errorf("after removal: next %v, %d jobs", next, e.jobCount(t))
	}
}

// TestSchedulerBranches: with branch patterns a run builds the tip of
// each branch they match (names as they are, patterns against the
// repository's branches).
func TestSchedulerBranches(t *testing.T) {
	e, _ := scheduleEnv(t, app.RepoInput{Branches: []string{"main", "rel/*"}})
	for _, b := range []string{"rel/1", "rel/2", "topic"} {
		e.repo.Git(e.repo.Work, "push", "-q", e.repo.Bare, "HEAD:refs/heads/"+b)
	}
	e.svc.NewScheduler().RunDue(context.Background(), jan(1, 3, 0))
	var tags []string
	for _, j := range e.jobs(t) {
		tags = append(tags, j.Tags)
	}
	got := strings.Join(tags, " ")
	for _, want := range []string{"proj/commits/main/.build.yml", "proj/commits/rel/1/.build.yml", "proj/commits/rel/2/.build.yml"} {
		if !strings.Contains(got, want) {
			t.Errorf("tags %q lack %q", got, want)
		}
	}
	if len(tags) != 3 {
		t.Errorf("%d jobs: %q", len(tags), got)
	}
}

// TestSchedulerLoop: the started scheduler runs what was missed while it
// was stopped once, at start, then sleeps (through the injected After)
// until the next time, at most a minute, and runs again when it comes.
func TestSchedulerLoop(t *testing.T) {
	e, clock := scheduleEnv(t, app.RepoInput{})
	clock.Set(jan(4, 10, 0)) // three runs missed
	waits := make(chan time.Duration)
	ticks := make(chan time.Time)
	sc := e.svc.NewScheduler()
	sc.After = func(d time.Duration) <-chan time.Time {
		waits <- d
		return ticks
	}
	sc.Start(context.Background())
	defer sc.Close()
	wait := func() time.Duration {
		t.Helper()
		select {
		case d := <-waits:
			return d
		case <-time.After(30 * time.Second):
			t.Fatal("the scheduler did not sleep")
		}
		return 0
	}
	if d := wait(); d != time.Minute || e.jobCount(t) != 1 {
		t.Fatalf("after start: wait %v, %d jobs", d, e.jobCount(t))
	}
	clock.Set(jan(5, 2, 59, 30))
	ticks <- clock.Now()
	if d := wait(); d != 30*time.Second || e.jobCount(t) != 1 {
		t.Fatalf("before 03:00: wait %v, %d jobs", d, e.jobCount(t))
	}
	clock.Set(jan(5, 3, 0, 0))
	ticks <- clock.Now()
	if d := wait(); d != time.Minute || e.jobCount(t) != 2 {
		t.Fatalf("at 03:00: wait %v, %d jobs", d, e.jobCount(t))
	}
}
