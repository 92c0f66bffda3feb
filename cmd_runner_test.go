package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunnerTokenCommands: runner-token create prints the token once (on
// stdout, the instructions on stderr), list shows the runner, revoke
// ends it; bad names and unknown runners are refused with the reason.
func TestRunnerTokenCommands(t *testing.T) {
	cfg := testConfig(t, "")
	out, errs, err := run(t, cfg, "", "runner-token", "create", "build-2")
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(out)
	if !strings.HasPrefix(token, "runner_") || strings.Contains(out, "\n\n") {
		t.Fatalf("token %q", out)
	}
	if !strings.Contains(errs, "builds runner -server ") || strings.Contains(errs, token) {
		t.Fatalf("instructions: %q", errs)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"runner-token", "create", "build-2"}, "already"},
		{[]string{"runner-token", "create", "Bad Name"}, "invalid runner name"},
		{[]string{"runner-token", "create", strings.Repeat("a", 64)}, "invalid runner name"},
		{[]string{"runner-token", "create"}, "runner-token create NAME"},
		{[]string{"runner-token", "revoke", "nobody"}, `no runner "nobody"`},
		{[]string{"runner-token", "frob"}, "unknown subcommand"},
		{[]string{"runner-token"}, "want create NAME, list or revoke NAME"},
	} {
		if _, _, err := run(t, cfg, "", tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	out, _, err = run(t, cfg, "", "runner-token", "list")
	if err != nil || !strings.Contains(out, "build-2") || !strings.Contains(out, "waiting for its first poll") || strings.Contains(out, token) {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if _, errs, err := run(t, cfg, "", "runner-token", "revoke", "build-2"); err != nil || !strings.Contains(errs, "revoked runner build-2") {
		t.Fatalf("revoke: %v %s", err, errs)
	}
	out, _, _ = run(t, cfg, "", "runner-token", "list")
	if !strings.Contains(out, "revoked ") {
		t.Fatalf("list after revoke:\n%s", out)
	}
	// a revoked name may be given again
	if _, _, err := run(t, cfg, "", "runner-token", "create", "build-2"); err != nil {
		t.Fatalf("create again: %v", err)
	}
}

// TestRunnerStartErrors: `builds runner` says what is missing or wrong
// before it starts anything, and refuses root as serve does.
func TestRunnerStartErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "builds.ini")
	os.WriteFile(cfg, []byte("[builds]\ndata-dir = "+filepath.Join(dir, "data")+"\n[runner]\nslots = 1\nssh-listen =\n"), 0o600)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("runner_x\n"), 0o644)
	runAs := func(euid int, args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		m := NewMain(strings.NewReader(""), &syncBuffer{}, &syncBuffer{})
		m.ops.euid = func() int { return euid }
		m.ConfigPath = cfg
		t.Setenv("BUILDS_RUNNER_TOKEN", "")
		return m.cmdRunner(ctx, args)
	}
	for _, tc := range []struct {
		euid int
		args []string
		want string
	}{
		{0, []string{"-server", "http://127.0.0.1:1"}, "refusing to run as root"},
		{1000, nil, "no server"},
		{1000, []string{"-server", "ftp://x"}, "http"},
		{1000, []string{"-server", "http://builds.example.org"}, "https"},
		{1000, []string{"-server", "http://127.0.0.1:1"}, "no token"},
		{1000, []string{"-server", "http://127.0.0.1:1", "-token-file", tokenFile}, "readable by others"},
		{1000, []string{"-server", "http://127.0.0.1:1", "-token-file", filepath.Join(dir, "missing")}, "no such file"},
		{1000, []string{"-server", "http://127.0.0.1:1", "extra"}, "takes no arguments"},
	} {
		if err := runAs(tc.euid, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v as %d: %v, want %q", tc.args, tc.euid, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("the data dir was made before the refusals")
	}
}

