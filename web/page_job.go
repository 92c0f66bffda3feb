package web

import (
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"builds/app"
)

// logView is one log section of the job page.
type logView struct {
	Index   int    // position in the live stream (0 = setup)
	Task    string // "" for the setup log
	Anchor  string
	Title   string
	Status  string
	Hidden  bool // a pending task: shown once it starts
	Lines   template.HTML
	Offset  int64 // bytes rendered; the live stream continues here
	Skipped int64 // bytes before the first line shown
	RawURL  string
	FullURL string
}

type artifactView struct {
	*app.Artifact
	URL string
}

type jobPage struct {
	page
	Job       *app.Job
	Owner     *app.User
	IsOwner   bool
	CanCancel bool
	Crumbs    []crumb
	Tasks     []*app.Task
	Artifacts []artifactView
	Secrets   []*app.Secret
	Triggers  []*app.TriggerDelivery // delivery attempts, owner only
	Logs      []*logView
	Manifest  []string
	SSH       string    // `connect` command while a failed VM is kept
	SSHUntil  time.Time // end of the keepalive window
	Events    string    // SSE URL with the rendered offsets
	Duration  string
}

// handleJobView shows a job: status, details, tasks, artifacts and logs.
func (u *ui) handleJobView(w http.ResponseWriter, r *http.Request) {
	job, owner, ok := u.loadJob(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	viewer := app.UserFromContext(ctx)
	p := jobPage{
		page:    u.newPage(w, r, fmt.Sprintf("build #%d - %s", job.ID, job.Status)),
		Job:     job,
		Owner:   owner,
		IsOwner: viewer != nil && viewer.ID == job.OwnerID,
		Crumbs:  tagCrumbs(owner.Username, job.Tags),
	}
	p.CanCancel = app.CanCancel(ctx, job)
	p.Duration = jobDuration(p.Now, job)
	p.Manifest = strings.Split(strings.TrimSuffix(strings.ReplaceAll(job.Manifest, "\r\n", "\n"), "\n"), "\n")
	var err error
	if p.Tasks, err = u.svc.Tasks(ctx, job); err != nil {
		u.fail(w, r, err)
		return
	}
	arts, err := u.svc.Artifacts(ctx, job)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	for _, a := range arts {
		p.Artifacts = append(p.Artifacts, artifactView{Artifact: a, URL: artifactURL(a)})
	}
	if p.IsOwner {
		if p.Secrets, err = u.svc.JobSecrets(ctx, job); err != nil {
			u.fail(w, r, err)
			return
		}
		p.SSH, p.SSHUntil = u.connectBanner(job, p.Now)
		// Trigger targets (addresses, URLs) are private to the owner.
		if p.Triggers, err = u.svc.TriggerDeliveries(ctx, job); err != nil {
			u.fail(w, r, err)
			return
		}
	}
	if p.Logs, err = u.jobLogs(job, owner, p.Tasks); err != nil {
		u.fail(w, r, err)
		return
	}
	offsets := make([]string, len(p.Logs))
	for i, l := range p.Logs {
		offsets[i] = strconv.FormatInt(l.Offset, 10)
	}
	p.Events = fmt.Sprintf("%s/events?o=%s", jobPath(owner.Username, job.ID), strings.Join(offsets, ","))
	switch job.Status {
	case app.JobRunning:
		p.Refresh = 5
	case app.JobPending, app.JobQueued:
		p.Refresh = 10
	}
	u.render(w, r, http.StatusOK, "job", p)
}

// loadJob finds the job of a /~user/job/<id> URL. Invisible jobs, bad ids
// and a user in the URL who is not the owner are all 404.
func (u *ui) loadJob(w http.ResponseWriter, r *http.Request) (*app.Job, *app.User, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		u.renderError(w, r, http.StatusNotFound, "")
		return nil, nil, false
	}
	job, err := u.svc.Job(r.Context(), id)
	if err != nil {
		u.fail(w, r, err)
		return nil, nil, false
	}
	owner, err := u.svc.User(r.Context(), job.OwnerID)
	if err != nil {
		u.fail(w, r, err)
		return nil, nil, false
	}
	if owner.Username != r.PathValue("user") {
		u.renderError(w, r, http.StatusNotFound, "")
		return nil, nil, false
	}
	return job, owner, true
}

func jobPath(owner string, id int64) string { return fmt.Sprintf("/~%s/job/%d", owner, id) }

// artifactURL is where an artifact is downloaded (handleArtifact).
func artifactURL(a *app.Artifact) string {
	return fmt.Sprintf("/query/artifact/%d/%s", a.ID, url.PathEscape(a.Name))
}

