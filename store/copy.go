package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// TableCount is one table of a CopyDatabase: the rows read from the
// source's snapshot and the rows the destination holds afterwards.
type TableCount struct {
	Table        string
	Source, Dest int64
}

// copyParams bounds the placeholders of one INSERT of a copy: far under
// both SQLite's (32766) and PostgreSQL's (65535) limits, and enough rows
// per statement that the round trips do not dominate.
const copyParams = 2000

// CopyDatabase copies every row of src into dst, between SQLite and
// PostgreSQL in either direction (or between two of a kind). Both must be
// migrated by this build (the same migrations applied), and dst must be
// empty: no rows in any table but migrations. src is read in one
// consistent snapshot, so it may be in use; dst is written in one
// transaction, so a failed copy leaves it empty. Tables are copied
// parents first (by their foreign keys), rows in primary key order, and
// each id sequence is carried over, so dst never hands out an id that src
// has used. The counts are verified after the commit: each table of dst
// must hold as many rows as src's snapshot did.
func CopyDatabase(ctx context.Context, src, dst *DB) ([]TableCount, error) {
	st, err := src.db.BeginTx(ctx, src.snapshotOptions())
	if err != nil {
		return nil, fmt.Errorf("copy database: read source: %w", err)
	}
	defer st.Rollback()
	dt, err := dst.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("copy database: write destination: %w", err)
	}
	defer dt.Rollback()

	if err := sameMigrations(ctx, src, st, dst, dt); err != nil {
		return nil, fmt.Errorf("copy database: %w", err)
	}
	order, err := src.tableOrder(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("copy database: source: %w", err)
	}
	dtables, err := dst.tables(ctx, dt)
	if err != nil {
		return nil, fmt.Errorf("copy database: destination: %w", err)
	}
	if a, b := slices.Sorted(slices.Values(order)), slices.Sorted(slices.Values(dtables)); !slices.Equal(a, b) {
		return nil, fmt.Errorf("copy database: the databases have different tables (source %s; destination %s)", strings.Join(a, ", "), strings.Join(b, ", "))
	}
	if dst.postgres {
		// the rows go in parents first; CHECKs and NOT NULLs hold as they
		// held in src
	} else if _, err := dt.ExecContext(ctx, `PRAGMA defer_foreign_keys = ON`); err != nil {
		return nil, fmt.Errorf("copy database: %w", err)
	}
	var counts []TableCount
	for _, table := range order {
		if table == "migrations" {
			continue
		}
		var n int64
		if err := dt.QueryRowContext(ctx, `SELECT count(*) FROM `+quoteIdent(table)).Scan(&n); err != nil {
			return nil, fmt.Errorf("copy database: destination table %s: %w", table, err)
		}
		if n != 0 {
			return nil, fmt.Errorf("copy database: the destination is not empty: table %s has %d rows (copy into a new, empty database)", table, n)
		}
		read, err := copyTable(ctx, src, st, dst, dt, table)
		if err != nil {
			return nil, fmt.Errorf("copy database: table %s: %w", table, err)
		}
		if err := copySequence(ctx, src, st, dst, dt, table); err != nil {
			return nil, fmt.Errorf("copy database: table %s: id sequence: %w", table, err)
		}
		counts = append(counts, TableCount{Table: table, Source: read})
	}
	if err := dt.Commit(); err != nil {
		return nil, fmt.Errorf("copy database: commit: %w", err)
	}
	for i, c := range counts {
		if err := dst.db.QueryRowContext(ctx, `SELECT count(*) FROM `+quoteIdent(c.Table)).Scan(&counts[i].Dest); err != nil {
			return counts, fmt.Errorf("copy database: verify table %s: %w", c.Table, err)
		}
	}
	var bad []string
	for _, c := range counts {
		if c.Dest != c.Source {
			bad = append(bad, fmt.Sprintf("%s: %d rows read, %d in the destination", c.Table, c.Source, c.Dest))
		}
	}
	if bad != nil {
		return counts, fmt.Errorf("copy database: row counts differ: %s", strings.Join(bad, "; "))
	}
	return counts, nil
}

// snapshotOptions are those of a read transaction that sees one
// snapshot throughout: a SQLite read transaction does (WAL), a
// PostgreSQL one must be REPEATABLE READ.
func (db *DB) snapshotOptions() *sql.TxOptions {
	if db.postgres {
		return &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	}
	return &sql.TxOptions{ReadOnly: true}
}

