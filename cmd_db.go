package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"text/tabwriter"

	"builds/store"
)

// serverLockName is the file in the data dir that a running `serve`
// holds an exclusive lock on: a second server on the same data dir, and
// commands that must not run beside one (db copy), are refused.
const serverLockName = "builds.lock"

// errServerRunning is what lockDataDir returns when a server holds the
// data dir.
var errServerRunning = errors.New("a builds server is running on this data dir")

// lockDataDir takes the data dir's lock without waiting, for as long as
// the returned file stays open (the lock goes with the process, even
// when it is killed).
func lockDataDir(dataDir string) (*os.File, error) {
	path := filepath.Join(dataDir, serverLockName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s is locked)", errServerRunning, path)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", path, err)
	}
	return f, nil
}

const dbUsage = `usage: builds db copy --to DEST [--from SOURCE]

Copies every row of the configured database (or --from SOURCE) into
DEST, an empty PostgreSQL database (postgres://user:pass@host/db) or a
new SQLite file. The server must be stopped. Afterwards, point
[builds] database at DEST and start the server again.`

// cmdDB runs `builds db ...`.
func (m *Main) cmdDB(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "copy" {
		return usagef("%s", dbUsage)
	}
	flags := m.flagSet("db copy")
	to := flags.String("to", "", "destination database")
	from := flags.String("from", "", "source database (default: the configured one)")
	pos, err := parseFlags(flags, args[1:], false)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *to == "" {
		return usagef("%s", dbUsage)
	}
	if err := m.loadConfig(); err != nil {
		return err
	}
	src := *from
	if src == "" {
		src = m.Config.DatabaseSource()
	}
	if err := checkCopyEnds(src, *to); err != nil {
		return err
	}
	if *from == "" {
		if err := privateDir(m.Config.Builds.DataDir); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		lock, err := lockDataDir(m.Config.Builds.DataDir)
		if errors.Is(err, errServerRunning) {
			return fmt.Errorf("db copy: %w: stop it first, so that no write lands after the copy", err)
		}
		if err != nil {
			return err
		}
		defer lock.Close()
	}
	if !store.IsPostgres(src) {
		if _, err := os.Stat(src); err != nil {
			return fmt.Errorf("db copy: source %s: %w", src, err)
		}
	}
	createdFile := false
	if !store.IsPostgres(*to) {
		if _, err := os.Stat(*to); errors.Is(err, fs.ErrNotExist) {
			createdFile = true
		}
	}
	counts, err := copyDB(ctx, src, *to)
	if err != nil {
		if createdFile {
			for _, p := range []string{*to, *to + "-wal", *to + "-shm"} {
				os.Remove(p)
			}
		}
		return err
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tROWS")
	var total int64
	for _, c := range counts {
		fmt.Fprintf(tw, "%s\t%d\n", c.Table, c.Dest)
		total += c.Dest
	}
	tw.Flush()
	fmt.Fprintf(m.Stdout, "copied %d rows from %s to %s\n", total, store.Redact(src), store.Redact(*to))
	shown := store.Redact(*to)
	if shown != *to {
		shown += "   (with its password)"
	}
	fmt.Fprintf(m.Stdout, "to use it, set in %s, keeping the data dir (its secret.key decrypts the secrets):\n\n[builds]\ndatabase = %s\n", configLabel(m.Config.Path), shown)
	return nil
}

// copyDB opens both databases (migrating them to this build's schema)
// and copies src into dst.
func copyDB(ctx context.Context, src, dst string) ([]store.TableCount, error) {
	s, err := store.Open(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("db copy: source: %w", err)
	}
	defer s.Close()
	d, err := store.Open(ctx, dst)
	if err != nil {
		return nil, fmt.Errorf("db copy: destination: %w", err)
	}
	defer d.Close()
	counts, err := store.CopyDatabase(ctx, s, d)
	if err != nil {
		return nil, fmt.Errorf("db copy: %w", err)
	}
	return counts, nil
}

// checkCopyEnds refuses a copy onto itself.
func checkCopyEnds(src, dst string) error {
	if src == dst {
		return usagef("db copy: source and destination are the same (%s)", store.Redact(src))
	}
	if !store.IsPostgres(src) && !store.IsPostgres(dst) {
		a, errA := filepath.Abs(src)
		b, errB := filepath.Abs(dst)
		if errA == nil && errB == nil && a == b {
			return usagef("db copy: source and destination are the same file (%s)", a)
		}
	}
	return nil
}

// configLabel names the configuration file for a hint.
func configLabel(path string) string {
	if path == "" {
		return "builds.ini (the server runs on built-in defaults now)"
	}
	return path
}
