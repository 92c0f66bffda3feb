package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Methods the runner uses. They run with the runner's own authority (the
// runner holds no user context) and are not reachable from the API.

// ClaimedJob is a job a runner has taken, with everything it needs.
type ClaimedJob struct {
	Job      *Job
	Owner    *User
	Manifest *Manifest
	Tasks    []*Task
}

// ClaimJob takes the oldest queued job for runner. It returns ENOTFOUND
// when the queue is empty. A job whose stored manifest no longer parses
// (limits changed) is failed with the reason in its setup log.
//
// With remote runners about, the local runner (whose images are images)
// leaves them the jobs of images they have and it lacks; it still takes
// jobs of images nobody has, to fail them with a clear reason.
func (s *Service) ClaimJob(ctx context.Context, runner string, images []RunnerImage) (*ClaimedJob, error) {
	if err := s.DiskReady(ctx); err != nil { // disk.go: [runner] min-free-disk
		return nil, err
	}
	for {
		job, err := s.claimLocal(ctx, runner, images)
		if err != nil {
			return nil, err
		}
		cj, err := s.loadClaimed(ctx, job)
		if err == nil {
			return cj, nil
		}
		s.SetupLogf(job.ID, "Error: %s", ErrorMessage(err))
		if _, ferr := s.FinishJob(ctx, job.ID, JobFailed, ErrorMessage(err)); ferr != nil {
			return nil, ferr
		}
	}
}

// claimLocal claims the oldest queued job the local runner should take.
func (s *Service) claimLocal(ctx context.Context, runner string, images []RunnerImage) (*Job, error) {
	rs, err := s.Store.FindRunners(ctx)
	if err != nil {
		return nil, err
	}
	remote := map[string]bool{}
	for _, r := range rs {
		if r.Revoked == nil {
			for _, im := range r.Report.Images {
				remote[im.Name] = true
			}
		}
	}
	if len(remote) == 0 {
		return s.claimJob(ctx, runner)
	}
	local := map[string]bool{}
	var names []string
	for _, im := range images {
		if !local[im.Name] {
			names = append(names, im.Name)
		}
		local[im.Name] = true
	}
	for {
		// the oldest job of a local image, and the oldest of any image
		// (which may be one nobody has)
		own, err := s.Store.FindQueuedJobs(ctx, append([]string{}, names...), 1)
		if err != nil {
			return nil, err
		}
		any, err := s.Store.FindQueuedJobs(ctx, nil, 100)
		if err != nil {
			return nil, err
		}
		var pick *Job
		for _, j := range any {
			if local[j.Image] || !remote[j.Image] {
				pick = j
				break
			}
		}
		if len(own) > 0 && (pick == nil || own[0].ID < pick.ID) {
			pick = own[0]
		}
		if pick == nil {
			return nil, Errorf(ENOTFOUND, "no queued job for this runner")
		}
		job, err := s.moveJob(ctx, pick.ID, move{to: JobRunning, runner: runner})
		if ErrorCode(err) == ECONFLICT {
			continue // another runner was faster
		}
		return job, err
	}
}

func (s *Service) loadClaimed(ctx context.Context, job *Job) (*ClaimedJob, error) {
	m, err := ParseManifest([]byte(job.Manifest), 0)
	if err != nil {
		return nil, Errorf(EINVALID, "stored manifest is invalid: %v", err)
	}
	owner, err := s.Store.FindUserByID(ctx, job.OwnerID)
	if err != nil {
		return nil, fmt.Errorf("find owner: %w", err)
	}
	tasks, err := s.Store.FindTasks(ctx, job.ID)
	if err != nil {
		return nil, fmt.Errorf("find tasks: %w", err)
	}
	return &ClaimedJob{Job: job, Owner: owner, Manifest: m, Tasks: tasks}, nil
}

// SetTaskStatus records a task's status (running, success, failed,
// skipped, cancelled).
func (s *Service) SetTaskStatus(ctx context.Context, task *Task, status TaskStatus) error {
	t, err := s.Store.UpdateTaskStatus(ctx, task.ID, status)
	if err != nil {
		return fmt.Errorf("update task: %w", err)
	}
	*task = *t
	return nil
}

// SkipRemainingTasks marks every still-pending task of a job skipped
// (complete-build).
func (s *Service) SkipRemainingTasks(ctx context.Context, jobID int64) error {
	return s.Store.SkipPendingTasks(ctx, jobID)
}

// FinishJob records a running job's final status. If the job already left
// running (cancelled meanwhile), the stored job is returned unchanged.
func (s *Service) FinishJob(ctx context.Context, jobID int64, status JobStatus, reason string) (*Job, error) {
	if !status.Final() {
		return nil, Errorf(EINVALID, "%s is not a final status", status)
	}
	job, err := s.moveJob(ctx, jobID, move{to: status, only: []JobStatus{JobRunning}, reason: reason})
	if ErrorCode(err) == ECONFLICT {
		return s.Store.FindJobByID(ctx, jobID)
	}
	return job, err
}

// CurrentJob returns a job as stored now (the runner looks once after a
// claim for a cancellation it was not told about).
func (s *Service) CurrentJob(ctx context.Context, jobID int64) (*Job, error) {
	return s.Store.FindJobByID(ctx, jobID)
}

// ArtifactPath returns the on-disk path of an artifact's file.
func (s *Service) ArtifactPath(a *Artifact) string {
	return filepath.Join(s.Config.Builds.DataDir, "artifacts", filepath.FromSlash(a.File))
}

// LogPath returns the on-disk path of a job's setup log ("") or task log.
func (s *Service) LogPath(jobID int64, task string) string {
	return LogPath(s.Config.Builds.DataDir, jobID, task)
}

// RecoverJobs fails jobs a previous process left running (it died with
// them), writing the reason into their setup logs. It returns them so the
// runner can clean up their leftovers. Jobs remote runners hold are
// theirs: their leases say when they are lost.
func (s *Service) RecoverJobs(ctx context.Context) ([]*Job, error) {
	jobs, err := s.Store.FindJobsByStatus(ctx, []JobStatus{JobRunning})
	if err != nil {
		return nil, fmt.Errorf("find running jobs: %w", err)
	}
	leases, err := s.Store.FindLeases(ctx)
	if err != nil {
		return nil, fmt.Errorf("find leases: %w", err)
	}
	remote := map[int64]bool{}
	for _, l := range leases {
		remote[l.JobID] = true
	}
	var out []*Job
	for _, j := range jobs {
		if remote[j.ID] {
			continue
		}
		reason := "the builds service restarted while this job was running"
		s.SetupLogf(j.ID, "Error: %s; the job was marked failed.", reason)
		job, err := s.FinishJob(ctx, j.ID, JobFailed, reason)
		if err != nil {
			return out, err
		}
		out = append(out, job)
	}
	return out, nil
}

// removeJobFiles deletes a job's logs and artifacts from the data dir.
func (s *Service) removeJobFiles(jobID int64) {
	for _, dir := range []string{
		filepath.Join(s.Config.Builds.DataDir, "logs", fmt.Sprint(jobID)),
		filepath.Join(s.Config.Builds.DataDir, "artifacts", fmt.Sprint(jobID)),
	} {
		if err := os.RemoveAll(dir); err != nil {
			s.Log.Error("remove job files", "job_id", jobID, "err", err)
		}
	}
}