// sameMigrations checks that src and dst have the same schema.
func sameMigrations(ctx context.Context, src *DB, st *sql.Tx, dst *DB, dt *sql.Tx) error {
	list := func(t *sql.Tx) ([]string, error) {
		rows, err := t.QueryContext(ctx, `SELECT name FROM migrations ORDER BY name`)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var names []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				return nil, err
			}
			names = append(names, n)
		}
		return names, rows.Err()
	}
	a, err := list(st)
	if err != nil {
		return fmt.Errorf("source migrations: %w", err)
	}
	b, err := list(dt)
	if err != nil {
		return fmt.Errorf("destination migrations: %w", err)
	}
	if !slices.Equal(a, b) {
		return fmt.Errorf("the databases are at different schema versions (source %s, destination %s): open both with the same builds first", last(a), last(b))
	}
	return nil
}

func last(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return s[len(s)-1]
}

// tables lists the database's own tables.
func (db *DB) tables(ctx context.Context, t *sql.Tx) ([]string, error) {
	q := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY name`
	if db.postgres {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`
	}
	return queryStrings(ctx, t, q)
}

// tableOrder lists the tables so that each comes after those its foreign
// keys refer to.
func (db *DB) tableOrder(ctx context.Context, t *sql.Tx) ([]string, error) {
	names, err := db.tables(ctx, t)
	if err != nil {
		return nil, err
	}
	parents := map[string][]string{}
	for _, n := range names {
		var refs []string
		if db.postgres {
			refs, err = queryStrings(ctx, t, `SELECT DISTINCT confrelid::regclass::text FROM pg_constraint
				WHERE contype = 'f' AND conrelid = $1::regclass`, quoteIdent(n))
		} else {
			refs, err = queryStrings(ctx, t, `SELECT DISTINCT "table" FROM pragma_foreign_key_list(?)`, n)
		}
		if err != nil {
			return nil, fmt.Errorf("foreign keys of %s: %w", n, err)
		}
		for _, r := range refs {
			if r = strings.Trim(r, `"`); r != n { // a table referring to itself is fine in id order
				parents[n] = append(parents[n], r)
			}
		}
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string) error
	visit = func(n string) error {
		switch state[n] {
		case 1:
			return fmt.Errorf("tables %s refer to each other in a cycle", n)
		case 2:
			return nil
		}
		state[n] = 1
		for _, p := range parents[n] {
			if err := visit(p); err != nil {
				return err
			}
		}
		state[n] = 2
		order = append(order, n)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// columns lists a table's columns in their order.
func (db *DB) columns(ctx context.Context, t *sql.Tx, table string) ([]string, error) {
	if db.postgres {
		return queryStrings(ctx, t, `SELECT column_name FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`, table)
	}
	return queryStrings(ctx, t, `SELECT name FROM pragma_table_info(?) ORDER BY cid`, table)
}

// primaryKey lists a table's primary key columns, in key order.
func (db *DB) primaryKey(ctx context.Context, t *sql.Tx, table string) ([]string, error) {
	if db.postgres {
		return queryStrings(ctx, t, `SELECT a.attname FROM pg_index i
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
			WHERE i.indrelid = $1::regclass AND i.indisprimary
			ORDER BY array_position(i.indkey, a.attnum)`, quoteIdent(table))
	}
	return queryStrings(ctx, t, `SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk`, table)
}

// copyTable copies the rows of one table and returns how many it read.
func copyTable(ctx context.Context, src *DB, st *sql.Tx, dst *DB, dt *sql.Tx, table string) (int64, error) {
	cols, err := src.columns(ctx, st, table)
	if err != nil {
		return 0, err
	}
	dcols, err := dst.columns(ctx, dt, table)
	if err != nil {
		return 0, err
	}
	if a, b := slices.Sorted(slices.Values(cols)), slices.Sorted(slices.Values(dcols)); !slices.Equal(a, b) {
		return 0, fmt.Errorf("different columns (source %s; destination %s)", strings.Join(a, ", "), strings.Join(b, ", "))
	}
	key, err := src.primaryKey(ctx, st, table)
	if err != nil {
		return 0, err
	}
	if len(key) == 0 {
		key = cols
	}
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = quoteIdent(c)
	}
	qkey := make([]string, len(key))
	for i, c := range key {
		qkey[i] = quoteIdent(c)
	}
	rows, err := st.QueryContext(ctx, `SELECT `+strings.Join(quoted, ", ")+` FROM `+quoteIdent(table)+` ORDER BY `+strings.Join(qkey, ", "))
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	perBatch := max(1, copyParams/len(cols))
	insert := func(batch [][]any) error {
		var b strings.Builder
		b.WriteString(`INSERT INTO ` + quoteIdent(table) + ` (` + strings.Join(quoted, ", ") + `) VALUES `)
		args := make([]any, 0, len(batch)*len(cols))
		for i, row := range batch {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('(')
			for j := range row {
				if j > 0 {
					b.WriteString(", ")
				}
				args = append(args, row[j])
				if dst.postgres {
					b.WriteString("$" + strconv.Itoa(len(args)))
				} else {
					b.WriteByte('?')
				}
			}
			b.WriteByte(')')
		}
		if dst.postgres {
			args = toPostgresText(args)
		}
		_, err := dt.ExecContext(ctx, b.String(), args...)
		return err
	}
	var n int64
	batch := make([][]any, 0, perBatch)
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return n, err
		}
		batch = append(batch, vals)
		n++
		if len(batch) == perBatch {
			if err := insert(batch); err != nil {
				return n, formatError(err, strings.TrimSuffix(table, "s"))
			}
			batch = batch[:0]
		}
	}
	if err := rows.Err(); err != nil {
		return n, err
	}
	if len(batch) > 0 {
		if err := insert(batch); err != nil {
			return n, formatError(err, strings.TrimSuffix(table, "s"))
		}
	}
	return n, nil
}