// connectBanner returns the `connect` command while a failed job's VM is
// kept for inspection (runner.failed-keepalive after it finished).
func (u *ui) connectBanner(job *app.Job, now time.Time) (string, time.Time) {
	keep := u.cfg.Runner.FailedKeepalive
	if job.Status != app.JobFailed || job.Finished == nil || keep <= 0 || u.cfg.Runner.SSHListen == "" {
		return "", time.Time{}
	}
	until := job.Finished.Add(keep)
	if !now.Before(until) {
		return "", time.Time{}
	}
	return u.cfg.ConnectCommand(job.ID), until
}

// jobLogs renders the setup log and every task's log. Pending tasks get a
// hidden, empty section that the live view reveals when they start.
func (u *ui) jobLogs(job *app.Job, owner *app.User, tasks []*app.Task) ([]*logView, error) {
	base := jobPath(owner.Username, job.ID)
	views := []*logView{{
		Index: 0, Anchor: "setup", Title: "setup", Status: string(job.Status),
		RawURL: fmt.Sprintf("/query/log/%d/log", job.ID), FullURL: base + "/log",
	}}
	for i, t := range tasks {
		views = append(views, &logView{
			Index: i + 1, Task: t.Name, Anchor: logAnchor(t.Name), Title: t.Name, Status: string(t.Status),
			Hidden: t.Status == app.TaskPending,
			RawURL: fmt.Sprintf("/query/log/%d/%s/log", job.ID, t.Name), FullURL: base + "/log/" + t.Name,
		})
	}
	for _, v := range views {
		if v.Hidden {
			continue
		}
		c, skipped, err := tailLogCursor(u.svc.LogPath(job.ID, v.Task), v.Anchor, logInlineBytes)
		if err != nil {
			return nil, fmt.Errorf("read log: %w", err)
		}
		html, err := c.next(logInlineBytes, u.logComplete(job, v.Task))
		if err != nil {
			return nil, fmt.Errorf("read log: %w", err)
		}
		v.Lines, v.Offset, v.Skipped = template.HTML(html), c.offset, skipped
	}
	return views, nil
}

// logComplete reports whether a log will not grow any more: its job is
// over and no runner holds the log open.
func (u *ui) logComplete(job *app.Job, task string) bool {
	return job.Status.Final() && !u.svc.Logs.Live(job.ID, task)
}

// handleCancel cancels a job of the viewer's (or any, for admins), then
// shows the job, or the same-site page named by the form's "next" (the
// admin overview).
func (u *ui) handleCancel(w http.ResponseWriter, r *http.Request) {
	if err := parseSmallForm(w, r); err != nil {
		u.fail(w, r, err)
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		u.renderError(w, r, http.StatusNotFound, "")
		return
	}
	job, err := u.svc.Cancel(r.Context(), id)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	owner, err := u.svc.User(r.Context(), job.OwnerID)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.setFlash(w, fmt.Sprintf("Build #%d was cancelled.", job.ID))
	if next := r.PostForm.Get("next"); next != "" {
		redirect(w, r, next)
		return
	}
	redirect(w, r, jobPath(owner.Username, job.ID))
}

type jobSettingsPage struct {
	page
	Job          *app.Job
	Owner        *app.User
	Visibilities []app.Visibility
}

// handleJobSettings shows the owner's visibility form.
func (u *ui) handleJobSettings(w http.ResponseWriter, r *http.Request) {
	job, owner, ok := u.loadJob(w, r)
	if !ok {
		return
	}
	if viewer := app.UserFromContext(r.Context()); viewer == nil || viewer.ID != job.OwnerID {
		u.fail(w, r, app.Errorf(app.ENOTFOUND, "no such job"))
		return
	}
	u.render(w, r, http.StatusOK, "job_settings", jobSettingsPage{
		page: u.newPage(w, r, fmt.Sprintf("build #%d settings", job.ID)), Job: job, Owner: owner,
		Visibilities: []app.Visibility{app.Public, app.Unlisted, app.Private},
	})
}

// handleJobSettingsSave changes a job's visibility.
func (u *ui) handleJobSettingsSave(w http.ResponseWriter, r *http.Request) {
	if err := parseSmallForm(w, r); err != nil {
		u.fail(w, r, err)
		return
	}
	job, owner, ok := u.loadJob(w, r)
	if !ok {
		return
	}
	if _, err := u.svc.SetVisibility(r.Context(), job.ID, app.Visibility(r.PostForm.Get("visibility"))); err != nil {
		u.fail(w, r, err)
		return
	}
	u.setFlash(w, "Visibility updated.")
	redirect(w, r, jobPath(owner.Username, job.ID))
}
