package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// rowScanner is satisfied by *sql.Row and *sql.Rows.
type rowScanner interface {
	Scan(dest ...any) error
}

// unix converts t to the stored form: unix seconds.
func unix(t time.Time) int64 { return t.Unix() }

// unixPtr converts an optional time to unix seconds or NULL.
func unixPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.Unix()
}

// timeCol scans a NOT NULL unix-seconds column into a UTC time.
type timeCol struct{ p *time.Time }

// Scan implements sql.Scanner.
func (c timeCol) Scan(v any) error {
	n, ok := v.(int64)
	if !ok {
		return fmt.Errorf("scan time: want unix seconds, got %T", v)
	}
	*c.p = time.Unix(n, 0).UTC()
	return nil
}

// nullTimeCol scans a nullable unix-seconds column into a *time.Time.
type nullTimeCol struct{ p **time.Time }

// Scan implements sql.Scanner.
func (c nullTimeCol) Scan(v any) error {
	if v == nil {
		*c.p = nil
		return nil
	}
	var t time.Time
	if err := (timeCol{&t}).Scan(v); err != nil {
		return err
	}
	*c.p = &t
	return nil
}

// nullCol scans a nullable column into a *T (nil for NULL).
type nullCol[T any] struct{ p **T }

// Scan implements sql.Scanner.
func (c nullCol[T]) Scan(v any) error {
	var n sql.Null[T]
	if err := n.Scan(v); err != nil {
		return err
	}
	if !n.Valid {
		*c.p = nil
		return nil
	}
	*c.p = &n.V
	return nil
}

// nullable returns *p, or nil (SQL NULL) when p is nil.
func nullable[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// placeholders returns "?, ?, ?" for n arguments.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// anySlice converts a slice of values into query arguments.
func anySlice[T any](vs []T) []any {
	args := make([]any, len(vs))
	for i, v := range vs {
		args[i] = v
	}
	return args
}

// escapeLike escapes LIKE wildcards in s for use with ESCAPE '\'.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// queryList runs query in q and scans every row with scan. It returns an
// empty, non-nil slice when there are no rows.
func queryList[T any](ctx context.Context, q querier, scan func(rowScanner) (*T, error), query string, args ...any) ([]*T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	list := []*T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return list, nil
}

// queryBlock is queryList for pages of rows: it scans them into one block
// of T rather than allocating each row, since a page of 25 jobs with their
// tasks is read on every API list request. bind returns the scan
// destinations of one row, built once and reused for every row. sizeHint
// is the number of rows expected (0 if unknown). The rows share the
// block's memory for as long as any of them is kept.
func queryBlock[T any](ctx context.Context, q querier, bind func(*T) []any, sizeHint int, query string, args ...any) ([]*T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var row, zero T
	dest := bind(&row)
	block := make([]T, 0, sizeHint)
	for rows.Next() {
		row = zero
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		block = append(block, row)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	list := make([]*T, len(block))
	for i := range block {
		list[i] = &block[i]
	}
	return list, nil
}

// execOne runs a statement that must change exactly one row; it returns
// sql.ErrNoRows when it changed none.
func execOne(ctx context.Context, t *tx, query string, args ...any) error {
	res, err := t.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	} else if n == 0 {
		return sql.ErrNoRows
	}
	return nil
}

// insert runs an INSERT and returns the new row's id, which it reads
// with RETURNING: PostgreSQL has no last insert id.
func insert(ctx context.Context, t *tx, query string, args ...any) (int64, error) {
	var id int64
	if err := t.QueryRowContext(ctx, query+` RETURNING id`, args...).Scan(&id); err != nil {
		return 0, err
	}
	return id, nil
}

// flag converts a boolean to the stored form, INTEGER 0 or 1, on both
// databases (PostgreSQL does not take a Go bool for an integer column).
func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}
