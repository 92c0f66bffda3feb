package web

import (
	"fmt"
	"net/http"
	"strings"

	"builds/app"
)

// repoFormLimit bounds the connect form: a URL, a token and a few short
// fields.
const repoFormLimit = 16 << 10

// repoPushLimit is how many pushes and statuses a repository page shows.
const repoPushLimit = 30

type reposPage struct {
	page
	Repos []*app.Repo
	Error string
	Form  repoForm // the rejected form, to fix and resend
}

type repoForm struct {
	Kind, URL, Name, DeployKey, Branches, Visibility, Schedule string
	PullRequests                                               bool
}

// repoPush is one push on a repository page, with the jobs it started.
type repoPush struct {
	Push *app.RepoPush
	Jobs []*app.Job
}

type repoPage struct {
	page
	Repo       *app.Repo
	WebhookURL string
	// Secret is the webhook secret, set only on the page shown right
	// after connecting: it is never shown again.
	Secret   string
	Pushes   []repoPush
	Statuses []*app.CommitStatus
	Error    string
}

// Short is a commit's first 12 hex digits.
func (repoPage) Short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// handleRepos lists the viewer's repositories with the connect form.
func (u *ui) handleRepos(w http.ResponseWriter, r *http.Request) {
	u.renderRepos(w, r, http.StatusOK, reposPage{Form: repoForm{Kind: string(app.ForgeForgejo), Visibility: string(app.Unlisted)}})
}

func (u *ui) renderRepos(w http.ResponseWriter, r *http.Request, status int, p reposPage) {
	p.page = u.newPage(w, r, "Repositories")
	list, err := u.svc.Repositories(r.Context())
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p.Repos = list
	u.render(w, r, status, "repos", p)
}

// handleRepoAdd connects a repository and shows its page with the
// webhook secret, once.
func (u *ui) handleRepoAdd(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, repoFormLimit)
	if err := r.ParseForm(); err != nil {
		u.renderRepos(w, r, http.StatusBadRequest, reposPage{Error: "The form could not be read (too large?)."})
		return
	}
	form := repoForm{Kind: r.PostFormValue("kind"), URL: strings.TrimSpace(r.PostFormValue("url")),
		Name: strings.TrimSpace(r.PostFormValue("name")), DeployKey: strings.TrimSpace(r.PostFormValue("deploy_key")),
		Branches: r.PostFormValue("branches"), Visibility: r.PostFormValue("visibility"),
		Schedule: strings.TrimSpace(r.PostFormValue("schedule")), PullRequests: r.PostFormValue("pull_requests") != ""}
	in := app.RepoInput{Kind: app.ForgeKind(form.Kind), CloneURL: form.URL, Name: form.Name, DeployKey: form.DeployKey,
		Token: strings.TrimSpace(r.PostFormValue("token")), Branches: strings.Fields(form.Branches),
		Visibility: app.Visibility(form.Visibility), PullRequests: form.PullRequests, Schedule: form.Schedule}
	nr, err := u.svc.CreateRepository(r.Context(), in)
	if err != nil {
		if app.ErrorCode(err) == app.EINTERNAL {
			u.fail(w, r, err)
			return
		}
		u.renderRepos(w, r, httpStatus(err), reposPage{Error: app.ErrorMessage(err), Form: form})
		return
	}
	u.renderRepo(w, r, http.StatusCreated, nr.Repo, nr.WebhookSecret, "")
}

// handleRepoView shows one of the viewer's repositories: its settings,
// webhook, latest pushes and what the forge was told.
func (u *ui) handleRepoView(w http.ResponseWriter, r *http.Request) {
	repo, err := u.svc.OwnRepository(r.Context(), r.PathValue("name"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.renderRepo(w, r, http.StatusOK, repo, "", "")
}

func (u *ui) renderRepo(w http.ResponseWriter, r *http.Request, status int, repo *app.Repo, secret, errMsg string) {
	ctx := r.Context()
	p := repoPage{page: u.newPage(w, r, repo.Name), Repo: repo, WebhookURL: u.cfg.RepoWebhookURL(repo), Secret: secret, Error: errMsg}
	pushes, err := u.svc.RepositoryPushes(ctx, repo, repoPushLimit)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	for _, push := range pushes {
		rp := repoPush{Push: push}
		if push.GroupID != nil {
			if g, err := u.svc.Group(ctx, *push.GroupID); err == nil {
				rp.Jobs, _ = u.svc.GroupJobs(ctx, g)
			}
		}
		p.Pushes = append(p.Pushes, rp)
	}
	if p.Statuses, err = u.svc.CommitStatuses(ctx, repo, repoPushLimit); err != nil {
		u.fail(w, r, err)
		return
	}
	u.render(w, r, status, "repo", p)
}

// repoPost reads a form posted to one of the viewer's repositories,
// answering itself (false) when the repository or the form is wrong.
func (u *ui) repoPost(w http.ResponseWriter, r *http.Request) (*app.Repo, bool) {
	repo, err := u.svc.OwnRepository(r.Context(), r.PathValue("name"))
	if err != nil {
		u.fail(w, r, err)
		return nil, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, repoFormLimit)
	if err := r.ParseForm(); err != nil {
		u.renderRepo(w, r, http.StatusBadRequest, repo, "", "The form could not be read.")
		return nil, false
	}
	return repo, true
}

// repoFailed shows a repository's page with what went wrong, or the
// error page for internal errors.
func (u *ui) repoFailed(w http.ResponseWriter, r *http.Request, repo *app.Repo, err error) {
	if app.ErrorCode(err) == app.EINTERNAL {
		u.fail(w, r, err)
		return
	}
	u.renderRepo(w, r, httpStatus(err), repo, "", app.ErrorMessage(err))
}

// handleRepoBuild builds the tip of a branch (or a tag or commit) now.
func (u *ui) handleRepoBuild(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	repo, ok := u.repoPost(w, r)
	if !ok {
		return
	}
	res, err := u.svc.BuildRepository(ctx, repo.Name, strings.TrimSpace(r.PostFormValue("ref")))
	if err != nil {
		u.repoFailed(w, r, repo, err)
		return
	}
	switch {
	case res.Group != nil:
		u.setFlash(w, fmt.Sprintf("Started job group %d for %s.", res.Group.ID, res.Push.Ref))
	case res.Message != "":
		u.setFlash(w, "Nothing built: "+res.Message+".")
	}
	redirect(w, r, "/repositories/"+repo.Name)
}

// handleRepoSettings changes whether pull requests are built and the
// schedule.
func (u *ui) handleRepoSettings(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	repo, ok := u.repoPost(w, r)
	if !ok {
		return
	}
	pulls, sched := r.PostFormValue("pull_requests") != "", strings.TrimSpace(r.PostFormValue("schedule"))
	upd := app.RepoUpdate{Schedule: &sched}
	if repo.Kind != app.ForgeGit || pulls {
		upd.PullRequests = &pulls
	}
	if _, err := u.svc.UpdateRepository(ctx, repo.Name, upd); err != nil {
		u.repoFailed(w, r, repo, err)
		return
	}
	u.setFlash(w, "Settings of "+repo.Name+" saved.")
	redirect(w, r, "/repositories/"+repo.Name)
}

// handleRepoDelete disconnects a repository; its jobs stay.
func (u *ui) handleRepoDelete(w http.ResponseWriter, r *http.Request) {
	repo, err := u.svc.DeleteRepository(r.Context(), r.PathValue("name"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.setFlash(w, "Repository "+repo.Name+" disconnected; its webhook is refused from now on.")
	redirect(w, r, "/repositories")
}