// copySequence carries a table's id sequence over: the highest id src
// has handed out, which may be above the highest id it still holds.
func copySequence(ctx context.Context, src *DB, st *sql.Tx, dst *DB, dt *sql.Tx, table string) error {
	used, ok, err := src.sequenceValue(ctx, st, table)
	if err != nil || !ok || used <= 0 {
		return err
	}
	if dst.postgres {
		var seq sql.NullString
		if err := dt.QueryRowContext(ctx, `SELECT pg_get_serial_sequence($1, 'id')`, quoteIdent(table)).Scan(&seq); err != nil {
			return err
		}
		if !seq.Valid {
			return nil
		}
		_, err := dt.ExecContext(ctx, `SELECT setval($1, $2, true)`, seq.String, used)
		return err
	}
	var auto int
	if err := dt.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ? AND sql LIKE '%AUTOINCREMENT%'`, table).Scan(&auto); err != nil {
		return err
	}
	if auto == 0 {
		return nil
	}
	res, err := dt.ExecContext(ctx, `UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?`, used, table)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		_, err = dt.ExecContext(ctx, `INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)`, table, used)
	}
	return err
}

// sequenceValue returns the highest id the table's sequence has handed
// out; ok is false for a table without one.
func (db *DB) sequenceValue(ctx context.Context, t *sql.Tx, table string) (v int64, ok bool, err error) {
	if db.postgres {
		// pg_get_serial_sequence fails (and aborts the transaction) on a
		// table without an id column, so that is asked first
		var seq sql.NullString
		if err := t.QueryRowContext(ctx, `SELECT CASE WHEN EXISTS (SELECT 1 FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'id')
			THEN pg_get_serial_sequence($2, 'id') END`, table, quoteIdent(table)).Scan(&seq); err != nil {
			return 0, false, err
		}
		if !seq.Valid {
			return 0, false, nil
		}
		var called bool
		if err := t.QueryRowContext(ctx, `SELECT last_value, is_called FROM `+seq.String).Scan(&v, &called); err != nil {
			return 0, false, err
		}
		if !called {
			v--
		}
		return v, true, nil
	}
	var has int
	if err := t.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'`).Scan(&has); err != nil || has == 0 {
		return 0, false, err
	}
	err = t.QueryRowContext(ctx, `SELECT seq FROM sqlite_sequence WHERE name = ?`, table).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return v, err == nil, err
}

// queryStrings runs a query of one text column.
func queryStrings(ctx context.Context, t *sql.Tx, q string, args ...any) ([]string, error) {
	rows, err := t.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// quoteIdent quotes a table or column name for either database.
func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// backupPostgres writes a consistent copy of a PostgreSQL database to
// path as a SQLite database file of the same schema, which `builds
// restore` reads like any SQLite backup. The file is 0600 and one file
// (no WAL left beside it).
func (db *DB) backupPostgres(ctx context.Context, path string) (err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("backup database: %w", err)
	}
	f.Close()
	defer func() {
		if err != nil {
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				os.Remove(p)
			}
		}
	}()
	out, err := openSQLite(ctx, path)
	if err != nil {
		return fmt.Errorf("backup database: %w", err)
	}
	if _, err := CopyDatabase(ctx, db, out); err != nil {
		out.Close()
		return fmt.Errorf("backup database: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("backup database: %w", err)
	}
	// back to a rollback journal, as VACUUM INTO writes: the file is then
	// complete on its own
	c, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return fmt.Errorf("backup database: %w", err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, `PRAGMA journal_mode = DELETE`); err != nil {
		return fmt.Errorf("backup database: %w", err)
	}
	return c.Close()
}
