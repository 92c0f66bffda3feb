package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"builds/app"
	"builds/backup"
	"builds/notify"
	"builds/runner"
	"builds/store"
)

const backupUsage = `usage: builds backup DIR

Writes a consistent copy of the data dir into DIR, which must not exist or
be empty: the database (one snapshot, taken while the server runs), the
keys, and the logs and artifacts the snapshot names, with DIR/manifest.json
listing every file's size and SHA-256. Images, snapshots and package
layers are not backed up: they are rebuilt.`

const restoreUsage = `usage: builds restore DIR

Puts the backup in DIR back into the configured data dir, which must be
empty or absent and not in use, after verifying every file's checksum;
on a PostgreSQL-configured server ([builds] database = postgres://...)
the database goes into that (empty) PostgreSQL database.`

// secretKeyName is the secrets key's name in the data dir and in a backup.
const secretKeyName = "secret.key"

// secretKeyPath is where the secrets key is (loadSecretKey): [builds]
// secret-key, else the data dir's secret.key.
func secretKeyPath(cfg *app.Config) string {
	if cfg.Builds.SecretKey != "" {
		return cfg.Builds.SecretKey
	}
	return filepath.Join(cfg.Builds.DataDir, secretKeyName)
}

// dataKeys are the keys of the data dir that a backup holds (the secrets
// key may live elsewhere: secretKeyPath).
var dataKeys = []string{notify.KeyFile, runner.HostKeyFile}

// keyPath is where a backed-up key of the given name goes (or comes
// from); "" for a name builds has no key of.
func keyPath(cfg *app.Config, name string) string {
	if name == secretKeyName {
		return secretKeyPath(cfg)
	}
	if slices.Contains(dataKeys, name) {
		return filepath.Join(cfg.Builds.DataDir, name)
	}
	return ""
}

// cmdBackup runs `builds backup DIR`.
func (m *Main) cmdBackup(ctx context.Context, args []string) error {
	pos, err := parseFlags(m.flagSet("backup"), args, false)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("%s", backupUsage)
	}
	if err := m.loadConfig(); err != nil {
		return err
	}
	cfg := m.Config
	src := cfg.DatabaseSource()
	if !store.IsPostgres(src) {
		if _, err := os.Stat(src); err != nil {
			return fmt.Errorf("backup: no database to back up: %w", err)
		}
	}
	w, err := backup.Create(pos[0], cfg.Builds.DataDir)
	if err != nil {
		return err
	}
	defer w.Close()
	man, err := m.writeBackup(ctx, w, src)
	if err != nil {
		clearDir(w.Dir())
		return err
	}
	st := w.Stats
	fmt.Fprintf(m.Stdout, "backup of %s written to %s (builds %s, snapshot %s)\n", store.Redact(src), w.Dir(), man.Version, man.Created.Format(time.RFC3339))
	fmt.Fprintf(m.Stdout, "  %d jobs, %d logs, %d artifacts, %d files, %s (%d hard-linked, %d copied)\n",
		st.Jobs, st.Logs, st.Artifacts, len(man.Files), app.HumanSize(st.Bytes), st.Linked, st.Copied)
	if st.Growing > 0 {
		fmt.Fprintf(m.Stdout, "  %d logs of jobs not settled at the snapshot were copied as far as they were written\n", st.Growing)
	}
	if n := len(st.GoneArtifacts); n > 0 {
		fmt.Fprintf(m.Stdout, "  %d artifacts were pruned while the backup ran: they are marked pruned in it\n", n)
	}
	fmt.Fprintf(m.Stdout, "not in it: images, snapshots and package layers (rebuild them with builds image build)\n")
	return nil
}

// writeBackup fills w: the database snapshot, the keys, and the files
// the snapshot names.
func (m *Main) writeBackup(ctx context.Context, w *backup.Writer, src string) (*backup.Manifest, error) {
	cfg := m.Config
	db, err := store.Open(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("backup: open database: %w", err)
	}
	taken := time.Now()
	dbPath := filepath.Join(w.Dir(), backup.DatabaseName)
	err = db.Backup(ctx, dbPath)
	db.Close()
	if err != nil {
		return nil, err
	}
	cp, err := store.OpenCopy(ctx, dbPath)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer cp.Close()
	if err := cp.Check(ctx); err != nil {
		return nil, fmt.Errorf("backup: the database copy: %w", err)
	}
	idx, err := cp.Index(ctx, taken.Add(-cfg.BackupSettleTime()))
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	for _, name := range append([]string{secretKeyName}, dataKeys...) {
		if _, err := w.AddKey(keyPath(cfg, name), name); err != nil {
			return nil, err
		}
	}
	if err := w.AddData(idx); err != nil {
		return nil, err
	}
	if gone := w.Stats.GoneArtifacts; len(gone) > 0 {
		if err := cp.MarkArtifactsPruned(ctx, gone, time.Now()); err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
	}
	if err := cp.Close(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := w.AddDatabase(); err != nil {
		return nil, err
	}
	source := "sqlite"
	if store.IsPostgres(src) {
		source = "postgres"
	}
	return w.Finish(version, source, taken)
}

// clearDir removes what a failed backup left in dir.
func clearDir(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}
