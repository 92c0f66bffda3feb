package store

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// IsPostgres reports whether a database source names PostgreSQL: a
// postgres:// or postgresql:// URL.
func IsPostgres(source string) bool {
	return strings.HasPrefix(source, "postgres://") || strings.HasPrefix(source, "postgresql://")
}

// Redact returns a database source fit for logs and errors: a URL
// without its password (a SQLite path as it is).
func Redact(source string) string {
	if !IsPostgres(source) {
		return source
	}
	u, err := url.Parse(source)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	return u.Redacted()
}

// maxPostgresConns bounds the pool: PostgreSQL gives each connection a
// process, and its default max_connections is 100 for every client.
const maxPostgresConns = 16

// openPostgres opens the PostgreSQL database named by the URL dsn, which
// must exist, through pgx's database/sql driver.
func openPostgres(ctx context.Context, dsn string) (*DB, error) {
	name := Redact(dsn)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the URL, password included
		return nil, fmt.Errorf("open database %s: invalid PostgreSQL URL", name)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	sdb := stdlib.OpenDB(*cfg)
	sdb.SetMaxOpenConns(maxPostgresConns)
	sdb.SetMaxIdleConns(4)
	sdb.SetConnMaxIdleTime(5 * time.Minute)
	db := &DB{db: sdb, stmts: newStmtCache(sdb, true), postgres: true, Now: time.Now}
	if err := sdb.PingContext(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("open database %s: %w", name, err)
	}
	if err := db.migrate(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("open database %s: %w", name, err)
	}
	return db, nil
}
