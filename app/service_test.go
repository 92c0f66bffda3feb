package app_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builds/app"
	"builds/store"

	"golang.org/x/crypto/ssh"
)

const okManifest = "image: debian/stable\ntasks:\n  - build: echo hi\n  - test: echo ok\n"

// testEnv is a Service on a real SQLite file with two users.
type testEnv struct {
	svc          *app.Service
	db           *store.DB
	alice, bob   *app.User
	aliceCtx     context.Context
	bobCtx       context.Context
	anonCtx      context.Context
	events       []app.WebhookEvent
	woken, stops int
}

// JobChanged records what a runner and notifications would hear: queued
// jobs wake the runner, cancelled ones stop their VM.
func (e *testEnv) JobChanged(ctx context.Context, ev app.WebhookEvent, job *app.Job) {
	e.events = append(e.events, ev)
	switch job.Status {
	case app.JobQueued:
		e.woken++
	case app.JobCancelled:
		e.stops++
	}
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(dir, "builds.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := app.DefaultConfig()
	cfg.Builds.DataDir = dir
	key := make([]byte, 32)
	rand.Read(key)
	svc, err := app.NewService(db, cfg, key, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{svc: svc, db: db, anonCtx: ctx}
	svc.Listen(e)
	e.alice = mustUser(t, svc, "alice")
	e.bob = mustUser(t, svc, "bob")
	e.aliceCtx = tokenCtx(t, svc, e.alice, "")
	e.bobCtx = tokenCtx(t, svc, e.bob, "")
	return e
}

func mustUser(t *testing.T, svc *app.Service, name string) *app.User {
	t.Helper()
	u, err := svc.CreateUser(context.Background(), name, name+"@example.org", false, "")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// tokenCtx authenticates a fresh token with grants the way the API does.
func tokenCtx(t *testing.T, svc *app.Service, u *app.User, grants string) context.Context {
	t.Helper()
	ctx := context.Background()
	secret, _, err := svc.CreateToken(ctx, u.ID, grants, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	auth, err := svc.Authenticate(ctx, secret)
	if err != nil {
		t.Fatal(err)
	}
	return app.NewContextWithAuth(ctx, auth)
}

func ptr[T any](v T) *T { return &v }

func submit(t *testing.T, e *testEnv, ctx context.Context, vis app.Visibility) *app.Job {
	t.Helper()
	job, err := e.svc.Submit(ctx, app.SubmitInput{Manifest: okManifest, Visibility: &vis})
	if err != nil {
		t.Fatal(err)
	}
	return job
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if app.ErrorCode(err) != code {
		t.Fatalf("got error %v (code %q), want code %q", err, app.ErrorCode(err), code)
	}
}

func TestSubmit(t *testing.T) {
	t.Run("OK hut defaults", func(t *testing.T) {
		e := newEnv(t)
		// hut sends tags [""], note "" and secrets true.
		job, err := e.svc.Submit(e.aliceCtx, app.SubmitInput{Manifest: okManifest, Tags: []string{""}, Note: ptr(""), Secrets: ptr(true)})
		if err != nil {
			t.Fatal(err)
		}
		if job.Status != app.JobQueued || job.Visibility != app.Unlisted || job.Tags != "" || job.Note != nil || job.Image != "debian/stable" {
			t.Fatalf("job = %+v", job)
		}
		tasks, err := e.svc.Tasks(e.aliceCtx, job)
		if err != nil || len(tasks) != 2 || tasks[0].Name != "build" || tasks[1].Status != app.TaskPending {
			t.Fatalf("tasks = %v, %v", tasks, err)
		}
		if e.woken != 1 || len(e.events) != 1 || e.events[0] != app.EventJobCreated {
			t.Fatalf("woken %d events %v", e.woken, e.events)
		}
	})
	t.Run("OK execute false stays pending", func(t *testing.T) {
		e := newEnv(t)
		job, err := e.svc.Submit(e.aliceCtx, app.SubmitInput{Manifest: okManifest, Execute: ptr(false), Tags: []string{"proj", "ci"}})
		if err != nil || job.Status != app.JobPending || job.Tags != "proj/ci" || e.woken != 0 {
			t.Fatalf("job %+v err %v woken %d", job, err, e.woken)
		}
		job, err = e.svc.Start(e.aliceCtx, job.ID)
		if err != nil || job.Status != app.JobQueued {
			t.Fatalf("start: %+v %v", job, err)
		}
		_, err = e.svc.Start(e.aliceCtx, job.ID)
		wantCode(t, err, app.ENOTFOUND)
	})
	for _, tc := range []struct {
		name string
		in   app.SubmitInput
		code string
		msg  string
	}{
		{"ErrManifest", app.SubmitInput{Manifest: "tasks:\n  - a: b\n"}, app.EINVALID, "Missing image"},
		{"ErrBadTag", app.SubmitInput{Manifest: okManifest, Tags: []string{"a/b"}}, app.EINVALID, "Invalid tag name"},
		{"ErrLongNote", app.SubmitInput{Manifest: okManifest, Note: ptr(strings.Repeat("x", 5000))}, app.EINVALID, "note must be"},
		{"ErrVisibility", app.SubmitInput{Manifest: okManifest, Visibility: ptr(app.Visibility("SECRET"))}, app.EINVALID, "invalid visibility"},
		{"ErrUnknownSecret", app.SubmitInput{Manifest: okManifest + "secrets:\n  - deploy-key\n"}, app.EINVALID, `unknown secret "deploy-key"`},
		{"ErrTooManyArtifacts", app.SubmitInput{Manifest: okManifest + "artifacts: [a1, a2, a3, a4, a5, a6, a7, a8, a9]\n"}, app.EINVALID, "no more than 8 artifacts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			_, err := e.svc.Submit(e.aliceCtx, tc.in)
			wantCode(t, err, tc.code)
			if !strings.Contains(app.ErrorMessage(err), tc.msg) {
				t.Fatalf("message %q does not contain %q", app.ErrorMessage(err), tc.msg)
			}
		})
	}
	t.Run("ErrGrants", func(t *testing.T) {
		e := newEnv(t)
		ro := tokenCtx(t, e.svc, e.alice, "JOBS:RO")
		_, err := e.svc.Submit(ro, app.SubmitInput{Manifest: okManifest})
		wantCode(t, err, app.EFORBIDDEN)
		_, err = e.svc.Submit(e.anonCtx, app.SubmitInput{Manifest: okManifest})
		wantCode(t, err, app.EUNAUTHORIZED)
		// Secrets requested without the SECRETS grant.
		jobsOnly := tokenCtx(t, e.svc, e.alice, "JOBS:RW")
		_, err = e.svc.Submit(jobsOnly, app.SubmitInput{Manifest: okManifest + "oauth: builds.sr.ht/JOBS:RO\n", Secrets: ptr(true)})
		wantCode(t, err, app.EFORBIDDEN)
		// ...but a manifest without secrets is fine with hut's secrets: true.
		if _, err := e.svc.Submit(jobsOnly, app.SubmitInput{Manifest: okManifest, Secrets: ptr(true)}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestVisibility(t *testing.T) {
	e := newEnv(t)
	jobs := map[app.Visibility]*app.Job{}
	for _, v := range []app.Visibility{app.Public, app.Unlisted, app.Private} {
		jobs[v] = submit(t, e, e.aliceCtx, v)
	}
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		visible map[app.Visibility]bool
		listed  int
	}{
		{"owner", e.aliceCtx, map[app.Visibility]bool{app.Public: true, app.Unlisted: true, app.Private: true}, 3},
		{"other", e.bobCtx, map[app.Visibility]bool{app.Public: true, app.Unlisted: true}, 1},
		{"anonymous", e.anonCtx, map[app.Visibility]bool{app.Public: true, app.Unlisted: true}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for v, job := range jobs {
				_, err := e.svc.Job(tc.ctx, job.ID)
				if tc.visible[v] && err != nil {
					t.Errorf("%s job: %v", v, err)
				} else if !tc.visible[v] {
					wantCode(t, err, app.ENOTFOUND)
				}
			}
			list, err := e.svc.UserJobs(tc.ctx, e.alice.ID, nil, app.JobFilter{})
			if err != nil || len(list.Jobs) != tc.listed {
				t.Fatalf("listed %d jobs, want %d (%v)", len(list.Jobs), tc.listed, err)
			}
		})
	}
	t.Run("ErrForeignVisibilityChange", func(t *testing.T) {
		_, err := e.svc.SetVisibility(e.bobCtx, jobs[app.Public].ID, app.Private)
		wantCode(t, err, app.ENOTFOUND)
		job, err := e.svc.SetVisibility(e.aliceCtx, jobs[app.Public].ID, app.Private)
		if err != nil || job.Visibility != app.Private {
			t.Fatalf("%+v %v", job, err)
		}
	})
}

func TestCursorPaging(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 60; i++ {
		submit(t, e, e.aliceCtx, app.Public)
	}
	var cursor *string
	var ids []int64
	for pages := 0; ; pages++ {
		list, err := e.svc.UserJobs(e.aliceCtx, e.alice.ID, cursor, app.JobFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range list.Jobs {
			ids = append(ids, j.ID)
		}
		if list.Cursor == "" {
			if pages != 2 {
				t.Fatalf("got %d pages, want 3", pages+1)
			}
			break
		}
		cursor = &list.Cursor
	}
	if len(ids) != 60 {
		t.Fatalf("got %d jobs", len(ids))
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] >= ids[i-1] {
			t.Fatalf("not newest first at %d: %v", i, ids)
		}
	}
	t.Run("ErrForged", func(t *testing.T) {
		for _, c := range []string{"garbage", "am9icy4xLnh4eA", *cursor + "x"} {
			_, err := e.svc.UserJobs(e.aliceCtx, e.alice.ID, &c, app.JobFilter{})
			wantCode(t, err, app.EINVALID)
		}
		// A jobs cursor is not a secrets cursor.
		_, err := e.svc.Secrets(e.aliceCtx, cursor)
		wantCode(t, err, app.EINVALID)
	})
}

func TestCancel(t *testing.T) {
	e := newEnv(t)
	pending, _ := e.svc.Submit(e.aliceCtx, app.SubmitInput{Manifest: okManifest, Execute: ptr(false)})
	queued := submit(t, e, e.aliceCtx, app.Public)
	for _, j := range []*app.Job{pending, queued} {
		got, err := e.svc.Cancel(e.aliceCtx, j.ID)
		if err != nil || got.Status != app.JobCancelled || got.Finished == nil {
			t.Fatalf("cancel %d: %+v %v", j.ID, got, err)
		}
	}
	_, err := e.svc.Cancel(e.aliceCtx, queued.ID)
	wantCode(t, err, app.ECONFLICT)
	other := submit(t, e, e.aliceCtx, app.Public)
	_, err = e.svc.Cancel(e.bobCtx, other.ID)
	wantCode(t, err, app.ENOTFOUND)

	// Running: the status is written at once and the runner is told.
	cj, err := e.svc.ClaimJob(context.Background(), "runner1", nil)
	if err != nil || cj.Job.ID != other.ID || cj.Job.Status != app.JobRunning || cj.Job.Deadline == nil {
		t.Fatalf("claim: %+v %v", cj, err)
	}
	stops := e.stops
	got, err := e.svc.Cancel(e.aliceCtx, other.ID)
	if err != nil || got.Status != app.JobCancelled || e.stops != stops+1 {
		t.Fatalf("cancel running: %+v %v stops %d", got, err, e.stops)
	}
	// The runner finishing afterwards does not overwrite the cancellation.
	fin, err := e.svc.FinishJob(context.Background(), other.ID, app.JobFailed, "vm stopped")
	if err != nil || fin.Status != app.JobCancelled {
		t.Fatalf("finish after cancel: %+v %v", fin, err)
	}
	if _, err := e.svc.ClaimJob(context.Background(), "runner1", nil); app.ErrorCode(err) != app.ENOTFOUND {
		t.Fatalf("queue should be empty: %v", err)
	}
}

func TestRecoverJobs(t *testing.T) {
	e := newEnv(t)
	job := submit(t, e, e.aliceCtx, app.Public)
	if _, err := e.svc.ClaimJob(context.Background(), "r", nil); err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.RecoverJobs(context.Background())
	if err != nil || len(got) != 1 || got[0].Status != app.JobFailed {
		t.Fatalf("%v %v", got, err)
	}
	log, _ := os.ReadFile(e.svc.LogPath(job.ID, ""))
	if !strings.Contains(string(log), "restarted while this job was running") {
		t.Fatalf("setup log: %q", log)
	}
}

func sshKeyPEM(t *testing.T) []byte {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

func TestSecrets(t *testing.T) {
	e := newEnv(t)
	key := sshKeyPEM(t)
	sec, err := e.svc.CreateSecret(e.aliceCtx, e.alice.ID, app.SecretInput{Type: app.SecretSSHKey, Name: "deploy", Data: key})
	if err != nil {
		t.Fatal(err)
	}
	file, err := e.svc.CreateSecret(e.aliceCtx, e.alice.ID, app.SecretInput{Type: app.SecretFile, Data: []byte("token=hunter2\n"), Path: "~/.netrc", Mode: 0o600})
	if err != nil {
		t.Fatal(err)
	}
	parent := t
	t.Run("encrypted at rest", func(t *testing.T) {
		e.db.Close() // flush WAL so the main file has everything
		raw, _ := os.ReadFile(filepath.Join(e.svc.Config.Builds.DataDir, "builds.db"))
		if strings.Contains(string(raw), "hunter2") || strings.Contains(string(raw), "OPENSSH PRIVATE") {
			t.Fatal("secret material stored in plaintext")
		}
		db, err := store.Open(context.Background(), filepath.Join(e.svc.Config.Builds.DataDir, "builds.db"))
		if err != nil {
			t.Fatal(err)
		}
		e.db = db
		e.svc.Store = db
		parent.Cleanup(func() { db.Close() })
	})
	t.Run("list hides material", func(t *testing.T) {
		list, err := e.svc.Secrets(e.aliceCtx, nil)
		if err != nil || len(list.Secrets) != 2 {
			t.Fatalf("%v %v", list, err)
		}
		for _, s := range list.Secrets {
			if s.Data != nil {
				t.Fatal("material returned")
			}
		}
	})
	t.Run("resolve by name and uuid", func(t *testing.T) {
		for _, ref := range []string{"deploy", sec.UUID} {
			got, err := e.svc.ResolveSecret(context.Background(), e.alice.ID, ref)
			if err != nil || string(got.Data) != string(key) {
				t.Fatalf("%s: %v", ref, err)
			}
		}
		got, err := e.svc.ResolveSecret(context.Background(), e.alice.ID, file.UUID)
		if err != nil || string(got.Data) != "token=hunter2\n" || *got.Path != "~/.netrc" || *got.Mode != 0o600 {
			t.Fatalf("%+v %v", got, err)
		}
		_, err = e.svc.ResolveSecret(context.Background(), e.bob.ID, sec.UUID)
		wantCode(t, err, app.ENOTFOUND)
	})
	t.Run("share", func(t *testing.T) {
		if _, err := e.svc.ShareSecret(e.aliceCtx, sec.UUID, "~bob"); err != nil {
			t.Fatal(err)
		}
		got, err := e.svc.ResolveSecret(context.Background(), e.bob.ID, sec.UUID)
		if err != nil || string(got.Data) != string(key) || got.FromUserID == nil || *got.FromUserID != e.alice.ID {
			t.Fatalf("%+v %v", got, err)
		}
		_, err = e.svc.ShareSecret(e.aliceCtx, sec.UUID, "bob")
		wantCode(t, err, app.ECONFLICT)
		_, err = e.svc.ShareSecret(e.aliceCtx, sec.UUID, "nobody")
		wantCode(t, err, app.ENOTFOUND)
		_, err = e.svc.ShareSecret(e.bobCtx, file.UUID, "alice")
		wantCode(t, err, app.ENOTFOUND)
	})
	for _, tc := range []struct {
		name string
		in   app.SecretInput
		msg  string
	}{
		{"ErrNotAKey", app.SecretInput{Type: app.SecretSSHKey, Data: []byte("hello")}, "not an SSH private key"},
		{"ErrNotPGP", app.SecretInput{Type: app.SecretPGPKey, Data: []byte("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nxx\n-----END PGP PRIVATE KEY BLOCK-----\n")}, "not a PGP key"},
		{"ErrTooBig", app.SecretInput{Type: app.SecretFile, Data: make([]byte, 16*1024+1), Path: "x", Mode: 0o600}, "16 KiB"},
		{"ErrNoPath", app.SecretInput{Type: app.SecretFile, Data: []byte("x")}, "need a path"},
		{"ErrMode", app.SecretInput{Type: app.SecretFile, Data: []byte("x"), Path: "p", Mode: 0o17777}, "octal"},
		{"ErrName", app.SecretInput{Type: app.SecretFile, Data: []byte("x"), Path: "p", Name: "ab"}, "between 3 and 512"},
		{"ErrType", app.SecretInput{Type: "password", Data: []byte("x")}, "unknown secret type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.CreateSecret(e.aliceCtx, e.alice.ID, tc.in)
			wantCode(t, err, app.EINVALID)
			if !strings.Contains(app.ErrorMessage(err), tc.msg) {
				t.Fatalf("%q does not contain %q", app.ErrorMessage(err), tc.msg)
			}
		})
	}
	t.Run("ErrGrant", func(t *testing.T) {
		ro := tokenCtx(t, e.svc, e.alice, "SECRETS:RO")
		_, err := e.svc.CreateSecret(ro, e.alice.ID, app.SecretInput{Type: app.SecretFile, Data: []byte("x"), Path: "p"})
		wantCode(t, err, app.EFORBIDDEN)
		jobs := tokenCtx(t, e.svc, e.alice, "JOBS:RW")
		_, err = e.svc.Secrets(jobs, nil)
		wantCode(t, err, app.EFORBIDDEN)
	})
}

func TestTokens(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	day := 24 * time.Hour
	secret, tok, err := e.svc.CreateToken(ctx, e.alice.ID, "JOBS:RW LOGS:RO", &day, "ci")
	if err != nil || tok.Grants != "JOBS:RW LOGS:RO" || tok.Expires == nil {
		t.Fatalf("%+v %v", tok, err)
	}
	auth, err := e.svc.Authenticate(ctx, secret)
	if err != nil || auth.User.ID != e.alice.ID || !auth.Can(app.ScopeJobs, app.RW) || auth.Can(app.ScopeLogs, app.RW) || auth.Can(app.ScopeSecrets, app.RO) {
		t.Fatalf("%+v %v", auth, err)
	}
	e.svc.Now = func() time.Time { return time.Now().Add(2 * day) }
	_, err = e.svc.Authenticate(ctx, secret)
	wantCode(t, err, app.EUNAUTHORIZED)
	e.svc.Now = time.Now
	if err := e.svc.RevokeToken(e.bobCtx, tok.ID); app.ErrorCode(err) != app.ENOTFOUND {
		t.Fatalf("bob revoked alice's token: %v", err)
	}
	if err := e.svc.RevokeToken(app.SystemContext(ctx), tok.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Authenticate(ctx, secret)
	wantCode(t, err, app.EUNAUTHORIZED)
	for _, bad := range []string{"JOBS:XX", "FOO:RO", "git.sr.ht/JOBS:RO"} {
		_, _, err := e.svc.CreateToken(ctx, e.alice.ID, bad, nil, "")
		wantCode(t, err, app.EINVALID)
	}
}

func TestUsers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, tc := range []struct{ name, user, email, pw, code string }{
		{"ErrDuplicate", "alice", "a@example.org", "", app.ECONFLICT},
		{"ErrBadName", "Alice!", "a@example.org", "", app.EINVALID},
		{"ErrBadEmail", "carol", "not an email", "", app.EINVALID},
		{"ErrShortPassword", "carol", "c@example.org", "short", app.EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.CreateUser(ctx, tc.user, tc.email, false, tc.pw)
			wantCode(t, err, tc.code)
		})
	}
	t.Run("login", func(t *testing.T) {
		if err := e.svc.SetPassword(ctx, e.alice.ID, "correct horse"); err != nil {
			t.Fatal(err)
		}
		if u, err := e.svc.Login(ctx, "alice", "correct horse"); err != nil || u.ID != e.alice.ID {
			t.Fatalf("%v %v", u, err)
		}
		_, err := e.svc.Login(ctx, "alice", "wrong horse")
		wantCode(t, err, app.EUNAUTHORIZED)
		_, err = e.svc.Login(ctx, "nobody", "correct horse")
		wantCode(t, err, app.EUNAUTHORIZED)
	})
	t.Run("ssh keys", func(t *testing.T) {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		sp, _ := ssh.NewPublicKey(pub)
		line := string(ssh.MarshalAuthorizedKey(sp))
		if _, err := e.svc.AddSSHKey(ctx, e.alice.ID, line); err != nil {
			t.Fatal(err)
		}
		u, err := e.svc.UserBySSHKey(ctx, sp)
		if err != nil || u.ID != e.alice.ID {
			t.Fatalf("%v %v", u, err)
		}
		_, err = e.svc.AddSSHKey(ctx, e.bob.ID, line)
		wantCode(t, err, app.ECONFLICT)
		_, err = e.svc.AddSSHKey(ctx, e.bob.ID, "ssh-ed25519 notbase64")
		wantCode(t, err, app.EINVALID)
	})
}

func TestGroups(t *testing.T) {
	e := newEnv(t)
	var ids []int64
	for i := 0; i < 3; i++ {
		j, err := e.svc.Submit(e.aliceCtx, app.SubmitInput{Manifest: okManifest, Execute: ptr(false)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	bobJob, _ := e.svc.Submit(e.bobCtx, app.SubmitInput{Manifest: okManifest, Execute: ptr(false)})
	trig := []app.TriggerInput{{Action: "email", Condition: "failure", To: "Alice <alice@example.org>"}}
	_, err := e.svc.CreateGroup(e.aliceCtx, append(ids, bobJob.ID), trig, nil, nil)
	wantCode(t, err, app.EINVALID)
	_, err = e.svc.CreateGroup(e.aliceCtx, ids, []app.TriggerInput{{Action: "irc", Condition: "always"}}, nil, nil)
	wantCode(t, err, app.EINVALID)
	_, err = e.svc.CreateGroup(e.aliceCtx, ids, []app.TriggerInput{{Action: "webhook", Condition: "sometimes", URL: "https://x"}}, nil, nil)
	wantCode(t, err, app.EINVALID)
	g, err := e.svc.CreateGroup(e.aliceCtx, ids, trig, ptr(false), ptr("three jobs"))
	if err != nil {
		t.Fatal(err)
	}
	jobs, _ := e.svc.GroupJobs(e.aliceCtx, g)
	if len(jobs) != 3 || jobs[0].Status != app.JobPending || jobs[0].ID != ids[0] {
		t.Fatalf("%v", jobs)
	}
	// Cancel one, then start: finished jobs are never re-run.
	if _, err := e.svc.Cancel(e.aliceCtx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.StartGroup(e.aliceCtx, g.ID); err != nil {
		t.Fatal(err)
	}
	jobs, _ = e.svc.GroupJobs(e.aliceCtx, g)
	if jobs[0].Status != app.JobCancelled || jobs[1].Status != app.JobQueued || jobs[2].Status != app.JobQueued {
		t.Fatalf("statuses %s %s %s", jobs[0].Status, jobs[1].Status, jobs[2].Status)
	}
	_, err = e.svc.StartGroup(e.bobCtx, g.ID)
	wantCode(t, err, app.ENOTFOUND)
	trs, _ := e.svc.GroupTriggers(e.bobCtx, g)
	if len(trs) != 0 {
		t.Fatal("triggers shown to another user")
	}
}

func TestConnectCommand(t *testing.T) {
	for _, tc := range []struct{ listen, want string }{
		{"127.0.0.1:2222", "ssh -t -p 2222 builds@ci.example.org connect 7"},
		{"0.0.0.0:22", "ssh -t builds@ci.example.org connect 7"},
		{"127.0.0.1:0", "ssh -t builds@ci.example.org connect 7"},
	} {
		cfg := app.DefaultConfig()
		cfg.Builds.Origin = "https://ci.example.org"
		cfg.Runner.SSHListen = tc.listen
		if got := cfg.ConnectCommand(7); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.listen, got, tc.want)
		}
	}
	// the server log's hint names the port the SSH server got
	cfg := app.DefaultConfig()
	cfg.Builds.Origin = "https://ci.example.org"
	cfg.Runner.SSHListen = "127.0.0.1:0"
	if got := cfg.ConnectHint("127.0.0.1:40123"); got != "ssh -t -p 40123 builds@ci.example.org connect <job>" {
		t.Errorf("ConnectHint = %q", got)
	}
}
