package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// The artifact store: every artifact, whether the runner copies it out of
// a guest or a remote worker uploads it (createArtifact), is written
// through ArtifactWriter under <data>/artifacts/<job>/<random>/<name>,
// with one set of limits ([limits] artifacts-per-job, artifact-size).

// CheckArtifactCount refuses a build with more than [limits]
// artifacts-per-job artifacts (0: no limit).
func (l LimitsConfig) CheckArtifactCount(n int) error {
	if l.ArtifactsPerJob > 0 && n > l.ArtifactsPerJob {
		return Errorf(EINVALID, "no more than %d artifacts per build are accepted (%d given)", l.ArtifactsPerJob, n)
	}
	return nil
}

// CheckArtifactSize refuses an artifact larger than [limits] artifact-size.
func (l LimitsConfig) CheckArtifactSize(name string, size int64) error {
	if l.ArtifactSize > 0 && size > l.ArtifactSize {
		return Errorf(EINVALID, "artifact %s is %s, more than the %s allowed per artifact ([limits] artifact-size)",
			name, HumanSize(size), HumanSize(l.ArtifactSize))
	}
	return nil
}

// ArtifactWriter is one artifact being stored. Write its content, then
// Commit to record it or Abort to throw it away; writing past [limits]
// artifact-size fails and the artifact cannot be committed.
type ArtifactWriter struct {
	svc   *Service
	a     *Artifact
	f     *os.File
	limit int64
	over  bool
}

// NewArtifact starts storing the artifact the guest has at guestPath for
// job jobID. The path is checked (it keeps its base name), and so is the
// number of artifacts the job already has.
func (s *Service) NewArtifact(ctx context.Context, jobID int64, guestPath string) (*ArtifactWriter, error) {
	name := path.Base(guestPath)
	if guestPath == "" || name == "/" || name == "." || name == ".." || strings.ContainsAny(guestPath, "\x00\n") {
		return nil, Errorf(EINVALID, "invalid artifact path %q", guestPath)
	}
	if _, err := s.Store.FindJobByID(ctx, jobID); err != nil {
		return nil, errNoJob(jobID)
	}
	existing, err := s.Store.FindArtifacts(ctx, jobID)
	if err != nil {
		return nil, fmt.Errorf("find artifacts: %w", err)
	}
	if err := s.Config.Limits.CheckArtifactCount(len(existing) + 1); err != nil {
		return nil, err
	}
	rnd := make([]byte, 8)
	rand.Read(rnd)
	a := &Artifact{JobID: jobID, Name: name, Path: guestPath, File: path.Join(fmt.Sprint(jobID), hex.EncodeToString(rnd), name)}
	dst := s.ArtifactPath(a)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return nil, fmt.Errorf("create artifact dir: %w", err)
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create artifact: %w", err)
	}
	return &ArtifactWriter{svc: s, a: a, f: f, limit: s.Config.Limits.ArtifactSize}, nil
}

// Write stores p, refusing to go past the size limit.
func (w *ArtifactWriter) Write(p []byte) (int, error) {
	if w.over || w.limit > 0 && w.a.Size+int64(len(p)) > w.limit {
		w.over = true
		return 0, w.tooLarge()
	}
	n, err := w.f.Write(p)
	w.a.Size += int64(n)
	if err != nil {
		return n, fmt.Errorf("write artifact: %w", err)
	}
	return n, nil
}

func (w *ArtifactWriter) tooLarge() error {
	return Errorf(EINVALID, "artifact %s grew past the %s allowed per artifact ([limits] artifact-size)",
		w.a.Path, HumanSize(w.limit))
}

// TooLarge reports whether a write went past the size limit.
func (w *ArtifactWriter) TooLarge() bool { return w.over }

// Commit records the artifact; on any error the file is removed.
func (w *ArtifactWriter) Commit(ctx context.Context) (*Artifact, error) {
	err := w.f.Close()
	switch {
	case w.over:
		err = w.tooLarge()
	case err != nil:
		err = fmt.Errorf("write artifact: %w", err)
	default:
		err = w.svc.Store.CreateArtifact(ctx, w.a)
	}
	if err != nil {
		w.remove()
		return nil, err
	}
	w.svc.Metrics.ArtifactBytes(w.a.Size)
	return w.a, nil
}

// Abort throws the artifact away.
func (w *ArtifactWriter) Abort() {
	w.f.Close()
	w.remove()
}

func (w *ArtifactWriter) remove() { os.RemoveAll(filepath.Dir(w.svc.ArtifactPath(w.a))) }
