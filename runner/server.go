package runner

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"golang.org/x/crypto/ssh"

	"builds/app"
	"builds/images"
)

// Server is the builds server as the runner sees it: the Service itself
// when the runner is part of `builds serve` (LocalServer), or a server
// reached over its API when it runs on another machine (`builds runner`,
// RemoteServer in remote.go). Job steps, the pool and the SSH server use
// only this.
type Server interface {
	// Start tells p about jobs from now on: queued jobs wake it
	// (p.Wake), jobs of its that left running stop (p.JobChanged). It
	// first ends the jobs a previous process of this runner left
	// running.
	Start(ctx context.Context, p *Pool) error
	// Claim moves a job this runner can run to running and returns it;
	// ENOTFOUND when there is none.
	Claim(ctx context.Context) (*app.ClaimedJob, error)
	// CurrentJob returns a job as stored now.
	CurrentJob(ctx context.Context, id int64) (*app.Job, error)

	// OpenLog opens a job's setup log (task "") or a task's log for
	// writing, masked with mask.
	OpenLog(jobID int64, task string, mask *app.Masker) (*app.LogWriter, error)
	// LogPath is where the log is read from (connect and tail).
	LogPath(jobID int64, task string) string
	// Logs wakes readers of logs being written.
	Logs() *app.LogHub
	// EndLogs says that no more is written to a job's logs; the server
	// has all of them when it returns (or ctx ends).
	EndLogs(ctx context.Context, jobID int64, tasks []string)

	SetTaskStatus(ctx context.Context, jobID int64, task *app.Task, st app.TaskStatus) error
	SkipRemainingTasks(ctx context.Context, jobID int64) error
	// FinishJob stores a running job's final status and reason.
	FinishJob(ctx context.Context, jobID int64, st app.JobStatus, reason string) (*app.Job, error)

	// ResolveSecret returns the job owner's secret ref with its material.
	ResolveSecret(ctx context.Context, cj *app.ClaimedJob, ref string) (*app.Secret, error)
	// SourceBundle returns a git bundle of the local repository a
	// source of the job names (an absolute path or file:// URL, which
	// the guest cannot reach), for the runner to clone in the guest; the
	// server refuses every one but the job's own pushed repository.
	SourceBundle(ctx context.Context, cj *app.ClaimedJob, url string) (io.ReadCloser, error)
	// NewArtifact starts an artifact of the job.
	NewArtifact(ctx context.Context, jobID int64, guestPath string) (ArtifactWriter, error)
	// JobToken mints an API token of the job's owner with grants that
	// ends with the job (ttl); revoke deletes it.
	JobToken(ctx context.Context, cj *app.ClaimedJob, grants string, ttl time.Duration) (secret string, revoke func(context.Context) error, err error)

	// UserBySSHKey finds the account a key belongs to (connect).
	UserBySSHKey(ctx context.Context, key ssh.PublicKey) (*app.User, error)
	// LookupJob returns a job, its owner and tasks for connect and tail
	// when this runner does not hold it (ENOTFOUND if it cannot tell).
	LookupJob(ctx context.Context, id int64) (*app.Job, *app.User, []*app.Task, error)
}

// ArtifactWriter receives one artifact's bytes; Commit records it, Abort
// drops it. app.ArtifactWriter is the local one.
type ArtifactWriter interface {
	io.Writer
	// TooLarge reports whether the artifact outgrew [limits]
	// artifact-size (writes then fail).
	TooLarge() bool
	Commit(ctx context.Context) (*app.Artifact, error)
	Abort()
}

// LocalServer is the Service of the process the runner is part of;
// images lists the images the runner has (nil: it takes every job).
func LocalServer(svc *app.Service, images func() []app.RunnerImage) Server {
	return &localServer{svc: svc, images: images}
}

type localServer struct {
	svc    *app.Service
	images func() []app.RunnerImage
}

func (l *localServer) Start(ctx context.Context, p *Pool) error {
	jobs, err := l.svc.RecoverJobs(ctx)
	if err != nil {
		return fmt.Errorf("recover jobs: %w", err)
	}
	for _, j := range jobs {
		p.log.Warn("job left running by a previous process marked failed", "job_id", j.ID)
	}
	l.svc.Listen(p)
	return nil
}

