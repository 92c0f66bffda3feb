package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"builds/app"
	"builds/forge"
	"builds/forge/forgetest"
)

// localEnv is alice's plain git repository, connected by its path as
// `builds repo add --kind git --url /srv/git/proj.git` connects one.
type localEnv struct {
	*testEnv
	repo *forgetest.Repo
	conn *app.NewRepo
	as   context.Context // alice, as the command line acts for her
}

func newLocalEnv(t *testing.T) *localEnv {
	t.Helper()
	e := newEnv(t)
	e.svc.Forge = &forge.Adapter{}
	r := forgetest.NewLocal(t, "proj")
	as := app.NewContextWithAuth(context.Background(), &app.Auth{Kind: app.AuthSystem, User: e.alice})
	conn, err := e.svc.CreateRepository(as, app.RepoInput{Kind: app.ForgeGit, CloneURL: r.Bare})
	if err != nil {
		t.Fatal(err)
	}
	return &localEnv{testEnv: e, repo: r, conn: conn, as: as}
}

// hookPush delivers a post-receive hook's push of sha to main and
// returns the job it started.
func (e *localEnv) hookPush(t *testing.T, delivery, sha string) *app.Job {
	t.Helper()
	body, _ := json.Marshal(forge.HookPush{Ref: "refs/heads/main", After: sha})
	h := http.Header{}
	h.Set(forge.HookSignatureHeader, forge.SignHook([]byte(e.conn.WebhookSecret), body))
	h.Set(forge.HookDeliveryHeader, delivery)
	h.Set(forge.HookEventHeader, "push")
	res, err := e.svc.ReceiveWebhook(context.Background(), e.conn.HookID, h, body)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Jobs) != 1 {
		t.Fatalf("push started %d jobs (%s)", len(res.Jobs), res.Message)
	}
	return e.stored(t, res.Jobs[0])
}

