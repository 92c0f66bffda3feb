package runner

import (
	"builds/app"

	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"
)

// source is one parsed `sources` entry.
type source struct {
	scm  string // git | hg
	url  string
	name string // directory under home
	ref  string // "" = default branch
}

// parseSource reads "[dir::]url[#ref]" the way builds.sr.ht does
// (behaviour.md §1.3): a ref only if there is exactly one "#", the name
// taken from the URL before the "::" split, "X+Y://" selecting scm X.
func parseSource(entry string) (source, error) {
	src := source{scm: "git", url: entry}
	if parts := strings.Split(entry, "#"); len(parts) == 2 {
		src.url, src.ref = parts[0], parts[1]
	}
	src.name = path.Base(src.url)
	explicit := false
	if parts := strings.Split(src.url, "::"); len(parts) == 2 {
		src.url = parts[1]
		if parts[0] != "" {
			src.name, explicit = parts[0], true
		}
	}
	if u, err := url.Parse(src.url); err == nil {
		if scm, scheme, ok := strings.Cut(u.Scheme, "+"); ok {
			src.scm = scm
			src.url = scheme + src.url[len(u.Scheme):]
		}
	}
	if src.scm != "git" && src.scm != "hg" {
		return src, fmt.Errorf("Unknown scm: %s", src.scm)
	}
	if src.scm == "git" && !explicit {
		src.name = strings.TrimSuffix(src.name, ".git")
	}
	if src.url == "" || src.name == "" || src.name == "." || src.name == ".." || src.name == "/" {
		return src, fmt.Errorf("source %q: cannot tell which directory to clone into", entry)
	}
	return src, nil
}

// sshOpts is what clones pass to ssh: host keys are not checked, as on
// builds.sr.ht (users cannot add known_hosts before the clone).
const sshOpts = "ssh -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no"

// cloneSources clones every source into the home directory.
func (r *jobRun) cloneSources() error {
	if len(r.m.Sources) == 0 {
		return nil
	}
	r.logf("Cloning repositories")
	for _, entry := range r.m.Sources {
		src, err := parseSource(entry)
		if err != nil {
			return err
		}
		if src.scm == "hg" {
			err = r.cloneHg(src)
		} else {
			err = r.cloneGit(src)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *jobRun) cloneGit(src source) error {
	env := "GIT_SSH_COMMAND=" + app.ShellQuote(sshOpts) + " "
	dir := app.ShellQuote(src.name)
	if app.IsLocalSource(src.url) {
		if err := r.cloneLocalGit(src); err != nil {
			return err
		}
	} else {
		err := r.exec("git clone", env+"git clone -- "+app.ShellQuote(src.url)+" "+dir, nil)
		var exit *exitError
		if errors.As(err, &exit) {
			r.logf("Failed to clone git repository. If this a private repository, make sure you've added a suitable SSH key.")
			r.logf("https://man.sr.ht/builds.sr.ht/private-repos.md")
		}
		if err != nil {
			return err
		}
	}
	if src.ref != "" {
		if err := r.exec("git checkout", "cd "+dir+" && git checkout -q "+app.ShellQuote(src.ref), nil); err != nil {
			return err
		}
	}
	return r.exec("git submodule update", "cd "+dir+" && "+env+"git submodule update --init --recursive", nil)
}

// guestBundle is where a local source's bundle is put in the guest, for
// the moment of its clone.
const guestBundle = `"$HOME/.builds-src.bundle"`

// cloneLocalGit clones a source that is a path on the host (a plain git
// repository connected by its path), which the guest cannot reach: the
// server sends a bundle of it, if the job may have it, which goes into
// the guest over the job's SSH session and is cloned there. origin is
// then the source's URL again, as after any clone.
func (r *jobRun) cloneLocalGit(src source) error {
	r.logf("Cloning %s from the server (a local repository)", src.url)
	b, err := r.srv.SourceBundle(r.ctx, r.cj, src.url)
	if err != nil {
		var ce *callError
		switch {
		case app.ErrorCode(err) != app.EINTERNAL: // refused: the message names the source
			return errors.New(app.ErrorMessage(err))
		case errors.As(err, &ce) && permanent(err): // the remote server's refusal
			return errors.New(ce.msg)
		case errors.As(err, &ce):
			return fmt.Errorf("source %s: %w", src.url, err)
		case context.Cause(r.ctx) != nil:
			return err
		}
		r.p.log.Error("source bundle", "job_id", r.job.ID, "source", src.url, "err", err)
		return fmt.Errorf("source %s: the server could not make a bundle of it (its log says why)", src.url)
	}
	defer b.Close()
	in := &readRecorder{r: b}
	err = r.exec("receive bundle", "umask 077 && cat > "+guestBundle, in)
	if in.err != nil {
		return fmt.Errorf("source %s: receive its bundle: %w", src.url, in.err)
	}
	if err != nil {
		return err
	}
	dir := app.ShellQuote(src.name)
	if err := r.exec("git clone", "git clone -- "+guestBundle+" "+dir+"; st=$?; rm -f "+guestBundle+"; exit $st", nil); err != nil {
		return err
	}
	return r.exec("git remote", "cd "+dir+" && git remote set-url origin "+app.ShellQuote(src.url), nil)
}

// readRecorder keeps the first error reading r other than io.EOF.
type readRecorder struct {
	r   io.Reader
	err error
}

func (rr *readRecorder) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	if err != nil && err != io.EOF && rr.err == nil {
		rr.err = err
	}
	return n, err
}

func (r *jobRun) cloneHg(src source) error {
	dir := app.ShellQuote(src.name)
	if err := r.exec("hg clone", "hg clone -e "+app.ShellQuote(sshOpts)+" -- "+app.ShellQuote(src.url)+" "+dir, nil); err != nil {
		return err
	}
	if src.ref == "" {
		return nil
	}
	return r.exec("hg update", "cd "+dir+" && hg update -y -- "+app.ShellQuote(src.ref), nil)
}
