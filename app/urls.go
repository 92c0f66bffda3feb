package app

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Public URLs and commands shown to users. The API, the web UI, the runner
// and notifications all build them here so they agree.

// JobURL returns the web page of a job.
func (c *Config) JobURL(owner string, jobID int64) string {
	return fmt.Sprintf("%s/~%s/job/%d", strings.TrimRight(c.Builds.Origin, "/"), owner, jobID)
}

// LogURL returns the download URL of a job's setup log (task "") or of a
// task's log: <origin>/query/log/<job>[/<task>]/log, as builds.sr.ht has.
func (c *Config) LogURL(jobID int64, task string) string {
	origin := strings.TrimRight(c.Builds.Origin, "/")
	if task == "" {
		return fmt.Sprintf("%s/query/log/%d/log", origin, jobID)
	}
	return fmt.Sprintf("%s/query/log/%d/%s/log", origin, jobID, url.PathEscape(task))
}

// ArtifactURL returns the download URL of an artifact.
func (c *Config) ArtifactURL(a *Artifact) string {
	return fmt.Sprintf("%s/query/artifact/%d/%s", strings.TrimRight(c.Builds.Origin, "/"), a.ID, url.PathEscape(a.Name))
}

// SSHTarget returns the ssh arguments that reach builds' SSH server:
// "[-p PORT ]<user>@<runner>", with -p when [runner] ssh-listen is not on
// port 22.
func (c *Config) SSHTarget() string {
	port := ""
	if p := c.sshPort(); p != "" {
		port = "-p " + p + " "
	}
	return port + c.Runner.SSHUser + "@" + c.RunnerName()
}

// ConnectCommand returns the command that logs into a job's VM through
// builds' SSH server: `ssh -t [-p PORT] <user>@<runner> connect <id>`.
func (c *Config) ConnectCommand(jobID int64) string {
	return fmt.Sprintf("ssh -t %s connect %d", c.SSHTarget(), jobID)
}

// sshPort returns the port of [runner] ssh-listen when it is one a client
// must be told (not 22, not 0 and not unset), else "".
func (c *Config) sshPort() string {
	if _, p, err := net.SplitHostPort(c.Runner.SSHListen); err == nil && p != "22" && p != "0" && p != "" {
		return p
	}
	return ""
}

// hutSSHURI reports whether the API hands hut a destination URI for
// `hut builds ssh`. hut runs exactly `ssh -t <sshUser>@<job.runner>
// connect <id>`, and OpenSSH reads a destination ssh://user@host:port;
// so with ssh-listen off port 22 the API gives sshUser as ssh://<user>
// and this server's runner as <name>:<port>. OpenSSH's URI parser takes
// no brackets, so a runner named by an IPv6 address (or anything else
// with a colon) keeps the plain form.
func (c *Config) hutSSHURI() bool {
	return c.sshPort() != "" && !strings.Contains(c.RunnerName(), ":")
}

// APISSHUser returns Settings.sshUser as the API reports it: ssh://<user>
// when the runner's SSH server is not on port 22 (see hutSSHURI), else
// [runner] ssh-user.
func (c *Config) APISSHUser() string {
	if c.hutSSHURI() {
		return "ssh://" + c.Runner.SSHUser
	}
	return c.Runner.SSHUser
}

// APIRunner returns Job.runner as the API reports it: a job this server
// ran is <runner>:<port> when its SSH server is not on port 22 (see
// hutSSHURI); other runners' names are as stored.
func (c *Config) APIRunner(runner string) string {
	if runner == c.RunnerName() && c.hutSSHURI() {
		return runner + ":" + c.sshPort()
	}
	return runner
}

// ConnectHint returns the connect command for the server log, with
// <job> for the id, for builds' SSH server listening on addr (the
// address it got, so that a configured port 0 shows the real one).
func (c *Config) ConnectHint(addr string) string {
	cp := *c
	cp.Runner.SSHListen = addr
	return fmt.Sprintf("ssh -t %s connect <job>", cp.SSHTarget())
}

// RepoWebhookURL is where a connected repository's forge (or its
// post-receive hook) delivers pushes.
func (c *Config) RepoWebhookURL(r *Repo) string {
	return strings.TrimRight(c.Builds.Origin, "/") + r.WebhookPath()
}

// RepoPageURL is a connected repository's page in the web UI (its
// owner's only).
func (c *Config) RepoPageURL(r *Repo) string {
	return strings.TrimRight(c.Builds.Origin, "/") + "/repositories/" + url.PathEscape(r.Name)
}
