package runner

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"builds/app"
)

func TestJobSuccess(t *testing.T) {
	h := newHarness(t)
	job := h.submit(`image: debian/stable
packages: [curl, "git-core"]
repositories:
  extra: http://deb.example/debian stable main
environment:
  PLAIN: hello
  QUOTED: "it's a $value with spaces"
  NUMBER: 1000000
  FLAG: yes
  EMPTY:
  LIST: [a, "b c"]
  JOB_ID: overridden
tasks:
  - first: |
      echo "first task in $PWD"
      echo "plain=$PLAIN quoted=$QUOTED number=$NUMBER flag=$FLAG empty=[$EMPTY] list=${LIST[1]}"
      echo "ci=$CI_NAME id=$JOB_ID url=$JOB_URL"
  - second: |
      echo second >&2
      test -x ~/.tasks/first
`)
	got := h.wait(job.ID)
	if got.Status != app.JobSuccess {
		t.Fatalf("status = %s, want success; setup log:\n%s", got.Status, h.log(job.ID, ""))
	}
	if got.Runner == nil || *got.Runner != "runner.test" {
		t.Errorf("runner = %v, want runner.test", got.Runner)
	}
	for name, st := range h.tasks(job.ID) {
		if st != app.TaskSuccess {
			t.Errorf("task %s = %s, want success", name, st)
		}
	}
	setup := h.log(job.ID, "")
	linesInOrder(t, setup,
		"Booting image debian/stable (default)",
		// repositories and packages first (a layer holds nothing else)
		"Adding repository extra", "adding extra",
		"Installing packages", "installing curl git-core",
		"Sending tasks", "Sending build environment",
		"Running task first", "Running task second",
		"Tearing down build VM")
	prefix := regexp.MustCompile(fmt.Sprintf(`(?m)^\[#%d\] \d{4}/\d\d/\d\d \d\d:\d\d:\d\d Sending tasks$`, job.ID))
	if !prefix.MatchString(setup) {
		t.Errorf("setup log lines lack the [#id] date prefix:\n%s", setup)
	}
	first := h.log(job.ID, "first")
	home := h.home(job.ID)
	for _, want := range []string{
		"Running task first\n",
		"first task in " + home + "\n",
		"plain=hello quoted=it's a $value with spaces number=1000000 flag=true empty=[] list=b c\n",
		fmt.Sprintf("ci=sourcehut id=%d url=http://builds.test/~alice/job/%d\n", job.ID, job.ID),
		"+ echo 'first task in ", // set -x trace, from the preamble
	} {
		if !strings.Contains(first, want) {
			t.Errorf("task log lacks %q:\n%s", want, first)
		}
	}
	if second := h.log(job.ID, "second"); !strings.Contains(second, "second\n") {
		t.Errorf("stderr missing from task log:\n%s", second)
	}
	env, err := os.ReadFile(filepath.Join(home, ".buildenv"))
	if err != nil {
		t.Fatal(err)
	}
	wantEnv := "#!/bin/sh\ncomplete-build() {\n\techo 1 > ~/.complete-build\n\texit 0\n}\n" +
		"export PLAIN=hello\nexport QUOTED='it'\"'\"'s a $value with spaces'\nexport NUMBER=1000000\n" +
		"export FLAG=true\nexport EMPTY=\"\"\nLIST=(a 'b c')\n" +
		fmt.Sprintf("export CI_NAME=sourcehut\nexport JOB_ID=%d\nexport JOB_URL='http://builds.test/~alice/job/%d'\n", job.ID, job.ID)
	if string(env) != wantEnv {
		t.Errorf(".buildenv =\n%s\nwant\n%s", env, wantEnv)
	}
	task, err := os.ReadFile(filepath.Join(home, ".tasks", "second"))
	if err != nil {
		t.Fatal(err)
	}
	if want := taskPreamble + "echo second >&2\ntest -x ~/.tasks/first\n\n"; string(task) != want {
		t.Errorf("task file =\n%q\nwant\n%q", task, want)
	}
	for _, f := range []string{".buildenv", ".tasks/first"} {
		if fi, _ := os.Stat(filepath.Join(home, f)); fi == nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s mode = %v, want 0755", f, fi.Mode())
		}
	}
	select {
	case <-h.booter.guest(job.ID).closed:
	default:
		t.Error("guest was not torn down")
	}
}

