package store

import "database/sql"

// SQL exposes the connection pool to tests and benchmarks that inspect the
// schema or compare against hand-written queries.
func (db *DB) SQL() *sql.DB { return db.db }
