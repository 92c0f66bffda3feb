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
	if _, p, err := net.SplitHostPort(c.Runner.SSHListen); err == nil && p != "22" && p != "0" && p != "" {
		port = "-p " + p + " "
	}
	return port + c.Runner.SSHUser + "@" + c.RunnerName()
}

// ConnectCommand returns the command that logs into a job's VM through
// builds' SSH server: `ssh -t [-p PORT] <user>@<runner> connect <id>`.
func (c *Config) ConnectCommand(jobID int64) string {
	return fmt.Sprintf("ssh -t %s connect %d", c.SSHTarget(), jobID)
}
