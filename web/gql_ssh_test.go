package web

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"builds/app"
)

// TestHutSSHDestination: `hut builds ssh N` runs exactly
// `ssh -t <sshUser>@<job.runner> connect N` from getSSHInfo's answer.
// Built from our answer, that destination must reach builds' SSH server
// on the port of [runner] ssh-listen as a real OpenSSH client reads it
// (`ssh -G` prints the user, host and port it would connect to).
func TestHutSSHDestination(t *testing.T) {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("needs the OpenSSH client (ssh); make deps installs it")
	}
	for _, tc := range []struct {
		name, listen, runner    string
		wantUser, wantHost      string
		wantPort                string
		wantAPIUser, wantAPIRun string
	}{
		{"OffPort22", "127.0.0.1:2222", "ci.example.org", "builds", "ci.example.org", "2222", "ssh://builds", "ci.example.org:2222"},
		{"Port22", "0.0.0.0:22", "ci.example.org", "builds", "ci.example.org", "22", "builds", "ci.example.org"},
		{"IPv4Runner", "127.0.0.1:2200", "127.0.0.1", "builds", "127.0.0.1", "2200", "ssh://builds", "127.0.0.1:2200"},
		// OpenSSH's ssh:// parser takes no brackets: an IPv6 runner keeps
		// the plain form (and needs ~/.ssh/config for the port).
		{"IPv6Runner", "[::1]:2222", "::1", "builds", "::1", "22", "builds", "::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newAPIEnv(t)
			e.cfg.Runner.SSHListen = tc.listen
			e.cfg.Runner.Name = tc.runner
			alice, tok := e.user("alice")
			job := e.submit(alice, app.Public)
			ctx := app.SystemContext(t.Context())
			if _, err := e.svc.UpdateJobStatus(ctx, job.ID, app.JobQueued); err != nil {
				t.Fatal(err)
			}
			if _, err := e.svc.ClaimJobByID(ctx, job.ID, e.cfg.RunnerName()); err != nil {
				t.Fatal(err)
			}
			d := e.mustQuery(tok, hutSSHInfo, map[string]any{"id": job.ID})
			user, _ := get(d, "version", "settings", "sshUser").(string)
			runner, _ := get(d, "job", "runner").(string)
			if user != tc.wantAPIUser || runner != tc.wantAPIRun {
				t.Fatalf("getSSHInfo: sshUser %q runner %q, want %q %q", user, runner, tc.wantAPIUser, tc.wantAPIRun)
			}
			// hut's argv, with -G to print the resolved settings and -F
			// /dev/null so no local ssh_config interferes.
			out, err := exec.Command(sshBin, "-G", "-F", "/dev/null", "-t", user+"@"+runner, "connect", fmt.Sprint(job.ID)).CombinedOutput()
			if err != nil {
				t.Fatalf("ssh -G: %v\n%s", err, out)
			}
			got := map[string]string{}
			for _, l := range strings.Split(string(out), "\n") {
				if k, v, ok := strings.Cut(l, " "); ok && (k == "user" || k == "hostname" || k == "port") {
					got[k] = v
				}
			}
			if got["user"] != tc.wantUser || got["hostname"] != tc.wantHost || got["port"] != tc.wantPort {
				t.Errorf("ssh reads %s@%s as user %q host %q port %q, want %q %q %q", user, runner,
					got["user"], got["hostname"], got["port"], tc.wantUser, tc.wantHost, tc.wantPort)
			}
		})
	}
	t.Run("OtherRunner", func(t *testing.T) {
		// a job another runner ran keeps that runner's name as stored
		cfg := app.DefaultConfig()
		cfg.Runner.Name = "ci.example.org"
		if got := cfg.APIRunner("remote-1.example.org"); got != "remote-1.example.org" {
			t.Errorf("APIRunner = %q", got)
		}
	})
}
