package web

import (
	"net/http"

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
	if len(p.Jobs) > 0 {
		p.Refresh = 30
	}
	u.render(w, r, http.StatusOK, "admin", p)
}
