package web

import (
	"bytes"
	"fmt"
	"net/http"

	"builds/app"
)

// logMarker is where the full-log page's lines go; the page around it is
// rendered first and the lines are streamed in, so a 64 MiB log is never
// held in memory as HTML.
const logMarker = "<!--LOG-LINES-->"

type fullLogPage struct {
	page
	Job    *app.Job
	Owner  *app.User
	Task   string
	Anchor string
	Title  string
	RawURL string
	Marker string
}

// handleFullLog shows every line of one log (the job page shows the last
// MiB of each).
func (u *ui) handleFullLog(w http.ResponseWriter, r *http.Request) {
	job, owner, ok := u.loadJob(w, r)
	if !ok {
		return
	}
	task := r.PathValue("task")
	p := fullLogPage{Job: job, Owner: owner, Task: task, Anchor: logAnchor(task), Marker: logMarker,
		RawURL: fmt.Sprintf("/query/log/%d/log", job.ID), Title: "setup"}
	if task != "" {
		if _, _, err := u.svc.Task(r.Context(), job.ID, task); err != nil {
			u.fail(w, r, err)
			return
		}
		p.RawURL, p.Title = fmt.Sprintf("/query/log/%d/%s/log", job.ID, task), task
	}
	p.page = u.newPage(w, r, fmt.Sprintf("build #%d - %s log", job.ID, p.Title))
	var buf bytes.Buffer
	if err := u.pages["log"].ExecuteTemplate(&buf, "layout", p); err != nil {
		u.fail(w, r, fmt.Errorf("render log page: %w", err))
		return
	}
	head, tail, found := bytes.Cut(buf.Bytes(), []byte(logMarker))
	if !found {
		u.fail(w, r, fmt.Errorf("render log page: marker missing"))
		return
	}
	c, err := newLogCursor(u.svc.LogPath(job.ID, task), p.Anchor, 0)
	if err != nil {
		u.fail(w, r, fmt.Errorf("open log: %w", err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		return
	}
	w.Write(head)
	end := fileSize(c.path) // lines written after this show on the job page
	for c.offset < end {
		html, err := c.next(min(logChunkBytes, end-c.offset), true)
		if err != nil {
			u.srv.Log.Error("full log", "job_id", job.ID, "task", task, "err", err)
			break
		}
		if html == "" {
			break
		}
		if _, err := w.Write([]byte(html)); err != nil {
			return
		}
	}
	w.Write(tail)
}
