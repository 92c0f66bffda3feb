package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builds/app"
)

func TestUIJobPage(t *testing.T) {
	e := newUIEnv(t)
	alice, bob := e.user("alice"), e.user("bob")
	note := "Fixes **the** bug, see [docs](https://example.org/d) <script>alert(1)</script> [x](javascript:alert(2))"
	job := e.submit(alice, jobOpts{visibility: app.Public, note: note, tags: []string{"proj", "main"}})
	e.start(job)
	e.setTask(job, "build", app.TaskRunning)
	e.appendLog(job, "", "booting\n\x1b[1;32mready\x1b[0m <b>not bold</b>\n")
	e.appendLog(job, "build", "compiling https://example.org/x.\npartial line without newline")
	path := fmt.Sprintf("/~alice/job/%d", job.ID)

	r := e.get(e.client(alice), path)
	r.want(t, http.StatusOK,
		fmt.Sprintf("<title>build #%d - running · testbuilds</title>", job.ID),
		`<strong>the</strong>`, `<a href="https://example.org/d" rel="nofollow noopener noreferrer">docs</a>`,
		"&lt;script&gt;alert(1)&lt;/script&gt;",
		`<a href="/~alice/proj">proj</a>/<a href="/~alice/proj/main">main</a>`,
		"Cancel build", "image: debian/stable",
		`id="setup-1"`, `href="#setup-2"`, `<span class="f10 b">ready</span>`, "&lt;b&gt;not bold&lt;/b&gt;",
		`id="task-build-1"`, `<a href="https://example.org/x" rel="nofollow noopener noreferrer">https://example.org/x</a>.`,
		fmt.Sprintf(`href="/query/log/%d/log"`, job.ID), fmt.Sprintf(`href="/query/log/%d/build/log"`, job.ID),
		`<noscript><meta http-equiv="refresh" content="5"></noscript>`,
		`data-events="/~alice/job/`,
	)
	r.lacks(t, "<script>alert", `href="javascript:`, "partial line without newline", `id="task-test-1"`)

	// Another user sees the job but no owner controls.
	r = e.get(e.client(bob), path)
	r.want(t, http.StatusOK, "running")
	r.lacks(t, "Cancel build", "Resubmit build", "/settings/details")
}

func TestUIJobPageFinished(t *testing.T) {
	e := newUIEnv(t, func(c *app.Config) { c.Runner.SSHUser = "builds"; c.Runner.Name = "runner.example" })
	alice, bob := e.user("alice"), e.user("bob")
	job := e.submit(alice, jobOpts{visibility: app.Unlisted})
	e.start(job)
	e.appendLog(job, "", "setup done\n")
	e.setTask(job, "build", app.TaskFailed)
	e.appendLog(job, "build", "error: it broke\nlast line without newline")
	art := &app.Artifact{JobID: job.ID, Name: "out.tar.gz", Path: "/home/build/out.tar.gz", Size: 3 << 20, File: fmt.Sprintf("%d/out.tar.gz", job.ID)}
	if err := e.db.CreateArtifact(context.Background(), art); err != nil {
		t.Fatal(err)
	}
	e.svc.Logs.Close(job.ID, "")
	e.svc.Logs.Close(job.ID, "build")
	e.finish(job, app.JobFailed)
	path := fmt.Sprintf("/~alice/job/%d", job.ID)
	banner := fmt.Sprintf("ssh -t -p 2222 builds@runner.example connect %d", job.ID)

	r := e.get(e.client(alice), path)
	r.want(t, http.StatusOK, "Build complete:", "Resubmit build", "Edit &amp; resubmit", banner,
		"out.tar.gz", "3 MiB", fmt.Sprintf(`href="/query/artifact/%d/out.tar.gz"`, art.ID),
		"last line without newline", "Unlisted")
	r.lacks(t, "Cancel build", "http-equiv")
	e.get(e.client(bob), path).lacks(t, banner)

	// After the keepalive window the banner is gone.
	old := time.Now().Add(-e.cfg.Runner.FailedKeepalive - time.Minute)
	if _, err := e.db.UpdateJob(context.Background(), job.ID, app.JobUpdate{Finished: &old}); err != nil {
		t.Fatal(err)
	}
	e.get(e.client(alice), path).lacks(t, banner)
}

