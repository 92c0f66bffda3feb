package web_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builds/app"
	"builds/forge"
	"builds/forge/forgetest"

	"github.com/chromedp/chromedp"
)

// Browser tests drive Debian's Chromium headless against the real server
// on 127.0.0.1. They run whenever Chromium is installed; with
// BUILDS_BROWSER_TESTS=1 (CI) a missing Chromium is a failure, not a skip.
// Screenshots go to $BUILDS_TEST_OUTPUT (default: a temporary directory).

func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("BUILDS_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("BUILDS_BROWSER_TESTS") == "1" {
		t.Fatal("BUILDS_BROWSER_TESTS=1 but no Chromium found (apt-get install chromium, or set BUILDS_CHROMIUM)")
	}
	t.Skip("browser tests need Chromium (apt-get install chromium); set BUILDS_BROWSER_TESTS=1 to require them")
	return ""
}

// newBrowser starts a fresh headless Chromium with its own profile.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

func outputDir(t *testing.T) string {
	dir := os.Getenv("BUILDS_TEST_OUTPUT")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

func do(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitJS waits until a JavaScript expression is true.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("wait for %s (%s): %v", what, expr, err)
	}
}

func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func TestBrowser(t *testing.T) {
	// The server first, so that cleanup (last in, first out) stops the
	// browser and its event streams before the server.
	e := newUIEnv(t, func(c *app.Config) { c.Runner.Name = "runner.example" })
	ctx := newBrowser(t)
	out := outputDir(t)
	alice, bob := e.user("alice"), e.user("bob")
	failed := e.seedJobs(alice)

	t.Run("log in", func(t *testing.T) {
		do(t, ctx, "log in",
			chromedp.Navigate(e.url+"/"),
			chromedp.Click(chromedp.CSS(`a[href^="/login"]`)),
			chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
			chromedp.SendKeys(chromedp.CSS(`input[name=username]`), "alice"),
			chromedp.SendKeys(chromedp.CSS(`input[name=password]`), "password-alice"),
			chromedp.Submit(chromedp.CSS(`input[name=password]`)),
			chromedp.WaitVisible(chromedp.CSS(`ul.jobs`)),
		)
		if h := evalJS[string](t, ctx, `document.querySelector(".side h2").textContent`); h != "Welcome back, ~alice" {
			t.Fatalf("after login the sidebar says %q", h)
		}
		screenshot(t, ctx, out, "jobs.png")
	})

	var jobURL string
	t.Run("submit a manifest", func(t *testing.T) {
		bad := "image: debian/stable\ntasks:\n  - build: echo\n  - build: again\n"
		do(t, ctx, "submit a bad manifest",
			chromedp.Navigate(e.url+"/submit"),
			chromedp.SetValue(chromedp.ID("manifest"), bad),
			chromedp.Click(chromedp.CSS(`input[name=visibility][value=PUBLIC]`)),
			chromedp.Click(chromedp.CSS(`#submit-form button[type=submit]`)),
			chromedp.WaitVisible(chromedp.CSS(`#m4.bad .lineerr`)),
		)
		if bad := evalJS[string](t, ctx, `document.querySelector(".editor .gutter .bad").textContent`); strings.TrimSpace(bad) != "4" {
			t.Errorf("gutter marks line %q, want 4", bad)
		}
		// Clicking an error selects its line in the editor.
		do(t, ctx, "jump to the error", chromedp.Click(chromedp.CSS(`a[data-line="4"]`)))
		if sel := evalJS[string](t, ctx, `(t => t.value.substring(t.selectionStart, t.selectionEnd))(document.getElementById("manifest"))`); sel != "  - build: again" {
			t.Errorf("selected %q, want line 4", sel)
		}
		screenshot(t, ctx, out, "submit-errors.png")
		do(t, ctx, "submit a good manifest",
			chromedp.SetValue(chromedp.ID("manifest"), uiManifest),
			chromedp.SetValue(chromedp.CSS(`input[name=note]`), "Browser **test** build"),
			chromedp.SetValue(chromedp.CSS(`input[name=tags]`), "web/ui"),
			chromedp.Click(chromedp.CSS(`input[name=visibility][value=PUBLIC]`)),
			chromedp.Click(chromedp.CSS(`#submit-form button[type=submit]`)),
			chromedp.WaitVisible(chromedp.ID("jobpage")),
		)
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil || !strings.Contains(loc, "/~alice/job/") {
			t.Fatalf("after submit at %q (%v)", loc, err)
		}
		jobURL = loc
	})
	if jobURL == "" {
		t.FailNow()
	}
	var id int64
	fmt.Sscanf(jobURL[strings.Index(jobURL, "/job/"):], "/job/%d", &id)
	job, err := e.svc.Job(as(alice), id)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("watch the log grow live", func(t *testing.T) {
		e.start(job)
		e.svc.Logs.Open(job.ID, "")
		e.appendLog(job, "", "[#1] Booting image debian/stable\n")
		do(t, ctx, "open the running job",
			chromedp.Navigate(jobURL),
			chromedp.WaitVisible(chromedp.ID("setup-1")),
		)
		waitJS(t, ctx, "running status", `document.getElementById("job-status").textContent.includes("running")`)
		// Lines written now appear without a reload.
		for i := 2; i <= 120; i++ {
			e.appendLog(job, "", fmt.Sprintf("\x1b[36m[#1]\x1b[0m setup line %d\n", i))
		}
		waitJS(t, ctx, "line 120 streamed in", `!!document.getElementById("setup-120")`)
		waitJS(t, ctx, "auto-follow to the bottom", `window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 60`)

		// The first task starts: its hidden section opens and fills.
		e.svc.Logs.Open(job.ID, "build")
		e.setTask(job, "build", app.TaskRunning)
		e.appendLog(job, "build", "\x1b[1;32m==>\x1b[0m building\n")
		waitJS(t, ctx, "task log shown", `!!document.getElementById("task-build-1") && !document.getElementById("task-build").hidden`)
		waitJS(t, ctx, "task status", `document.querySelector('.task-status[data-index="0"]').textContent.includes("running")`)
		for i := 2; i <= 40; i++ {
			e.appendLog(job, "build", fmt.Sprintf("compiling unit %d of 40 ... \x1b[32mok\x1b[0m\n", i))
		}
		waitJS(t, ctx, "task line 40", `!!document.getElementById("task-build-40")`)
		waitJS(t, ctx, "still following", `window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 60`)
		screenshot(t, ctx, out, "job.png")

		// Scrolling up stops the follow: new lines arrive, the view stays.
		do(t, ctx, "scroll up", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
		waitJS(t, ctx, "follow button", `!document.getElementById("follow").hidden`)
		e.appendLog(job, "build", "a line while the reader is reading\n")
		waitJS(t, ctx, "task line 41", `!!document.getElementById("task-build-41")`)
		time.Sleep(200 * time.Millisecond)
		if y := evalJS[float64](t, ctx, `window.scrollY`); y > 50 {
			t.Errorf("page scrolled to %v after the reader scrolled up", y)
		}
	})

	t.Run("phone layout", func(t *testing.T) {
		do(t, ctx, "narrow viewport", chromedp.EmulateViewport(390, 844), chromedp.Navigate(jobURL), chromedp.WaitVisible(chromedp.ID("setup-1")))
		if w := evalJS[float64](t, ctx, `document.documentElement.scrollWidth`); w > 400 {
			t.Errorf("the job page is %vpx wide on a 390px phone", w)
		}
		do(t, ctx, "scroll to the top", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
		waitJS(t, ctx, "at the top", `window.scrollY === 0`)
		shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(out, "job-phone.png"), shot, 0o644)
		t.Logf("screenshot: %s", filepath.Join(out, "job-phone.png"))
		do(t, ctx, "desktop viewport", chromedp.EmulateViewport(1280, 900))
	})

	t.Run("cancel it", func(t *testing.T) {
		do(t, ctx, "cancel",
			chromedp.Navigate(jobURL),
			chromedp.WaitVisible(chromedp.ID("cancel")),
			chromedp.Click(chromedp.ID("cancel")),
			chromedp.WaitVisible(chromedp.CSS(`p.flash`)),
		)
		waitJS(t, ctx, "cancelled status", `document.getElementById("job-status").textContent.includes("cancelled")`)
		got, _ := e.svc.Job(as(alice), job.ID)
		if got.Status != app.JobCancelled {
			t.Errorf("job is %s, want cancelled", got.Status)
		}
	})

	t.Run("connect a repository and see a push build", func(t *testing.T) {
		e.svc.Forge = &forge.Adapter{}
		fs := forgetest.NewServer(t)
		repo := fs.Repo("alice/proj")
		sha := repo.Commit("main", "Add a manifest", map[string]string{".build.yml": repoManifest})
		do(t, ctx, "connect",
			chromedp.Navigate(e.url+"/repositories"),
			chromedp.SetValue(chromedp.CSS(`#repo-form select[name=kind]`), "github"),
			chromedp.SendKeys(chromedp.CSS(`#repo-form input[name=url]`), repo.CloneURL),
			chromedp.Click(chromedp.CSS(`#repo-form input[name=visibility][value=PUBLIC]`)),
			chromedp.Click(chromedp.CSS(`#repo-form button[type=submit]`)),
			chromedp.WaitVisible(chromedp.ID("webhook-secret")),
		)
		hook := evalJS[string](t, ctx, `document.getElementById("webhook-url").textContent`)
		secret := evalJS[string](t, ctx, `document.getElementById("webhook-secret").textContent`)
		screenshot(t, ctx, out, "repo-connected")
		local := strings.Replace(hook, strings.TrimRight(e.cfg.Builds.Origin, "/"), e.url, 1)
		if r := deliver(t, local, secret, "browser-1", githubPush(sha)); r.StatusCode != 202 {
			t.Fatalf("push: status %d", r.StatusCode)
		}
		do(t, ctx, "see the push",
			chromedp.Navigate(e.url+"/repositories/proj"),
			chromedp.WaitVisible(chromedp.CSS(`li.push a[href^="/~alice/job/"]`)),
		)
		if evalJS[bool](t, ctx, `document.body.innerHTML.includes(`+fmt.Sprintf("%q", secret)+`)`) {
			t.Error("the webhook secret is shown again")
		}
		do(t, ctx, "build now", chromedp.Click(chromedp.CSS(`form[action$="/build"] button`)), chromedp.WaitVisible(chromedp.CSS(`p.flash`)))
		if msg := evalJS[string](t, ctx, `document.querySelector("p.flash").textContent`); !strings.HasPrefix(msg, "Started job group") {
			t.Fatalf("flash %q", msg)
		}
		if n := evalJS[int](t, ctx, `document.querySelectorAll("li.push").length`); n != 2 {
			t.Errorf("%d pushes listed, want 2", n)
		}
		screenshot(t, ctx, out, "repo-pushes")
		do(t, ctx, "open the job", chromedp.Click(chromedp.CSS(`li.push a[href^="/~alice/job/"]`)), chromedp.WaitVisible(chromedp.ID("jobpage")))
	})

	t.Run("add and share a secret", func(t *testing.T) {
		priv, _ := testSSHKey(t)
		do(t, ctx, "add a secret",
			chromedp.Navigate(e.url+"/secrets"),
			chromedp.SendKeys(chromedp.CSS(`#secret-form input[name=name]`), "deploy-key"),
			chromedp.SetValue(chromedp.CSS(`#secret-form textarea[name=secret]`), priv),
			chromedp.Click(chromedp.CSS(`input[name=type][value=ssh_key]`)),
			chromedp.Click(chromedp.CSS(`#secret-form button[type=submit]`)),
			chromedp.WaitVisible(chromedp.CSS(`p.flash`)),
		)
		if msg := evalJS[string](t, ctx, `document.querySelector("p.flash").textContent`); !strings.HasPrefix(msg, "Successfully added secret ") {
			t.Fatalf("flash %q", msg)
		}
		if evalJS[bool](t, ctx, `document.body.innerHTML.includes("PRIVATE KEY")`) {
			t.Error("the secret's material is shown")
		}
		do(t, ctx, "share it",
			chromedp.Click(chromedp.CSS(`a[href^="/secret/share/"]`)),
			chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
			chromedp.SendKeys(chromedp.CSS(`input[name=username]`), "bob"),
			chromedp.Submit(chromedp.CSS(`input[name=username]`)),
			chromedp.WaitVisible(chromedp.CSS(`p.flash`)),
		)
		if msg := evalJS[string](t, ctx, `document.querySelector("p.flash").textContent`); msg != "deploy-key successfully shared with ~bob." {
			t.Errorf("flash %q", msg)
		}
		list, _ := e.svc.Secrets(as(bob), nil)
		if len(list.Secrets) != 1 || list.Secrets[0].FromUserID == nil || *list.Secrets[0].FromUserID != alice.ID {
			t.Errorf("bob's secrets: %+v", list.Secrets)
		}
		screenshot(t, ctx, out, "secrets.png")
	})

	t.Run("check a badge", func(t *testing.T) {
		do(t, ctx, "profile page", chromedp.Navigate(e.url+"/~alice"), chromedp.WaitVisible(chromedp.CSS(`.side img`)))
		waitJS(t, ctx, "badge image loaded", `document.querySelector(".side img").complete && document.querySelector(".side img").naturalWidth > 0`)
		svg := evalJS[string](t, ctx, `fetch("/~alice/lib.svg", {credentials: "omit"}).then(r => r.text())`)
		if !strings.Contains(svg, ">success</text>") {
			t.Errorf("lib badge: %s", svg)
		}
		do(t, ctx, "badge itself", chromedp.Navigate(e.url+"/~alice/lib.svg"))
		screenshot(t, ctx, out, "badge.png")
	})

	t.Run("failed job", func(t *testing.T) {
		do(t, ctx, "open the failed job",
			chromedp.Navigate(fmt.Sprintf("%s/~alice/job/%d", e.url, failed.ID)),
			chromedp.WaitVisible(chromedp.ID("task-build-3")),
		)
		banner := evalJS[string](t, ctx, `document.querySelector(".banner pre.cmd").textContent`)
		if want := fmt.Sprintf("ssh -t -p 2222 builds@runner.example connect %d", failed.ID); banner != want {
			t.Errorf("SSH banner %q, want %q", banner, want)
		}
		if n := evalJS[int](t, ctx, `document.querySelectorAll("table.artifacts a[download]").length`); n != 1 {
			t.Errorf("%d artifact links", n)
		}
		screenshot(t, ctx, out, "job-failed.png")
	})

	t.Run("create a token", func(t *testing.T) {
		do(t, ctx, "create a token",
			chromedp.Navigate(e.url+"/settings"),
			chromedp.SendKeys(chromedp.CSS(`input[name=comment]`), "hut on my laptop"),
			chromedp.SetValue(chromedp.CSS(`select[name=scope-SECRETS]`), "none"),
			chromedp.Click(chromedp.CSS(`form[action="/settings/tokens"] button`)),
			chromedp.WaitVisible(chromedp.ID("new-token")),
		)
		token := strings.TrimSpace(evalJS[string](t, ctx, `document.getElementById("new-token").textContent`))
		auth, err := e.svc.Authenticate(context.Background(), token)
		if err != nil || auth.Grants.Has(app.ScopeSecrets, app.RO) || !auth.Grants.Has(app.ScopeJobs, app.RW) {
			t.Errorf("token from the page: %+v, %v", auth, err)
		}
		screenshot(t, ctx, out, "settings.png")
	})

	t.Run("log out", func(t *testing.T) {
		do(t, ctx, "log out",
			chromedp.Navigate(e.url+"/"),
			chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)),
			chromedp.WaitVisible(chromedp.CSS(`section.intro`)),
		)
		screenshot(t, ctx, out, "intro.png")
	})
}

