package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"builds/app"
)

func TestUIAdmin(t *testing.T) {
	e := newUIEnv(t)
	alice, bob := e.user("alice"), e.user("bob")
	root, err := e.svc.CreateUser(context.Background(), "root", "root@example.org", true, "password-root")
	if err != nil {
		t.Fatal(err)
	}
	running := e.submit(alice, jobOpts{visibility: app.Private, manifest: "image: alpine/latest\ntasks:\n  - a: echo\n"})
	e.start(running)
	queued := e.submit(bob, jobOpts{visibility: app.Public})
	no := false
	pending, err := e.svc.Submit(as(bob), app.SubmitInput{Manifest: uiManifest, Execute: &no})
	if err != nil {
		t.Fatal(err)
	}
	done := e.submit(bob, jobOpts{visibility: app.Public})
	e.start(done)
	e.finish(done, app.JobSuccess)
	admin := e.client(root)

	r := e.get(admin, "/admin")
	r.want(t, http.StatusOK, "Unfinished jobs",
		fmt.Sprintf(`<a href="/~alice/job/%d">#%d</a>`, running.ID, running.ID), `<a href="/~alice">~alice</a>`,
		fmt.Sprintf(`id="admin-job-%d"`, queued.ID), fmt.Sprintf(`id="admin-job-%d"`, pending.ID), `<a href="/~bob">~bob</a>`,
		"s-running", "s-queued", "s-pending", "alpine/latest", "debian/stable", "not yet",
		fmt.Sprintf(`action="/cancel/%d"`, running.ID), `name="next" value="/admin"`)
	r.lacks(t, fmt.Sprintf(`id="admin-job-%d"`, done.ID))
	e.get(admin, "/").want(t, http.StatusOK, `<a href="/admin">admin</a>`)

	// The page does not exist for anybody else.
	for _, tt := range []struct {
		name string
		user *app.User
	}{
		{"anonymous", nil},
		{"user", alice},
		{"other user", bob},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := e.client(tt.user)
			r := e.get(c, "/admin")
			r.want(t, http.StatusNotFound, "There is nothing here")
			r.lacks(t, "admin-job-", "Unfinished jobs")
			if tt.user != nil {
				e.get(c, "/").lacks(t, `href="/admin"`)
			}
		})
	}

	// An admin cancels another user's running job and comes back here.
	r = e.post(admin, fmt.Sprintf("/cancel/%d", running.ID), url.Values{"next": {"/admin"}})
	r.want(t, http.StatusSeeOther)
	if loc := r.header.Get("Location"); loc != "/admin" {
		t.Errorf("cancel redirected to %q, want /admin", loc)
	}
	got, err := e.svc.Job(as(alice), running.ID)
	if err != nil || got.Status != app.JobCancelled {
		t.Fatalf("job after admin cancel: %v %v", got, err)
	}
	r = e.get(admin, "/admin")
	r.want(t, http.StatusOK, fmt.Sprintf("Build #%d was cancelled.", running.ID))
	r.lacks(t, fmt.Sprintf(`id="admin-job-%d"`, running.ID))

	// next only leads within the site.
	r = e.post(admin, fmt.Sprintf("/cancel/%d", queued.ID), url.Values{"next": {"//evil.example/"}})
	if loc := r.header.Get("Location"); r.status != http.StatusSeeOther || loc != "/" {
		t.Errorf("cancel with a foreign next: %d to %q, want 303 to /", r.status, loc)
	}
	// A non-admin still cannot cancel someone else's job.
	e.post(e.client(alice), fmt.Sprintf("/cancel/%d", pending.ID), url.Values{"next": {"/admin"}}).want(t, http.StatusNotFound)

	e.post(admin, fmt.Sprintf("/cancel/%d", pending.ID), nil).want(t, http.StatusSeeOther)
	e.get(admin, "/admin").want(t, http.StatusOK, "No unfinished jobs.")
}

// fakeCache is a runner cache with fixed entries.
type fakeCache []app.VMCacheEntry

func (f fakeCache) VMCacheEntries() ([]app.VMCacheEntry, error) { return f, nil }

func TestUIAdminCache(t *testing.T) {
	e := newUIEnv(t)
	root, err := e.svc.CreateUser(context.Background(), "root", "root@example.org", true, "password-root")
	if err != nil {
		t.Fatal(err)
	}
	admin := e.client(root)
	e.get(admin, "/admin").want(t, http.StatusOK, "No snapshots or layers yet.")
	now := time.Now()
	e.svc.UseVMCache(fakeCache{
		{Kind: "snapshot", Key: "b97b40f962e650c3", Image: "debian/bookworm", Arch: "amd64", Created: now, Size: 110 << 20},
		{Kind: "layer", Key: "132df4580ecefb5e", Image: "debian/bookworm", Arch: "amd64", Packages: []string{"cmake", "hello"},
			Created: now, LastUsed: now, Size: 300 << 20},
	})
	e.get(admin, "/admin").want(t, http.StatusOK, "snapshot <code>b97b40f9</code>", "layer <code>132df458</code>",
		"cmake hello", "110 MiB", "300 MiB")
	// not for anyone else
	bob := e.user("bob")
	e.get(e.client(bob), "/admin").want(t, http.StatusNotFound)
	if _, err := e.svc.VMCacheEntries(as(bob)); app.ErrorCode(err) != app.EFORBIDDEN {
		t.Errorf("a user listed the cache: %v", err)
	}
}
