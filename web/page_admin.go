package web

import (
	"fmt"
	"net/http"
	"strconv"

	"builds/app"
)

// adminJobLimit bounds the admin overview; a longer queue is summarised.
const adminJobLimit = 500

// adminJob is one row of the admin overview.
type adminJob struct {
	Job   *app.Job
	Owner string
}

type adminPage struct {
	page
	Jobs  []adminJob
	More  bool // more than adminJobLimit unfinished jobs exist
	Cache []app.VMCacheEntry
	Disk  *app.DiskUsage // nil if it could not be measured
	Gate  app.DiskGate   // [runner] min-free-disk
	// Runners are the remote runners (`builds runner-token create`).
	Runners []app.RunnerStatus
	// LocalSlots is [runner] slots: the server's own runner.
	LocalSlots int
}

// handleAdmin shows administrators every user's unfinished jobs with a
// cancel button. Everybody else gets 404: the page does not exist for
// them.
func (u *ui) handleAdmin(w http.ResponseWriter, r *http.Request) {
	viewer := app.UserFromContext(r.Context())
	if viewer == nil || !viewer.Admin {
		u.renderError(w, r, http.StatusNotFound, "")
		return
	}
	jobs, err := u.svc.ActiveJobs(r.Context(), adminJobLimit+1)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p := adminPage{page: u.newPage(w, r, "Administration"), More: len(jobs) > adminJobLimit}
	if p.More {
		jobs = jobs[:adminJobLimit]
	}
	names := map[int64]string{}
	for _, j := range jobs {
		name, ok := names[j.OwnerID]
		if !ok {
			owner, err := u.svc.User(r.Context(), j.OwnerID)
			if err != nil {
				u.fail(w, r, err)
				return
			}
			name = owner.Username
			names[j.OwnerID] = name
		}
		p.Jobs = append(p.Jobs, adminJob{Job: j, Owner: name})
	}
	if p.Cache, err = u.svc.VMCacheEntries(r.Context()); err != nil {
		u.fail(w, r, err)
		return
	}
	if p.Disk, err = u.svc.DiskUsage(r.Context()); err != nil {
		u.svc.Log.Error("admin: disk use", "err", err)
	}
	p.Gate = u.svc.DiskGate()
	if p.Runners, err = u.svc.RunnerOverview(r.Context()); err != nil {
		u.fail(w, r, err)
		return
	}
	p.LocalSlots = u.cfg.Runner.Slots
	if len(p.Jobs) > 0 {
		p.Refresh = 30
	}
	u.render(w, r, http.StatusOK, "admin", p)
}

// handleRunnerRevoke revokes a remote runner: its token stops working and
// the jobs it holds fail now.
func (u *ui) handleRunnerRevoke(w http.ResponseWriter, r *http.Request) {
	if viewer := app.UserFromContext(r.Context()); viewer == nil || !viewer.Admin {
		u.renderError(w, r, http.StatusNotFound, "") // as /admin: not there for them
		return
	}
	if err := parseSmallForm(w, r); err != nil {
		u.fail(w, r, err)
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		u.renderError(w, r, http.StatusNotFound, "")
		return
	}
	rn, err := u.svc.RevokeRunner(r.Context(), strconv.FormatInt(id, 10))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.setFlash(w, fmt.Sprintf("Runner %s was revoked.", rn.Name))
	redirect(w, r, "/admin")
}