func (l *localServer) Claim(ctx context.Context) (*app.ClaimedJob, error) {
	var imgs []app.RunnerImage
	if l.images != nil {
		imgs = l.images()
	}
	return l.svc.ClaimJob(ctx, l.svc.Config.RunnerName(), imgs)
}

func (l *localServer) CurrentJob(ctx context.Context, id int64) (*app.Job, error) {
	return l.svc.CurrentJob(ctx, id)
}

func (l *localServer) OpenLog(jobID int64, task string, mask *app.Masker) (*app.LogWriter, error) {
	return l.svc.OpenLog(jobID, task, mask)
}

func (l *localServer) LogPath(jobID int64, task string) string { return l.svc.LogPath(jobID, task) }
func (l *localServer) Logs() *app.LogHub                       { return l.svc.Logs }

func (l *localServer) EndLogs(_ context.Context, jobID int64, tasks []string) {
	l.svc.Logs.Forget(jobID, "")
	for _, t := range tasks {
		l.svc.Logs.Forget(jobID, t)
	}
}

func (l *localServer) SetTaskStatus(ctx context.Context, _ int64, task *app.Task, st app.TaskStatus) error {
	return l.svc.SetTaskStatus(ctx, task, st)
}

func (l *localServer) SkipRemainingTasks(ctx context.Context, jobID int64) error {
	return l.svc.SkipRemainingTasks(ctx, jobID)
}

func (l *localServer) FinishJob(ctx context.Context, jobID int64, st app.JobStatus, reason string) (*app.Job, error) {
	return l.svc.FinishJob(ctx, jobID, st, reason)
}

func (l *localServer) ResolveSecret(ctx context.Context, cj *app.ClaimedJob, ref string) (*app.Secret, error) {
	return l.svc.ResolveSecret(ctx, cj.Owner.ID, ref)
}

func (l *localServer) SourceBundle(ctx context.Context, cj *app.ClaimedJob, url string) (io.ReadCloser, error) {
	b, err := l.svc.SourceBundle(ctx, cj.Job, url)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (l *localServer) NewArtifact(ctx context.Context, jobID int64, guestPath string) (ArtifactWriter, error) {
	w, err := l.svc.NewArtifact(ctx, jobID, guestPath)
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (l *localServer) JobToken(ctx context.Context, cj *app.ClaimedJob, grants string, ttl time.Duration) (string, func(context.Context) error, error) {
	secret, tok, err := l.svc.CreateToken(ctx, cj.Owner.ID, grants, &ttl, fmt.Sprintf("build job #%d", cj.Job.ID))
	if err != nil {
		return "", nil, err
	}
	return secret, func(ctx context.Context) error { return l.svc.RevokeToken(ctx, tok.ID) }, nil
}

func (l *localServer) UserBySSHKey(ctx context.Context, key ssh.PublicKey) (*app.User, error) {
	return l.svc.UserBySSHKey(ctx, key)
}

func (l *localServer) LookupJob(ctx context.Context, id int64) (*app.Job, *app.User, []*app.Task, error) {
	sys := app.SystemContext(ctx)
	job, err := l.svc.Job(sys, id)
	if err != nil {
		return nil, nil, nil, err
	}
	owner, err := l.svc.User(sys, job.OwnerID)
	if err != nil {
		return nil, nil, nil, err
	}
	tasks, err := l.svc.Tasks(sys, job)
	if err != nil {
		return nil, nil, nil, err
	}
	return job, owner, tasks, nil
}

// CatalogImages returns what cat can boot, by every name it answers to
// (its aliases too), for the server to hand out only jobs this runner
// can run.
func CatalogImages(cat *images.Catalog) func() []app.RunnerImage {
	return func() []app.RunnerImage {
		list, err := cat.List()
		if err != nil {
			return nil
		}
		var out []app.RunnerImage
		for _, img := range list {
			out = append(out, app.RunnerImage{Name: img.Name, Arch: img.Arch})
			for alias, target := range cat.Aliases {
				if target == img.Name && alias != img.Name {
					out = append(out, app.RunnerImage{Name: alias, Arch: img.Arch})
				}
			}
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].Name != out[j].Name {
				return out[i].Name < out[j].Name
			}
			return out[i].Arch < out[j].Arch
		})
		return out
	}
}
