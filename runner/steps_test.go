package runner

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builds/app"
	"builds/forge/forgetest"
)

func TestParseSource(t *testing.T) {
	tests := []struct {
		name  string
		entry string
		want  source
		err   string
	}{
		{name: "HTTPS", entry: "https://git.example.org/~alice/repo", want: source{"git", "https://git.example.org/~alice/repo", "repo", ""}},
		{name: "DotGit", entry: "https://example.org/repo.git", want: source{"git", "https://example.org/repo.git", "repo", ""}},
		{name: "Ref", entry: "https://example.org/repo#v1.2", want: source{"git", "https://example.org/repo", "repo", "v1.2"}},
		{name: "TwoHashesNoRef", entry: "https://example.org/repo#a#b", want: source{"git", "https://example.org/repo#a#b", "repo#a#b", ""}},
		{name: "Dir", entry: "src::https://example.org/repo.git#main", want: source{"git", "https://example.org/repo.git", "src", "main"}},
		{name: "DirKeepsDotGit", entry: "x.git::https://example.org/repo", want: source{"git", "https://example.org/repo", "x.git", ""}},
		{name: "EmptyDir", entry: "::https://example.org/repo.git", want: source{"git", "https://example.org/repo.git", "repo", ""}},
		{name: "SCP", entry: "git@git.example.org:~alice/repo", want: source{"git", "git@git.example.org:~alice/repo", "repo", ""}},
		{name: "GitSSH", entry: "git+ssh://git@example.org/~alice/repo#abc123", want: source{"git", "ssh://git@example.org/~alice/repo", "repo", "abc123"}},
		{name: "Hg", entry: "hg+https://hg.example.org/~alice/repo.git", want: source{"hg", "https://hg.example.org/~alice/repo.git", "repo.git", ""}},
		{name: "UnknownSCM", entry: "svn+https://example.org/repo", err: "Unknown scm: svn"},
		{name: "NoName", entry: "https://example.org/..", err: "cannot tell which directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSource(tt.entry)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseSource(%q) = %+v, %v; want %+v", tt.entry, got, err, tt.want)
			}
		})
	}
}

// gitRepo makes a repository with one commit per message and returns its
// path and the commit ids.
func gitRepo(t testing.TB, dir string, msgs ...string) []string {
	t.Helper()
	git(t, "", "init", "-q", "-b", "main", dir)
	var ids []string
	for _, m := range msgs {
		os.WriteFile(filepath.Join(dir, "file.txt"), []byte(m+"\n"), 0o644)
		git(t, dir, "add", "file.txt")
		git(t, dir, "commit", "-q", "-m", m)
		ids = append(ids, strings.TrimSpace(git(t, dir, "rev-parse", "HEAD")))
	}
	return ids
}

func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_ALLOW_PROTOCOL=file")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestSources clones over HTTP (git's smart HTTP on 127.0.0.1), as the
// guest would from a forge: a source that is a path on the host is the
// server's to send (source_test.go).
func TestSources(t *testing.T) {
	h := newHarness(t)
	srv := forgetest.NewServer(t)
	dir := t.TempDir()
	lib := filepath.Join(srv.Root, "lib")
	gitRepo(t, lib, "lib v1")
	app1 := filepath.Join(srv.Root, "app.git")
	ids := gitRepo(t, app1, "app v1", "app v2")
	forgetest.Git(t, app1, "submodule", "add", "-q", srv.URL+"/lib", "vendor/lib")
	git(t, app1, "commit", "-q", "-m", "add lib")
	hgDir := filepath.Join(dir, "hgrepo")
	if _, err := exec.LookPath("hg"); err == nil {
		for _, args := range [][]string{{"init", hgDir}, {"-R", hgDir, "branch", "-q", "other"}} {
			if out, err := exec.Command("hg", args...).CombinedOutput(); err != nil {
				t.Fatalf("hg %v: %v\n%s", args, err, out)
			}
		}
		os.WriteFile(filepath.Join(hgDir, "f"), []byte("hg\n"), 0o644)
		if out, err := exec.Command("hg", "-R", hgDir, "commit", "-q", "-A", "-u", "t", "-m", "one").CombinedOutput(); err != nil {
			t.Fatalf("hg commit: %v\n%s", err, out)
		}
	}
	manifest := fmt.Sprintf(`image: debian/stable
sources:
  - %[1]s
  - old::%[1]s#%[2]s
tasks:
  - check: |
      test "$(cat app/file.txt)" = "app v2"
      test "$(cat app/vendor/lib/file.txt)" = "lib v1"
      test "$(cat old/file.txt)" = "app v1"
      test "$(git -C old rev-parse HEAD)" = %[2]s
`, srv.URL+"/app.git", ids[0])
	if _, err := exec.LookPath("hg"); err == nil {
		manifest = strings.Replace(manifest, "tasks:\n", "  - hg+file://"+hgDir+"#other\ntasks:\n", 1)
		manifest += "      test \"$(hg -R hgrepo branch)\" = other\n"
	}
	job := h.submit(manifest)
	got := h.wait(job.ID)
	if got.Status != app.JobSuccess {
		t.Fatalf("status = %s\n%s\n%s", got.Status, h.log(job.ID, ""), h.log(job.ID, "check"))
	}
	linesInOrder(t, h.log(job.ID, ""), "Cloning repositories", "Cloning into 'app'", "Cloning into 'old'", "Running task check")
}

