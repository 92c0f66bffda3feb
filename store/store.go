// Package store is the SQLite implementation of app.Store.
//
// Every exported method runs in exactly one transaction: it begins it,
// defers a rollback, calls unexported helpers that take (ctx, tx) and
// commits. A read-only method made of a single statement may instead run
// that statement without BEGIN and COMMIT (db.autocommit, stmt.go): SQLite
// runs a statement outside a transaction in one of its own, so a lone
// SELECT reads one consistent snapshot (under WAL, the one its first step
// takes, kept until its rows are closed) just as it would inside BEGIN
// and COMMIT, which would only add two statements and database/sql's
// goroutine per transaction. The token lookup of every API request and
// the reads of a page of jobs and their tasks do this; a method with a
// second statement, even a read, begins a transaction. (PostgreSQL gives
// a lone statement the same guarantee.)
//
// Queries go through a cache of prepared statements (stmt.go). Times are
// stored as INTEGER unix seconds (UTC).
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"time"

	"builds/app"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrationFS embed.FS

var _ app.Store = (*DB)(nil)

// DB is the SQLite database behind app.Store.
type DB struct {
	db    *sql.DB
	stmts *stmtCache

	// Now returns the current time. Tests replace it to fix time; every
	// transaction reads it once (see tx.now).
	Now func() time.Time
}

// Open opens (creating if needed) the database at path, including its
// parent directories, and applies pending migrations.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("open database: path is empty")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("open database: create directory: %w", err)
	}
	if err := privateFiles(abs, abs+"-wal", abs+"-shm"); err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	sdb, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	// Opening a connection runs the DSN pragmas; keep a few idle ones so
	// concurrent readers do not pay that on every request.
	sdb.SetMaxIdleConns(4)
	db := &DB{db: sdb, stmts: &stmtCache{db: sdb, m: map[string]*sql.Stmt{}}, Now: time.Now}
	if err := sdb.PingContext(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	if err := db.migrate(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	return db, nil
}

// privateFiles makes the database file and its WAL companions readable
// by the server's user alone (password hashes, private manifests): it
// creates the database file 0600 if it is missing, so SQLite, which gives
// the WAL and shared-memory files the database file's mode, makes those
// private too, and it tightens files an older version left 0644.
func privateFiles(db string, companions ...string) error {
	f, err := os.OpenFile(db, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	for _, p := range append([]string{db}, companions...) {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// dsn builds the modernc.org/sqlite data source name for an absolute path.
// The path is given as an escaped file: URI so that characters such as '?'
// or '#' in it cannot be mistaken for the query. The parameters apply to
// every pooled connection:
//   - busy_timeout(5000): wait up to 5 s for another writer instead of
//     failing at once with SQLITE_BUSY.
//   - foreign_keys(1): SQLite leaves foreign keys off by default, and the
//     schema relies on them for ON DELETE CASCADE / SET NULL.
//   - journal_mode(WAL): readers never block the writer nor each other,
//     which matters while runners write job state and the web UI reads.
//   - synchronous(NORMAL): safe with WAL (a power cut can only lose the
//     last commits, never corrupt) and avoids an fsync per commit.
//   - _txlock=immediate: read-write transactions start with BEGIN
//     IMMEDIATE and so take the write lock up front. A deferred transaction
//     that reads and then writes can fail with SQLITE_BUSY when upgrading
//     (busy_timeout does not help there); taking the lock first serializes
//     writers instead. Read-only transactions (sql.TxOptions{ReadOnly:
//     true}) still use a plain BEGIN and run concurrently.
func dsn(abs string) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	u.RawQuery = q.Encode()
	return u.String()
}

// Close closes the database.
func (db *DB) Close() error {
	db.stmts.close()
	if err := db.db.Close(); err != nil {
		return fmt.Errorf("close database: %w", err)
	}
	return nil
}

// tx is a transaction with the one timestamp used for every row it writes.
type tx struct {
	*sql.Tx
	now   time.Time
	stmts *stmtCache // QueryContext and QueryRowContext go through it (stmt.go)
}

// begin starts a transaction. Read-only transactions use a deferred BEGIN
// and may run alongside others; write transactions take the write lock at
// once (see dsn).
func (db *DB) begin(ctx context.Context, write bool) (*tx, error) {
	t, err := db.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: !write})
	if err != nil {
		return nil, fmt.Errorf("begin transaction: %w", err)
	}
	return &tx{Tx: t, now: db.Now().UTC().Truncate(time.Second), stmts: db.stmts}, nil
}

// commit commits t, naming the operation in the error.
func (t *tx) commit(op string) error {
	if err := t.Commit(); err != nil {
		return fmt.Errorf("%s: commit: %w", op, err)
	}
	return nil
}

// migrate applies each embedded migration that is not yet recorded in the
// migrations table, in lexical order, each in its own transaction.
func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS migrations (
		name    TEXT PRIMARY KEY,
		applied INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("create migrations table: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	if err := db.checkKnownMigrations(ctx, names); err != nil {
		return err
	}
	for _, name := range names {
		if err := db.migrateFile(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// checkKnownMigrations refuses a database that has migrations this binary
// does not know: it was written by a newer version.
func (db *DB) checkKnownMigrations(ctx context.Context, names []string) error {
	known := make(map[string]bool, len(names))
	for _, n := range names {
		known[filepath.Base(n)] = true
	}
	rows, err := db.db.QueryContext(ctx, `SELECT name FROM migrations ORDER BY name`)
	if err != nil {
		return fmt.Errorf("read migrations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return fmt.Errorf("read migrations: %w", err)
		}
		if !known[n] {
			return fmt.Errorf("database schema is newer than this program: unknown migration %s", n)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read migrations: %w", err)
	}
	return nil
}

// migrateFile runs one migration unless it has already been applied.
func (db *DB) migrateFile(ctx context.Context, name string) error {
	base := filepath.Base(name)
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", base, err)
	}
	defer t.Rollback()

	var n int
	if err := t.QueryRowContext(ctx, `SELECT count(*) FROM migrations WHERE name = ?`, base).Scan(&n); err != nil {
		return fmt.Errorf("migrate %s: %w", base, err)
	} else if n > 0 {
		return nil
	}
	body, err := fs.ReadFile(migrationFS, name)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", base, err)
	}
	if _, err := t.ExecContext(ctx, string(body)); err != nil {
		return fmt.Errorf("migrate %s: %w", base, err)
	}
	if _, err := t.ExecContext(ctx, `INSERT INTO migrations (name, applied) VALUES (?, ?)`, base, t.now.Unix()); err != nil {
		return fmt.Errorf("migrate %s: record: %w", base, err)
	}
	return t.commit("migrate " + base)
}
