package app

import (
	"context"
	"time"
)

// SearchTerm is one term of a job search ("status:failed", "!image:bsd",
// or free text on the note with Key "").
type SearchTerm struct {
	Key    string // "", "status", "image", "tags"
	Value  string
	Negate bool
}

// JobFilter selects jobs. Nil/empty fields do not filter. Results are
// ordered by id descending (newest first).
type JobFilter struct {
	ID         *int64
	OwnerID    *int64
	GroupID    *int64
	Visibility []Visibility // allowed visibilities
	Status     []JobStatus
	TagPrefix  *string // tags == prefix or start with prefix + "/"
	BeforeID   *int64  // keyset paging: id <= BeforeID
	Search     []SearchTerm
	Limit      int // 0 = no limit
	// Fields, if set, names the fields to read besides ID, OwnerID and
	// Visibility, which are always read (paging and access checks); the
	// others are left zero. A list page reads a few fields of many jobs.
	Fields *JobFields
}

// JobFields is a set of Job fields, for reads of part of a job.
type JobFields uint32

// The fields of a Job a partial read may leave out.
const (
	JobFieldCreated JobFields = 1 << iota
	JobFieldUpdated
	JobFieldGroupID
	JobFieldManifest
	JobFieldNote
	JobFieldTags
	JobFieldImage
	JobFieldRunner
	JobFieldStatus
	JobFieldSecrets
	JobFieldStarted
	JobFieldFinished
	JobFieldDeadline
	JobFieldReason

	AllJobFields = JobFieldReason<<1 - 1
)

// TaskFields is a set of Task fields, for reads of part of a task. JobID
// is always read.
type TaskFields uint32

// The fields of a Task a partial read may leave out.
const (
	TaskFieldID TaskFields = 1 << iota
	TaskFieldCreated
	TaskFieldUpdated
	TaskFieldSeq
	TaskFieldName
	TaskFieldStatus

	AllTaskFields = TaskFieldStatus<<1 - 1
)

// JobUpdate is a partial update of a job; nil fields are left alone.
type JobUpdate struct {
	Status     *JobStatus
	Visibility *Visibility
	Runner     *string
	Started    *time.Time
	Finished   *time.Time
	Deadline   *time.Time
	Reason     *string
}

// UserUpdate is a partial update of a user.
type UserUpdate struct {
	Email        *string
	PasswordHash *string
	Admin        *bool
	URL          *string
	Location     *string
	Bio          *string
}

// Page asks for a keyset page: rows with id <= BeforeID (nil = from the
// newest), at most Limit rows (0 = all).
type Page struct {
	BeforeID *int64
	Limit    int
}

