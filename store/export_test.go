package store

import "database/sql"

// SQL exposes the connection pool to tests and benchmarks that inspect the
// schema or compare against hand-written queries.
func (db *DB) SQL() *sql.DB { return db.db }

// Rebind translates a query written for SQLite to the database's dialect,
// as the statement cache does, for tests' hand-written queries.
func (db *DB) Rebind(query string) string { return db.stmts.rewrite(query) }

// Postgres reports whether db is on PostgreSQL.
func (db *DB) Postgres() bool { return db.postgres }
