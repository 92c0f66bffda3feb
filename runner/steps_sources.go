package runner

import (
	"builds/app"

	"errors"
	"fmt"
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
	err := r.exec("git clone", env+"git clone -- "+app.ShellQuote(src.url)+" "+dir, nil)
	var exit *exitError
	if errors.As(err, &exit) {
		r.logf("Failed to clone git repository. If this a private repository, make sure you've added a suitable SSH key.")
		r.logf("https://man.sr.ht/builds.sr.ht/private-repos.md")
	}
	if err != nil {
		return err
	}
	if src.ref != "" {
		if err := r.exec("git checkout", "cd "+dir+" && git checkout -q "+app.ShellQuote(src.ref), nil); err != nil {
			return err
		}
	}
	return r.exec("git submodule update", "cd "+dir+" && "+env+"git submodule update --init --recursive", nil)
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