// seedJobs gives alice a varied job list for the screenshots and badges;
// it returns the failed job.
func (e *uiEnv) seedJobs(alice *app.User) *app.Job {
	e.t.Helper()
	ok := e.submit(alice, jobOpts{visibility: app.Public, tags: []string{"lib"}, note: "Release **v1.2.0**: update `go.mod`"})
	e.start(ok)
	for _, name := range []string{"build", "test"} {
		e.setTask(ok, name, app.TaskSuccess)
	}
	e.finish(ok, app.JobSuccess)
	bad := e.submit(alice, jobOpts{visibility: app.Unlisted, tags: []string{"app", "main"}, note: "Nightly build of [app](https://example.org/app)"})
	e.start(bad)
	e.appendLog(bad, "", "[#2] Booting image debian/stable\n[#2] Waiting for the guest to settle\n[#2] Cloning repositories\n")
	e.setTask(bad, "build", app.TaskRunning)
	e.appendLog(bad, "build", "+ make\ncc -o app main.c\nmain.c:3:1: \x1b[1;31merror:\x1b[0m expected \x1b[1m';'\x1b[0m before '}' token\nmake: *** [Makefile:2: app] Error 1\n")
	e.setTask(bad, "build", app.TaskFailed)
	art := &app.Artifact{JobID: bad.ID, Name: "app.log", Path: "/home/build/app.log", Size: 48213, File: "2/app.log"}
	if err := e.db.CreateArtifact(context.Background(), art); err != nil {
		e.t.Fatal(err)
	}
	e.svc.Logs.Close(bad.ID, "")
	e.svc.Logs.Close(bad.ID, "build")
	e.finish(bad, app.JobFailed)
	e.submit(alice, jobOpts{visibility: app.Private, note: "Try the new image"})
	return bad
}
