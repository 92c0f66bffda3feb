package web_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// offSiteNexts are the classic open-redirect bypasses.
var offSiteNexts = []string{
	"//evil.example", "///evil.example", "/\\evil.example", "\\\\evil.example", "/%5Cevil.example",
	"/%5cevil.example", "/x/../\\evil.example", "/x/..//evil.example", "/x/../%5Cevil.example",
	"/./\\evil.example", "/%2F%2Fevil.example", "/%2f/evil.example", "/x/%2e%2e/%5cevil.example",
	"https://evil.example/", "http:/evil.example", "HTTPS://evil.example", "javascript:alert(1)",
	"/\t/evil.example", "/\n/evil.example", "/%09/evil.example", " //evil.example", "evil.example",
	"/x/../../../\\evil.example", "/" + strings.Repeat("a", 5000),
}

// checkLocation fails unless loc, resolved as a browser does (a
// backslash counting as a slash), stays on this site.
func checkLocation(t *testing.T, next, loc string) {
	t.Helper()
	base, _ := url.Parse("https://builds.test/some/page")
	u, err := base.Parse(strings.ReplaceAll(loc, "\\", "/"))
	if err != nil || u.Host != "builds.test" || !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") ||
		strings.ContainsAny(loc, "\\") || strings.Contains(strings.ToLower(loc), "%5c") {
		t.Errorf("next=%q redirects to %q (off site)", next, loc)
	}
}

// TestUIRedirectsStayOnSite tries every form that takes "next" with the
// classic bypasses, and checks that same-site paths still work.
func TestUIRedirectsStayOnSite(t *testing.T) {
	e := newUIEnv(t)
	alice := e.user("alice")
	c := e.client(alice)
	forms := []struct {
		name string
		send func(next string) uiResp
	}{
		{"LoginGET", func(next string) uiResp { return e.get(c, "/login?next="+url.QueryEscape(next)) }},
		{"LoginPOST", func(next string) uiResp {
			return e.post(e.client(nil), "/login", url.Values{"username": {"alice"}, "password": {"password-alice"}, "next": {next}})
		}},
		{"Cancel", func(next string) uiResp {
			job := e.submit(alice, jobOpts{})
			return e.post(c, fmt.Sprintf("/cancel/%d", job.ID), url.Values{"next": {next}})
		}},
	}
	for _, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			for _, next := range offSiteNexts {
				r := f.send(next)
				if r.status != http.StatusSeeOther {
					t.Fatalf("next=%q: status %d", next, r.status)
				}
				checkLocation(t, next, r.header.Get("Location"))
			}
			for next, want := range map[string]string{
				"/secrets": "/secrets", "/~alice/job/3?x=1#l5": "/~alice/job/3?x=1#l5",
				"/a/./b/../c/": "/a/c/", "/~alice/tag.with-dots_": "/~alice/tag.with-dots_",
			} {
				if loc := f.send(next).header.Get("Location"); loc != want {
					t.Errorf("next=%q: Location %q, want %q", next, loc, want)
				}
			}
		})
	}
}
