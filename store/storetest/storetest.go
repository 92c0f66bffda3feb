// Package storetest gives tests a fresh database of their own: a SQLite
// file in the test's temporary directory, or a new database on the
// PostgreSQL server that BUILDS_TEST_POSTGRES names.
//
// A package whose tests should pass on both calls Main from its TestMain:
// the tests run once on SQLite and then, when BUILDS_TEST_POSTGRES is set,
// once more on PostgreSQL, where Open and Source give PostgreSQL
// databases. Without the variable the PostgreSQL pass is skipped, unless
// BUILDS_VM_TESTS=1 (CI), where that is a failure. .ci/postgres starts a
// server for the tests.
//
// Each PostgreSQL test database is made by CREATE DATABASE from a
// template migrated once per test process and dropped when its test
// ends, so tests run in parallel without seeing each other's rows.
package storetest

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"builds/store"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// EnvPostgres names the environment variable holding the URL of the
// PostgreSQL server for tests (any database on it the user may connect
// to; the user must be allowed to create databases).
const EnvPostgres = "BUILDS_TEST_POSTGRES"

// onPostgres is set while Main runs the PostgreSQL pass.
var onPostgres atomic.Bool

// Main runs the package's tests on SQLite, then on PostgreSQL (see the
// package doc), and exits with the result.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	code := m.Run()
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		return code
	}
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		return code // a fuzz run is one target, once
	}
	if os.Getenv(EnvPostgres) == "" {
		if os.Getenv("BUILDS_VM_TESTS") == "1" {
			fmt.Fprintf(os.Stderr, "storetest: BUILDS_VM_TESTS=1 but %s is not set, so the PostgreSQL pass cannot run (.ci/postgres starts a server)\n", EnvPostgres)
			return 1
		}
		fmt.Printf("storetest: %s is not set: PostgreSQL pass skipped\n", EnvPostgres)
		return code
	}
	// benchmarks that compare the databases open both themselves
	flag.Set("test.bench", "")
	fmt.Println("storetest: PostgreSQL pass")
	onPostgres.Store(true)
	code2 := m.Run()
	onPostgres.Store(false)
	if err := dropTemplate(); err != nil {
		fmt.Fprintf(os.Stderr, "storetest: %v\n", err)
		code2 = max(code2, 1)
	}
	return max(code, code2)
}

// Postgres reports whether the tests are in the PostgreSQL pass.
func Postgres() bool { return onPostgres.Load() }

// Name is the database of the current pass, for messages: "SQLite" or
// "PostgreSQL".
func Name() string {
	if Postgres() {
		return "PostgreSQL"
	}
	return "SQLite"
}

// SQLiteOnly skips tb in the PostgreSQL pass: it checks something of
// SQLite's own (a pragma, a file) or of a part whose database code is not
// in question there.
func SQLiteOnly(tb testing.TB) {
	tb.Helper()
	if Postgres() {
		tb.Skip("SQLite only")
	}
}

// Source returns a fresh database source for the current pass: a
// SQLite path in tb's temporary directory, or the URL of a new, migrated
// PostgreSQL database, dropped when tb ends.
func Source(tb testing.TB) string {
	tb.Helper()
	if Postgres() {
		return PostgresSource(tb)
	}
	return filepath.Join(tb.TempDir(), "builds.db")
}

// Open opens a fresh database of the current pass (see Source) and
// closes it when tb ends.
func Open(tb testing.TB) *store.DB {
	tb.Helper()
	db, err := store.Open(context.Background(), Source(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// PostgresSource returns the URL of a new, migrated PostgreSQL database,
// dropped when tb ends, whatever the pass. Without BUILDS_TEST_POSTGRES
// it skips tb, or fails it when BUILDS_VM_TESTS=1.
func PostgresSource(tb testing.TB) string {
	tb.Helper()
	return newDatabase(tb, true)
}

// EmptyPostgresSource is PostgresSource without the migrations: a
// database with no tables.
func EmptyPostgresSource(tb testing.TB) string {
	tb.Helper()
	return newDatabase(tb, false)
}

var (
	serverMu sync.Mutex
	admin    *sql.DB // connection to the server's database of EnvPostgres
	template string  // migrated template database, "" until made
	nextDB   atomic.Int64
)

// newDatabase creates a database on the test server, from the migrated
// template if migrated, and drops it when tb ends.
func newDatabase(tb testing.TB, migrated bool) string {
	tb.Helper()
	base := os.Getenv(EnvPostgres)
	if base == "" {
		if os.Getenv("BUILDS_VM_TESTS") == "1" {
			tb.Fatalf("%s is not set (BUILDS_VM_TESTS=1 needs the PostgreSQL tests to run; .ci/postgres starts a server)", EnvPostgres)
		}
		tb.Skipf("%s is not set: no PostgreSQL server to test against", EnvPostgres)
	}
	a, tmpl, err := server(base)
	if err != nil {
		tb.Fatal(err)
	}
	name := fmt.Sprintf("builds_test_%d_%d", os.Getpid(), nextDB.Add(1))
	q := `CREATE DATABASE ` + name
	if migrated {
		q += ` TEMPLATE ` + tmpl
	}
	if _, err := a.Exec(q); err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		if _, err := a.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`); err != nil {
			tb.Errorf("drop test database %s: %v", name, err)
		}
	})
	return withDatabase(base, name)
}

// server connects to the test server and makes the template, once.
func server(base string) (*sql.DB, string, error) {
	serverMu.Lock()
	defer serverMu.Unlock()
	if admin == nil {
		if _, err := url.Parse(base); err != nil || !store.IsPostgres(base) {
			return nil, "", fmt.Errorf("%s: want a postgres:// URL, got %q", EnvPostgres, store.Redact(base))
		}
		a, err := sql.Open("pgx", base)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %v", EnvPostgres, err)
		}
		if err := a.Ping(); err != nil {
			a.Close()
			return nil, "", fmt.Errorf("%s: %s: %v", EnvPostgres, store.Redact(base), err)
		}
		admin = a
	}
	if template == "" {
		name := fmt.Sprintf("builds_template_%d", os.Getpid())
		if _, err := admin.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`); err != nil {
			return nil, "", fmt.Errorf("template database: %v", err)
		}
		if _, err := admin.Exec(`CREATE DATABASE ` + name); err != nil {
			return nil, "", fmt.Errorf("template database: %v", err)
		}
		db, err := store.Open(context.Background(), withDatabase(base, name))
		if err != nil {
			return nil, "", fmt.Errorf("template database: %v", err)
		}
		if err := db.Close(); err != nil {
			return nil, "", fmt.Errorf("template database: %v", err)
		}
		template = name
	}
	return admin, template, nil
}

// dropTemplate drops the template database and closes the connection.
func dropTemplate() error {
	serverMu.Lock()
	defer serverMu.Unlock()
	if admin == nil {
		return nil
	}
	defer func() { admin.Close(); admin = nil }()
	if template != "" {
		if _, err := admin.Exec(`DROP DATABASE IF EXISTS ` + template + ` WITH (FORCE)`); err != nil {
			return fmt.Errorf("drop template database: %v", err)
		}
		template = ""
	}
	return nil
}

// withDatabase returns the URL base with its database replaced by name.
func withDatabase(base, name string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base // not reached: server has parsed it
	}
	u.Path = "/" + name
	return u.String()
}
