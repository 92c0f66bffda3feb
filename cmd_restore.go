package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"builds/app"
	"builds/backup"
	"builds/store"
)

// cmdRestore runs `builds restore DIR`.
func (m *Main) cmdRestore(ctx context.Context, args []string) error {
	pos, err := parseFlags(m.flagSet("restore"), args, false)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("%s", restoreUsage)
	}
	if err := m.loadConfig(); err != nil {
		return err
	}
	cfg := m.Config
	dataDir := cfg.Builds.DataDir
	lock, err := checkRestoreTarget(cfg)
	if err != nil {
		return err
	}
	defer func() {
		if lock != nil {
			lock.Close()
		}
	}()
	man, err := backup.Open(pos[0])
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	for _, f := range man.Files {
		if f.Kind == backup.KindKey && keyPath(cfg, f.Path) == "" {
			return fmt.Errorf("restore: backup %s: %s: builds has no key of that name", pos[0], f.Path)
		}
	}
	if lock == nil {
		// the data dir did not exist: make it, and hold it
		if err := privateDir(dataDir); err != nil {
			return fmt.Errorf("restore: data dir: %w", err)
		}
		if lock, err = lockDataDir(dataDir); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		if err := emptyDataDir(dataDir); err != nil {
			return err
		}
	}
	r := &restore{cfg: cfg, dir: pos[0], man: man}
	if err := r.run(ctx); err != nil {
		r.undo()
		return err
	}
	st := r.stats
	fmt.Fprintf(m.Stdout, "restored the backup of %s (builds %s, from %s) into %s\n",
		man.Created.Format(time.RFC3339), man.Version, man.Source, dataDir)
	fmt.Fprintf(m.Stdout, "  database %s: %d jobs, %d users; %d logs, %d artifacts, %d keys; every checksum verified\n",
		store.Redact(cfg.DatabaseSource()), st.jobs, st.users, st.logs, st.artifacts, st.keys)
	fmt.Fprintf(m.Stdout, "images are not in a backup: build them again (builds image build ...), then start the server\n")
	return nil
}

// checkRestoreTarget refuses a data dir that is in use or holds
// anything, and a database or secrets key outside it that exists. It
// returns the data dir's lock if the dir exists (nil if it does not).
func checkRestoreTarget(cfg *app.Config) (lock *os.File, err error) {
	fi, err := os.Stat(cfg.Builds.DataDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		err = nil
	case err != nil:
		return nil, fmt.Errorf("restore: data dir: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("restore: data dir %s is not a directory", cfg.Builds.DataDir)
	default:
		lock, err = lockDataDir(cfg.Builds.DataDir)
		if errors.Is(err, errServerRunning) {
			return nil, fmt.Errorf("restore: the data dir is in use: %w", err)
		}
		if err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		if err := emptyDataDir(cfg.Builds.DataDir); err != nil {
			lock.Close()
			return nil, err
		}
	}
	exists := func(p string) bool {
		_, err := os.Lstat(p)
		return !errors.Is(err, fs.ErrNotExist)
	}
	switch {
	case !cfg.DatabaseIsPostgres() && exists(cfg.DatabaseSource()):
		err = fmt.Errorf("restore: the database %s exists: restore into a new data dir and database", cfg.DatabaseSource())
	case exists(secretKeyPath(cfg)):
		err = fmt.Errorf("restore: the secrets key %s exists: restore into a new data dir", secretKeyPath(cfg))
	}
	if err != nil && lock != nil {
		lock.Close()
		return nil, err
	}
	return lock, err
}

// emptyDataDir refuses a data dir with anything in it but its lock (and
// a file system's lost+found).
func emptyDataDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("restore: data dir: %w", err)
	}
	for _, e := range ents {
		if e.Name() != serverLockName && e.Name() != "lost+found" {
			return fmt.Errorf("restore: the data dir %s is not empty (it has %s): restore into a new, empty data dir", dir, e.Name())
		}
	}
	return nil
}

// restore is one restore into a checked, empty, locked data dir.
type restore struct {
	cfg     *app.Config
	dir     string
	man     *backup.Manifest
	created []string // files made, removed again by undo
	tmpDB   string   // the database file restored for PostgreSQL
	stats   struct{ jobs, users, logs, artifacts, keys int }
}

