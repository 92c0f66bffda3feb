package web

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"builds/app"
)

// jobItem is one row of a job list.
type jobItem struct {
	Job   *app.Job
	Owner string
	Tasks []*app.Task
}

type jobsPage struct {
	page
	Owner       *app.User // whose jobs are listed
	Own         bool      // the viewer is the owner
	Tags        string    // tag prefix, "" for all
	Crumbs      []crumb
	Jobs        []jobItem
	Action      string // where the search form goes
	Search      string
	SearchError string
	Placeholder string
	Next        string // URL of the next (older) page, "" at the end
	First       string // URL of the first page when on a later one
	BadgePath   string // badge URL path for the sidebar snippet
}

// tagPathRE is a tag path: tags as the submit mutation accepts them,
// joined by "/".
var tagPathRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)

// validTagPath reports whether t can name jobs' tags: no longer than the
// longest tags a job may have.
func validTagPath(t string) bool {
	return len(t) <= app.MaxTags*(app.MaxTagLength+1) && tagPathRE.MatchString(t)
}

// handleIndex shows the viewer's own jobs, or an introduction.
func (u *ui) handleIndex(w http.ResponseWriter, r *http.Request) {
	user := app.UserFromContext(r.Context())
	if user == nil {
		u.render(w, r, http.StatusOK, "index", u.newPage(w, r, u.cfg.Builds.SiteName))
		return
	}
	u.renderJobs(w, r, user, "", "/")
}

// handleUser serves /~user (job list) and /~user.svg (badge).
func (u *ui) handleUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("user")
	if base, ok := strings.CutSuffix(name, ".svg"); ok {
		u.serveBadge(w, r, base, "")
		return
	}
	owner, err := u.findUser(r.Context(), name)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.renderJobs(w, r, owner, "", "/~"+owner.Username)
}

// handleTag serves /~user/<tags> lists, /~user/<tags>.svg badges and
// /~user/<tags>/rss.xml feeds.
func (u *ui) handleTag(w http.ResponseWriter, r *http.Request) {
	name, tags := r.PathValue("user"), strings.TrimSuffix(r.PathValue("tags"), "/")
	if t, ok := strings.CutSuffix(tags, ".svg"); ok && validTagPath(t) {
		u.serveBadge(w, r, name, t)
		return
	}
	if t, ok := strings.CutSuffix(tags, "/rss.xml"); ok && validTagPath(t) {
		u.serveRSS(w, r, name, t)
		return
	}
	if tags != "" && !validTagPath(tags) {
		u.renderError(w, r, http.StatusNotFound, "")
		return
	}
	owner, err := u.findUser(r.Context(), name)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	base := "/~" + owner.Username
	if tags != "" {
		base += "/" + tags
	}
	u.renderJobs(w, r, owner, tags, base)
}

// findUser looks up the user named in a URL; unknown users are 404.
func (u *ui) findUser(ctx context.Context, name string) (*app.User, error) {
	owner, err := u.svc.UserByName(ctx, name)
	if app.ErrorCode(err) == app.ENOTFOUND {
		return nil, app.Errorf(app.ENOTFOUND, "no such user: %s", name)
	}
	return owner, err
}

// renderJobs lists owner's jobs visible to the viewer, filtered by tag
// prefix and search, one page at a time.
func (u *ui) renderJobs(w http.ResponseWriter, r *http.Request, owner *app.User, tags, base string) {
	viewer := app.UserFromContext(r.Context())
	q := r.URL.Query()
	p := jobsPage{
		page:        u.newPage(w, r, "~"+owner.Username),
		Owner:       owner,
		Own:         viewer != nil && viewer.ID == owner.ID,
		Tags:        tags,
		Crumbs:      tagCrumbs(owner.Username, tags),
		Action:      base,
		Search:      q.Get("search"),
		Placeholder: searchPlaceholder,
		BadgePath:   "/~" + owner.Username,
	}
	if tags != "" {
		p.Title += "/" + tags
		p.BadgePath += "/" + tags
	}
	if base == "/" {
		p.Title = "Your jobs"
	}
	p.Feed = strings.TrimSuffix(base, "/") + "/rss.xml"
	if base == "/" {
		p.Feed = "/~" + owner.Username + "/rss.xml"
	}
	f := app.JobFilter{}
	if tags != "" {
		f.TagPrefix = &tags
	}
	terms, err := parseSearch(p.Search)
	if err != nil {
		p.SearchError = app.ErrorMessage(err)
		u.render(w, r, http.StatusBadRequest, "jobs", p)
		return
	}
	f.Search = terms
	var cursor *string
	if c := q.Get("cursor"); c != "" {
		cursor = &c
		p.First = pageURL(base, p.Search, "")
	}
	list, err := u.svc.UserJobs(r.Context(), owner.ID, cursor, f)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	if p.Jobs, err = u.jobItems(r.Context(), owner.Username, list.Jobs); err != nil {
		u.fail(w, r, err)
		return
	}
	if list.Cursor != "" {
		p.Next = pageURL(base, p.Search, list.Cursor)
	}
	u.render(w, r, http.StatusOK, "jobs", p)
}

// jobItems loads the tasks of each listed job.
func (u *ui) jobItems(ctx context.Context, owner string, jobs []*app.Job) ([]jobItem, error) {
	items := make([]jobItem, len(jobs))
	for i, j := range jobs {
		tasks, err := u.svc.Tasks(ctx, j)
		if err != nil {
			return nil, err
		}
		items[i] = jobItem{Job: j, Owner: owner, Tasks: tasks}
	}
	return items, nil
}

// pageURL is a list URL with its search and cursor.
func pageURL(base, search, cursor string) string {
	v := url.Values{}
	if search != "" {
		v.Set("search", search)
	}
	if cursor != "" {
		v.Set("cursor", cursor)
	}
	if len(v) == 0 {
		return base
	}
	return base + "?" + v.Encode()
}
