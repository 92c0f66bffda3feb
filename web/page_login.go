package web

import (
	"net/http"
	"strconv"
	"time"

	"builds/app"
)

type loginPage struct {
	page
	Username string
	Next     string
	Error    string
}

// handleLoginForm shows the login form; logged-in users go on at once.
func (u *ui) handleLoginForm(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if app.UserFromContext(r.Context()) != nil {
		redirect(w, r, next)
		return
	}
	u.render(w, r, http.StatusOK, "login", loginPage{page: u.newPage(w, r, "Log in"), Next: next})
}

// handleLogin checks the password and starts a session.
func (u *ui) handleLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		u.renderError(w, r, http.StatusBadRequest, "The login form could not be read.")
		return
	}
	name, next := r.PostForm.Get("username"), safeNext(r.PostForm.Get("next"))
	keys, now := loginKeys(name, r), u.svc.Now()
	if wait, ok := u.logins.begin(now, keys...); !ok {
		u.srv.Log.Debug("web login refused: too many failures", "user", name, "remote", r.RemoteAddr)
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		p := loginPage{page: u.newPage(w, r, "Log in"), Username: name, Next: next, Error: tooManyAttempts("login", wait)}
		u.render(w, r, http.StatusTooManyRequests, "login", p)
		return
	}
	user, err := u.svc.Login(r.Context(), name, r.PostForm.Get("password"))
	if err != nil {
		p := loginPage{page: u.newPage(w, r, "Log in"), Username: name, Next: next, Error: app.ErrorMessage(err)}
		if app.ErrorCode(err) == app.EUNAUTHORIZED {
			u.srv.Log.Info("web login failed", "user", name, "remote", r.RemoteAddr)
		} else {
			u.logins.end(now, false, keys...) // not the caller's fault
			u.srv.Log.Error("login", "err", err)
		}
		u.render(w, r, httpStatus(err), "login", p)
		return
	}
	u.logins.end(now, true, keys...)
	token, _, err := u.svc.CreateSession(r.Context(), user)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.srv.setSessionCookie(w, token)
	u.srv.Log.Info("web login", "user", user.Username)
	redirect(w, r, next)
}

// handleLogout ends the session server-side and drops the cookie.
func (u *ui) handleLogout(w http.ResponseWriter, r *http.Request) {
	if tok := sessionToken(r); tok != "" {
		if err := u.svc.EndSession(r.Context(), tok); err != nil {
			u.fail(w, r, err)
			return
		}
	}
	u.srv.clearSessionCookie(w)
	redirect(w, r, "/")
}
