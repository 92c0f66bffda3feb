package web

import (
	"context"
	"net/http"
	"strings"

	"builds/app"
)

// Web sessions are server-side (app.Service.CreateSession): the cookie
// carries a random token whose hash names a row in the sessions table.
// Logging out deletes the row, so a copied cookie dies with the logout.
// The cookie is HttpOnly, SameSite=Lax and Secure whenever builds.origin
// is https.

const sessionCookie = "builds_session"

// sessionKey carries the request's session identity, whatever else
// authenticated it, for the UI (sessionOnly).
type sessionKey struct{}

// authenticateSession resolves the session cookie into an app.Auth of
// kind AuthSession. It becomes the request's identity unless a Bearer
// token is sent too (authenticate runs next and wins for the API); the
// UI uses the session alone (ui.secure). Cookie-authenticated requests
// that change state must come from this site: cross-origin POSTs get no
// session here, which also covers the API's endpoints when they are
// reached with a cookie.
func (s *Server) authenticateSession(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.AddTrustedOrigin(s.config().Builds.Origin) // a bad origin only means Host is compared instead
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(sessionCookie)
		if err != nil {
			next.ServeHTTP(w, r)
			return
		}
		auth, err := s.Service.SessionAuth(r.Context(), c.Value)
		if err != nil {
			if app.ErrorCode(err) == app.EINTERNAL {
				s.Log.Error("session", "err", err)
			}
			// Expired or logged out elsewhere: forget the cookie and go on
			// anonymously; pages that need a login will ask for one.
			s.clearSessionCookie(w)
			next.ServeHTTP(w, r)
			return
		}
		if err := cop.Check(r); err != nil {
			// A cross-site POST does not get the user's authority: it goes
			// on anonymously, and UI forms reject it outright (ui.form).
			next.ServeHTTP(w, r)
			return
		}
		ctx := context.WithValue(r.Context(), sessionKey{}, auth)
		next.ServeHTTP(w, r.WithContext(app.NewContextWithAuth(ctx, auth)))
	})
}

// sessionOnly makes the request's identity its session's, dropping any
// token: the web UI (account settings, pages, downloads) acts on a
// logged-in browser only, so a token is worth its grants on the API and
// nothing on the UI.
func sessionOnly(r *http.Request) *http.Request {
	sess, _ := r.Context().Value(sessionKey{}).(*app.Auth)
	if a := app.AuthFromContext(r.Context()); a == sess {
		return r
	}
	return r.WithContext(app.NewContextWithAuth(r.Context(), sess))
}

// config returns the server's configuration (the Service's if unset).
func (s *Server) config() *app.Config {
	if s.Config != nil {
		return s.Config
	}
	return s.Service.Config
}

func (s *Server) secureCookies() bool {
	return strings.HasPrefix(s.config().Builds.Origin, "https://")
}

// setSessionCookie gives the browser its session token.
func (s *Server) setSessionCookie(w http.ResponseWriter, token string) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: token, Path: "/",
		MaxAge:   int(app.SessionLifetime.Seconds()),
		HttpOnly: true, Secure: s.secureCookies(), SameSite: http.SameSiteLaxMode,
	})
}

func (s *Server) clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secureCookies(), SameSite: http.SameSiteLaxMode,
	})
}

// sessionToken returns the request's session cookie value, "" if none.
func sessionToken(r *http.Request) string {
	if c, err := r.Cookie(sessionCookie); err == nil {
		return c.Value
	}
	return ""
}