func TestArtifacts(t *testing.T) {
	tests := []struct {
		name     string
		limit    int64
		perJob   int
		script   string
		paths    []string
		status   app.JobStatus
		uploaded map[string]string // name -> content
		log      []string
	}{
		{
			name:     "OK",
			script:   "mkdir -p out && printf 'binary\\x00data' > out/app.bin && echo hello > ~/notes.txt",
			paths:    []string{"out/app.bin", "~/notes.txt"},
			status:   app.JobSuccess,
			uploaded: map[string]string{"app.bin": "binary\x00data", "notes.txt": "hello\n"},
			log:      []string{"Uploading out/app.bin", "Uploaded app.bin (11 B)", "Uploading ~/notes.txt", "Uploaded notes.txt (6 B)"},
		},
		{
			name:   "TooLarge",
			limit:  1024,
			script: "echo small > small.txt && head -c 4096 /dev/zero > big.bin",
			paths:  []string{"small.txt", "big.bin"},
			status: app.JobFailed,
			// small.txt was already uploaded when big.bin failed.
			uploaded: map[string]string{"small.txt": "small\n"},
			log:      []string{"Uploading big.bin", "Error: artifact big.bin is 4 KiB, more than the 1 KiB allowed per artifact ([limits] artifact-size)"},
		},
		{
			name:   "Missing",
			paths:  []string{"nope.txt"},
			script: "true",
			status: app.JobFailed,
			log:    []string{"Uploading nope.txt", "Error: artifact nope.txt is not a regular file"},
		},
		{
			name:   "Directory",
			paths:  []string{"adir"},
			script: "mkdir adir",
			status: app.JobFailed,
			log:    []string{"Error: artifact adir is not a regular file"},
		},
		{
			name:   "TooMany",
			perJob: 1,
			script: "touch a b",
			paths:  []string{"a", "b"},
			status: app.JobSuccess,
			log:    []string{"Error: no more than 1 artifacts per build are accepted (2 given)"},
		},
		{
			name:   "FailedJobHasNone",
			script: "touch a && false",
			paths:  []string{"a"},
			status: app.JobFailed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(c *app.Config) {
				if tt.limit > 0 {
					c.Limits.ArtifactSize = tt.limit
				}
			})
			m := fmt.Sprintf("image: debian/stable\nartifacts: [%s]\ntasks:\n  - make: %q\n", strings.Join(tt.paths, ", "), tt.script)
			no := false
			job, err := h.svc.Submit(h.ctx, app.SubmitInput{Manifest: m, Execute: &no})
			if err != nil {
				t.Fatal(err)
			}
			// The per-job count is checked at submit; lower it afterwards
			// to see the runner's own check.
			if tt.perJob > 0 {
				h.cfg.Limits.ArtifactsPerJob = tt.perJob
			}
			if _, err := h.svc.Start(h.ctx, job.ID); err != nil {
				t.Fatal(err)
			}
			got := h.wait(job.ID)
			if got.Status != tt.status {
				t.Fatalf("status = %s, want %s\n%s", got.Status, tt.status, h.log(job.ID, ""))
			}
			linesInOrder(t, h.log(job.ID, ""), tt.log...)
			arts, err := h.svc.Artifacts(h.ctx, got)
			if err != nil {
				t.Fatal(err)
			}
			if len(arts) != len(tt.uploaded) {
				t.Fatalf("%d artifacts, want %d", len(arts), len(tt.uploaded))
			}
			for _, a := range arts {
				b, err := os.ReadFile(h.svc.ArtifactPath(a))
				if err != nil || string(b) != tt.uploaded[a.Name] || a.Size != int64(len(b)) {
					t.Errorf("artifact %s: %q (%v), size %d; want %q", a.Name, b, err, a.Size, tt.uploaded[a.Name])
				}
				if !strings.HasPrefix(a.File, fmt.Sprintf("%d/", job.ID)) || len(strings.Split(a.File, "/")) != 3 {
					t.Errorf("artifact file %q, want <job>/<random>/<name>", a.File)
				}
				if fi, err := os.Stat(h.svc.ArtifactPath(a)); err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("artifact %s: mode %v (%v), want private", a.Name, fi.Mode(), err)
				}
			}
			for _, p := range []string{h.svc.LogPath(job.ID, ""), h.svc.LogPath(job.ID, "make")} {
				if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("log %s: mode %v (%v), want private", p, fi.Mode(), err)
				}
			}
		})
	}
}

