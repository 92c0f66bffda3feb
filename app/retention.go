package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Retention ([retention] in builds.ini): artifacts, logs and whole jobs
// older than their ages go, and with max-size the oldest jobs' files go
// until the data dir fits. Pruning works in batches of pruneBatch, each
// marked in one short transaction before its files are removed, so the
// API and the server never hold the database for long and a crash leaves
// at most some files of rows already marked. Only jobs in a final status
// whose setup log is closed are touched: never a running job, nor a
// failed one whose VM is still kept for `connect`.

// MaintenanceStore is the part of the Store that retention, backups and
// the metrics endpoint use (store/maintenance.go).
type MaintenanceStore interface {
	// CountJobs counts jobs by status and finds the oldest queued one.
	CountJobs(ctx context.Context) (*JobStats, error)
	// ExpiredArtifacts returns up to limit unpruned artifacts stored
	// before `before`, of final jobs, oldest first.
	ExpiredArtifacts(ctx context.Context, before time.Time, limit int) ([]*Artifact, error)
	// PruneArtifacts marks artifacts pruned.
	PruneArtifacts(ctx context.Context, ids []int64) error
	// ExpiredLogs returns up to limit final jobs finished before `before`
	// whose logs are not pruned, oldest first.
	ExpiredLogs(ctx context.Context, before time.Time, limit int) ([]int64, error)
	// PruneLogs marks final jobs' logs pruned.
	PruneLogs(ctx context.Context, jobIDs []int64) error
	// LogsPruned returns when a job's logs were pruned, nil if not.
	LogsPruned(ctx context.Context, jobID int64) (*time.Time, error)
	// ExpiredJobs returns up to limit final jobs finished before
	// `before`, oldest first.
	ExpiredJobs(ctx context.Context, before time.Time, limit int) ([]int64, error)
	// DeleteJobs deletes final jobs (tasks, artifact rows and trigger
	// deliveries go with them) and returns the ids deleted.
	DeleteJobs(ctx context.Context, ids []int64) ([]int64, error)
	// PrunableJobs returns up to limit final jobs with id > afterID that
	// still have logs or artifacts on disk, oldest first.
	PrunableJobs(ctx context.Context, afterID int64, limit int) ([]int64, error)
	// Backup writes a consistent copy of the database to a new file.
	Backup(ctx context.Context, path string) error
}

// pruneBatch is how many rows one pruning transaction marks.
const pruneBatch = 100

// PruneResult says what one pruning pass removed.
type PruneResult struct {
	Artifacts   int   // artifacts pruned
	Logs        int   // jobs whose logs were pruned
	Jobs        int   // jobs deleted
	Bytes       int64 // bytes of files removed
	MaxSizeJobs int   // jobs pruned to bring the data dir under max-size
}

