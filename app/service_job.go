package app

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// SubmitInput is the submit mutation's arguments (nil = not given).
type SubmitInput struct {
	Manifest   string
	Tags       []string
	Note       *string
	Secrets    *bool
	Execute    *bool
	Visibility *Visibility
}

// MaxNoteSize is the longest note accepted, as on builds.sr.ht.
const MaxNoteSize = 4096

var tagRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// CheckManifest parses a manifest with the configured limits, returning
// an EINVALID error listing every problem.
func (s *Service) CheckManifest(text string) (*Manifest, error) {
	m, err := ParseManifest([]byte(text), s.Config.Limits.ManifestSize)
	if err != nil {
		var errs ManifestErrors
		if errors.As(err, &errs) {
			return nil, &Error{Code: EINVALID, Message: errs.Error()}
		}
		return nil, Errorf(EINVALID, "%s", err.Error())
	}
	if err := s.Config.Limits.CheckArtifactCount(len(m.Artifacts)); err != nil {
		return nil, err
	}
	return m, nil
}

// Tag limits: a job's tags are a path ("proj/commits/main/.build.yml"),
// shown as breadcrumbs on every page that lists the job.
const (
	MaxTags      = 16
	MaxTagLength = 128
)

// normalizeTags drops empty tags (hut sends [""]) and validates the rest.
func normalizeTags(tags []string) (string, error) {
	var out []string
	for _, t := range tags {
		if t == "" {
			continue
		}
		if len(out) == MaxTags {
			return "", Errorf(EINVALID, "Too many tags: %d given, at most %d are accepted", len(tags), MaxTags)
		}
		if len(t) > MaxTagLength {
			return "", Errorf(EINVALID, "Tag %.40q... is too long: %d characters, at most %d are accepted", t, len(t), MaxTagLength)
		}
		if !tagRE.MatchString(t) {
			return "", Errorf(EINVALID, "Invalid tag name %q, tags must use alphanumeric characters, underscores, dashes, or dots", t)
		}
		out = append(out, t)
	}
	return strings.Join(out, "/"), nil
}

func normalizeNote(note *string) (*string, error) {
	if note == nil || *note == "" {
		return nil, nil
	}
	if len(*note) > MaxNoteSize {
		return nil, Errorf(EINVALID, "note must be at most %d bytes", MaxNoteSize)
	}
	return note, nil
}

// Submit validates a manifest and creates a job with one pending task per
// manifest task, queued unless Execute is false (behaviour.md §4.5).
func (s *Service) Submit(ctx context.Context, in SubmitInput) (*Job, error) {
	if err := requireGrant(ctx, ScopeJobs, RW); err != nil {
		return nil, err
	}
	user, err := requireUser(ctx)
	if err != nil {
		return nil, err
	}
	m, err := s.CheckManifest(in.Manifest)
	if err != nil {
		return nil, err
	}
	tags, err := normalizeTags(in.Tags)
	if err != nil {
		return nil, err
	}
	note, err := normalizeNote(in.Note)
	if err != nil {
		return nil, err
	}
	vis := Unlisted
	if in.Visibility != nil {
		if !in.Visibility.Valid() {
			return nil, Errorf(EINVALID, "invalid visibility %q", *in.Visibility)
		}
		vis = *in.Visibility
	}
	secretsRO := AuthFromContext(ctx).Can(ScopeSecrets, RO)
	needs := len(m.Secrets) > 0 || m.OAuth != ""
	sec := needs && secretsRO
	if in.Secrets != nil {
		sec = *in.Secrets
	}
	if sec && needs && !secretsRO {
		return nil, Errorf(EFORBIDDEN, "access denied: enabling secrets requires the SECRETS:RO grant")
	}
	if sec {
		for _, ref := range m.Secrets {
			if _, err := s.Store.FindSecretByRef(ctx, user.ID, ref); ErrorCode(err) == ENOTFOUND {
				return nil, Errorf(EINVALID, "unknown secret %q: no secret with this UUID or name on your account", ref)
			} else if err != nil {
				return nil, fmt.Errorf("find secret: %w", err)
			}
		}
	}
	status := JobQueued
	if in.Execute != nil && !*in.Execute {
		status = JobPending
	}
	job := &Job{
		OwnerID:    user.ID,
		Manifest:   in.Manifest,
		Note:       note,
		Tags:       tags,
		Visibility: vis,
		Image:      m.Image,
		Status:     status,
		Secrets:    sec,
	}
	if _, err := s.Store.CreateJob(ctx, job, m.TaskNames()); err != nil {
		return nil, fmt.Errorf("create job: %w", err)
	}
	s.Log.Info("job submitted", "job_id", job.ID, "user", user.Username, "image", job.Image, "status", job.Status)
	s.changed(ctx, EventJobCreated, job)
	return job, nil
}

