package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"builds/app"
	"builds/store"
	"builds/store/storetest"
)

// now is the fixed clock of test databases; the sub-second part checks
// that stored times are truncated.
var now = time.Date(2024, 5, 6, 7, 8, 9, 500_000_000, time.UTC)

// nowSec is now as stored.
var nowSec = now.Truncate(time.Second)

func TestMain(m *testing.M) { storetest.Main(m) }

// MustOpenDB opens a fresh database, SQLite or PostgreSQL as the pass
// goes (storetest.Main), with a fixed clock.
func MustOpenDB(tb testing.TB) *store.DB {
	tb.Helper()
	return MustOpenDBAt(tb, storetest.Source(tb))
}

// MustOpenDBAt opens the database at path (or URL) with a fixed clock.
func MustOpenDBAt(tb testing.TB, path string) *store.DB {
	tb.Helper()
	db, err := store.Open(context.Background(), path)
	if err != nil {
		tb.Fatal(err)
	}
	db.Now = func() time.Time { return now }
	return db
}

// MustCloseDB closes db.
func MustCloseDB(tb testing.TB, db *store.DB) {
	tb.Helper()
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
}

// MustCreateUser creates a user called name.
func MustCreateUser(tb testing.TB, db *store.DB, name string) *app.User {
	tb.Helper()
	u := &app.User{Username: name, Email: name + "@example.org"}
	if err := db.CreateUser(context.Background(), u); err != nil {
		tb.Fatal(err)
	}
	return u
}

// newJob returns a job of owner with the given status, ready to create.
func newJob(owner int64, status app.JobStatus) *app.Job {
	return &app.Job{OwnerID: owner, Manifest: "image: alpine/latest\n", Visibility: app.Unlisted,
		Image: "alpine/latest", Status: status, Secrets: true}
}

// MustCreateJob creates a job of owner with status and one task "build".
func MustCreateJob(tb testing.TB, db *store.DB, owner int64, status app.JobStatus) *app.Job {
	tb.Helper()
	j := newJob(owner, status)
	if _, err := db.CreateJob(context.Background(), j, []string{"build"}); err != nil {
		tb.Fatal(err)
	}
	return j
}

// wantCode fails unless err carries the app error code.
func wantCode(tb testing.TB, err error, code string) {
	tb.Helper()
	if got := app.ErrorCode(err); got != code {
		tb.Fatalf("error code = %q, want %q (err: %v)", got, code, err)
	}
}

// wantMessage fails unless err's user-facing message is msg.
func wantMessage(tb testing.TB, err error, msg string) {
	tb.Helper()
	if got := app.ErrorMessage(err); got != msg {
		tb.Fatalf("error message = %q, want %q (err: %v)", got, msg, err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestOpen(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		storetest.SQLiteOnly(t)
		db := MustOpenDB(t)
		defer MustCloseDB(t, db)
		var mode string
		if err := db.SQL().QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
			t.Fatal(err)
		} else if mode != "wal" {
			t.Fatalf("journal_mode = %q, want wal", mode)
		}
		var fk int
		if err := db.SQL().QueryRow(`PRAGMA foreign_keys`).Scan(&fk); err != nil {
			t.Fatal(err)
		} else if fk != 1 {
			t.Fatalf("foreign_keys = %d, want 1", fk)
		}
	})

	t.Run("CreatesParentDirs", func(t *testing.T) {
		storetest.SQLiteOnly(t)
		// '?' and '#' would end the file name in a plain DSN.
		path := filepath.Join(t.TempDir(), "a?b#c d", "x", "builds.db")
		db := MustOpenDBAt(t, path)
		MustCreateUser(t, db, "alice")
		MustCloseDB(t, db)
		if _, err := os.Stat(path); err != nil {
			t.Fatal(err)
		}
		db = MustOpenDBAt(t, path)
		defer MustCloseDB(t, db)
		if _, err := db.FindUserByName(context.Background(), "alice"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("MigrationsIdempotent", func(t *testing.T) {
		path := storetest.Source(t)
		db := MustOpenDBAt(t, path)
		u := MustCreateUser(t, db, "alice")
		MustCloseDB(t, db)

		db = MustOpenDBAt(t, path)
		defer MustCloseDB(t, db)
		var n int
		if err := db.SQL().QueryRow(`SELECT count(*) FROM migrations`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		dir := "migrations/sqlite"
		if db.Postgres() {
			dir = "migrations/postgres"
		}
		files, _ := filepath.Glob(dir + "/*.sql")
		if n != len(files) || n == 0 {
			t.Fatalf("migrations recorded = %d, want %d", n, len(files))
		}
		if _, err := db.FindUserByID(context.Background(), u.ID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ErrNewerSchema", func(t *testing.T) {
		path := storetest.Source(t)
		db := MustOpenDBAt(t, path)
		if _, err := db.SQL().Exec(`INSERT INTO migrations (name, applied) VALUES ('9999_future.sql', 0)`); err != nil {
			t.Fatal(err)
		}
		MustCloseDB(t, db)
		if db, err := store.Open(context.Background(), path); err == nil {
			db.Close()
			t.Fatal("expected error for unknown migration")
		}
	})

	t.Run("ErrEmptyPath", func(t *testing.T) {
		if _, err := store.Open(context.Background(), ""); err == nil {
			t.Fatal("expected error")
		}
	})

	t.Run("ErrNotADirectory", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := store.Open(context.Background(), filepath.Join(file, "builds.db"))
		if err == nil {
			t.Fatal("expected error")
		}
		var pe *os.PathError
		if !errors.As(err, &pe) {
			t.Fatalf("want a path error, got %v", err)
		}
	})
}
