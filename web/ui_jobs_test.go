package web_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"builds/app"
)

// jobIDs returns the job ids linked from a job list, in page order.
func jobIDs(body string) []string {
	var ids []string
	for _, m := range regexp.MustCompile(`class="job-id" href="/~[a-z0-9_-]+/job/(\d+)"`).FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

func idsOf(jobs ...*app.Job) []string {
	var ids []string
	for _, j := range jobs {
		ids = append(ids, fmt.Sprint(j.ID))
	}
	return ids
}

func TestUIJobListsVisibility(t *testing.T) {
	e := newUIEnv(t)
	alice, bob := e.user("alice"), e.user("bob")
	pub := e.submit(alice, jobOpts{visibility: app.Public, note: "public job"})
	unl := e.submit(alice, jobOpts{visibility: app.Unlisted, note: "unlisted job"})
	priv := e.submit(alice, jobOpts{visibility: app.Private, note: "private job"})
	bobs := e.submit(bob, jobOpts{visibility: app.Public})

	tests := []struct {
		name   string
		client *http.Client
		path   string
		want   []string
	}{
		{"own index lists every visibility", e.client(alice), "/", idsOf(priv, unl, pub)},
		{"own profile lists every visibility", e.client(alice), "/~alice", idsOf(priv, unl, pub)},
		{"other user sees public only", e.client(bob), "/~alice", idsOf(pub)},
		{"anonymous sees public only", e.client(nil), "/~alice", idsOf(pub)},
		{"bob's index is bob's jobs", e.client(bob), "/", idsOf(bobs)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.get(tt.client, tt.path)
			r.want(t, http.StatusOK)
			if got := jobIDs(r.body); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("listed jobs %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUIJobPageVisibility(t *testing.T) {
	e := newUIEnv(t)
	alice, bob := e.user("alice"), e.user("bob")
	unl := e.submit(alice, jobOpts{visibility: app.Unlisted})
	priv := e.submit(alice, jobOpts{visibility: app.Private})
	tests := []struct {
		name   string
		client *http.Client
		path   string
		status int
	}{
		{"owner sees private", e.client(alice), fmt.Sprintf("/~alice/job/%d", priv.ID), 200},
		{"other user gets 404 for private", e.client(bob), fmt.Sprintf("/~alice/job/%d", priv.ID), 404},
		{"anonymous gets 404 for private", e.client(nil), fmt.Sprintf("/~alice/job/%d", priv.ID), 404},
		{"anonymous sees unlisted", e.client(nil), fmt.Sprintf("/~alice/job/%d", unl.ID), 200},
		{"wrong owner in URL", e.client(alice), fmt.Sprintf("/~bob/job/%d", unl.ID), 404},
		{"unknown job", e.client(alice), "/~alice/job/999999", 404},
		{"private log stream", e.client(bob), fmt.Sprintf("/~alice/job/%d/events", priv.ID), 404},
		{"private full log", e.client(nil), fmt.Sprintf("/~alice/job/%d/log", priv.ID), 404},
		{"private job settings", e.client(bob), fmt.Sprintf("/~alice/job/%d/settings/details", priv.ID), 404},
		{"resubmit of a private job", e.client(bob), fmt.Sprintf("/resubmit/%d", priv.ID), 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.get(tt.client, tt.path).want(t, tt.status)
		})
	}
}

func TestUITagPages(t *testing.T) {
	e := newUIEnv(t)
	alice := e.user("alice")
	main := e.submit(alice, jobOpts{visibility: app.Public, tags: []string{"proj", "main"}})
	top := e.submit(alice, jobOpts{visibility: app.Public, tags: []string{"proj"}})
	e.submit(alice, jobOpts{visibility: app.Public, tags: []string{"projx"}})
	anon := e.client(nil)

	r := e.get(anon, "/~alice/proj")
	r.want(t, http.StatusOK, `<a href="/~alice/proj">proj</a>`)
	if got := jobIDs(r.body); strings.Join(got, ",") != strings.Join(idsOf(top, main), ",") {
		t.Errorf("/~alice/proj lists %v, want %v", got, idsOf(top, main))
	}
	r = e.get(anon, "/~alice/proj/main")
	r.want(t, http.StatusOK, `<a href="/~alice/proj">proj</a>/<a href="/~alice/proj/main">main</a>`)
	if got := jobIDs(r.body); strings.Join(got, ",") != strings.Join(idsOf(main), ",") {
		t.Errorf("/~alice/proj/main lists %v", got)
	}
	e.get(anon, "/~alice/unknown-tag").want(t, http.StatusOK, "No jobs to show")
	e.get(anon, "/~alice/bad%20tag").want(t, http.StatusNotFound)
	e.get(anon, "/~alice/proj/").want(t, http.StatusOK)
}

func TestUISearch(t *testing.T) {
	e := newUIEnv(t)
	alice := e.user("alice")
	ok := e.submit(alice, jobOpts{note: "release build", tags: []string{"rel"}})
	bad := e.submit(alice, jobOpts{note: "nightly", manifest: "image: alpine/edge\ntasks:\n  - a: echo\n"})
	e.start(ok)
	e.finish(ok, app.JobSuccess)
	e.start(bad)
	e.finish(bad, app.JobFailed)
	c := e.client(alice)
	tests := []struct {
		name, search string
		status       int
		want         []string
		message      string
	}{
		{"status", "status:failed", 200, idsOf(bad), ""},
		{"status upper case", "status:SUCCESS", 200, idsOf(ok), ""},
		{"negated status", "!status:failed", 200, idsOf(ok), ""},
		{"image", "image:alpine", 200, idsOf(bad), ""},
		{"tags", "tags:rel", 200, idsOf(ok), ""},
		{"free text", "release", 200, idsOf(ok), ""},
		{"quoted free text", `"release build"`, 200, idsOf(ok), ""},
		{"no match", "nothing-like-this", 200, nil, ""},
		{"unknown key", "foo:bar", 400, nil, "Invalid search key &#39;foo&#39;"},
		{"bad status", "status:bogus", 400, nil, "Invalid status: &#39;bogus&#39;"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.get(c, "/?search="+urlEscape(tt.search))
			r.want(t, tt.status, tt.message)
			if got := jobIDs(r.body); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("search %q lists %v, want %v", tt.search, got, tt.want)
			}
		})
	}
}

func urlEscape(s string) string {
	return strings.NewReplacer(" ", "+", `"`, "%22", "!", "%21", ":", "%3A").Replace(s)
}

func TestUIPagination(t *testing.T) {
	e := newUIEnv(t)
	alice := e.user("alice")
	for i := 0; i < app.PageSize+5; i++ {
		e.submit(alice, jobOpts{visibility: app.Public})
	}
	anon := e.client(nil)
	r := e.get(anon, "/~alice")
	r.want(t, http.StatusOK, "older »")
	if n := len(jobIDs(r.body)); n != app.PageSize {
		t.Fatalf("first page has %d jobs, want %d", n, app.PageSize)
	}
	next := regexp.MustCompile(`href="(/~alice\?cursor=[^"]+)">older`).FindStringSubmatch(r.body)
	if next == nil {
		t.Fatal("no link to the next page")
	}
	r = e.get(anon, strings.ReplaceAll(next[1], "&amp;", "&"))
	r.want(t, http.StatusOK, "« newest")
	if n := len(jobIDs(r.body)); n != 5 {
		t.Errorf("second page has %d jobs, want 5", n)
	}
	e.get(anon, "/~alice?cursor=forged").want(t, http.StatusBadRequest, "Invalid cursor")
}

func TestUIBadges(t *testing.T) {
	e := newUIEnv(t)
	alice := e.user("alice")
	pub := e.submit(alice, jobOpts{visibility: app.Public, tags: []string{"lib"}})
	e.start(pub)
	e.finish(pub, app.JobSuccess)
	// A newer private failure must not show on any badge.
	priv := e.submit(alice, jobOpts{visibility: app.Private, tags: []string{"lib"}})
	e.start(priv)
	e.finish(priv, app.JobFailed)
	app2 := e.submit(alice, jobOpts{visibility: app.Public, tags: []string{"app"}})
	e.start(app2)
	e.finish(app2, app.JobTimeout)

	tests := []struct {
		name   string
		client *http.Client
		path   string
		want   string
	}{
		{"user badge, anonymous", e.client(nil), "/~alice.svg", "failure"}, // newest public: app2 timeout
		{"lib tag, anonymous", e.client(nil), "/~alice/lib.svg", "success"},
		{"lib tag, owner", e.client(alice), "/~alice/lib.svg", "success"},
		{"app tag", e.client(nil), "/~alice/app.svg", "failure"},
		{"unknown tag", e.client(nil), "/~alice/nothing.svg", "unknown"},
	}
	etags := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.get(tt.client, tt.path)
			r.want(t, http.StatusOK, ">"+tt.want+"</text>", ">testbuilds</text>")
			if ct := r.header.Get("Content-Type"); ct != "image/svg+xml" {
				t.Errorf("Content-Type %q", ct)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("Cache-Control %q", cc)
			}
			etags[tt.path] = r.header.Get("ETag")
		})
	}
	if etags["/~alice/lib.svg"] == etags["/~alice/app.svg"] {
		t.Error("badges with different results share an ETag")
	}
	req, _ := http.NewRequest("GET", e.url+"/~alice/lib.svg", nil)
	req.Header.Set("If-None-Match", etags["/~alice/lib.svg"])
	e.do(e.client(nil), req).want(t, http.StatusNotModified)
	e.get(e.client(nil), "/~alice.svg?name=<x>").want(t, http.StatusOK, "&lt;x&gt;")
}

