package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"builds/app"
)

// The job page's live view is one Server-Sent Events stream per page (one
// per log would exhaust the browser's six connections per host):
//
//	event: status  data: {"job":"running","tasks":["success","running"]}
//	event: log     data: {"i":1,"html":"<div class=l ...>...</div>"}   id: 512,2048,0
//	event: end     (the job is over and every log is complete)
//
// i is the log's index (0 = setup, then tasks in manifest order). The id
// lists the byte offset reached in each log, so a reconnecting
// EventSource (Last-Event-ID) resumes exactly where it stopped.

// eventPoll bounds how long the stream sleeps between status checks.
const eventPoll = time.Second

// eventKeepalive is how often an idle stream sends a comment so proxies
// do not time it out.
const eventKeepalive = 15 * time.Second

type eventStream struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	last time.Time
}

func (s *eventStream) send(event, id string, data any) error {
	var b bytes.Buffer
	b.WriteString("event: " + event + "\n")
	if id != "" {
		b.WriteString("id: " + id + "\n")
	}
	js, err := json.Marshal(data)
	if err != nil {
		return err
	}
	b.WriteString("data: ")
	b.Write(js)
	b.WriteString("\n\n")
	return s.write(b.Bytes())
}

func (s *eventStream) write(p []byte) error {
	if _, err := s.w.Write(p); err != nil {
		return err
	}
	s.last = time.Now()
	return s.rc.Flush()
}

// parseOffsets reads "512,2048,0"; bad entries count as 0.
func parseOffsets(s string) []int64 {
	var out []int64
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil || n < 0 {
			n = 0
		}
		out = append(out, n)
	}
	return out
}

type jobStatusEvent struct {
	Job   string   `json:"job"`
	Tasks []string `json:"tasks"`
}

// handleJobEvents streams a job's status changes and new log lines.
func (u *ui) handleJobEvents(w http.ResponseWriter, r *http.Request) {
	job, _, ok := u.loadJob(w, r)
	if !ok {
		return
	}
	// The stream ends when the client leaves or the server shuts down.
	ctx, cancel := u.srv.untilClose(r.Context())
	defer cancel()
	tasks, err := u.svc.Tasks(ctx, job)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	from := r.Header.Get("Last-Event-ID")
	if from == "" {
		from = r.URL.Query().Get("o")
	}
	offsets := parseOffsets(from)
	names := []string{""}
	for _, t := range tasks {
		names = append(names, t.Name)
	}
	cursors := make([]*logCursor, len(names))
	for i, name := range names {
		var off int64
		if i < len(offsets) {
			off = offsets[i]
		}
		if cursors[i], err = newLogCursor(u.svc.LogPath(job.ID, name), logAnchor(name), off); err != nil {
			u.fail(w, r, fmt.Errorf("open log: %w", err))
			return
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	es := &eventStream{w: w, rc: http.NewResponseController(w)}
	if err := es.write([]byte("retry: 3000\n\n")); err != nil {
		return
	}
	if err := u.streamJob(ctx, es, job.ID, names, cursors); err != nil && ctx.Err() == nil {
		u.srv.Log.Debug("job events", "job_id", job.ID, "err", err)
	}
}

// streamJob sends events until the job is over and its logs are
// complete, or the client goes away.
func (u *ui) streamJob(ctx context.Context, es *eventStream, jobID int64, names []string, cursors []*logCursor) error {
	lastStatus := ""
	for {
		job, err := u.svc.Job(ctx, jobID)
		if err != nil {
			return err // deleted or made private meanwhile
		}
		tasks, err := u.svc.Tasks(ctx, job)
		if err != nil {
			return err
		}
		st := jobStatusEvent{Job: string(job.Status)}
		for _, t := range tasks {
			st.Tasks = append(st.Tasks, string(t.Status))
		}
		if key := fmt.Sprint(st); key != lastStatus {
			if err := es.send("status", "", st); err != nil {
				return err
			}
			lastStatus = key
		}
		sent, complete, err := u.sendLogs(es, job, tasks, names, cursors)
		if err != nil {
			return err
		}
		if sent {
			continue // drain what is there before sleeping
		}
		if complete {
			return es.write([]byte("event: end\ndata: {}\n\n"))
		}
		if time.Since(es.last) > eventKeepalive {
			if err := es.write([]byte(": keepalive\n\n")); err != nil {
				return err
			}
		}
		u.waitForLogs(ctx, job, tasks, names, cursors)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// sendLogs sends one chunk of each log that grew. complete reports that
// the job is over and every log has been sent in full.
func (u *ui) sendLogs(es *eventStream, job *app.Job, tasks []*app.Task, names []string, cursors []*logCursor) (sent, complete bool, err error) {
	complete = job.Status.Final()
	for i, c := range cursors {
		if i > 0 && (i-1 >= len(tasks) || tasks[i-1].Status == app.TaskPending) {
			continue
		}
		done := u.logComplete(job, names[i])
		complete = complete && done
		html, err := c.next(logChunkBytes, done)
		if err != nil {
			return sent, false, err
		}
		if html == "" {
			continue
		}
		ids := make([]string, len(cursors))
		for j, cj := range cursors {
			ids[j] = strconv.FormatInt(cj.offset, 10)
		}
		if err := es.send("log", strings.Join(ids, ","), map[string]any{"i": i, "html": html}); err != nil {
			return sent, false, err
		}
		sent = true
	}
	if complete {
		for _, c := range cursors {
			if fileSize(c.path) > c.offset {
				complete = false
			}
		}
	}
	return sent, complete, nil
}

// waitForLogs sleeps until the log being written grows, or eventPoll
// passes (statuses change without a log write).
func (u *ui) waitForLogs(ctx context.Context, job *app.Job, tasks []*app.Task, names []string, cursors []*logCursor) {
	active := 0
	for i, t := range tasks {
		if t.Status == app.TaskRunning {
			active = i + 1
		}
	}
	c := cursors[active]
	wctx, cancel := context.WithTimeout(ctx, eventPoll)
	defer cancel()
	// Wait from the file's end, not the cursor: a partial line already on
	// disk must not wake us over and over.
	if !u.svc.Logs.Wait(wctx, job.ID, names[active], max(fileSize(c.path), c.offset)) {
		<-wctx.Done()
	}
}
