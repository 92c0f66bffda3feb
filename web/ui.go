package web

import (
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"

	"builds/app"
)

// The HTML user interface: server-rendered pages (behaviour.md §5), small
// vanilla JavaScript for live logs and the editor, everything embedded.

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// ui holds what the page handlers need. It is built once per Handler().
type ui struct {
	srv   *Server
	svc   *app.Service
	cfg   *app.Config
	pages map[string]*template.Template
	csrf  *http.CrossOriginProtection
	users *http.ServeMux // routes under /~user, see handleRoot
	// logins limits failed password logins (login_limit.go).
	logins *loginLimiter
	// ansiCSS is the stylesheet for the 256 ANSI colours (generated).
	ansiCSS []byte
}

// pageNames lists every page template; newUI fails if a file in
// templates/ is neither a page nor the layout, so none is forgotten.
var pageNames = []string{
	"index", "jobs", "job", "job_settings", "log", "login", "settings",
	"submit", "secrets", "secret_share", "secret_delete", "error", "admin",
	"repos", "repo",
}

// registerUIRoutes lists the web UI's routes.
func (s *Server) registerUIRoutes(mux *http.ServeMux) {
	u, err := newUI(s)
	if err != nil {
		// Templates are embedded: a parse error is a bug in this binary.
		panic(err)
	}
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", u.secure(http.StripPrefix("/static/", staticFiles(static))))
	mux.Handle("GET /static/ansi.css", u.secure(http.HandlerFunc(u.handleANSICSS)))

	mux.Handle("GET /login", u.secure(http.HandlerFunc(u.handleLoginForm)))
	mux.Handle("POST /login", u.form(u.handleLogin))
	mux.Handle("POST /logout", u.form(u.handleLogout))

	mux.Handle("GET /settings", u.secure(u.login(u.handleSettings)))
	mux.Handle("POST /settings/password", u.form(u.login(u.handlePasswordChange)))
	mux.Handle("POST /settings/ssh-keys", u.form(u.login(u.handleSSHKeyAdd)))
	mux.Handle("POST /settings/ssh-keys/{id}/delete", u.form(u.login(u.handleSSHKeyDelete)))
	mux.Handle("POST /settings/tokens", u.form(u.login(u.handleTokenCreate)))
	mux.Handle("POST /settings/tokens/{id}/revoke", u.form(u.login(u.handleTokenRevoke)))

	mux.Handle("GET /submit", u.secure(u.login(u.handleSubmitForm)))
	mux.Handle("POST /submit", u.form(u.login(u.handleSubmit)))
	mux.Handle("GET /resubmit/{id}", u.secure(u.login(u.handleResubmit)))
	mux.Handle("POST /cancel/{id}", u.form(u.login(u.handleCancel)))
	mux.Handle("GET /admin", u.secure(http.HandlerFunc(u.handleAdmin)))
	mux.Handle("POST /admin/runners/{id}/revoke", u.form(u.login(u.handleRunnerRevoke)))

	mux.Handle("GET /secrets", u.secure(u.login(u.handleSecrets)))
	mux.Handle("POST /secrets", u.form(u.login(u.handleSecretAdd)))
	mux.Handle("GET /secret/share/{uuid}", u.secure(u.login(u.handleSecretShareForm)))
	mux.Handle("POST /secret/share/{uuid}", u.form(u.login(u.handleSecretShare)))
	mux.Handle("GET /secret/delete/{uuid}", u.secure(u.login(u.handleSecretDeleteForm)))
	mux.Handle("POST /secret/delete", u.form(u.login(u.handleSecretDelete)))

	mux.Handle("GET /repositories", u.secure(u.login(u.handleRepos)))
	mux.Handle("POST /repositories", u.form(u.login(u.handleRepoAdd)))
	mux.Handle("GET /repositories/{name}", u.secure(u.login(u.handleRepoView)))
	mux.Handle("POST /repositories/{name}/build", u.form(u.login(u.handleRepoBuild)))
	mux.Handle("POST /repositories/{name}/settings", u.form(u.login(u.handleRepoSettings)))
	mux.Handle("POST /repositories/{name}/delete", u.form(u.login(u.handleRepoDelete)))

	// "/" catches "/", "/~user/..." and every unknown path (styled 404).
	// It has no method so that it never conflicts with API patterns.
	mux.Handle("/", u.secure(http.HandlerFunc(u.handleRoot)))
}

