package app

// Sources on the server's own machine. A plain git repository connected
// by its path (`builds repo add --kind git --url /srv/git/proj.git`) pins
// that path in the manifests its pushes submit, but guests never reach
// the host: the runner asks the server for a git bundle of the
// repository instead and sends it into the guest over the job's SSH
// session (runner/steps_sources.go). The server makes one only for the
// repository whose push (or manual or scheduled build) started the job,
// when the job's owner connected it: a manifest cannot read other paths
// of this machine through it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// IsLocalSource reports whether a source URL names a path on the machine
// that clones it (an absolute path or a file:// URL), which a guest's
// clone would look for in the guest.
func IsLocalSource(u string) bool {
	return strings.HasPrefix(u, "/") || strings.HasPrefix(u, "file://")
}

// localSourcePath returns the path an absolute path or file:// URL names,
// cleaned, so that either form of one repository compares equal. Paths
// with ".." elements, percent-escapes, a host other than localhost, a
// query or a fragment are refused.
func localSourcePath(raw string) (string, error) {
	p := raw
	if strings.HasPrefix(raw, "file://") {
		if strings.Contains(raw, "%") {
			return "", Errorf(EINVALID, "source %s: escaped characters are not accepted in a file:// URL", raw)
		}
		u, err := url.Parse(raw)
		if err != nil {
			return "", Errorf(EINVALID, "source %s: %v", raw, err)
		}
		if u.Host != "" && u.Host != "localhost" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return "", Errorf(EINVALID, "source %s: want file:///path, a path on this machine", raw)
		}
		p = u.Path
	}
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\x00\n\r") {
		return "", Errorf(EINVALID, "source %s is not an absolute path or a file:// URL", raw)
	}
	for el := range strings.SplitSeq(p, "/") {
		if el == ".." {
			return "", Errorf(EFORBIDDEN, "source %s: paths with .. are not accepted", raw)
		}
	}
	return filepath.Clean(p), nil
}

// SourceBundle is a git bundle of a job's local source, ready to send: a
// temporary file no directory holds any more, gone with Close.
type SourceBundle struct {
	f *os.File
	// Size is the bundle's length in bytes.
	Size int64
}

// Read reads the bundle.
func (b *SourceBundle) Read(p []byte) (int, error) { return b.f.Read(p) }

// Close drops the bundle.
func (b *SourceBundle) Close() error { return b.f.Close() }

// SourceBundle makes a bundle of the repository that job's source names
// (an absolute path or file:// URL) for the runner to clone in the guest.
// It runs with the runner's authority and refuses (EFORBIDDEN) every
// source but the path of the owner's connected repository whose push,
// manual or scheduled build started the job; the bundle holds every ref
// of it and the commit the push built, within [limits] source-size.
func (s *Service) SourceBundle(ctx context.Context, job *Job, source string) (*SourceBundle, error) {
	repo, push, err := s.localSourceRepo(ctx, job, source)
	if err != nil {
		if code := ErrorCode(err); code == EFORBIDDEN || code == EINVALID {
			s.Log.Warn("local source refused", "job_id", job.ID, "source", TruncateUTF8(source, 200), "err", ErrorMessage(err))
		}
		return nil, err
	}
	if s.Forge == nil {
		return nil, fmt.Errorf("source bundle: no forge adapter configured")
	}
	dir, _ := localSourcePath(repo.CloneURL) // checked by localSourceRepo
	f, err := s.tempFile("source-*.bundle")
	if err != nil {
		return nil, fmt.Errorf("source bundle: %w", err)
	}
	w := &cappedWriter{w: f, max: s.Config.Limits.SourceSize}
	commit := push.Commit
	if !IsCommitSHA(commit) {
		commit = ""
	}
	if err := s.Forge.BundleRepository(ctx, dir, commit, w); err != nil {
		f.Close()
		if w.over {
			return nil, Errorf(EINVALID, "source %s: the repository's bundle is larger than the %s allowed ([limits] source-size)",
				source, HumanSize(s.Config.Limits.SourceSize))
		}
		return nil, fmt.Errorf("source %s: %w", source, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("source bundle: %w", err)
	}
	s.Log.Info("local source bundled", "job_id", job.ID, "repo_id", repo.ID, "size", w.n)
	return &SourceBundle{f: f, Size: w.n}, nil
}

// localSourceRepo finds the repository job may clone source of: the one
// whose push started the job's group, connected by the job's owner by
// the very path source names.
func (s *Service) localSourceRepo(ctx context.Context, job *Job, source string) (*Repo, *RepoPush, error) {
	want, err := localSourcePath(source)
	if err != nil {
		return nil, nil, err
	}
	notStarted := Errorf(EFORBIDDEN, "source %s is a path on the server: only a job that a push (or build) of the repository connected by that path started may clone it, and no push started job %d",
		source, job.ID)
	if job.GroupID == nil {
		return nil, nil, notStarted
	}
	push, err := s.Store.FindRepoPushByGroup(ctx, *job.GroupID)
	if ErrorCode(err) == ENOTFOUND {
		return nil, nil, notStarted
	} else if err != nil {
		return nil, nil, fmt.Errorf("find push of job %d: %w", job.ID, err)
	}
	repo, err := s.Store.FindRepositoryByID(ctx, push.RepositoryID)
	if ErrorCode(err) == ENOTFOUND {
		return nil, nil, Errorf(EFORBIDDEN, "source %s: the repository whose push started job %d is no longer connected", source, job.ID)
	} else if err != nil {
		return nil, nil, fmt.Errorf("find repository of job %d: %w", job.ID, err)
	}
	if repo.OwnerID != job.OwnerID {
		return nil, nil, Errorf(EFORBIDDEN, "source %s: the repository whose push started job %d is not its owner's", source, job.ID)
	}
	have, err := localSourcePath(repo.CloneURL)
	if err != nil || !IsLocalSource(repo.CloneURL) || have != want {
		return nil, nil, Errorf(EFORBIDDEN, "source %s is a path on the server, and not that of the repository %s whose push started job %d: only that repository is sent into the guest",
			source, repo.Name, job.ID)
	}
	return repo, push, nil
}

// tempFile creates a file under <data-dir>/tmp and unlinks it at once,
// so that nothing is left behind whatever happens to this process.
func (s *Service) tempFile(pattern string) (*os.File, error) {
	dir := filepath.Join(s.Config.Builds.DataDir, "tmp")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// errSourceTooLarge is what a cappedWriter answers past its limit.
var errSourceTooLarge = errors.New("size limit reached")

// cappedWriter writes at most max bytes to w, then fails.
type cappedWriter struct {
	w    io.Writer
	max  int64
	n    int64
	over bool
}

func (c *cappedWriter) Write(p []byte) (int, error) {
	if c.n+int64(len(p)) > c.max {
		c.over = true
		return 0, errSourceTooLarge
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// RunnerSourceBundle is SourceBundle for a remote runner, of a running
// job it holds (GET /worker/v1/jobs/N/source).
func (s *Service) RunnerSourceBundle(ctx context.Context, jobID int64, source string) (*SourceBundle, error) {
	_, job, err := s.heldJob(ctx, jobID, true)
	if err != nil {
		return nil, err
	}
	return s.SourceBundle(ctx, job, source)
}