// run restores the files, then checks the database and puts it in
// place.
func (r *restore) run(ctx context.Context) error {
	cfg := r.cfg
	pg := cfg.DatabaseIsPostgres()
	var dst *store.DB
	if pg {
		// fail before copying anything if the database is not empty
		var err error
		if dst, err = store.Open(ctx, cfg.DatabaseSource()); err != nil {
			return fmt.Errorf("restore: open database: %w", err)
		}
		defer dst.Close()
		if err := checkEmptyDB(ctx, dst, cfg.DatabaseSource()); err != nil {
			return err
		}
		rnd := make([]byte, 6)
		rand.Read(rnd)
		r.tmpDB = filepath.Join(cfg.Builds.DataDir, "restore-"+hex.EncodeToString(rnd)+".db")
	}
	created, err := backup.Restore(r.dir, r.man, r.dest)
	r.created = append(r.created, created...)
	if err != nil {
		return err
	}
	for _, f := range r.man.Files {
		switch f.Kind {
		case backup.KindLog:
			r.stats.logs++
		case backup.KindArtifact:
			r.stats.artifacts++
		case backup.KindKey:
			r.stats.keys++
		}
	}
	dbFile := cfg.DatabaseSource()
	if pg {
		dbFile = r.tmpDB
	}
	if err := r.checkDatabase(ctx, dbFile); err != nil {
		return err
	}
	// store.Open migrates a backup of an older build, before the
	// artifacts are checked against it in this build's schema
	db, err := store.Open(ctx, dbFile)
	if err != nil {
		return fmt.Errorf("restore: open the restored database: %w", err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := r.checkArtifacts(ctx, dbFile); err != nil {
		return err
	}
	if db, err = store.Open(ctx, dbFile); err != nil {
		return fmt.Errorf("restore: open the restored database: %w", err)
	}
	if !pg {
		defer db.Close()
		return r.count(ctx, db)
	}
	_, err = store.CopyDatabase(ctx, db, dst)
	db.Close()
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	removeDB(r.tmpDB)
	return r.count(ctx, dst)
}

// dest is where a file of the backup goes.
func (r *restore) dest(f backup.File) string {
	switch f.Kind {
	case backup.KindDatabase:
		if r.tmpDB != "" {
			return r.tmpDB
		}
		return r.cfg.DatabaseSource()
	case backup.KindKey:
		return keyPath(r.cfg, f.Path)
	}
	return filepath.Join(r.cfg.Builds.DataDir, filepath.FromSlash(f.Path))
}

// checkDatabase runs the restored database file's own check.
func (r *restore) checkDatabase(ctx context.Context, dbFile string) error {
	cp, err := store.OpenCopy(ctx, dbFile)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer cp.Close()
	if err := cp.Check(ctx); err != nil {
		return fmt.Errorf("restore: %s: %w", backup.DatabaseName, err)
	}
	return cp.Close()
}

// checkArtifacts checks that every artifact the (migrated) database
// names was restored.
func (r *restore) checkArtifacts(ctx context.Context, dbFile string) error {
	cp, err := store.OpenCopy(ctx, dbFile)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer cp.Close()
	idx, err := cp.Index(ctx, time.Now())
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	for _, a := range idx.Artifacts {
		p := filepath.Join(r.cfg.Builds.DataDir, "artifacts", filepath.FromSlash(a.File))
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("restore: the database names artifact %d (artifacts/%s), which is not in the backup", a.ID, a.File)
		}
	}
	return cp.Close()
}

// count reads what the restored database holds, for the summary.
func (r *restore) count(ctx context.Context, db *store.DB) error {
	st, err := db.CountJobs(ctx)
	if err != nil {
		return fmt.Errorf("restore: check the database: %w", err)
	}
	for _, n := range st.ByStatus {
		r.stats.jobs += int(n)
	}
	users, err := db.FindUsers(ctx)
	if err != nil {
		return fmt.Errorf("restore: check the database: %w", err)
	}
	r.stats.users = len(users)
	return nil
}

// checkEmptyDB refuses a PostgreSQL database with users or jobs in it
// (CopyDatabase checks every table again, in its transaction).
func checkEmptyDB(ctx context.Context, db *store.DB, source string) error {
	users, err := db.FindUsers(ctx)
	if err != nil {
		return fmt.Errorf("restore: database: %w", err)
	}
	st, err := db.CountJobs(ctx)
	if err != nil {
		return fmt.Errorf("restore: database: %w", err)
	}
	jobs := int64(0)
	for _, n := range st.ByStatus {
		jobs += n
	}
	if len(users) > 0 || jobs > 0 {
		return fmt.Errorf("restore: the database %s is not empty (%d users, %d jobs): restore into a new, empty database", store.Redact(source), len(users), jobs)
	}
	return nil
}

// undo removes what a failed restore wrote: the data dir was empty.
func (r *restore) undo() {
	for _, p := range r.created {
		os.Remove(p)
	}
	if r.tmpDB != "" {
		removeDB(r.tmpDB)
	}
	if !r.cfg.DatabaseIsPostgres() {
		removeDB(r.cfg.DatabaseSource())
	}
	for _, d := range []string{"logs", "artifacts"} {
		os.RemoveAll(filepath.Join(r.cfg.Builds.DataDir, d))
	}
}

// removeDB removes a SQLite file with its WAL and shared memory.
func removeDB(path string) {
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		os.Remove(p)
	}
}