func TestCrashRecovery(t *testing.T) {
	h := openHarness(t)
	ctx := context.Background()
	job := h.submit("image: debian/stable\ntasks:\n  - a: \"true\"\n")
	st, runner := app.JobRunning, "runner.test"
	if _, err := h.db.ClaimJob(ctx, []app.JobStatus{app.JobQueued}, app.JobUpdate{Status: &st, Runner: &runner}); err != nil {
		t.Fatal(err)
	}
	// A QEMU left behind by the previous process, with its work dir.
	vmDir := filepath.Join(h.cfg.Runner.WorkDir, "job-1")
	os.MkdirAll(vmDir, 0o755)
	os.WriteFile(filepath.Join(vmDir, "disk.qcow2"), []byte("overlay"), 0o644)
	qemu := exec.Command("bash", "-c", "exec -a qemu-system-x86_64 sleep 300")
	qemu.SysProcAttr = procGroup()
	if err := qemu.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- qemu.Wait() }()
	waitForCmdline(t, qemu.Process.Pid, "qemu-system")
	os.WriteFile(filepath.Join(vmDir, "qemu.pid"), []byte(fmt.Sprintf("%d\n", qemu.Process.Pid)), 0o644)
	// Another one without a pid file, found by its command line naming
	// its overlay in the work dir.
	vmDir2 := filepath.Join(h.cfg.Runner.WorkDir, "job-2")
	os.MkdirAll(vmDir2, 0o755)
	os.WriteFile(filepath.Join(vmDir2, "disk.qcow2"), nil, 0o644)
	qemu2 := exec.Command("bash", "-c", `exec -a qemu-system-x86_64 tail -f /dev/null "$0"`, filepath.Join(vmDir2, "disk.qcow2"))
	qemu2.SysProcAttr = procGroup()
	if err := qemu2.Start(); err != nil {
		t.Fatal(err)
	}
	exited2 := make(chan error, 1)
	go func() { exited2 <- qemu2.Wait() }()
	waitForCmdline(t, qemu2.Process.Pid, "qemu-system")

	h.start()
	got, err := h.db.FindJobByID(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != app.JobFailed {
		t.Errorf("status = %s, want failed", got.Status)
	}
	if l := h.log(job.ID, ""); !strings.Contains(l, "the builds service restarted while this job was running") {
		t.Errorf("setup log lacks the reason:\n%s", l)
	}
	for i, ch := range []chan error{exited, exited2} {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Errorf("leftover QEMU %d still running", i+1)
		}
	}
	for _, d := range []string{vmDir, vmDir2} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("leftover work dir %s still there: %v", d, err)
		}
	}
}

func waitForCmdline(t testing.TB, pid int, want string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		// argv[0], once bash has exec'd
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.HasPrefix(string(b), want) {
			return
		}
		sleepMS(10)
	}
	t.Fatalf("process %d never showed %q", pid, want)
}

// TestGuestNetworkNone: with no guest network at all, a job that needs a
// package mirror fails before booting, saying why; one that needs none
// runs.
func TestGuestNetworkNone(t *testing.T) {
	h := newHarness(t, func(c *app.Config) { c.Runner.GuestNetwork = app.GuestNone })
	for _, tt := range []struct{ name, manifest, want string }{
		{"Packages", "image: debian/bookworm\npackages: [jq]\ntasks:\n  - a: \"true\"\n", "packages: build VMs on this runner have no network ([runner] guest-network = none)"},
		{"Repositories", "image: debian/bookworm\nrepositories:\n  local: http://mirror.example/debian bookworm main\ntasks:\n  - a: \"true\"\n", "repositories: build VMs on this runner have no network"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			job := h.submit(tt.manifest)
			if got := h.wait(job.ID); got.Status != app.JobFailed {
				t.Fatalf("status = %s", got.Status)
			}
			setup := h.log(job.ID, "")
			if !strings.Contains(setup, "Error: "+tt.want) || strings.Contains(setup, "Booting") {
				t.Errorf("setup log:\n%s", setup)
			}
		})
	}
	job := h.submit("image: debian/bookworm\ntasks:\n  - a: echo offline\n")
	if got := h.wait(job.ID); got.Status != app.JobSuccess {
		t.Fatalf("job without packages: %s\n%s", got.Status, h.log(job.ID, ""))
	}
	// an allowed host service (say, a package cache) makes packages a
	// matter for the site's image configuration again
	h2 := newHarness(t, func(c *app.Config) {
		c.Runner.GuestNetwork = app.GuestNone
		c.Runner.GuestAllow = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:3142")}
	})
	job = h2.submit("image: debian/bookworm\npackages: [jq]\ntasks:\n  - a: \"true\"\n")
	if got := h2.wait(job.ID); got.Status != app.JobSuccess {
		t.Fatalf("with guest-allow: %s\n%s", got.Status, h2.log(job.ID, ""))
	}
}