// Start queues a pending job of the caller's.
func (s *Service) Start(ctx context.Context, id int64) (*Job, error) {
	if err := requireGrant(ctx, ScopeJobs, RW); err != nil {
		return nil, err
	}
	if _, err := s.OwnJob(ctx, id); err != nil {
		return nil, Errorf(ENOTFOUND, "Found no pending jobs with this ID on your account")
	}
	job, err := s.moveJob(ctx, id, move{to: JobQueued, only: []JobStatus{JobPending}})
	if code := ErrorCode(err); code == ECONFLICT || code == ENOTFOUND {
		return nil, Errorf(ENOTFOUND, "Found no pending jobs with this ID on your account")
	}
	return job, err
}

// Cancel cancels a pending, queued or running job of the caller's (an
// admin's: anyone's). A runner holding the job hears of it and stops the
// VM.
func (s *Service) Cancel(ctx context.Context, id int64) (*Job, error) {
	if err := requireGrant(ctx, ScopeJobs, RW); err != nil {
		return nil, err
	}
	job, err := s.Job(ctx, id)
	if err != nil {
		return nil, err
	}
	if !CanCancel(ctx, job) {
		if !isOwner(ctx, job) && (UserFromContext(ctx) == nil || !UserFromContext(ctx).Admin) {
			return nil, errNoJob(id)
		}
		return nil, Errorf(ECONFLICT, "job %d has already finished (%s)", id, strings.ToUpper(string(job.Status)))
	}
	return s.moveJob(ctx, id, move{to: JobCancelled, reason: "cancelled by " + callerName(ctx)})
}

func callerName(ctx context.Context) string {
	if u := UserFromContext(ctx); u != nil {
		return u.CanonicalName()
	}
	return "the system"
}

// SetVisibility changes the visibility of the caller's job.
func (s *Service) SetVisibility(ctx context.Context, id int64, v Visibility) (*Job, error) {
	if err := requireGrant(ctx, ScopeJobs, RW); err != nil {
		return nil, err
	}
	if !v.Valid() {
		return nil, Errorf(EINVALID, "invalid visibility %q", v)
	}
	if _, err := s.OwnJob(ctx, id); err != nil {
		return nil, err
	}
	return s.Store.UpdateJob(ctx, id, JobUpdate{Visibility: &v})
}

// TasksForJobs loads the tasks of several jobs in one query, keyed by job
// id. Jobs the caller may not see are left out. With fields, only those
// fields of each task (and its JobID) are read.
func (s *Service) TasksForJobs(ctx context.Context, jobs []*Job, fields *TaskFields) (map[int64][]*Task, error) {
	ids := make([]int64, 0, len(jobs))
	for _, j := range jobs {
		if CanView(ctx, j) {
			ids = append(ids, j.ID)
		}
	}
	if len(ids) == 0 {
		return map[int64][]*Task{}, nil
	}
	m, err := s.Store.FindTasksForJobs(ctx, ids, fields)
	if err != nil {
		return nil, fmt.Errorf("find tasks: %w", err)
	}
	return m, nil
}