// registerUserRoutes lists the routes under /~user. ServeMux wildcards
// must fill whole segments, so handleRoot rewrites "/~name/rest" to
// "/u/name/rest" for this inner mux.
func (u *ui) registerUserRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /u/{user}", u.handleUser)                      // also /~user.svg
	m.HandleFunc("GET /u/{user}/rss.xml", u.handleUserRSS)           // whole profile feed
	m.HandleFunc("GET /u/{user}/job/{id}", u.handleJobView)          // job page
	m.HandleFunc("GET /u/{user}/job/{id}/events", u.handleJobEvents) // SSE live view
	m.HandleFunc("GET /u/{user}/job/{id}/log", u.handleFullLog)      // setup log, all lines
	m.HandleFunc("GET /u/{user}/job/{id}/log/{task}", u.handleFullLog)
	m.HandleFunc("GET /u/{user}/job/{id}/settings/details", u.handleJobSettings)
	m.Handle("POST /u/{user}/job/{id}/settings/details", u.form(u.login(u.handleJobSettingsSave)))
	m.HandleFunc("GET /u/{user}/{tags...}", u.handleTag) // tag pages, tag badges and feeds
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		u.renderError(w, r, http.StatusNotFound, "")
	})
}

func newUI(s *Server) (*ui, error) {
	if s.Log == nil {
		s.Log = slog.Default() // Handler() may be used without Open (tests)
	}
	u := &ui{srv: s, svc: s.Service, cfg: s.config(), pages: map[string]*template.Template{}, logins: newLoginLimiter()}
	if err := u.parseTemplates(); err != nil {
		return nil, err
	}
	u.csrf = http.NewCrossOriginProtection()
	// Requests whose Origin is the configured public origin pass even when
	// a proxy rewrote Host; without it the check compares Origin and Host.
	if err := u.csrf.AddTrustedOrigin(u.cfg.Builds.Origin); err != nil {
		s.Log.Warn("web ui: builds.origin is not a bare origin; forms are checked against Host only", "origin", u.cfg.Builds.Origin, "err", err)
	}
	u.users = http.NewServeMux()
	u.registerUserRoutes(u.users)
	u.ansiCSS = ansiStylesheet()
	return u, nil
}

// parseTemplates parses every page together with the layout, once.
func (u *ui) parseTemplates() error {
	files, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	known := map[string]bool{"layout": true}
	for _, name := range pageNames {
		known[name] = true
		t, err := template.New(name).Funcs(u.funcs()).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return errors.New("web ui: parse template " + name + ": " + err.Error())
		}
		u.pages[name] = t
	}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(f, "templates/"), ".html")
		if !known[name] {
			return errors.New("web ui: template " + f + " is not registered in pageNames")
		}
	}
	return nil
}

// handleRoot serves "/", the /~user tree and styled 404s.
func (u *ui) handleRoot(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			u.renderError(w, r, http.StatusMethodNotAllowed, "")
			return
		}
		u.handleIndex(w, r)
	case strings.HasPrefix(p, "/~") && len(p) > 2:
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/u/" + p[2:]
		r2.URL.RawPath = ""
		u.users.ServeHTTP(w, r2)
	default:
		u.renderError(w, r, http.StatusNotFound, "")
	}
}

// secure wraps every UI route. The request acts as its session alone
// (sessionOnly): a Bearer token counts for nothing here. It adds the
// headers every UI response carries; the policy allows only this
// origin's scripts and styles: no inline code, so injected markup cannot
// run.
func (u *ui) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = sessionOnly(r)
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "+
			"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

// form protects a state-changing handler against cross-site requests with
// the standard library's Fetch-metadata/Origin check.
func (u *ui) form(next http.HandlerFunc) http.Handler {
	return u.secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := u.csrf.Check(r); err != nil {
			u.renderError(w, r, http.StatusForbidden, "This form was sent from another site and was rejected. Go back, reload the page and try again.")
			return
		}
		next(w, r)
	}))
}

// login sends anonymous visitors to the login page (GET) or answers 401.
func (u *ui) login(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if app.UserFromContext(r.Context()) != nil {
			next(w, r)
			return
		}
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			http.Redirect(w, r, "/login?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		u.renderError(w, r, http.StatusUnauthorized, "You need to log in to do this.")
	}
}

// staticFiles serves embedded files with a short cache lifetime: they
// change only with the binary.
func staticFiles(fsys fs.FS) http.Handler {
	fileServer := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fileServer.ServeHTTP(w, r)
	})
}

func (u *ui) handleANSICSS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write(u.ansiCSS)
}
