package web_test

import (
	"net/http"
	"net/url"
	"strconv"
	"testing"
)

func TestUILoginRateLimit(t *testing.T) {
	e := newUIEnv(t)
	e.user("alice")
	bob := e.user("bob")
	c := e.client(bob) // logged in before the failures: sessions are unaffected
	anon := e.client(nil)
	for i := range 5 {
		e.post(anon, "/login", url.Values{"username": {"alice"}, "password": {"guess-" + strconv.Itoa(i)}}).
			want(t, http.StatusUnauthorized, "invalid username or password")
	}
	// Now even the right password is refused, without checking it.
	r := e.post(anon, "/login", url.Values{"username": {"alice"}, "password": {"password-alice"}})
	r.want(t, http.StatusTooManyRequests, "Too many failed login attempts; try again in 5 minutes.", `name="password"`)
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra <= 0 || ra > 300 {
		t.Errorf("Retry-After %q, want 1..300 seconds", r.header.Get("Retry-After"))
	}
	for _, ck := range (&http.Response{Header: r.header}).Cookies() {
		if ck.Name == "builds_session" {
			t.Errorf("a refused login set a session cookie")
		}
	}
	// Only that pair is blocked: bob logs in from the same address. (A
	// stranger elsewhere guessing alice's password blocks only himself.)
	e.client(bob)
	// Twenty failures from one address block it for every username;
	// every test client is 127.0.0.1.
	for i := range 15 {
		e.post(anon, "/login", url.Values{"username": {"user" + strconv.Itoa(i)}, "password": {"guess"}}).
			want(t, http.StatusUnauthorized)
	}
	e.post(anon, "/login", url.Values{"username": {"bob"}, "password": {"password-bob"}}).
		want(t, http.StatusTooManyRequests, "Too many failed login attempts")
	e.get(c, "/settings").want(t, http.StatusOK, "Password")
}

// TestUIPasswordChangeRateLimit: the current password of a password change
// is a password guess like a login's, so a stolen session cannot be
// used to find the password by trying.
func TestUIPasswordChangeRateLimit(t *testing.T) {
	e := newUIEnv(t)
	bob := e.user("bob")
	c := e.client(bob)
	change := func(current string) uiResp {
		return e.post(c, "/settings/password", url.Values{"current": {current}, "new": {"new-password-1"}, "confirm": {"new-password-1"}})
	}
	e.post(c, "/settings/password", url.Values{"new": {"new-password-1"}, "confirm": {"new-password-1"}}).
		want(t, http.StatusBadRequest, "the current password is wrong")
	for i := range 4 {
		change("guess-"+strconv.Itoa(i)).want(t, http.StatusBadRequest, "the current password is wrong")
	}
	change("password-bob").want(t, http.StatusTooManyRequests, "Too many failed password attempts")
	if _, err := e.svc.Login(t.Context(), "bob", "password-bob"); err != nil {
		t.Fatalf("the password changed while blocked: %v", err)
	}
}
