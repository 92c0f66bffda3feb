package app

import (
	"context"
	"time"
)

// Remote runners: `builds runner` on another machine takes jobs from a
// server over its API. It authenticates with a runner token an admin
// created (`builds runner-token create NAME`), claims jobs through the
// API's worker mutations (claim, updateTask, createArtifact) and uses a
// few worker-only extensions where the API has no word for something:
// polling for work (which doubles as its heartbeat), streaming logs,
// ending a job with a reason, minting a job's OAuth token, looking up
// SSH keys for `connect` and fetching the git bundle of a job's local
// source (source.go). The wire types are here, used by web (serving
// them) and runner (calling them); README "More machines" documents them.

// RunnerTokenPrefix starts every runner token, so that the API tells them
// from personal access tokens without a second lookup.
const RunnerTokenPrefix = "runner_"

// Runner is a remote runner's registration.
type Runner struct {
	ID       int64
	Name     string
	Created  time.Time
	Hash     string // hex sha256 of its token
	LastSeen *time.Time
	Revoked  *time.Time
	// Report is what it said on its last poll.
	Report RunnerReport
}

// Live reports whether the runner polled within the lease at now.
func (r *Runner) Live(now time.Time, lease time.Duration) bool {
	return r.Revoked == nil && r.LastSeen != nil && now.Sub(*r.LastSeen) < lease
}

// RunnerReport is what a runner tells the server on every poll.
type RunnerReport struct {
	Version string `json:"version"`
	// Address is its SSH address for `connect` (job.runner of its jobs).
	Address string `json:"address"`
	Slots   int    `json:"slots"`
	Free    int    `json:"free"`
	// Images are the images (by every name it answers to, aliases
	// included) and arches it can boot.
	Images []RunnerImage `json:"images"`
	// Running are the jobs it holds; their leases are renewed.
	Running []int64 `json:"running"`
	// WaitMS is how long the server may hold the reply when it has
	// nothing to say (long polling); at most MaxPollWait.
	WaitMS int `json:"wait_ms"`
}

// RunnerImage is one image a runner has.
type RunnerImage struct {
	Name string `json:"name"`
	Arch string `json:"arch"`
}

// PollReply is the server's answer to a poll.
type PollReply struct {
	// Offer are queued jobs the runner can run, oldest first, at most
	// Free of them; it claims them with the claim mutation (another
	// runner may be faster).
	Offer []int64 `json:"offer"`
	// Stop are jobs it reported running that are no longer running here
	// (cancelled, failed by lease expiry, unknown): it stops them.
	Stop []StoppedJob `json:"stop"`
	// Settings are the server's, which its runners' jobs follow.
	Settings RunnerSettings `json:"settings"`
}

// RunnerSettings are the server's settings its runners' jobs follow:
// the origin their URLs (JOB_URL, artifact links) use, the limits, and
// how long a job lives without the runner's next poll.
type RunnerSettings struct {
	Origin          string `json:"origin"`
	SiteName        string `json:"site_name"`
	LeaseMS         int64  `json:"lease_ms"`
	JobTimeoutMS    int64  `json:"job_timeout_ms"`
	LogSize         int64  `json:"log_size"`
	ArtifactSize    int64  `json:"artifact_size"`
	ArtifactsPerJob int    `json:"artifacts_per_job"`
}

// StoppedJob is a job a runner must stop, and why.
type StoppedJob struct {
	ID     int64     `json:"id"`
	Status JobStatus `json:"status"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// FinishRequest ends a job a runner holds (POST /worker/v1/jobs/N/finish).
type FinishRequest struct {
	Status JobStatus `json:"status"`
	Reason string    `json:"reason"`
}

// JobTokenRequest asks for the job's OAuth token (manifest oauth:).
type JobTokenRequest struct {
	Grants string `json:"grants"`
}

// JobTokenReply carries the token; it expires at the job's deadline.
type JobTokenReply struct {
	Token string `json:"token"`
	ID    int64  `json:"id"`
}

// SSHUserRequest asks whose key this is (an authorized_keys line).
type SSHUserRequest struct {
	Key string `json:"key"`
}

// SSHUserReply names the key's owner.
type SSHUserReply struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
}

// LogSizeReply is a log's size on the server: where the next append
// starts.
type LogSizeReply struct {
	Size int64 `json:"size"`
}

// MaxPollWait bounds how long a poll is held.
const MaxPollWait = 30 * time.Second

// JobLease is a remote runner's hold on a running job.
type JobLease struct {
	JobID    int64
	RunnerID int64
	Expires  time.Time
}

// RunnerStore is the storage of runners and their leases (part of Store).
type RunnerStore interface {
	CreateRunner(ctx context.Context, r *Runner) error
	// FindRunnerByHash returns the unrevoked runner with that token hash.
	FindRunnerByHash(ctx context.Context, hash string) (*Runner, error)
	FindRunners(ctx context.Context) ([]*Runner, error)
	// TouchRunner records a poll: its report and now.
	TouchRunner(ctx context.Context, id int64, rep RunnerReport) error
	RevokeRunner(ctx context.Context, id int64) error
	// ClaimJobForRunner applies upd to job id if its status is one of
	// from, and records the runner's lease until expires, in one
	// transaction.
	ClaimJobForRunner(ctx context.Context, id int64, from []JobStatus, upd JobUpdate, runnerID int64, expires time.Time) (*Job, error)
	// FindLease returns a job's lease (ENOTFOUND without one).
	FindLease(ctx context.Context, jobID int64) (*JobLease, error)
	// FindLeases returns every lease (of running and recently ended jobs).
	FindLeases(ctx context.Context) ([]*JobLease, error)
	// RenewLeases moves the leases of the runner's jobs among ids to
	// expires.
	RenewLeases(ctx context.Context, runnerID int64, ids []int64, expires time.Time) error
	// ExtendLeases moves every lease that ends before expires to it
	// (a restarted server gives runners time to come back).
	ExtendLeases(ctx context.Context, expires time.Time) error
	DeleteLease(ctx context.Context, jobID int64) error
	// FindQueuedJobs returns up to limit queued jobs, oldest first, of
	// the images (any image when images is nil).
	FindQueuedJobs(ctx context.Context, images []string, limit int) ([]*Job, error)
}