func TestUICancel(t *testing.T) {
	e := newUIEnv(t)
	alice, bob := e.user("alice"), e.user("bob")
	job := e.submit(alice, jobOpts{visibility: app.Public})
	e.start(job)
	e.post(e.client(bob), fmt.Sprintf("/cancel/%d", job.ID), nil).want(t, http.StatusNotFound)
	e.post(e.client(nil), fmt.Sprintf("/cancel/%d", job.ID), nil).want(t, http.StatusUnauthorized)
	r := e.post(e.client(alice), fmt.Sprintf("/cancel/%d", job.ID), nil)
	r.want(t, http.StatusSeeOther)
	if loc := r.header.Get("Location"); loc != fmt.Sprintf("/~alice/job/%d", job.ID) {
		t.Errorf("redirect to %q", loc)
	}
	got, _ := e.svc.Job(as(alice), job.ID)
	if got.Status != app.JobCancelled {
		t.Fatalf("status %s, want cancelled", got.Status)
	}
	e.post(e.client(alice), fmt.Sprintf("/cancel/%d", job.ID), nil).want(t, http.StatusConflict, "already finished")
	e.post(e.client(alice), "/cancel/abc", nil).want(t, http.StatusNotFound)
}

func TestUISubmit(t *testing.T) {
	e := newUIEnv(t)
	alice := e.user("alice")
	c := e.client(alice)
	e.get(e.client(nil), "/submit").want(t, http.StatusSeeOther)
	e.get(c, "/submit").want(t, http.StatusOK, `name="manifest"`, "Submitted on the web")

	r := e.post(c, "/submit", url.Values{"manifest": {uiManifest}, "note": {"my note"}, "tags": {"proj/main"},
		"visibility": {"PRIVATE"}})
	r.want(t, http.StatusSeeOther)
	var id int64
	if _, err := fmt.Sscanf(r.header.Get("Location"), "/~alice/job/%d", &id); err != nil {
		t.Fatalf("redirect to %q", r.header.Get("Location"))
	}
	job, err := e.svc.Job(as(alice), id)
	if err != nil {
		t.Fatal(err)
	}
	if job.Tags != "proj/main" || job.Visibility != app.Private || *job.Note != "my note" {
		t.Errorf("job = tags %q, visibility %s, note %q", job.Tags, job.Visibility, *job.Note)
	}

	bad := "image: debian/stable\ntasks:\n  - build: echo\n  - build: echo again\n"
	r = e.post(c, "/submit", url.Values{"manifest": {bad}, "visibility": {"UNLISTED"}})
	r.want(t, http.StatusBadRequest, `data-line="4"`, "Duplicate task", `<li id="m4" class="bad">`, `data-errors="4"`)

	tests := []struct {
		name    string
		form    url.Values
		status  int
		message string
	}{
		{"no visibility", url.Values{"manifest": {uiManifest}}, 400, "Choose a visibility"},
		{"bad tag", url.Values{"manifest": {uiManifest}, "visibility": {"PUBLIC"}, "tags": {"a/b c!"}}, 400, "Invalid tag name"},
		{"empty manifest", url.Values{"manifest": {""}, "visibility": {"PUBLIC"}}, 400, "image"},
		{"oversized", url.Values{"manifest": {strings.Repeat("#", 200_000)}, "visibility": {"PUBLIC"}}, 413, "too large"},
		{"note too long", url.Values{"manifest": {uiManifest}, "visibility": {"PUBLIC"}, "note": {strings.Repeat("n", 5000)}}, 400, "note must be at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.post(c, "/submit", tt.form).want(t, tt.status, tt.message)
		})
	}
}

func TestUIResubmit(t *testing.T) {
	e := newUIEnv(t)
	alice, bob := e.user("alice"), e.user("bob")
	job := e.submit(alice, jobOpts{visibility: app.Public, note: "nightly run", tags: []string{"proj"}})
	r := e.get(e.client(alice), fmt.Sprintf("/resubmit/%d", job.ID))
	r.want(t, http.StatusOK, "nightly run (resubmitted)", "echo building", `value="proj"`)
	e.get(e.client(bob), fmt.Sprintf("/resubmit/%d", job.ID)).want(t, http.StatusOK, "echo building")
	e.get(e.client(nil), fmt.Sprintf("/resubmit/%d", job.ID)).want(t, http.StatusSeeOther)
	e.get(e.client(alice), "/resubmit/0").want(t, http.StatusNotFound)
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct{ name, id, data string }

// readEvents reads events from an SSE body until stop returns true.
func readEvents(t *testing.T, br *bufio.Reader, stop func(sseEvent) bool) []sseEvent {
	t.Helper()
	var out []sseEvent
	var ev sseEvent
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read events: %v (got %v)", err, out)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if ev.name != "" {
				out = append(out, ev)
				if stop(ev) {
					return out
				}
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			ev.name = line[7:]
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[6:]
		}
	}
}

func openEvents(t *testing.T, e *uiEnv, path, lastID string) (*bufio.Reader, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+path, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return bufio.NewReader(resp.Body), func() { resp.Body.Close(); cancel() }
}

func logHTML(t *testing.T, ev sseEvent) (int, string) {
	var d struct {
		I    int    `json:"i"`
		HTML string `json:"html"`
	}
	if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
		t.Fatal(err)
	}
	return d.I, d.HTML
}

