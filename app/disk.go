package app

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Disk safety: what the data dir holds (the admin page, [retention]
// max-size) and the free-space gate on new jobs ([runner] min-free-disk).

// DiskUsage is what the data dir holds, by kind, in bytes on disk.
type DiskUsage struct {
	Logs, Artifacts, Images, Layers, Snapshots, Database, Other int64
	Total                                                       int64     // the whole data dir
	Free                                                        int64     // free for the server's user on the data dir's filesystem
	Measured                                                    time.Time // when it was measured
}

// diskState caches the last measurement and the free-space gate.
type diskState struct {
	mu       sync.Mutex
	usage    *DiskUsage
	low      bool           // the gate is shut: free space under min-free-disk
	noted    map[int64]bool // queued jobs told why they wait (this low period)
	lowSince time.Time
}

// diskCacheAge is how long the admin page shows a measurement before
// walking the data dir again.
const diskCacheAge = time.Minute

// DiskUsage returns what the data dir holds (admins only), measured at
// most diskCacheAge ago.
func (s *Service) DiskUsage(ctx context.Context) (*DiskUsage, error) {
	if u := UserFromContext(ctx); u == nil || !u.Admin {
		return nil, Errorf(EFORBIDDEN, "only administrators may see the disk use")
	}
	s.disk.mu.Lock()
	u := s.disk.usage
	s.disk.mu.Unlock()
	if u != nil && time.Since(u.Measured) < diskCacheAge {
		return u, nil
	}
	return s.measureDisk()
}

// measureDisk walks the data dir (and the images and cache dirs, when
// they lie elsewhere) and caches the result.
func (s *Service) measureDisk() (*DiskUsage, error) {
	cfg := s.Config
	u := &DiskUsage{Measured: time.Now()}
	kinds := []struct {
		dir string
		n   *int64
	}{
		{filepath.Join(cfg.Builds.DataDir, "logs"), &u.Logs},
		{filepath.Join(cfg.Builds.DataDir, "artifacts"), &u.Artifacts},
		{cfg.Images.Dir, &u.Images},
		{filepath.Join(cfg.Runner.CacheDir, "layers"), &u.Layers},
		{filepath.Join(cfg.Runner.CacheDir, "snapshots"), &u.Snapshots},
	}
	for _, k := range kinds {
		*k.n = dirSize(k.dir)
	}
	u.Total = dirSize(cfg.Builds.DataDir)
	u.Other = u.Total
	if !cfg.DatabaseIsPostgres() { // a PostgreSQL database is not on this disk
		db := cfg.DatabaseSource()
		for _, p := range []string{db, db + "-wal", db + "-shm"} {
			u.Database += diskSize(p)
		}
		if within(cfg.Builds.DataDir, db) {
			u.Other -= u.Database
		}
	}
	for _, k := range kinds {
		if within(cfg.Builds.DataDir, k.dir) {
			u.Other -= *k.n
		}
	}
	u.Other = max(u.Other, 0)
	free, err := s.FreeSpace(cfg.Builds.DataDir)
	if err != nil {
		return nil, fmt.Errorf("free disk space: %w", err)
	}
	u.Free = free
	s.disk.mu.Lock()
	s.disk.usage = u
	s.disk.mu.Unlock()
	return u, nil
}

// within reports whether path lies inside dir.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// dirSize returns the bytes on disk of everything under dir (0 if it is
// missing). Hard links are counted once.
func dirSize(dir string) int64 {
	var n int64
	seen := map[uint64]bool{}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if st.Nlink > 1 && !fi.IsDir() {
				if seen[st.Ino] {
					return nil
				}
				seen[st.Ino] = true
			}
			n += st.Blocks * 512
			return nil
		}
		n += fi.Size()
		return nil
	})
	return n
}

// diskSize returns the bytes on disk of one file (0 if it is missing).
func diskSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

// statfsFree returns the bytes free for unprivileged users on the
// filesystem holding dir.
func statfsFree(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// DiskGate says whether new jobs may start: with [runner] min-free-disk
// set, free space in the data dir must be at least that.
type DiskGate struct {
	Low  bool
	Free int64
	Min  int64
	// Since is when the gate shut.
	Since time.Time
}

// DiskGate returns the state of the free-space gate as of the last claim
// attempt (admin page).
func (s *Service) DiskGate() DiskGate {
	s.disk.mu.Lock()
	defer s.disk.mu.Unlock()
	g := DiskGate{Low: s.disk.low, Min: s.Config.Runner.MinFreeDisk, Since: s.disk.lowSince}
	if s.disk.usage != nil {
		g.Free = s.disk.usage.Free
	}
	return g
}

// DiskReady is the free-space gate a claim passes: with too little space
// it tells the queued jobs why they wait (once each, in their setup log)
// and refuses the claim. A job then waits QUEUED until space is freed,
// instead of failing halfway through writing its VM's disk.
func (s *Service) DiskReady(ctx context.Context) error {
	min := s.Config.Runner.MinFreeDisk
	if min <= 0 {
		return nil
	}
	free, err := s.FreeSpace(s.Config.Builds.DataDir)
	if err != nil {
		return fmt.Errorf("free disk space: %w", err)
	}
	s.disk.mu.Lock()
	if s.disk.usage != nil {
		s.disk.usage.Free = free
	}
	if free >= min {
		if s.disk.low {
			s.Log.Info("free disk space is back above [runner] min-free-disk; starting queued jobs", "free", HumanSize(free), "min_free_disk", HumanSize(min))
		}
		s.disk.low, s.disk.noted = false, nil
		s.disk.mu.Unlock()
		return nil
	}
	if !s.disk.low {
		s.disk.low, s.disk.lowSince, s.disk.noted = true, time.Now(), map[int64]bool{}
		s.Log.Warn("free disk space below [runner] min-free-disk; new jobs wait queued", "data_dir", s.Config.Builds.DataDir, "free", HumanSize(free), "min_free_disk", HumanSize(min))
	}
	s.disk.mu.Unlock()
	s.noteDiskWait(ctx, free, min)
	return Errorf(ENOTFOUND, "no job may start: %s free in the data dir, under [runner] min-free-disk (%s)", HumanSize(free), HumanSize(min))
}

// noteDiskWait writes why they wait into the setup logs of queued jobs
// not told yet.
func (s *Service) noteDiskWait(ctx context.Context, free, min int64) {
	jobs, err := s.Store.FindJobsByStatus(ctx, []JobStatus{JobQueued})
	if err != nil {
		s.Log.Error("find queued jobs", "err", err)
		return
	}
	for _, j := range jobs {
		s.disk.mu.Lock()
		told := s.disk.noted[j.ID]
		if s.disk.noted != nil {
			s.disk.noted[j.ID] = true
		}
		s.disk.mu.Unlock()
		if !told {
			s.SetupLogf(j.ID, "Waiting: only %s free in the data dir, under [runner] min-free-disk (%s); this job stays queued until space is freed", HumanSize(free), HumanSize(min))
		}
	}
}
