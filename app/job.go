package app

import (
	"strings"
	"time"
)

// JobStatus is a job's state (lower-case, as stored; GraphQL upper-cases it).
type JobStatus string

// Job statuses (behaviour.md §2.2).
const (
	JobPending   JobStatus = "pending"
	JobQueued    JobStatus = "queued"
	JobRunning   JobStatus = "running"
	JobSuccess   JobStatus = "success"
	JobFailed    JobStatus = "failed"
	JobTimeout   JobStatus = "timeout"
	JobCancelled JobStatus = "cancelled"
)

// JobStatuses lists every job status in schema order.
var JobStatuses = []JobStatus{JobPending, JobQueued, JobRunning, JobSuccess, JobFailed, JobTimeout, JobCancelled}

// Final reports whether s is terminal.
func (s JobStatus) Final() bool {
	switch s {
	case JobSuccess, JobFailed, JobTimeout, JobCancelled:
		return true
	}
	return false
}

// Failure reports whether s counts as a failure for trigger conditions.
func (s JobStatus) Failure() bool {
	return s == JobFailed || s == JobTimeout || s == JobCancelled
}

// TaskStatus is a task's state.
type TaskStatus string

// Task statuses (behaviour.md §1.5).
const (
	TaskPending TaskStatus = "pending"
	TaskRunning TaskStatus = "running"
	TaskSuccess TaskStatus = "success"
	TaskFailed  TaskStatus = "failed"
	TaskSkipped TaskStatus = "skipped"
	// TaskCancelled is a task that was running when its job was
	// cancelled. The API's TaskStatus has no such value (hut stops on
	// values it does not know), so the API reports it as FAILED; the web
	// UI and the task's log say cancelled.
	TaskCancelled TaskStatus = "cancelled"
)

// TaskStatuses lists every task status of the API, in schema order.
var TaskStatuses = []TaskStatus{TaskPending, TaskRunning, TaskSuccess, TaskFailed, TaskSkipped}

// API returns the status as the API's TaskStatus enum has it.
func (s TaskStatus) API() TaskStatus {
	if s == TaskCancelled {
		return TaskFailed
	}
	return s
}

// Visibility controls who can see a job.
type Visibility string

// Visibilities.
const (
	Public   Visibility = "PUBLIC"
	Unlisted Visibility = "UNLISTED"
	Private  Visibility = "PRIVATE"
)

// Valid reports whether v is a known visibility.
func (v Visibility) Valid() bool { return v == Public || v == Unlisted || v == Private }

// Job is one build job.
type Job struct {
	ID         int64
	Created    time.Time
	Updated    time.Time
	OwnerID    int64
	GroupID    *int64
	Manifest   string
	Note       *string
	Tags       string // "a/b/c"; "" for none
	Visibility Visibility
	Image      string
	Runner     *string
	Status     JobStatus
	Secrets    bool // secrets enabled for this job
	Started    *time.Time
	Finished   *time.Time
	Deadline   *time.Time // set when running: started + job timeout
	Reason     string     // why a job ended abnormally (shown in the UI)
}

// TagList splits Tags on "/"; "" gives no tags.
func (j *Job) TagList() []string {
	if j.Tags == "" {
		return []string{}
	}
	return strings.Split(j.Tags, "/")
}

// Task is one manifest task of a job.
type Task struct {
	ID      int64
	Created time.Time
	Updated time.Time
	JobID   int64
	Seq     int // order in the manifest, from 0
	Name    string
	Status  TaskStatus
}

// JobGroup bundles jobs whose group triggers fire once all are done.
type JobGroup struct {
	ID      int64
	Created time.Time
	Updated time.Time
	OwnerID int64
	Note    *string
	Fired   bool // group triggers processed
}

// GroupTrigger is a trigger on a job group (GraphQL TriggerInput).
type GroupTrigger struct {
	ID        int64
	GroupID   int64
	Action    string // "email" | "webhook"
	Condition string // "always" | "success" | "failure"
	To        string
	Cc        string
	InReplyTo string
	URL       string
}

// Artifact is a file copied out of a job's guest after success.
type Artifact struct {
	ID      int64
	Created time.Time
	JobID   int64
	Name    string // basename
	Path    string // path in the guest, as written in the manifest
	Size    int64
	File    string     // path under the data dir's artifacts/ (relative)
	Pruned  *time.Time // when [retention] removed its file; nil while it is there
}

// TriggerDelivery records one attempt to run a manifest or group trigger.
type TriggerDelivery struct {
	ID       int64
	Created  time.Time
	JobID    *int64
	GroupID  *int64
	Action   string
	Target   string // email recipients or URL
	Status   string // "sent" | "failed" | "skipped"
	Message  string // response code/body excerpt or error
	Attempts int
}
