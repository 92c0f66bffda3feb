package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"builds/app"
)

// TestUITokensAreNotSessions: an API token (a job's OAUTH2_TOKEN, say)
// counts for nothing on the web UI. With one, account settings are out of
// reach and private jobs are invisible there, whatever its grants; the
// API still takes it for what it grants.
func TestUITokensAreNotSessions(t *testing.T) {
	e := newUIEnv(t)
	alice := e.user("alice")
	private := e.submit(alice, jobOpts{visibility: app.Private})
	e.appendLog(private, "", "private setup log line\n")
	ctx := as(alice)
	keyLine := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl attacker@evil"

	for _, grants := range []string{"PROFILE:RO", ""} { // "" = every grant
		t.Run("Grants="+grants, func(t *testing.T) {
			secret, tok, err := e.svc.CreateToken(ctx, alice.ID, grants, nil, "build job")
			if err != nil {
				t.Fatal(err)
			}
			bearer := []string{"Authorization", "Bearer " + secret}
			anon := e.client(nil)
			before, _ := e.svc.Tokens(ctx)

			e.post(anon, "/settings/tokens", url.Values{"comment": {"minted"}, "scope-JOBS": {"RW"}, "scope-LOGS": {"RW"},
				"scope-PROFILE": {"RW"}, "scope-SECRETS": {"RW"}, "expires": {"never"}}, bearer...).
				want(t, http.StatusUnauthorized, "You need to log in")
			if after, _ := e.svc.Tokens(ctx); len(after) != len(before) {
				t.Errorf("a token minted a token: %d -> %d", len(before), len(after))
			}
			e.post(anon, "/settings/ssh-keys", url.Values{"key": {keyLine}}, bearer...).want(t, http.StatusUnauthorized)
			if keys, _ := e.svc.SSHKeys(ctx); len(keys) != 0 {
				t.Errorf("a token added an SSH key: %v", keys)
			}
			e.post(anon, fmt.Sprintf("/settings/tokens/%d/revoke", tok.ID), nil, bearer...).want(t, http.StatusUnauthorized)
			if _, err := e.svc.Authenticate(context.Background(), secret); err != nil {
				t.Errorf("a token revoked itself: %v", err)
			}
			e.post(anon, "/settings/password", url.Values{"current": {"password-alice"}, "new": {"hijacked-pw"}, "confirm": {"hijacked-pw"}},
				bearer...).want(t, http.StatusUnauthorized)
			if _, err := e.svc.Login(context.Background(), "alice", "password-alice"); err != nil {
				t.Errorf("a token changed the password: %v", err)
			}
			e.post(anon, fmt.Sprintf("/cancel/%d", private.ID), nil, bearer...).want(t, http.StatusUnauthorized)

			req := func(path string) uiResp {
				r, _ := http.NewRequest("GET", e.url+path, nil)
				r.Header.Set(bearer[0], bearer[1])
				return e.do(anon, r)
			}
			if r := req("/settings"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/login") {
				t.Errorf("GET /settings with a token: %d %s", r.status, r.header.Get("Location"))
			}
			for _, p := range []string{"/~alice/job/%d", "/~alice/job/%d/log", "/~alice/job/%d/log/build", "/~alice/job/%d/events"} {
				r := req(fmt.Sprintf(p, private.ID))
				if r.status != http.StatusNotFound || strings.Contains(r.body, "private setup log line") {
					t.Errorf("GET %s with a token: %d\n%s", fmt.Sprintf(p, private.ID), r.status, trimBody(r.body))
				}
			}
		})
	}
	// The same forms work for the logged-in owner, and the owner's
	// browser still sees the private job: the session is what counts.
	c := e.client(alice)
	e.get(c, fmt.Sprintf("/~alice/job/%d/log", private.ID)).want(t, http.StatusOK, "private setup log line")
	// a browser that also sends a token is still its session
	r, _ := http.NewRequest("GET", e.url+fmt.Sprintf("/~alice/job/%d/log", private.ID), nil)
	secret, _, _ := e.svc.CreateToken(ctx, alice.ID, "PROFILE:RO", nil, "")
	r.Header.Set("Authorization", "Bearer "+secret)
	e.do(c, r).want(t, http.StatusOK, "private setup log line")
}
