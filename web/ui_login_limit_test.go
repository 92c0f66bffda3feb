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
	// The address is blocked too: every test client is 127.0.0.1.
	e.post(anon, "/login", url.Values{"username": {"bob"}, "password": {"password-bob"}}).
		want(t, http.StatusTooManyRequests, "Too many failed login attempts")
	e.get(c, "/settings").want(t, http.StatusOK, "Password")
}
