package web

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"html"
	"net/http"
	"strings"
	"unicode/utf8"

	"builds/app"
)

// Badges (behaviour.md §5.1) show the result of the newest finished job
// (success, failed or timeout) of a user or tag prefix. Unlike upstream
// they count only PUBLIC jobs, whoever asks: badges are embedded in
// READMEs and fetched anonymously, and private results must not leak.
// Each URL has its own ETag (derived from the SVG), so caches keep one
// entry per tag.

// badgeStatus returns "success", "failure" or "unknown".
func (u *ui) badgeStatus(ctx context.Context, owner *app.User, tags string) (string, error) {
	f := app.JobFilter{
		Status:     []app.JobStatus{app.JobSuccess, app.JobFailed, app.JobTimeout},
		Visibility: []app.Visibility{app.Public},
		Limit:      1,
	}
	if tags != "" {
		f.TagPrefix = &tags
	}
	// An anonymous context: the badge is the same for every viewer.
	list, err := u.svc.UserJobs(anonymous(ctx), owner.ID, nil, f)
	if err != nil {
		return "", err
	}
	if len(list.Jobs) == 0 {
		return "unknown", nil
	}
	if list.Jobs[0].Status == app.JobSuccess {
		return "success", nil
	}
	return "failure", nil
}

// anonymous drops the caller's identity from ctx.
func anonymous(ctx context.Context) context.Context {
	return app.NewContextWithAuth(ctx, nil)
}

// serveBadge answers /~user.svg and /~user/<tags>.svg.
func (u *ui) serveBadge(w http.ResponseWriter, r *http.Request, name, tags string) {
	owner, err := u.findUser(r.Context(), name)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	status, err := u.badgeStatus(r.Context(), owner, tags)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	label := r.URL.Query().Get("name")
	if label == "" {
		label = u.cfg.Builds.SiteName
	}
	svg := badgeSVG(label, status)
	sum := sha1.Sum([]byte(svg))
	etag := `"` + hex.EncodeToString(sum[:]) + `"`
	h := w.Header()
	h.Set("Content-Type", "image/svg+xml")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", etag)
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if r.Method != http.MethodHead {
		w.Write([]byte(svg))
	}
}

var badgeColours = map[string]string{"success": "#4c1", "failure": "#e05d44", "unknown": "#9f9f9f"}

// badgeSVG draws a two-part badge: label on grey, status on its colour.
// Widths are estimated from the character count (Verdana 11px ~ 7px).
func badgeSVG(label, status string) string {
	if utf8.RuneCountInString(label) > 40 {
		label = string([]rune(label)[:40])
	}
	lw := 10 + 7*utf8.RuneCountInString(label)
	sw := 10 + 7*len(status)
	total := lw + sw
	esc := html.EscapeString
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="%[1]d" height="20" role="img" aria-label="%[2]s: %[3]s">`+
		`<title>%[2]s: %[3]s</title>`+
		`<linearGradient id="s" x2="0" y2="100%%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>`+
		`<clipPath id="r"><rect width="%[1]d" height="20" rx="3" fill="#fff"/></clipPath>`+
		`<g clip-path="url(#r)"><rect width="%[4]d" height="20" fill="#555"/><rect x="%[4]d" width="%[5]d" height="20" fill="%[6]s"/>`+
		`<rect width="%[1]d" height="20" fill="url(#s)"/></g>`+
		`<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">`+
		`<text x="%[7]d" y="15" fill="#010101" fill-opacity=".3">%[2]s</text><text x="%[7]d" y="14">%[2]s</text>`+
		`<text x="%[8]d" y="15" fill="#010101" fill-opacity=".3">%[3]s</text><text x="%[8]d" y="14">%[3]s</text></g></svg>`,
		total, esc(label), status, lw, sw, badgeColours[status], lw/2, lw+sw/2)
}
