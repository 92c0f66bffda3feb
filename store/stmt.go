package store

import (
	"context"
	"database/sql"
	"sync"
)

// maxStmts bounds the statement cache. The store has about a hundred
// fixed query texts; what makes more are IN lists of every length and
// search terms in every combination, and those are rare enough to be
// prepared again after an eviction.
const maxStmts = 256

// stmtCache holds prepared statements by query text. Parsing and planning
// a statement costs SQLite about as much as running a small indexed read,
// and the API's list pages run the same few reads on every request.
// database/sql prepares a cached statement once on each pooled connection
// it is used on and closes it with the connection.
type stmtCache struct {
	db *sql.DB
	// rewrite translates a query text to the database's dialect before it
	// is prepared (dialect.go); the cache is keyed by the text as written.
	rewrite func(string) string
	args    func([]any) []any // text arguments made storable (toPostgresText on PostgreSQL)
	// mu is held, for reading, by every use (see use), so that an eviction
	// never closes a statement between its lookup and its use.
	mu sync.RWMutex
	m  map[string]*sql.Stmt
}

// newStmtCache returns an empty cache of statements on db, translated
// for PostgreSQL if postgres.
func newStmtCache(db *sql.DB, postgres bool) *stmtCache {
	c := &stmtCache{db: db, m: map[string]*sql.Stmt{}, rewrite: func(q string) string { return q }, args: func(a []any) []any { return a }}
	if postgres {
		c.rewrite = toPostgres
		c.args = toPostgresText
	}
	return c
}

// use calls f with the prepared statement of query. f should only bind
// it (Tx.StmtContext) or start it (Stmt.QueryContext): what those return
// stays valid after an eviction, since database/sql closes a statement
// only once its rows and transaction statements are closed, but the
// statement itself must not be used after f returns. The first use of a
// query text prepares it and runs f under the write lock (again after an
// eviction). On an error from preparing, f is not called.
func (c *stmtCache) use(ctx context.Context, query string, f func(*sql.Stmt)) error {
	c.mu.RLock()
	if s := c.m[query]; s != nil {
		defer c.mu.RUnlock()
		f(s)
		return nil
	}
	c.mu.RUnlock()
	s, err := c.db.PrepareContext(ctx, c.rewrite(query))
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[query]; old != nil { // prepared meanwhile by another caller
		s.Close()
		s = old
	} else {
		if len(c.m) >= maxStmts {
			for q, old := range c.m { // evict an arbitrary entry
				old.Close()
				delete(c.m, q)
				break
			}
		}
		c.m[query] = s
	}
	f(s)
	return nil
}

// close closes every cached statement.
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, s := range c.m {
		s.Close()
		delete(c.m, q)
	}
}

// stmt returns query prepared in t, from the statement cache.
func (t *tx) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	var ts *sql.Stmt
	err := t.stmts.use(ctx, query, func(s *sql.Stmt) { ts = t.Tx.StmtContext(ctx, s) })
	return ts, err
}

// QueryContext runs query in t through the statement cache.
func (t *tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	s, err := t.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return s.QueryContext(ctx, t.stmts.args(args)...)
}

// QueryRowContext runs query in t through the statement cache. A query
// that does not prepare runs uncached, so that its Row reports the error.
func (t *tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	s, err := t.stmt(ctx, query)
	if err != nil {
		return t.Tx.QueryRowContext(ctx, t.stmts.rewrite(query), t.stmts.args(args)...)
	}
	return s.QueryRowContext(ctx, t.stmts.args(args)...)
}

// ExecContext runs query in t through the statement cache.
func (t *tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	s, err := t.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return s.ExecContext(ctx, t.stmts.args(args)...)
}

// querier runs statements through the statement cache: a transaction
// (*tx), or autocommit for a read-only method made of one statement.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// autocommit runs a statement on the pool without BEGIN and COMMIT, in
// the transaction SQLite gives every statement outside one. It is what a
// read-only method made of a single statement uses (see the package doc):
// one SELECT reads one snapshot, so a transaction around it would only add
// two statements and database/sql's goroutine per transaction.
type autocommit struct{ stmts *stmtCache }

// autocommit returns the querier of a read-only method made of one statement.
func (db *DB) autocommit() autocommit { return autocommit{db.stmts} }

// QueryContext runs query on the pool through the statement cache.
func (a autocommit) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	var (
		rows *sql.Rows
		qerr error
	)
	if err := a.stmts.use(ctx, query, func(s *sql.Stmt) { rows, qerr = s.QueryContext(ctx, a.stmts.args(args)...) }); err != nil {
		return nil, err
	}
	return rows, qerr
}

// QueryRowContext runs query on the pool through the statement cache.
func (a autocommit) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	var row *sql.Row
	if err := a.stmts.use(ctx, query, func(s *sql.Stmt) { row = s.QueryRowContext(ctx, a.stmts.args(args)...) }); err != nil {
		return a.stmts.db.QueryRowContext(ctx, a.stmts.rewrite(query), a.stmts.args(args)...)
	}
	return row
}
