package web

import (
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

// authenticateSession resolves the session cookie into an app.Auth of
// kind AuthSession when the request carries no Bearer token (authenticate
// runs first and wins). Cookie-authenticated requests that change state
// must come from this site: cross-origin POSTs are refused here, which
// also covers the API's endpoints when they are reached with a cookie.
func (s *Server) authenticateSession(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.AddTrustedOrigin(s.config().Builds.Origin) // a bad origin only means Host is compared instead
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(sessionCookie)
		if err != nil || app.AuthFromContext(r.Context()) != nil || r.Header.Get("Authorization") != "" {
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
		next.ServeHTTP(w, r.WithContext(app.NewContextWithAuth(r.Context(), auth)))
	})
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