// Store is the persistence layer, implemented by store.DB. Every method is
// one transaction (a read of a single statement may be the database's own
// transaction for that statement). Not-found is an *Error with ENOTFOUND;
// unique or foreign key violations are ECONFLICT.
type Store interface {
	// Remote runners and their leases (runners.go).
	RunnerStore
	// Connected repositories and their pushes (repo.go).
	RepoStore
	// Commit statuses reported to forges (status.go).
	StatusStore

	// Users, keys and tokens.
	CreateUser(ctx context.Context, u *User) error
	FindUserByID(ctx context.Context, id int64) (*User, error)
	FindUserByName(ctx context.Context, username string) (*User, error)
	FindUsers(ctx context.Context) ([]*User, error)
	UpdateUser(ctx context.Context, id int64, upd UserUpdate) (*User, error)
	// DeleteUser removes the user and, by cascade, their jobs, tasks,
	// artifacts rows, secrets, keys, tokens and webhooks.
	DeleteUser(ctx context.Context, id int64) error
	CreateSSHKey(ctx context.Context, k *SSHKey) error
	FindSSHKeys(ctx context.Context, userID int64) ([]*SSHKey, error)
	FindUserBySSHFingerprint(ctx context.Context, fingerprint string) (*User, error)
	DeleteSSHKey(ctx context.Context, userID, keyID int64) error
	CreateToken(ctx context.Context, t *Token) error
	// FindTokenByHash returns the token whose hash is hash and its user,
	// in one read.
	FindTokenByHash(ctx context.Context, hash string) (*Token, *User, error)
	FindTokenByID(ctx context.Context, id int64) (*Token, error)
	FindTokens(ctx context.Context, userID int64) ([]*Token, error)
	TouchToken(ctx context.Context, id int64) error // sets LastUsed to now
	DeleteToken(ctx context.Context, id int64) error

	// Jobs and tasks.
	// CreateJob inserts job and one pending task per name (IDs and times
	// are filled in on the passed values) in one transaction.
	CreateJob(ctx context.Context, job *Job, taskNames []string) ([]*Task, error)
	FindJobByID(ctx context.Context, id int64) (*Job, error)
	FindJobs(ctx context.Context, f JobFilter) ([]*Job, error)
	// TransitionJob applies upd only if the job's status is one of from;
	// otherwise ECONFLICT (ENOTFOUND if the job does not exist). It is
	// the only way a job's status changes (the Service's state machine,
	// job_state.go, says which from).
	TransitionJob(ctx context.Context, id int64, from []JobStatus, upd JobUpdate) (*Job, error)
	// UpdateJob applies upd, which must not change the status (EINVALID).
	UpdateJob(ctx context.Context, id int64, upd JobUpdate) (*Job, error)
	// ClaimJob atomically applies upd to the oldest job whose status is
	// one of from. ENOTFOUND if there is none.
	ClaimJob(ctx context.Context, from []JobStatus, upd JobUpdate) (*Job, error)
	FindTasks(ctx context.Context, jobID int64) ([]*Task, error)
	// FindTasksForJobs returns tasks of several jobs keyed by job id, in
	// manifest order. With fields, only those and JobID are read.
	FindTasksForJobs(ctx context.Context, jobIDs []int64, fields *TaskFields) (map[int64][]*Task, error)
	UpdateTaskStatus(ctx context.Context, taskID int64, status TaskStatus) (*Task, error)
	// SkipPendingTasks marks every pending task of a job skipped.
	SkipPendingTasks(ctx context.Context, jobID int64) error
	// FindJobsByStatus returns all jobs currently in one of the statuses
	// (crash recovery, queue inspection), oldest first.
	FindJobsByStatus(ctx context.Context, statuses []JobStatus) ([]*Job, error)

	// Artifacts.
	CreateArtifact(ctx context.Context, a *Artifact) error
	FindArtifacts(ctx context.Context, jobID int64) ([]*Artifact, error)
	FindArtifactByID(ctx context.Context, id int64) (*Artifact, error)

	// Job groups.
	// CreateGroup inserts g, attaches jobIDs (which must all be owned by
	// g.OwnerID, pending and ungrouped, else EINVALID) and the triggers;
	// with queueFrom, moves those of its jobs in one of these statuses to
	// queued. One transaction.
	CreateGroup(ctx context.Context, g *JobGroup, jobIDs []int64, triggers []*GroupTrigger, queueFrom []JobStatus) error
	FindGroupByID(ctx context.Context, id int64) (*JobGroup, error)
	FindGroupTriggers(ctx context.Context, groupID int64) ([]*GroupTrigger, error)
	// QueueGroup moves the group's jobs whose status is one of from to
	// queued and returns how many.
	QueueGroup(ctx context.Context, groupID int64, from []JobStatus) (int, error)
	// MarkGroupFired sets Fired if it was unset; reports whether this call set it.
	MarkGroupFired(ctx context.Context, groupID int64) (bool, error)

	// Secrets. Data is stored as given (the Service encrypts it).
	CreateSecret(ctx context.Context, s *Secret) error
	FindSecrets(ctx context.Context, userID int64, p Page) ([]*Secret, error)
	FindSecretByUUID(ctx context.Context, userID int64, uuid string) (*Secret, error)
	// FindSecretByRef finds a user's secret by UUID or by name.
	FindSecretByRef(ctx context.Context, userID int64, ref string) (*Secret, error)
	DeleteSecret(ctx context.Context, userID int64, uuid string) error

	// User webhooks.
	CreateWebhook(ctx context.Context, w *WebhookSubscription) error
	FindWebhooks(ctx context.Context, userID int64, p Page) ([]*WebhookSubscription, error)
	FindWebhookByID(ctx context.Context, id int64) (*WebhookSubscription, error)
	DeleteWebhook(ctx context.Context, id int64) error
	// FindWebhooksForEvent returns the user's subscriptions to event.
	FindWebhooksForEvent(ctx context.Context, userID int64, event WebhookEvent) ([]*WebhookSubscription, error)
	CreateWebhookDelivery(ctx context.Context, d *WebhookDelivery) error
	FindWebhookDeliveries(ctx context.Context, subscriptionID int64, p Page) ([]*WebhookDelivery, error)
	// FindDueWebhookDeliveries returns pending deliveries whose NextAttempt <= now.
	FindDueWebhookDeliveries(ctx context.Context, now time.Time, limit int) ([]*WebhookDelivery, error)
	UpdateWebhookDelivery(ctx context.Context, d *WebhookDelivery) error

	// Trigger deliveries (manifest and group triggers).
	CreateTriggerDelivery(ctx context.Context, d *TriggerDelivery) error
	FindTriggerDeliveries(ctx context.Context, jobID int64) ([]*TriggerDelivery, error)

	// Trigger processing state. A job's triggers (manifest triggers and,
	// riding on them, its group's) are marked done once they have been
	// processed to the end, so that a process that dies in between can
	// resume them at its next start.
	// FindJobsAwaitingTriggers returns up to limit (> 0, else EINVALID)
	// final jobs with id > afterID whose triggers are not marked done,
	// oldest first.
	FindJobsAwaitingTriggers(ctx context.Context, afterID int64, limit int) ([]*Job, error)
	// TriggersDone reports whether a job's triggers are marked done
	// (ENOTFOUND if the job does not exist).
	TriggersDone(ctx context.Context, jobID int64) (bool, error)
	// MarkTriggersDone marks a final job's triggers done if they were not
	// and reports whether this call marked them. A job not in a final
	// status is ECONFLICT, a missing one ENOTFOUND.
	MarkTriggersDone(ctx context.Context, jobID int64) (bool, error)

	// Retention, backups and metrics (retention.go).
	MaintenanceStore
}
