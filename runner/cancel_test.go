package runner

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"builds/app"
)

func TestCancel(t *testing.T) {
	const sleeper = "image: debian/stable\ntasks:\n  - a: \"true\"\n  - long: sleep 300\n"
	tests := []struct {
		name      string
		manifest  string
		bootDelay time.Duration
		keepalive time.Duration
		ready     func(h *harness, id int64) // waits for the phase
		cancel    func(h *harness, id int64)
		status    app.JobStatus
		tasks     map[string]app.TaskStatus
		log       []string
		taskEnd   map[string]string // task: the pattern of its log's last line
	}{
		{
			name:      "Booting",
			manifest:  sleeper,
			bootDelay: 5 * time.Minute,
			ready:     func(h *harness, id int64) { h.waitLog(id, "", "Booting image") },
			status:    app.JobCancelled,
			tasks:     map[string]app.TaskStatus{"a": app.TaskPending, "long": app.TaskPending},
			log:       []string{"Booting image", "Error: the job was cancelled"},
		},
		{
			name:     "Setup",
			manifest: "image: debian/stable\npackages: [slow-package]\ntasks:\n  - a: \"true\"\n",
			ready:    func(h *harness, id int64) { h.waitLog(id, "", "Installing packages") },
			status:   app.JobCancelled,
			tasks:    map[string]app.TaskStatus{"a": app.TaskPending},
			log:      []string{"Installing packages", "Error: the job was cancelled", "Tearing down build VM"},
		},
		{
			name:     "Task",
			manifest: sleeper,
			ready:    func(h *harness, id int64) { h.waitLog(id, "long", "+ sleep 300") },
			status:   app.JobCancelled,
			tasks:    map[string]app.TaskStatus{"a": app.TaskSuccess, "long": app.TaskCancelled},
			log:      []string{"Running task long", "Error: the job was cancelled by ~alice at ", "Tearing down build VM"},
			taskEnd:  map[string]string{"long": `Cancelled by ~alice at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC`},
		},
		{
			name:     "ShellWait",
			manifest: "image: debian/stable\nshell: true\ntasks:\n  - a: \"true\"\n",
			ready:    func(h *harness, id int64) { h.waitFor("steps to end", func() bool { return stepsOver(h, id) }) },
			status:   app.JobCancelled,
			tasks:    map[string]app.TaskStatus{"a": app.TaskSuccess},
			log:      []string{"Shell access for this build was requested.", "Running task a", "Error: the job was cancelled"},
		},
		{
			name:      "Standby",
			manifest:  "image: debian/stable\ntasks:\n  - a: \"false\"\n",
			keepalive: 10 * time.Minute,
			ready:     func(h *harness, id int64) { h.waitLog(id, "", "After logging in, the deadline") },
			// The job already failed; cancelling only ends the standby.
			cancel: func(h *harness, id int64) {
				if !h.pool.stopRun(id) {
					h.t.Error("stopRun: the pool does not have the job")
				}
			},
			status: app.JobFailed,
			tasks:  map[string]app.TaskStatus{"a": app.TaskFailed},
			log: []string{"Build failed.", "The build environment will be kept alive for 10 minutes.",
				"Build cancelled. Terminating build environment.", "Tearing down build VM"},
		},
		{
			name:     "ByWorkerAPI",
			manifest: sleeper,
			ready:    func(h *harness, id int64) { h.waitLog(id, "long", "+ sleep 300") },
			// updateJob moves the job: the runner hears of it and stops
			cancel: func(h *harness, id int64) {
				if _, err := h.svc.UpdateJobStatus(app.SystemContext(context.Background()), id, app.JobFailed); err != nil {
					h.t.Fatal(err)
				}
			},
			status: app.JobFailed,
			tasks:  map[string]app.TaskStatus{"a": app.TaskSuccess, "long": app.TaskFailed},
			log:    []string{"Error: the job's status changed to FAILED", "Tearing down build VM"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(c *app.Config) { c.Runner.FailedKeepalive = tt.keepalive })
			h.booter.BootDelay = tt.bootDelay
			job := h.submit(tt.manifest)
			tt.ready(h, job.ID)
			start := time.Now()
			if tt.cancel != nil {
				tt.cancel(h, job.ID)
			} else if _, err := h.svc.Cancel(h.ctx, job.ID); err != nil {
				t.Fatal(err)
			}
			got := h.wait(job.ID)
			t.Logf("cancel to teardown: %s", time.Since(start))
			setup := h.log(job.ID, "")
			if got.Status != tt.status {
				t.Fatalf("status = %s, want %s; log:\n%s", got.Status, tt.status, setup)
			}
			if ts := h.tasks(job.ID); !sameTasks(ts, tt.tasks) {
				t.Errorf("tasks = %v, want %v", ts, tt.tasks)
			}
			linesInOrder(t, setup, tt.log...)
			for task, pat := range tt.taskEnd {
				l := strings.TrimRight(h.log(job.ID, task), "\n")
				last := l[strings.LastIndexByte(l, '\n')+1:]
				if !regexp.MustCompile(pat + "$").MatchString(last) {
					t.Errorf("task %s's log ends with %q, want %s", task, last, pat)
				}
			}
			if g := h.booter.guest(job.ID); g != nil {
				select {
				case <-g.closed:
				default:
					t.Error("guest still up")
				}
			}
		})
	}
}