func TestUIJobEvents(t *testing.T) {
	e := newUIEnv(t)
	alice := e.user("alice")
	job := e.submit(alice, jobOpts{visibility: app.Public})
	e.start(job)
	e.svc.Logs.Open(job.ID, "")
	e.svc.Logs.Open(job.ID, "build")
	e.appendLog(job, "", "line one\n")
	path := fmt.Sprintf("/~alice/job/%d/events?o=0,0,0", job.ID)

	br, closeStream := openEvents(t, e, path, "")
	evs := readEvents(t, br, func(ev sseEvent) bool { return ev.name == "log" })
	if evs[0].name != "status" || !strings.Contains(evs[0].data, `"job":"running"`) {
		t.Errorf("first event %+v, want running status", evs[0])
	}
	i, html := logHTML(t, evs[len(evs)-1])
	if i != 0 || !strings.Contains(html, `id="setup-1"`) || !strings.Contains(html, "line one") {
		t.Errorf("log event %d %q", i, html)
	}
	// The task starts and writes: a status event, then its lines, live.
	e.setTask(job, "build", app.TaskRunning)
	e.appendLog(job, "build", "compiling\x1b[31m red\x1b[0m\n")
	evs = readEvents(t, br, func(ev sseEvent) bool { return ev.name == "log" })
	i, html = logHTML(t, evs[len(evs)-1])
	if i != 1 || !strings.Contains(html, `id="task-build-1"`) || !strings.Contains(html, `<span class="f1"> red</span>`) {
		t.Errorf("task log event %d %q", i, html)
	}
	lastID := evs[len(evs)-1].id
	e.appendLog(job, "build", "half a li")
	e.appendLog(job, "build", "ne\n")
	evs = readEvents(t, br, func(ev sseEvent) bool { return ev.name == "log" })
	if _, html = logHTML(t, evs[len(evs)-1]); !strings.Contains(html, ">half a line<") || !strings.Contains(html, `id="task-build-2"`) {
		t.Errorf("joined partial line: %q", html)
	}
	closeStream()

	// Reconnecting with Last-Event-ID resumes after the last line seen,
	// numbering lines on.
	br, closeStream = openEvents(t, e, path, lastID)
	defer closeStream()
	evs = readEvents(t, br, func(ev sseEvent) bool { return ev.name == "log" })
	if i, html = logHTML(t, evs[len(evs)-1]); i != 1 || strings.Contains(html, "compiling") || !strings.Contains(html, `id="task-build-2"`) {
		t.Errorf("resumed stream sent %d %q", i, html)
	}
	// The job ends: the stream sends the final status and ends.
	e.setTask(job, "build", app.TaskSuccess)
	e.appendLog(job, "", "done")
	e.svc.Logs.Close(job.ID, "")
	e.svc.Logs.Close(job.ID, "build")
	e.finish(job, app.JobSuccess)
	evs = readEvents(t, br, func(ev sseEvent) bool { return ev.name == "end" })
	var sawDone, sawSuccess bool
	for _, ev := range evs {
		if ev.name == "log" {
			_, html := logHTML(t, ev)
			sawDone = sawDone || strings.Contains(html, ">done<")
		}
		sawSuccess = sawSuccess || ev.name == "status" && strings.Contains(ev.data, `"job":"success"`)
	}
	if !sawDone || !sawSuccess {
		t.Errorf("before end: done line %v, success status %v: %v", sawDone, sawSuccess, evs)
	}
}

func TestUILongLog(t *testing.T) {
	e := newUIEnv(t)
	alice := e.user("alice")
	job := e.submit(alice, jobOpts{visibility: app.Public})
	e.start(job)
	p := e.svc.LogPath(job.ID, "")
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := 1; i <= 40000; i++ {
		fmt.Fprintf(&b, "log line number %d with some padding to make it longer\n", i)
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o640); err != nil {
		t.Fatal(err)
	}
	e.finish(job, app.JobSuccess)
	r := e.get(e.client(nil), fmt.Sprintf("/~alice/job/%d", job.ID))
	r.want(t, http.StatusOK, "This log is long", `id="setup-40000"`, "log line number 40000 with")
	r.lacks(t, `id="setup-1"`)
	full := e.get(e.client(nil), fmt.Sprintf("/~alice/job/%d/log", job.ID))
	full.want(t, http.StatusOK, `id="setup-1"`, "log line number 1 with", `id="setup-40000"`, "download raw log")
	if n := strings.Count(full.body, `class="l"`); n != 40000 {
		t.Errorf("full log page has %d lines, want 40000", n)
	}
	e.get(e.client(nil), fmt.Sprintf("/~alice/job/%d/log/nosuchtask", job.ID)).want(t, http.StatusNotFound)
	e.get(e.client(nil), fmt.Sprintf("/~alice/job/%d/log/build", job.ID)).want(t, http.StatusOK, "build log")
}
