package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"builds/app"
	"builds/store"
)

// gql posts one GraphQL query with a token and decodes data.
func gql(t *testing.T, base, token, query string, vars map[string]any) map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest("POST", base+"/query", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Data   map[string]any
		Errors []struct{ Message string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Errors) > 0 {
		t.Fatalf("query %q: %v %+v", query, err, out.Errors)
	}
	return out.Data
}

// TestHutSSHConnect runs `hut builds ssh`'s command exactly (ssh -t
// <sshUser>@<job.runner> connect <id>, from getSSHInfo's answer) with a
// real OpenSSH client against a real `builds serve` whose SSH server is
// on a port other than 22, with no ~/.ssh/config: it reaches the job.
// The server log's connect hint names the port.
func TestHutSSHConnect(t *testing.T) {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("needs the OpenSSH client (ssh, ssh-keygen); make deps installs it")
	}
	sshPort := freePort(t)
	cfg := testConfig(t, fmt.Sprintf("ssh-listen = 127.0.0.1:%d\n", sshPort))
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pub, _ := os.ReadFile(key + ".pub")
	if _, _, err := run(t, cfg, "", "user", "add", "alice", "--email", "a@example.org"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, cfg, "", "user", "key", "add", "alice", strings.TrimSpace(string(pub))); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, cfg, "", "token", "create", "alice")
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(out)
	s := serveConfig(t, cfg, freePort(t))

	d := gql(t, s.base, token, `mutation s($m: String!) { submit(manifest: $m) { id } }`,
		map[string]any{"m": "image: debian/stable\ntasks:\n  - a: echo hi\n"})
	id := d["submit"].(map[string]any)["id"]
	// slots = 0 leaves the job queued; getSSHInfo needs a runner, so move
	// it to running by this server's runner as the pool's claim would.
	claimAsRunner(t, cfg, int64(id.(float64)))
	d = gql(t, s.base, token, "query getSSHInfo ($id: Int!) { job(id: $id) { id runner } version { settings { sshUser } } }",
		map[string]any{"id": id})
	user := d["version"].(map[string]any)["settings"].(map[string]any)["sshUser"].(string)
	runner := d["job"].(map[string]any)["runner"].(string)
	if user != "ssh://builds" || runner != fmt.Sprintf("127.0.0.1:%d", sshPort) {
		t.Fatalf("getSSHInfo: %q %q", user, runner)
	}
	cmd := exec.Command(sshBin, "-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"-t", user+"@"+runner, "connect", fmt.Sprint(id))
	cmd.Env = append(os.Environ(), "HOME="+dir)
	got, _ := cmd.CombinedOutput()
	if !strings.Contains(string(got), fmt.Sprintf("Connected to build job #%v", id)) {
		t.Fatalf("ssh %s@%s connect %v:\n%s", user, runner, id, got)
	}
	hint := fmt.Sprintf("ssh -t -p %d builds@127.0.0.1 connect <job>", sshPort)
	if !strings.Contains(s.errb.String(), hint) {
		t.Errorf("server log lacks %q:\n%s", hint, s.errb.String())
	}
}

// claimAsRunner moves a queued job to running by this server's runner,
// through the database the server uses (as a runner's claim does).
func claimAsRunner(t *testing.T, cfg string, id int64) {
	t.Helper()
	c, err := app.LoadConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(context.Background(), filepath.Join(c.Builds.DataDir, "builds.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, runner := app.JobRunning, c.RunnerName()
	if _, err := db.TransitionJob(context.Background(), id, []app.JobStatus{app.JobQueued}, app.JobUpdate{Status: &st, Runner: &runner}); err != nil {
		t.Fatal(err)
	}
}
