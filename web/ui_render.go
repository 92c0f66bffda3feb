package web

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"builds/app"
)

// page is what the layout needs; every page's data embeds it.
type page struct {
	Title   string
	Site    string
	User    *app.User // the logged-in user, nil when anonymous
	Flash   string    // one-off message after a redirect
	Refresh int       // seconds for a <noscript> meta refresh, 0 for none
	Feed    string    // RSS <link rel=alternate>, "" for none
	Path    string    // request URI, for the login link's return path
	Now     time.Time
}

// newPage fills the common fields and consumes the flash cookie.
func (u *ui) newPage(w http.ResponseWriter, r *http.Request, title string) page {
	return page{
		Title: title,
		Site:  u.cfg.Builds.SiteName,
		User:  app.UserFromContext(r.Context()),
		Flash: takeFlash(w, r),
		Path:  r.URL.RequestURI(),
		Now:   u.svc.Now().UTC(),
	}
}

// render executes a page into a buffer first, so a template error becomes
// a clean 500 instead of half a page.
func (u *ui) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	var buf bytes.Buffer
	if err := u.pages[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		u.srv.Log.Error("render page", "page", name, "path", r.URL.Path, "err", err)
		http.Error(w, "Internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

type errorPage struct {
	page
	Status  int
	Heading string
	Message string
}

// renderError shows an error page in the site's style. msg "" uses the
// status's standard explanation.
func (u *ui) renderError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	heading := http.StatusText(status)
	if msg == "" {
		switch status {
		case http.StatusNotFound:
			msg = "There is nothing here, or you are not allowed to see it."
		case http.StatusForbidden:
			msg = "You are not allowed to do this."
		case http.StatusInternalServerError:
			msg = "Something went wrong on our side. It has been logged; please try again later."
		default:
			msg = heading + "."
		}
	}
	p := errorPage{page: u.newPage(w, r, fmt.Sprintf("%d %s", status, heading)), Status: status, Heading: heading, Message: msg}
	u.render(w, r, status, "error", p)
}

// fail answers err: application errors with their own message and status,
// anything else as a logged 500.
func (u *ui) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := httpStatus(err)
	if status == http.StatusInternalServerError {
		u.srv.Log.Error("web ui", "method", r.Method, "path", r.URL.Path, "err", err)
		u.renderError(w, r, status, "")
		return
	}
	if status == http.StatusUnauthorized && app.UserFromContext(r.Context()) == nil && r.Method == http.MethodGet {
		http.Redirect(w, r, "/login?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	msg := app.ErrorMessage(err)
	if status == http.StatusNotFound {
		msg = "" // the standard text; "no such job: 7" adds nothing
	}
	u.renderError(w, r, status, msg)
}

// redirect answers a form post with 303 See Other, to a same-site path
// only (safeNext), whatever the caller passes.
func redirect(w http.ResponseWriter, r *http.Request, to string) {
	http.Redirect(w, r, safeNext(to), http.StatusSeeOther)
}

const flashCookie = "builds_flash"

// setFlash stores a message shown once on the next page. It is not
// secret and is escaped when shown; base64 keeps it a valid cookie value.
func (u *ui) setFlash(w http.ResponseWriter, msg string) {
	http.SetCookie(w, &http.Cookie{
		Name: flashCookie, Value: base64.RawURLEncoding.EncodeToString([]byte(msg)), Path: "/",
		MaxAge: 60, HttpOnly: true, Secure: u.secureCookies(), SameSite: http.SameSiteLaxMode,
	})
}

func takeFlash(w http.ResponseWriter, r *http.Request) string {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return ""
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	b, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(b) > 1024 {
		return ""
	}
	return strings.ToValidUTF8(string(b), "")
}

func (u *ui) secureCookies() bool { return u.srv.secureCookies() }

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// maxNextLen bounds a "next" path; real ones are short.
const maxNextLen = 2048

// safeNext returns next as a clean same-site path (with its query and
// fragment), or "/" when it is anything else. It judges the path as it
// will be sent: dot segments resolved (http.Redirect cleans them, and
// "/x/../\host" would become "/\host"), and as browsers read it: a
// backslash counts as a slash, so any backslash, encoded or not, and any
// encoded slash or control character is refused outright.
func safeNext(next string) string {
	if next == "" || len(next) > maxNextLen || next[0] != '/' ||
		strings.ContainsFunc(next, func(r rune) bool { return r == '\\' || r < 0x20 || r == 0x7f }) {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "/"
	}
	raw := strings.ToLower(u.EscapedPath())
	if strings.Contains(raw, "%5c") || strings.Contains(raw, "%2f") || strings.ContainsAny(u.Path, "\\") {
		return "/"
	}
	clean := path.Clean(u.Path)
	if strings.HasSuffix(u.Path, "/") && clean != "/" {
		clean += "/"
	}
	if !strings.HasPrefix(clean, "/") || strings.HasPrefix(clean, "//") {
		return "/"
	}
	out := (&url.URL{Path: clean, RawQuery: u.RawQuery, Fragment: u.Fragment}).String()
	if !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") || len(out) > maxNextLen {
		return "/"
	}
	return out
}

// funcs are the template helpers.
func (u *ui) funcs() template.FuncMap {
	return template.FuncMap{
		"time":       fmtTime,
		"ago":        ago,
		"duration":   jobDuration,
		"markdown":   renderMarkdown,
		"size":       app.HumanSize,
		"icon":       statusIcon,
		"upper":      strings.ToUpper,
		"lower":      strings.ToLower,
		"crumbs":     tagCrumbs,
		"octal":      func(m *int) string { return fmt.Sprintf("%o", deref(m)) },
		"str":        func(p *string) string { return deref(p) },
		"visibility": visibilityLabel,
		"origin":     func() string { return u.cfg.Builds.Origin },
		"marker":     func(s string) template.HTML { return template.HTML(s) },
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func fmtTime(t any) string {
	switch v := t.(type) {
	case time.Time:
		return v.UTC().Format("2006-01-02 15:04:05 UTC")
	case *time.Time:
		if v == nil {
			return ""
		}
		return v.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	return ""
}

// ago renders t relative to now: "just now", "5 minutes ago".
func ago(now time.Time, t any) string {
	var tt time.Time
	switch v := t.(type) {
	case time.Time:
		tt = v
	case *time.Time:
		if v == nil {
			return ""
		}
		tt = *v
	default:
		return ""
	}
	d := now.Sub(tt)
	if d < 0 {
		d = 0
	}
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit + " ago"
		}
		return fmt.Sprintf("%d %ss ago", n, unit)
	}
	switch {
	case d < 10*time.Second:
		return "just now"
	case d < time.Minute:
		return plural(int(d/time.Second), "second")
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute")
	case d < 24*time.Hour:
		return plural(int(d/time.Hour), "hour")
	case d < 60*24*time.Hour:
		return plural(int(d/(24*time.Hour)), "day")
	}
	return tt.UTC().Format("2006-01-02")
}

// jobDuration is how long a job ran (so far, while running); "" before it
// started.
func jobDuration(now time.Time, j *app.Job) string {
	if j.Started == nil {
		return ""
	}
	end := now
	if j.Finished != nil {
		end = *j.Finished
	}
	return fmtDuration(end.Sub(*j.Started))
}

func fmtDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d < 0 {
		d = 0
	}
	h, m, s := int(d/time.Hour), int(d/time.Minute)%60, int(d/time.Second)%60
	switch {
	case h > 0:
		return fmt.Sprintf("%dh %dm %ds", h, m, s)
	case m > 0:
		return fmt.Sprintf("%dm %ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

// statusIcon is the glyph shown next to a job or task status; the status
// word is always shown too, so colour and glyph are never the only cue.
func statusIcon(status any) string {
	switch fmt.Sprint(status) {
	case "pending", "queued":
		return "◷"
	case "running":
		return "◌"
	case "success":
		return "✔"
	case "failed", "timeout":
		return "✘"
	case "cancelled":
		return "⊘"
	case "skipped":
		return "−"
	}
	return "?"
}

func visibilityLabel(v app.Visibility) string {
	switch v {
	case app.Public:
		return "Public"
	case app.Private:
		return "Private"
	}
	return "Unlisted"
}

// crumb is one link of a tag breadcrumb trail.
type crumb struct{ Name, URL string }

// tagCrumbs links each prefix of "a/b/c" under /~user.
func tagCrumbs(owner, tags string) []crumb {
	if tags == "" {
		return nil
	}
	// Each crumb links to its prefix, so the markup grows with the square
	// of the tag count: show at most app.MaxTags (jobs stored before the
	// limit may have more) and no tag longer than app.MaxTagLength.
	parts := strings.SplitN(tags, "/", app.MaxTags+1)
	more := len(parts) > app.MaxTags
	if more {
		parts = parts[:app.MaxTags]
	}
	out := make([]crumb, 0, len(parts)+1)
	var path strings.Builder
	path.WriteString("/~" + owner)
	for _, t := range parts {
		if len(t) > app.MaxTagLength {
			out = append(out, crumb{Name: t[:app.MaxTagLength] + "…"})
			return out
		}
		path.WriteString("/" + url.PathEscape(t))
		out = append(out, crumb{Name: t, URL: path.String()})
	}
	if more {
		out = append(out, crumb{Name: "…"})
	}
	return out
}
