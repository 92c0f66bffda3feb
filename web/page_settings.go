package web

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"builds/app"
)

type settingsPage struct {
	page
	Keys     []*app.SSHKey
	Tokens   []*app.Token
	Scopes   []app.Scope
	NewToken string // the secret of a token just created, shown once
	Error    string
	KeyText  string // the rejected key, to fix and resend
}

// handleSettings shows the password, SSH key and token forms.
func (u *ui) handleSettings(w http.ResponseWriter, r *http.Request) {
	u.renderSettings(w, r, http.StatusOK, settingsPage{})
}

func (u *ui) renderSettings(w http.ResponseWriter, r *http.Request, status int, p settingsPage) {
	p.page = u.newPage(w, r, "Settings")
	var err error
	if p.Keys, err = u.svc.SSHKeys(r.Context()); err != nil {
		u.fail(w, r, err)
		return
	}
	if p.Tokens, err = u.svc.Tokens(r.Context()); err != nil {
		u.fail(w, r, err)
		return
	}
	p.Scopes = app.Scopes
	u.render(w, r, status, "settings", p)
}

// settingsError re-renders the settings page with a message, or fails for
// errors users cannot fix.
func (u *ui) settingsError(w http.ResponseWriter, r *http.Request, err error, p settingsPage) {
	if code := app.ErrorCode(err); code != app.EINVALID && code != app.ECONFLICT {
		u.fail(w, r, err)
		return
	}
	p.Error = app.ErrorMessage(err)
	u.renderSettings(w, r, httpStatus(err), p)
}

func parseSmallForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return app.Errorf(app.EINVALID, "the form could not be read: %v", err)
	}
	return nil
}

// handlePasswordChange sets a new password and ends the other sessions.
func (u *ui) handlePasswordChange(w http.ResponseWriter, r *http.Request) {
	if err := parseSmallForm(w, r); err != nil {
		u.settingsError(w, r, err, settingsPage{})
		return
	}
	f := r.PostForm
	if f.Get("new") != f.Get("confirm") {
		u.settingsError(w, r, app.Errorf(app.EINVALID, "the new passwords do not match"), settingsPage{})
		return
	}
	// the current password is a password guess: limited like logins
	keys, now := loginKeys(app.UserFromContext(r.Context()).Username, r), u.svc.Now()
	if wait, ok := u.logins.begin(now, keys...); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		u.renderSettings(w, r, http.StatusTooManyRequests, settingsPage{Error: tooManyAttempts("password", wait)})
		return
	}
	err := u.svc.ChangePassword(r.Context(), f.Get("current"), f.Get("new"), sessionToken(r))
	if !errors.Is(err, app.ErrWrongPassword) {
		u.logins.end(now, err == nil, keys...) // only wrong guesses count
	}
	if err != nil {
		u.settingsError(w, r, err, settingsPage{})
		return
	}
	u.setFlash(w, "Your password was changed. Other sessions were logged out.")
	redirect(w, r, "/settings")
}

// handleSSHKeyAdd registers a public key for `ssh ... connect`.
func (u *ui) handleSSHKeyAdd(w http.ResponseWriter, r *http.Request) {
	if err := parseSmallForm(w, r); err != nil {
		u.settingsError(w, r, err, settingsPage{})
		return
	}
	line := r.PostForm.Get("key")
	k, err := u.svc.AddSSHKey(r.Context(), app.UserFromContext(r.Context()).ID, line)
	if err != nil {
		u.settingsError(w, r, err, settingsPage{KeyText: line})
		return
	}
	u.setFlash(w, "SSH key "+k.Fingerprint+" added.")
	redirect(w, r, "/settings")
}

func (u *ui) handleSSHKeyDelete(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		u.renderError(w, r, http.StatusNotFound, "")
		return
	}
	if err := u.svc.DeleteSSHKey(r.Context(), id); err != nil {
		u.fail(w, r, err)
		return
	}
	u.setFlash(w, "SSH key removed.")
	redirect(w, r, "/settings")
}

// handleTokenCreate issues a personal access token and shows it once.
// The answer is the page itself, not a redirect, so the secret never
// travels in a URL or a cookie.
func (u *ui) handleTokenCreate(w http.ResponseWriter, r *http.Request) {
	if err := parseSmallForm(w, r); err != nil {
		u.settingsError(w, r, err, settingsPage{})
		return
	}
	grants, err := grantsFromForm(r)
	if err != nil {
		u.settingsError(w, r, err, settingsPage{})
		return
	}
	expiry, err := app.ParseExpiry(r.PostForm.Get("expires"))
	if err != nil {
		u.settingsError(w, r, err, settingsPage{})
		return
	}
	comment := strings.TrimSpace(r.PostForm.Get("comment"))
	if len(comment) > 256 {
		u.settingsError(w, r, app.Errorf(app.EINVALID, "the comment must be at most 256 characters"), settingsPage{})
		return
	}
	secret, _, err := u.svc.CreateToken(r.Context(), app.UserFromContext(r.Context()).ID, grants, expiry, comment)
	if err != nil {
		u.settingsError(w, r, err, settingsPage{})
		return
	}
	u.renderSettings(w, r, http.StatusOK, settingsPage{NewToken: secret})
}

// grantsFromForm builds a grants string from one select per scope
// (none, RO, RW); every scope at RW is "" (all grants).
func grantsFromForm(r *http.Request) (string, error) {
	var parts []string
	all := true
	for _, sc := range app.Scopes {
		switch v := r.PostForm.Get("scope-" + string(sc)); v {
		case "RW":
			parts = append(parts, string(sc)+":RW")
		case "RO":
			parts = append(parts, string(sc)+":RO")
			all = false
		case "", "none":
			all = false
		default:
			return "", app.Errorf(app.EINVALID, "invalid access %q for %s (want none, RO or RW)", v, sc)
		}
	}
	if len(parts) == 0 {
		return "", app.Errorf(app.EINVALID, "a token needs at least one grant")
	}
	if all {
		return "", nil
	}
	return strings.Join(parts, " "), nil
}

func (u *ui) handleTokenRevoke(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		u.renderError(w, r, http.StatusNotFound, "")
		return
	}
	if err := u.svc.RevokeToken(r.Context(), id); err != nil {
		u.fail(w, r, err)
		return
	}
	u.setFlash(w, "Token revoked.")
	redirect(w, r, "/settings")
}
