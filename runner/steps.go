package runner

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"time"

	"builds/app"
)

// exitError is a guest command that exited non-zero.
type exitError struct {
	what   string
	status int
}

func (e *exitError) Error() string { return fmt.Sprintf("%s: exit status %d", e.what, e.status) }

// steps runs the manifest's steps (behaviour.md §2.3), but with
// repositories and packages first: until they are installed nothing of
// the job (tasks, environment, secrets, token, sources) is in the guest,
// so its state then can be saved as a package layer for later jobs.
func (r *jobRun) steps() error {
	for _, step := range []func() error{
		r.installSystem,
		r.sendTasksAndEnv, r.sendSecrets, r.sendHutConfig,
		r.cloneSources, r.runTasks, r.uploadArtifacts,
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// exec runs a setup command with its output in the setup log.
func (r *jobRun) exec(what, cmd string, stdin io.Reader) error {
	st, err := runCommand(r.ctx, r.guest.Client(), cmd, stdin, r.setup, r.setup)
	r.setup.Flush()
	if err != nil {
		return err
	}
	if st != 0 {
		return &exitError{what: what, status: st}
	}
	return nil
}

// fileScript is a shell script (run with `sh -s`) that writes files into
// the guest. Contents travel base64-encoded in here-documents, so any
// bytes arrive intact and nothing ends up on a command line.
type fileScript struct{ b strings.Builder }

func newFileScript() *fileScript {
	s := &fileScript{}
	s.b.WriteString("set -e\numask 077\n")
	return s
}

// file writes data to path (a guestPath expression); mode < 0 keeps the
// umask's 0600.
func (s *fileScript) file(path string, data []byte, mode int) {
	fmt.Fprintf(&s.b, "mkdir -p \"$(dirname -- %s)\"\n", path)
	fmt.Fprintf(&s.b, "base64 -d > %s <<'BUILDS_EOF'\n", path)
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		s.b.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	s.b.WriteString(enc + "\nBUILDS_EOF\n")
	if mode >= 0 {
		fmt.Fprintf(&s.b, "chmod %o %s\n", mode, path)
	}
}

func (s *fileScript) line(format string, args ...any) {
	fmt.Fprintf(&s.b, format+"\n", args...)
}

func (s *fileScript) run(r *jobRun, what string) error {
	return r.exec(what, "sh -s", strings.NewReader(s.b.String()))
}

// taskPreamble is builds.sr.ht's default task preamble (behaviour.md §1.4).
const taskPreamble = `#!/usr/bin/env bash
. ~/.buildenv
set -xe

acurl() (
	set +x
	curl --oauth2-bearer "$OAUTH2_TOKEN" "$@"
)
`

// sendTasksAndEnv writes ~/.tasks/<name> (preamble + script + "\n",
// mode 755) and ~/.buildenv (mode 755), minting the job's API token first
// when the manifest asks for one: upstream's two steps, in one session.
func (r *jobRun) sendTasksAndEnv() error {
	r.logf("Sending tasks")
	s := newFileScript()
	for _, t := range r.m.Tasks {
		s.file(guestPath("~/.tasks/"+t.Name), []byte(taskPreamble+t.Script+"\n"), 0o755)
	}
	r.logf("Sending build environment")
	env, err := r.buildEnv()
	if err != nil {
		return err
	}
	s.file(guestPath("~/.buildenv"), []byte(env), 0o755)
	return s.run(r, "send tasks and build environment")
}

// reservedEnv are the variables builds sets itself; they override the
// manifest's.
var reservedEnv = map[string]bool{"CI_NAME": true, "JOB_ID": true, "JOB_URL": true, "OAUTH2_TOKEN": true}

// buildEnv returns ~/.buildenv (behaviour.md §1.4).
func (r *jobRun) buildEnv() (string, error) {
	token, err := r.mintToken()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\ncomplete-build() {\n\techo 1 > ~/.complete-build\n\texit 0\n}\n")
	for _, e := range r.m.Environment {
		if !reservedEnv[e.Name] {
			b.WriteString(e.ShellLine() + "\n")
		}
	}
	fixed := []app.EnvVar{
		{Name: "CI_NAME", Kind: app.EnvString, Value: "sourcehut"},
		{Name: "JOB_ID", Kind: app.EnvString, Value: fmt.Sprint(r.job.ID)},
		{Name: "JOB_URL", Kind: app.EnvString, Value: r.jobURL()},
	}
	if token != "" {
		fixed = append(fixed, app.EnvVar{Name: "OAUTH2_TOKEN", Kind: app.EnvString, Value: token})
	}
	for _, e := range fixed {
		b.WriteString(e.ShellLine() + "\n")
	}
	return b.String(), nil
}

func (r *jobRun) jobURL() string {
	return r.cfg.JobURL(r.owner.Username, r.job.ID)
}

// mintToken issues the job-scoped token for manifest.oauth (behaviour.md
// §1.8): the manifest's builds.sr.ht grants, expiring at the deadline. It
// is masked in the logs and revoked when the job ends.
func (r *jobRun) mintToken() (string, error) {
	if r.m.OAuth == "" {
		return "", nil
	}
	var grants []string
	for _, g := range strings.Fields(r.m.OAuth) {
		svc, scope, _ := strings.Cut(g, "/")
		if svc != "builds.sr.ht" {
			r.logf("OAuth grant %s is for another service; this instance only issues builds.sr.ht grants", g)
			continue
		}
		grants = append(grants, scope)
	}
	if len(grants) == 0 {
		r.logf("No builds.sr.ht grants in oauth; OAUTH2_TOKEN is not set")
		return "", nil
	}
	secret, revoke, err := r.srv.JobToken(r.dbCtx(), r.cj, strings.Join(grants, " "), time.Until(r.deadline))
	if err != nil {
		return "", fmt.Errorf("mint oauth token: %s", app.ErrorMessage(err))
	}
	r.mask.Add(secret)
	r.revoke = revoke
	r.tokenSecret = secret
	return secret, nil
}

// revokeToken deletes the job's token.
func (r *jobRun) revokeToken() {
	if r.revoke == nil {
		return
	}
	ctx, cancel := context.WithTimeout(app.SystemContext(context.WithoutCancel(r.ctx)), 10*time.Second)
	defer cancel()
	if err := r.revoke(ctx); err != nil {
		r.p.log.Error("revoke job token", "job_id", r.job.ID, "err", err)
	}
}

// dbCtx is the context for service calls made on the job's behalf.
func (r *jobRun) dbCtx() context.Context { return app.SystemContext(r.ctx) }

// sendSecrets installs the job's secrets in manifest order.
func (r *jobRun) sendSecrets() error {
	if len(r.m.Secrets) == 0 {
		return nil
	}
	r.logf("Sending secrets")
	firstKey := true
	for _, ref := range r.m.Secrets {
		r.logf("Resolving secret %s", ref)
		sec, err := r.srv.ResolveSecret(r.dbCtx(), r.cj, ref)
		if err != nil {
			return fmt.Errorf("secret %s: %s", ref, app.ErrorMessage(err))
		}
		r.mask.Add(string(sec.Data))
		switch sec.Type {
		case app.SecretSSHKey:
			s := newFileScript()
			s.line(`mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh"`)
			path := guestPath("~/.ssh/" + ref)
			s.file(path, sec.Data, 0o600)
			if firstKey {
				s.line(`ln -sfn %s "$HOME/.ssh/id_rsa"`, path)
				firstKey = false
			}
			err = s.run(r, "install ssh key "+ref)
		case app.SecretPGPKey:
			err = r.exec("gpg --import", "gpg --batch --import", strings.NewReader(string(sec.Data)))
		case app.SecretFile:
			if sec.Path == nil || *sec.Path == "" {
				return fmt.Errorf("secret %s: file secret has no path", ref)
			}
			mode := -1
			if sec.Mode != nil {
				mode = *sec.Mode
			}
			s := newFileScript()
			s.file(guestPath(*sec.Path), sec.Data, mode)
			err = s.run(r, "install file "+*sec.Path)
		default:
			return fmt.Errorf("Unknown secret type %s", sec.Type)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// sendHutConfig writes ~/.config/hut/config (mode 600) so `hut` in the
// guest talks to this instance with the job's token.
func (r *jobRun) sendHutConfig() error {
	if r.tokenSecret == "" {
		return nil
	}
	site := r.cfg.Builds.SiteName
	if site == "" {
		site = "default"
	}
	conf := fmt.Sprintf("instance %s {\n\taccess-token %s\n\tbuilds {\n\t\torigin %s\n\t}\n}\n",
		scfgQuote(site), scfgQuote(r.tokenSecret), scfgQuote(r.cfg.Builds.Origin))
	s := newFileScript()
	s.file(guestPath("~/.config/hut/config"), []byte(conf), 0o600)
	return s.run(r, "send hut config")
}

// scfgQuote quotes a word for hut's scfg config format.
func scfgQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// layeredGuest is a guest that can come from, and be saved as, a package
// layer (runner/layers.go).
type layeredGuest interface {
	FromLayer() *LayerInfo
	SaveLayer(ctx context.Context, jobID int64) (*LayerInfo, error)
}

// installSystem adds the manifest's repositories and packages, unless the
// guest was resumed from a layer that has them; a fresh install is then
// saved as a layer.
func (r *jobRun) installSystem() error {
	lg, layered := r.guest.(layeredGuest)
	if layered {
		if l := lg.FromLayer(); l != nil {
			r.logf("Packages from layer %s (built %s)", l.Key[:8], l.Created.Local().Format("2006-01-02 15:04"))
			return nil
		}
	}
	if err := r.addRepositories(); err != nil {
		return err
	}
	if err := r.installPackages(); err != nil {
		return err
	}
	if !layered || len(r.m.Packages) == 0 && len(r.m.Repositories) == 0 || noLayer(r.m) {
		return nil
	}
	start := time.Now()
	l, err := lg.SaveLayer(r.ctx, r.job.ID)
	switch {
	case err == nil:
		r.logf("Saved the packages as layer %s (%s in %.1fs)", l.Key[:8], app.HumanSize(l.Size), time.Since(start).Seconds())
	case r.ctx.Err() != nil:
		return context.Cause(r.ctx)
	case err.Error() != "no package layer to save":
		r.logf("Warning: the packages could not be saved as a layer: %s", firstLine(err.Error()))
	}
	return nil
}

// noLayerVar in a manifest's environment keeps its job from using or
// making package layers (builds.sr.ht ignores it).
const noLayerVar = "BUILDS_NO_LAYER"

// noLayer reports whether m opts out of package layers.
func noLayer(m *app.Manifest) bool {
	for _, e := range m.Environment {
		if e.Name == noLayerVar {
			v := strings.ToLower(strings.TrimSpace(e.Value))
			return v != "" && v != "0" && v != "false" && v != "no"
		}
	}
	return false
}

// addRepositories adds the manifest's package repositories, in order.
func (r *jobRun) addRepositories() error {
	for _, repo := range r.m.Repositories {
		r.logf("Adding repository %s", repo.Name)
		cmd, err := r.guest.AddRepoCommand(repo.Name, repo.Source)
		if err != nil {
			return fmt.Errorf("add repository: %w", err)
		}
		if err := r.exec("add repository "+repo.Name, cmd, nil); err != nil {
			return err
		}
	}
	return nil
}

// installPackages installs the manifest's packages in one command.
func (r *jobRun) installPackages() error {
	if len(r.m.Packages) == 0 {
		return nil
	}
	r.logf("Installing packages")
	return r.exec("install packages", r.guest.InstallCommand(r.m.Packages), nil)
}