// Prune runs one pass of [retention]: expired jobs, logs and artifacts,
// then the size cap. It stops early, with what it did so far, when ctx
// ends.
func (s *Service) Prune(ctx context.Context) (PruneResult, error) {
	var res PruneResult
	rc := s.Config.Retention
	now := s.now()
	steps := []struct {
		age time.Duration
		fn  func(context.Context, time.Time, *PruneResult) error
	}{
		// whole jobs first, so their logs and artifacts are not pruned
		// one by one before they go
		{rc.Jobs, s.deleteJobs},
		{rc.Logs, s.pruneLogs},
		{rc.Artifacts, s.pruneArtifacts},
	}
	for _, st := range steps {
		if st.age <= 0 {
			continue
		}
		if err := st.fn(ctx, now.Add(-st.age), &res); err != nil {
			return res, err
		}
	}
	if rc.MaxSize > 0 {
		if err := s.pruneToSize(ctx, rc.MaxSize, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// settled reports whether a job's files may be pruned: nothing writes
// its setup log any more (the runner keeps it open until the VM is gone).
func (s *Service) settled(jobID int64) bool { return !s.Logs.Writing(jobID, "") }

func (s *Service) pruneArtifacts(ctx context.Context, before time.Time, res *PruneResult) error {
	for ctx.Err() == nil {
		list, err := s.Store.ExpiredArtifacts(ctx, before, pruneBatch)
		if err != nil {
			return err
		}
		var ids []int64
		var gone []*Artifact
		for _, a := range list {
			if s.settled(a.JobID) {
				ids = append(ids, a.ID)
				gone = append(gone, a)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		if err := s.Store.PruneArtifacts(ctx, ids); err != nil {
			return err
		}
		for _, a := range gone {
			res.Bytes += s.removeArtifactFile(a)
		}
		res.Artifacts += len(ids)
	}
	return ctx.Err()
}

// removeArtifactFile removes an artifact's file and its directory and
// returns the bytes it held.
func (s *Service) removeArtifactFile(a *Artifact) int64 {
	path := s.ArtifactPath(a)
	size := diskSize(path)
	if err := os.RemoveAll(filepath.Dir(path)); err != nil {
		s.Log.Error("prune artifact", "job_id", a.JobID, "artifact_id", a.ID, "err", err)
	}
	return size
}

func (s *Service) pruneLogs(ctx context.Context, before time.Time, res *PruneResult) error {
	for ctx.Err() == nil {
		ids, err := s.Store.ExpiredLogs(ctx, before, pruneBatch)
		if err != nil {
			return err
		}
		ids = s.settledOnly(ids)
		if len(ids) == 0 {
			return nil
		}
		if err := s.Store.PruneLogs(ctx, ids); err != nil {
			return err
		}
		for _, id := range ids {
			res.Bytes += s.replaceLogs(id, "[retention] logs = "+formatDuration(s.Config.Retention.Logs))
		}
		res.Logs += len(ids)
	}
	return ctx.Err()
}

func (s *Service) deleteJobs(ctx context.Context, before time.Time, res *PruneResult) error {
	for ctx.Err() == nil {
		ids, err := s.Store.ExpiredJobs(ctx, before, pruneBatch)
		if err != nil {
			return err
		}
		ids = s.settledOnly(ids)
		if len(ids) == 0 {
			return nil
		}
		gone, err := s.Store.DeleteJobs(ctx, ids)
		if err != nil {
			return err
		}
		for _, id := range gone {
			res.Bytes += dirSize(filepath.Join(s.Config.Builds.DataDir, "logs", fmt.Sprint(id))) +
				dirSize(filepath.Join(s.Config.Builds.DataDir, "artifacts", fmt.Sprint(id)))
			s.removeJobFiles(id)
		}
		res.Jobs += len(gone)
	}
	return ctx.Err()
}

// pruneToSize prunes the oldest jobs' artifacts and logs until the data
// dir is under max bytes.
func (s *Service) pruneToSize(ctx context.Context, max int64, res *PruneResult) error {
	use, err := s.measureDisk()
	if err != nil {
		return err
	}
	over := use.Total - max
	for after := int64(0); over > 0 && ctx.Err() == nil; {
		ids, err := s.Store.PrunableJobs(ctx, after, pruneBatch)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil // nothing left to prune: the rest is images, caches, the database
		}
		after = ids[len(ids)-1]
		for _, id := range s.settledOnly(ids) {
			if over <= 0 {
				break
			}
			n, err := s.pruneJobFiles(ctx, id)
			if err != nil {
				return err
			}
			over -= n
			res.Bytes += n
			res.MaxSizeJobs++
		}
	}
	return ctx.Err()
}

// pruneJobFiles prunes one final job's artifacts and logs (max-size) and
// returns the bytes freed.
func (s *Service) pruneJobFiles(ctx context.Context, id int64) (int64, error) {
	arts, err := s.Store.FindArtifacts(ctx, id)
	if err != nil {
		return 0, err
	}
	var ids []int64
	for _, a := range arts {
		if a.Pruned == nil {
			ids = append(ids, a.ID)
		}
	}
	if err := s.Store.PruneArtifacts(ctx, ids); err != nil {
		return 0, err
	}
	var freed int64
	for _, a := range arts {
		if a.Pruned == nil {
			freed += s.removeArtifactFile(a)
		}
	}
	pruned, err := s.Store.LogsPruned(ctx, id)
	if err != nil {
		return freed, err
	}
	if pruned == nil {
		if err := s.Store.PruneLogs(ctx, []int64{id}); err != nil {
			return freed, err
		}
		freed += s.replaceLogs(id, "[retention] max-size = "+formatSize(s.Config.Retention.MaxSize))
	}
	return freed, nil
}

func (s *Service) settledOnly(ids []int64) []int64 {
	out := ids[:0:0]
	for _, id := range ids {
		if s.settled(id) {
			out = append(out, id)
		}
	}
	return out
}

// PrunedLogText is what a pruned log reads in place of its text.
func PrunedLogText(at time.Time, rule string) string {
	return fmt.Sprintf("This log was pruned on %s (%s).\n", at.UTC().Format("2006-01-02"), rule)
}

// replaceLogs puts PrunedLogText in place of each of a job's log files,
// so every reader (API, web UI, `ssh ... tail`) shows it, and returns the
// bytes freed.
func (s *Service) replaceLogs(jobID int64, rule string) int64 {
	dir := filepath.Join(s.Config.Builds.DataDir, "logs", fmt.Sprint(jobID))
	text := PrunedLogText(s.now(), rule)
	var freed int64
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "log" {
			return nil
		}
		freed += diskSize(path)
		tmp := path + ".pruned"
		if err := os.WriteFile(tmp, []byte(text), 0o600); err == nil {
			err = os.Rename(tmp, path)
		}
		if err != nil {
			s.Log.Error("prune log", "job_id", jobID, "path", path, "err", err)
		}
		return nil
	})
	return freed
}

// Pruner runs Prune every [retention] interval in the background.
type Pruner struct {
	svc  *Service
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// StartPruner starts pruning now and then every interval until Close.
// With nothing to prune configured it does nothing.
func (s *Service) StartPruner(ctx context.Context) *Pruner {
	p := &Pruner{svc: s}
	rc := s.Config.Retention
	if rc.Artifacts <= 0 && rc.Logs <= 0 && rc.Jobs <= 0 && rc.MaxSize <= 0 {
		p.stop = func() {}
		return p
	}
	ctx, p.stop = context.WithCancel(context.WithoutCancel(ctx))
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(rc.Interval)
		defer tick.Stop()
		for {
			p.once(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

func (p *Pruner) once(ctx context.Context) {
	start := time.Now()
	res, err := p.svc.Prune(ctx)
	if err != nil && ctx.Err() == nil {
		p.svc.Log.Error("prune", "err", err)
	}
	if res != (PruneResult{}) {
		p.svc.Log.Info("pruned", "artifacts", res.Artifacts, "logs", res.Logs, "jobs", res.Jobs,
			"max_size_jobs", res.MaxSizeJobs, "freed", HumanSize(res.Bytes), "took", time.Since(start).Round(time.Millisecond))
	}
}

// Close stops the pruner, waiting for a pass in progress to stop.
func (p *Pruner) Close() error {
	p.stop()
	p.wg.Wait()
	return nil
}