func TestJobStatuses(t *testing.T) {
	tests := []struct {
		name     string
		manifest string
		bootErr  error
		status   app.JobStatus
		tasks    map[string]app.TaskStatus
		log      []string // in the setup log, in order
	}{
		{
			name:     "TaskFails",
			manifest: "image: debian/stable\ntasks:\n  - a: \"true\"\n  - b: exit 3\n  - c: \"true\"\n",
			status:   app.JobFailed,
			tasks:    map[string]app.TaskStatus{"a": app.TaskSuccess, "b": app.TaskFailed, "c": app.TaskPending},
			log:      []string{"Running task b", "Error: task b: exit status 3", "Tearing down build VM"},
		},
		{
			name:     "SetupFails",
			manifest: "image: debian/stable\nsources: [http://127.0.0.1:1/nonexistent/repo.git]\ntasks:\n  - a: \"true\"\n",
			status:   app.JobFailed,
			tasks:    map[string]app.TaskStatus{"a": app.TaskPending},
			log: []string{"Cloning repositories",
				"Failed to clone git repository. If this a private repository, make sure you've added a suitable SSH key.",
				"https://man.sr.ht/builds.sr.ht/private-repos.md", "Error: git clone: exit status 128"},
		},
		{
			name:     "UnknownSCM",
			manifest: "image: debian/stable\nsources: [svn+https://example.org/repo]\ntasks:\n  - a: \"true\"\n",
			status:   app.JobFailed,
			tasks:    map[string]app.TaskStatus{"a": app.TaskPending},
			log:      []string{"Error: Unknown scm: svn"},
		},
		{
			name:     "CompleteBuild",
			manifest: "image: debian/stable\ntasks:\n  - a: echo a\n  - b: complete-build\n  - c: \"false\"\n  - d: \"false\"\n",
			status:   app.JobSuccess,
			tasks:    map[string]app.TaskStatus{"a": app.TaskSuccess, "b": app.TaskSuccess, "c": app.TaskSkipped, "d": app.TaskSkipped},
			log:      []string{"Running task b", "complete-build was called; skipping the remaining tasks"},
		},
		{
			name:     "CompleteBuildMarkerOnlyFromFile",
			manifest: "image: debian/stable\ntasks:\n  - a: echo " + completeMarker + " >&2\n  - b: \"true\"\n",
			status:   app.JobSuccess,
			tasks:    map[string]app.TaskStatus{"a": app.TaskSuccess, "b": app.TaskSuccess},
		},
		{
			name:     "BootFails",
			manifest: "image: debian/stable\ntasks:\n  - a: \"true\"\n",
			bootErr:  fmt.Errorf("Image 'debian/stable' does not exist"),
			status:   app.JobFailed,
			tasks:    map[string]app.TaskStatus{"a": app.TaskPending},
			log:      []string{"Booting image", "Error: boot: Image 'debian/stable' does not exist"},
		},
		{
			name:     "TaskRebootsTheGuestAway",
			manifest: "image: debian/stable\ntasks:\n  - a: kill -9 $PPID\n",
			status:   app.JobFailed,
			tasks:    map[string]app.TaskStatus{"a": app.TaskFailed},
			log:      []string{"Error: task a: exit status"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.booter.BootErr = tt.bootErr
			job := h.submit(tt.manifest)
			got := h.wait(job.ID)
			setup := h.log(job.ID, "")
			if got.Status != tt.status {
				t.Fatalf("status = %s, want %s; setup log:\n%s", got.Status, tt.status, setup)
			}
			if ts := h.tasks(job.ID); fmt.Sprint(ts) != fmt.Sprint(tt.tasks) {
				t.Errorf("tasks = %v, want %v", ts, tt.tasks)
			}
			linesInOrder(t, setup, tt.log...)
			if tt.status == app.JobFailed && got.Reason == "" {
				t.Error("failed job has no reason")
			}
		})
	}
}

func TestTaskLogNeverEmpty(t *testing.T) {
	h := newHarness(t)
	job := h.submit("image: debian/stable\ntasks:\n  - quiet: \"true\"\n")
	h.wait(job.ID)
	if l := h.log(job.ID, "quiet"); !strings.Contains(l, "Running task quiet") {
		t.Errorf("task log = %q, want a header line", l)
	}
}

func TestLogSizeLimit(t *testing.T) {
	h := newHarness(t, func(c *app.Config) { c.Limits.LogSize = 64 << 10 })
	job := h.submit("image: debian/stable\ntasks:\n  - spam: yes builds | head -c 50000000\n  - after: \"true\"\n")
	got := h.wait(job.ID)
	if got.Status != app.JobFailed {
		t.Fatalf("status = %s, want failed", got.Status)
	}
	l := h.log(job.ID, "spam")
	if len(l) > 64<<10+512 {
		t.Errorf("task log is %d bytes, limit 64 KiB", len(l))
	}
	if !strings.Contains(l, "this log reached the limit of 64 KiB ([limits] log-size); the task was stopped.") {
		t.Errorf("task log lacks the limit message:\n%s", l[len(l)-300:])
	}
	linesInOrder(t, h.log(job.ID, ""), "Error: task spam: its log exceeded 64 KiB ([limits] log-size)")
	if ts := h.tasks(job.ID); ts["spam"] != app.TaskFailed || ts["after"] != app.TaskPending {
		t.Errorf("tasks = %v", ts)
	}
}
