package app

import (
	"context"
	"fmt"
	"strings"
)

// The job state machine. Every status change of a job, whoever makes it
// (a user's submit, start or cancel, the runner's claim and finish, the
// worker API, a group start, account deletion), goes through moveJob or
// its two batch forms (claimJob, queueGroup), which take their allowed
// sources from this one table; the store applies a change only if the
// stored status is still one of them, so concurrent changes cannot race.
// Committed changes are announced to the listeners (see JobListener).

// jobTransitions lists, for each status, where a job may go from it.
var jobTransitions = map[JobStatus][]JobStatus{
	JobPending: {JobQueued, JobCancelled},
	JobQueued:  {JobRunning, JobCancelled},
	JobRunning: {JobSuccess, JobFailed, JobTimeout, JobCancelled},
}

// CanTransition reports whether a job may move from one status to another.
func (s JobStatus) CanTransition(to JobStatus) bool {
	for _, t := range jobTransitions[s] {
		if t == to {
			return true
		}
	}
	return false
}

// sourcesOf returns the statuses a job may move to `to` from, narrowed to
// only when only is non-empty.
func sourcesOf(to JobStatus, only ...JobStatus) []JobStatus {
	var from []JobStatus
	for _, st := range JobStatuses {
		if st.CanTransition(to) && (len(only) == 0 || contains(only, st)) {
			from = append(from, st)
		}
	}
	return from
}

func contains(list []JobStatus, s JobStatus) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// move is one requested status change.
type move struct {
	to     JobStatus
	only   []JobStatus // narrows the table's sources ("" = all of them)
	runner string      // for running: who runs it
	reason string      // for final statuses: why it ended, if abnormally
	lease  *JobLease   // for running: the remote runner's lease, stored with the move
}

// update turns a move into the columns it sets, stamped now.
func (s *Service) update(m move) JobUpdate {
	to := m.to
	upd := JobUpdate{Status: &to}
	now := s.now()
	switch {
	case to == JobRunning:
		runner := m.runner
		if runner == "" {
			runner = s.Config.RunnerName()
		}
		deadline := now.Add(s.Config.Runner.JobTimeout)
		upd.Runner, upd.Started, upd.Deadline = &runner, &now, &deadline
	case to.Final():
		upd.Finished = &now
		if m.reason != "" {
			reason := m.reason
			upd.Reason = &reason
		}
	}
	return upd
}

// moveJob changes job id's status along the table and announces it.
// A job whose status does not allow the move is ECONFLICT (naming both
// statuses), a missing one ENOTFOUND.
func (s *Service) moveJob(ctx context.Context, id int64, m move) (*Job, error) {
	from := sourcesOf(m.to, m.only...)
	if len(from) == 0 {
		return nil, Errorf(EINVALID, "no job can be moved to %s", strings.ToUpper(string(m.to)))
	}
	var job *Job
	var err error
	if m.lease != nil {
		job, err = s.Store.ClaimJobForRunner(ctx, id, from, s.update(m), m.lease.RunnerID, m.lease.Expires)
	} else {
		job, err = s.Store.TransitionJob(ctx, id, from, s.update(m))
	}
	switch ErrorCode(err) {
	case "":
	case ECONFLICT:
		if cur, ferr := s.Store.FindJobByID(ctx, id); ferr == nil {
			return nil, Errorf(ECONFLICT, "job %d is %s, cannot move it to %s", id,
				strings.ToUpper(string(cur.Status)), strings.ToUpper(string(m.to)))
		}
		return nil, err
	case ENOTFOUND:
		return nil, errNoJob(id)
	default:
		return nil, fmt.Errorf("move job %d to %s: %w", id, m.to, err)
	}
	if m.to.Final() {
		s.Log.Info("job finished", "job_id", id, "status", m.to, "reason", m.reason)
	}
	if m.to == JobRunning {
		s.jobStarted(job)
	}
	s.changed(ctx, EventJobUpdated, job)
	return job, nil
}

// claimJob moves the oldest queued job to running for runner; ENOTFOUND
// when there is none.
func (s *Service) claimJob(ctx context.Context, runner string) (*Job, error) {
	m := move{to: JobRunning, runner: runner}
	job, err := s.Store.ClaimJob(ctx, sourcesOf(m.to), s.update(m))
	if err != nil {
		return nil, err
	}
	s.jobStarted(job)
	s.changed(ctx, EventJobUpdated, job)
	return job, nil
}

// queueGroup queues the group's jobs that may be queued (pending ones)
// and announces each.
func (s *Service) queueGroup(ctx context.Context, groupID int64) error {
	n, err := s.Store.QueueGroup(ctx, groupID, sourcesOf(JobQueued))
	if err != nil {
		return fmt.Errorf("queue group %d: %w", groupID, err)
	}
	if n > 0 {
		s.groupChanged(ctx, groupID)
	}
	return nil
}

// groupChanged announces each job of a group (after queueing).
func (s *Service) groupChanged(ctx context.Context, groupID int64) {
	jobs, err := s.Store.FindJobs(ctx, JobFilter{GroupID: &groupID})
	if err != nil {
		s.Log.Error("group events", "group_id", groupID, "err", err)
		return
	}
	for _, j := range jobs {
		s.changed(ctx, EventJobUpdated, j)
	}
}