func stepsOver(h *harness, id int64) bool {
	r := h.pool.job(id)
	if r == nil {
		return false
	}
	select {
	case <-r.stepsDone:
		return true
	default:
		return false
	}
}

func sameTasks(a, b map[string]app.TaskStatus) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestTimeout(t *testing.T) {
	tests := []struct {
		name      string
		manifest  string
		bootDelay time.Duration
		tasks     map[string]app.TaskStatus
	}{
		{name: "Task", manifest: "image: debian/stable\ntasks:\n  - long: sleep 300\n",
			tasks: map[string]app.TaskStatus{"long": app.TaskFailed}},
		{name: "Boot", manifest: "image: debian/stable\ntasks:\n  - long: sleep 300\n", bootDelay: time.Hour,
			tasks: map[string]app.TaskStatus{"long": app.TaskPending}},
		{name: "Setup", manifest: "image: debian/stable\npackages: [slow-package]\ntasks:\n  - long: \"true\"\n",
			tasks: map[string]app.TaskStatus{"long": app.TaskPending}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// keepalive must not apply to timeouts
			h := newHarness(t, func(c *app.Config) { c.Runner.JobTimeout = 2 * time.Second; c.Runner.FailedKeepalive = time.Hour })
			h.booter.BootDelay = tt.bootDelay
			job := h.submit(tt.manifest)
			got := h.wait(job.ID)
			if got.Status != app.JobTimeout {
				t.Fatalf("status = %s, want timeout; log:\n%s", got.Status, h.log(job.ID, ""))
			}
			if ts := h.tasks(job.ID); !sameTasks(ts, tt.tasks) {
				t.Errorf("tasks = %v, want %v", ts, tt.tasks)
			}
			linesInOrder(t, h.log(job.ID, ""), "Error: the job exceeded its time limit of 2s")
			if strings.Contains(h.log(job.ID, ""), "Build failed.") {
				t.Error("a timed-out job went into standby")
			}
		})
	}
}

func TestShutdownFailsRunningJobs(t *testing.T) {
	h := newHarness(t)
	job := h.submit("image: debian/stable\ntasks:\n  - long: sleep 300\n")
	h.waitLog(job.ID, "long", "+ sleep 300")
	h.pool.Close()
	got, err := h.db.FindJobByID(context.Background(), job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != app.JobFailed || !strings.Contains(got.Reason, "shutting down") {
		t.Errorf("status = %s (%q), want failed because of the shutdown", got.Status, got.Reason)
	}
	select {
	case <-h.booter.guest(job.ID).closed:
	default:
		t.Error("guest still up after Close")
	}
}