// stored is the job as the runner claims it (in its group).
func (e *localEnv) stored(t *testing.T, j *app.Job) *app.Job {
	t.Helper()
	job, err := e.db.FindJobByID(context.Background(), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// pendingJob submits okManifest as the user of ctx without starting it.
func pendingJob(t *testing.T, e *testEnv, ctx context.Context) *app.Job {
	t.Helper()
	no := false
	job, err := e.svc.Submit(ctx, app.SubmitInput{Manifest: okManifest, Execute: &no})
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// cloneBundle clones b into a new directory and checks out rev.
func cloneBundle(t *testing.T, r *forgetest.Repo, b *app.SourceBundle, rev string) string {
	t.Helper()
	defer b.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "src.bundle")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(f, b)
	f.Close()
	if err != nil || n != b.Size {
		t.Fatalf("read %d of %d bytes: %v", n, b.Size, err)
	}
	r.Git(dir, "clone", "-q", file, "proj")
	work := filepath.Join(dir, "proj")
	r.Git(work, "checkout", "-q", rev)
	return work
}

const localManifest = "image: debian/stable\ntasks:\n  - build: echo hi\n"

// TestSourceBundle: a job a push (through the post-receive hook) or a
// manual build of a repository connected by its path started gets a
// bundle of it, asked for by the path or the file:// URL, holding the
// pinned commit.
func TestSourceBundle(t *testing.T) {
	e := newLocalEnv(t)
	sha := e.repo.Commit("main", "first", map[string]string{".build.yml": localManifest, "README": "one"})
	job := e.hookPush(t, "d1", sha)
	if !strings.Contains(job.Manifest, e.repo.Bare+"#"+sha) {
		t.Fatalf("the manifest does not pin %s#%s:\n%s", e.repo.Bare, sha, job.Manifest)
	}
	for _, tt := range []struct{ name, src string }{
		{"Path", e.repo.Bare},
		{"FileURL", "file://" + e.repo.Bare},
		{"TrailingSlash", e.repo.Bare + "/"},
		{"Localhost", "file://localhost" + e.repo.Bare},
		{"DotSegments", strings.Replace(e.repo.Bare, "/proj.git", "//./proj.git", 1)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := e.svc.SourceBundle(context.Background(), job, tt.src)
			if err != nil {
				t.Fatal(err)
			}
			work := cloneBundle(t, e.repo, b, sha)
			if got, _ := os.ReadFile(filepath.Join(work, "README")); string(got) != "one" {
				t.Errorf("README %q", got)
			}
		})
	}
	t.Run("ForcePushedAway", func(t *testing.T) {
		// the job still gets the commit it pins after a force push
		second := e.repo.Commit("main", "second", map[string]string{"README": "two"})
		job := e.hookPush(t, "d2", second)
		e.repo.Git(e.repo.Work, "reset", "-q", "--hard", sha)
		e.repo.Git(e.repo.Work, "push", "-q", "-f", e.repo.Bare, "HEAD:refs/heads/main")
		b, err := e.svc.SourceBundle(context.Background(), job, e.repo.Bare)
		if err != nil {
			t.Fatal(err)
		}
		work := cloneBundle(t, e.repo, b, second)
		if got, _ := os.ReadFile(filepath.Join(work, "README")); string(got) != "two" {
			t.Errorf("README %q", got)
		}
	})
	t.Run("BuildNow", func(t *testing.T) {
		res, err := e.svc.BuildRepository(e.as, "proj", "main")
		if err != nil {
			t.Fatal(err)
		}
		b, err := e.svc.SourceBundle(context.Background(), e.stored(t, res.Jobs[0]), "file://"+e.repo.Bare)
		if err != nil {
			t.Fatal(err)
		}
		cloneBundle(t, e.repo, b, res.Push.Commit)
	})
	t.Run("ErrTooLarge", func(t *testing.T) {
		e.svc.Config.Limits.SourceSize = 100
		defer func() { e.svc.Config.Limits.SourceSize = app.DefaultConfig().Limits.SourceSize }()
		_, err := e.svc.SourceBundle(context.Background(), job, e.repo.Bare)
		wantCode(t, err, app.EINVALID)
		if !strings.Contains(err.Error(), "[limits] source-size") {
			t.Errorf("err %v", err)
		}
		if left, _ := os.ReadDir(filepath.Join(e.svc.Config.Builds.DataDir, "tmp")); len(left) != 0 {
			t.Errorf("left in tmp: %v", left)
		}
	})
}

// TestSourceBundleRefused: the server's paths are sent into a guest only
// for the job's own pushed repository. Each refusal names the source.
func TestSourceBundleRefused(t *testing.T) {
	e := newLocalEnv(t)
	ctx := context.Background()
	sha := e.repo.Commit("main", "first", map[string]string{".build.yml": localManifest})
	pushed := e.hookPush(t, "d1", sha)

	// bob's own repository, connected by its path
	bobRepo := forgetest.NewLocal(t, "bobs")
	bobRepo.Commit("main", "bob's", map[string]string{".build.yml": localManifest})
	bobAs := app.NewContextWithAuth(ctx, &app.Auth{Kind: app.AuthSystem, User: e.bob})
	_, err := e.svc.CreateRepository(bobAs, app.RepoInput{Kind: app.ForgeGit, CloneURL: bobRepo.Bare})
	if err != nil {
		t.Fatal(err)
	}
	// a repository on this machine nobody connected
	loose := forgetest.NewLocal(t, "loose")
	loose.Commit("main", "loose", map[string]string{"x": "y"})

	// alice's job she submitted herself, naming her repository's path
	submitted, err := e.svc.Submit(e.aliceCtx, app.SubmitInput{Manifest: "image: debian/stable\nsources:\n  - " + e.repo.Bare + "\ntasks:\n  - build: echo hi\n"})
	if err != nil {
		t.Fatal(err)
	}
	// and one in a group of her own
	grouped := pendingJob(t, e.testEnv, e.aliceCtx)
	if _, err := e.svc.CreateGroup(e.aliceCtx, []int64{grouped.ID}, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if grouped, err = e.db.FindJobByID(ctx, grouped.ID); err != nil || grouped.GroupID == nil {
		t.Fatalf("grouped job %+v: %v", grouped, err)
	}
	// bob's push group recorded as started by alice's... repository:
	// only the store could make this, but the owner check must hold
	bobJob := pendingJob(t, e.testEnv, e.bobCtx)
	bobGroup, err := e.svc.CreateGroup(e.bobCtx, []int64{bobJob.ID}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	forged := &app.RepoPush{RepositoryID: e.conn.ID, Ref: "refs/heads/main", Commit: sha}
	if err := e.db.CreateRepoPush(ctx, forged); err != nil {
		t.Fatal(err)
	}
	if err := e.db.FinishRepoPush(ctx, forged.ID, &bobGroup.ID, ""); err != nil {
		t.Fatal(err)
	}
	if bobJob, err = e.db.FindJobByID(ctx, bobJob.ID); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(e.repo.Bare)

	tests := []struct {
		name   string
		job    *app.Job
		source string
		code   string
		msg    string
	}{
		{"Etc", pushed, "/etc", app.EFORBIDDEN, "not that of the repository proj"},
		{"EtcFileURL", pushed, "file:///etc/passwd", app.EFORBIDDEN, "not that of the repository proj"},
		{"OtherUsersRepository", pushed, bobRepo.Bare, app.EFORBIDDEN, "not that of the repository proj"},
		{"NotConnected", pushed, loose.Bare, app.EFORBIDDEN, "not that of the repository proj"},
		{"DotDot", pushed, dir + "/x/../proj.git", app.EFORBIDDEN, "paths with .. are not accepted"},
		{"DotDotFileURL", pushed, "file://" + dir + "/x/../proj.git", app.EFORBIDDEN, "paths with .. are not accepted"},
		{"OtherHost", pushed, "file://example.org" + e.repo.Bare, app.EINVALID, "want file:///path"},
		{"Escaped", pushed, "file://" + strings.Replace(e.repo.Bare, "proj", "pr%6Fj", 1), app.EINVALID, "escaped characters"},
		{"NotLocal", pushed, "https://example.org/proj.git", app.EINVALID, "not an absolute path"},
		{"NotStartedByAPush", submitted, e.repo.Bare, app.EFORBIDDEN, "no push started job"},
		{"OwnGroup", grouped, e.repo.Bare, app.EFORBIDDEN, "no push started job"},
		{"OtherUsersJob", bobJob, e.repo.Bare, app.EFORBIDDEN, "is not its owner's"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := e.svc.SourceBundle(ctx, tt.job, tt.source)
			if err == nil {
				b.Close()
				t.Fatal("a bundle was made")
			}
			wantCode(t, err, tt.code)
			if !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), tt.source) {
				t.Errorf("err %q: want it to name the source and say %q", err, tt.msg)
			}
		})
	}
	t.Run("Disconnected", func(t *testing.T) {
		res, err := e.svc.BuildRepository(e.as, "proj", "main")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.DeleteRepository(e.as, "proj"); err != nil {
			t.Fatal(err)
		}
		_, err = e.svc.SourceBundle(ctx, e.stored(t, res.Jobs[0]), e.repo.Bare)
		wantCode(t, err, app.EFORBIDDEN)
	})
	t.Run("RunnersOnly", func(t *testing.T) {
		_, err := e.svc.RunnerSourceBundle(e.aliceCtx, pushed.ID, e.repo.Bare)
		wantCode(t, err, app.EFORBIDDEN)
	})
}