// TestVMRemoteRunner runs real VM jobs across a remote runner: a server
// with no slots of its own, and `builds runner` on another data dir
// with the test image, reaching it over loopback HTTP. The job's logs and
// artifact land on the server, job.runner names the runner's SSH server,
// and a real OpenSSH client reaches the job's VM there as `hut builds
// ssh` would.
func TestVMRemoteRunner(t *testing.T) {
	vm := vmConfig(t)
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Fatal("needs the OpenSSH client; make deps installs it")
	}
	// the server: slots = 0 (testConfig), its own SSH server off
	srvCfg := testConfig(t, "")
	tok, _, err := run(t, srvCfg, "", "runner-token", "create", "vm-runner")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pub, _ := os.ReadFile(key + ".pub")
	for _, args := range [][]string{{"user", "add", "alice", "--email", "a@example.org"}, {"user", "key", "add", "alice", strings.TrimSpace(string(pub))}} {
		if _, _, err := run(t, srvCfg, "", args...); err != nil {
			t.Fatal(err)
		}
	}
	out, _, err := run(t, srvCfg, "", "token", "create", "alice")
	if err != nil {
		t.Fatal(err)
	}
	admin := strings.TrimSpace(out)
	s := serveConfig(t, srvCfg, freePort(t))

	// the runner host: its own data dir, the test image, its SSH server
	sshPort := freePort(t)
	tokenFile := filepath.Join(dir, "runner.token")
	os.WriteFile(tokenFile, []byte(tok), 0o600)
	runCfg := testConfig(t, strings.Replace(vm, "slots = 2", "slots = 1", 1)+fmt.Sprintf(
		"[runner]\nname = 127.0.0.1\nssh-listen = 127.0.0.1:%d\nserver = %s\ntoken-file = %s\n", sshPort, s.base, tokenFile))
	ctx, cancel := context.WithCancel(context.Background())
	var rout, rerr syncBuffer // the runner's output
	done := make(chan error, 1)
	go func() { done <- Run(ctx, []string{"runner", "-config", runCfg}, strings.NewReader(""), &rout, &rerr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(90 * time.Second):
			t.Error("the runner did not stop")
		}
	})

	d := gql(t, s.base, admin, `mutation s($m: String!) { submit(manifest: $m) { id } }`, map[string]any{"m": `image: debian/bookworm
shell: true
artifacts: [out.txt]
tasks:
  - build: |
      echo "remote-vm-output $(uname -s)"
      echo artifact-from-the-runner > out.txt
`})
	id := int64(d["submit"].(map[string]any)["id"].(float64))
	var runnerAddr, sshUser string
	deadline := time.Now().Add(8 * time.Minute)
	for {
		d = gql(t, s.base, admin, `query j($id: Int!) { job(id: $id) { status runner tasks { status } } version { settings { sshUser } } }`, map[string]any{"id": id})
		j := d["job"].(map[string]any)
		tasks := j["tasks"].([]any)
		if j["status"] == "RUNNING" && len(tasks) == 1 && tasks[0].(map[string]any)["status"] == "SUCCESS" {
			runnerAddr, _ = j["runner"].(string)
			sshUser = d["version"].(map[string]any)["settings"].(map[string]any)["sshUser"].(string)
			break
		}
		if st := j["status"].(string); st != "RUNNING" && st != "QUEUED" && st != "PENDING" {
			t.Fatalf("job %d: %s\nrunner log:\n%s", id, st, rerr.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d did not reach its shell: %v\nrunner log:\n%s", id, j, rerr.String())
		}
		time.Sleep(time.Second)
	}
	if want := fmt.Sprintf("127.0.0.1:%d", sshPort); runnerAddr != want || sshUser != "ssh://builds" {
		t.Fatalf("getSSHInfo: runner %q sshUser %q, want %q and ssh://builds", runnerAddr, sshUser, want)
	}
	// hut builds ssh: ssh -t <sshUser>@<job.runner> connect <id>
	cmd := exec.Command(sshBin, "-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		sshUser+"@"+runnerAddr, "connect", fmt.Sprint(id), "cat out.txt; hostname")
	cmd.Env = append(os.Environ(), "HOME="+dir)
	got, _ := cmd.CombinedOutput()
	if !strings.Contains(string(got), fmt.Sprintf("Connected to build job #%d", id)) || !strings.Contains(string(got), "artifact-from-the-runner") {
		t.Fatalf("ssh %s@%s connect %d:\n%s", sshUser, runnerAddr, id, got)
	}
	// the last session logged out: the job ends, its logs and artifact on
	// the server
	var status string
	for time.Now().Before(deadline) {
		d = gql(t, s.base, admin, `query j($id: Int!) { job(id: $id) { status log { fullURL } tasks { log { fullURL } } artifacts { path url } } }`, map[string]any{"id": id})
		j := d["job"].(map[string]any)
		status = j["status"].(string)
		if status == "RUNNING" {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		_, setup := get(t, j["log"].(map[string]any)["fullURL"].(string), admin)
		_, build := get(t, j["tasks"].([]any)[0].(map[string]any)["log"].(map[string]any)["fullURL"].(string), admin)
		if status != "SUCCESS" || !strings.Contains(build, "remote-vm-output Linux") || !strings.Contains(setup, "debian/bookworm") {
			t.Fatalf("job %d: %s\nsetup:\n%s\nbuild:\n%s\nrunner log:\n%s", id, status, setup, build, rerr.String())
		}
		arts := j["artifacts"].([]any)
		if len(arts) != 1 {
			t.Fatalf("artifacts %v", arts)
		}
		if _, body := get(t, arts[0].(map[string]any)["url"].(string), admin); body != "artifact-from-the-runner\n" {
			t.Fatalf("artifact %q", body)
		}
		return
	}
	t.Fatalf("job %d still %s after logout", id, status)
}