func TestUIRSS(t *testing.T) {
	e := newUIEnv(t)
	alice := e.user("alice")
	pub := e.submit(alice, jobOpts{visibility: app.Public, note: "public <note>", tags: []string{"lib"}})
	priv := e.submit(alice, jobOpts{visibility: app.Private, note: "secret note"})
	r := e.get(e.client(nil), "/~alice/rss.xml")
	r.want(t, http.StatusOK, fmt.Sprintf("<title>#%d (queued)</title>", pub.ID), "public &lt;note&gt;",
		fmt.Sprintf("%s/~alice/job/%d", e.cfg.Builds.Origin, pub.ID))
	r.lacks(t, "secret note", fmt.Sprintf("#%d ", priv.ID))
	e.get(e.client(alice), "/~alice/rss.xml").want(t, http.StatusOK, "secret note")
	e.get(e.client(nil), "/~alice/lib/rss.xml").want(t, http.StatusOK, "public &lt;note&gt;")
	// With a search but no status: term, only finished jobs.
	e.get(e.client(nil), "/~alice/rss.xml?search=public").lacks(t, "public &lt;note&gt;")
	e.get(e.client(nil), "/~nobody/rss.xml").want(t, http.StatusNotFound)
}

func TestUIVisibilitySettings(t *testing.T) {
	e := newUIEnv(t)
	alice, bob := e.user("alice"), e.user("bob")
	job := e.submit(alice, jobOpts{visibility: app.Unlisted})
	path := fmt.Sprintf("/~alice/job/%d/settings/details", job.ID)
	e.get(e.client(alice), path).want(t, http.StatusOK, `value="PRIVATE"`)
	e.get(e.client(bob), path).want(t, http.StatusNotFound)
	e.post(e.client(bob), path, map[string][]string{"visibility": {"PUBLIC"}}).want(t, http.StatusNotFound)
	e.post(e.client(alice), path, map[string][]string{"visibility": {"SECRET"}}).want(t, http.StatusBadRequest, "invalid visibility")
	e.post(e.client(alice), path, map[string][]string{"visibility": {"PRIVATE"}}).want(t, http.StatusSeeOther)
	got, _ := e.svc.Job(app.SystemContext(context.Background()), job.ID)
	if got.Visibility != app.Private {
		t.Errorf("visibility %s, want PRIVATE", got.Visibility)
	}
	e.get(e.client(nil), fmt.Sprintf("/~alice/job/%d", job.ID)).want(t, http.StatusNotFound)
}
