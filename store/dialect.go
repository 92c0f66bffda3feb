package store

import (
	"database/sql"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The store's queries are written once, in SQLite's dialect with `?`
// placeholders. On PostgreSQL each query text is translated once, when
// the statement cache (stmt.go) first prepares it, by toPostgres:
//
//   - `?` becomes `$1`, `$2`, ... in order (never inside quotes);
//   - LIKE becomes ILIKE: SQLite's LIKE ignores ASCII case, and searches
//     must match the same jobs on both;
//   - SQLite's planner hints go: `INDEXED BY name` and the unary `+`
//     before a column that keeps SQLite off an index. PostgreSQL plans
//     from table statistics and has no such syntax.
//
// What cannot be translated that way (a JSON function, an error code)
// branches on DB.postgres where it is used. Both databases run the same
// schema, from a migrations directory each (store.go).

// toPostgres translates a query text from SQLite's dialect, as above.
func toPostgres(query string) string {
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'' || c == '"':
			// copy a quoted string or identifier whole; a doubled quote
			// inside it closes and reopens, which copies the same
			j := strings.IndexByte(query[i+1:], c)
			if j < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+j+2])
			i += j + 1
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		case c == '+' && unaryPosition(b.String()) && i+1 < len(query) && isIdentStart(query[i+1]):
			// a unary plus before a column: SQLite's "do not use an index
			// on this" hint, dropped
		case isIdentStart(c) && (i == 0 || !isIdentChar(query[i-1])):
			j := i + 1
			for j < len(query) && isIdentChar(query[j]) {
				j++
			}
			word := query[i:j]
			switch {
			case strings.EqualFold(word, "LIKE"):
				b.WriteString("ILIKE")
			case strings.EqualFold(word, "INDEXED") && skipIndexedBy(query, &j):
				// `INDEXED BY name` dropped, with the space before it
				s := strings.TrimRight(b.String(), " \t\n")
				b.Reset()
				b.WriteString(s)
			default:
				b.WriteString(word)
			}
			i = j - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// skipIndexedBy reports whether query[*j:] goes on with " BY name" after
// the word INDEXED, and if so moves *j past the name.
func skipIndexedBy(query string, j *int) bool {
	rest := query[*j:]
	trimmed := strings.TrimLeft(rest, " \t\n")
	if len(trimmed) < 3 || !strings.EqualFold(trimmed[:2], "BY") || isIdentChar(trimmed[2]) {
		return false
	}
	name := strings.TrimLeft(trimmed[2:], " \t\n")
	k := 0
	for k < len(name) && isIdentChar(name[k]) {
		k++
	}
	if k == 0 {
		return false
	}
	*j += len(rest) - len(name) + k
	return true
}

// unaryPosition reports whether a '+' after out (the query so far) is a
// unary plus: it follows an opening parenthesis, a comma, or one of the
// words after which an expression starts.
func unaryPosition(out string) bool {
	s := strings.TrimRight(out, " \t\n")
	if s == "" {
		return false
	}
	if last := s[len(s)-1]; last == '(' || last == ',' {
		return true
	}
	k := len(s)
	for k > 0 && isIdentChar(s[k-1]) {
		k--
	}
	switch strings.ToUpper(s[k:]) {
	case "AND", "OR", "NOT", "WHERE", "ON", "BY", "SELECT", "WHEN", "THEN", "ELSE":
		return true
	}
	return false
}

func isIdentStart(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || '0' <= c && c <= '9' }

// toPostgresText makes the text arguments of a statement storable in
// PostgreSQL, whose text holds valid UTF-8 without NUL bytes where SQLite
// stores any bytes: invalid sequences and NULs become U+FFFD. Text from
// outside (a web form's note, a remote server's reply to a webhook, a
// database SQLite wrote) then lands, as on SQLite, instead of failing the
// whole write. args is changed in place only when one needs it.
func toPostgresText(args []any) []any {
	var out []any
	for i, a := range args {
		var s string
		switch v := a.(type) {
		case string:
			s = v
		case *string:
			if v == nil {
				continue
			}
			s = *v
		case sql.NullString:
			if !v.Valid {
				continue
			}
			s = v.String
		default:
			continue
		}
		if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
			continue
		}
		if out == nil {
			out = slices.Clone(args)
		}
		fixed := strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
		switch a.(type) {
		case sql.NullString:
			out[i] = sql.NullString{String: fixed, Valid: true}
		default:
			out[i] = fixed
		}
	}
	if out == nil {
		return args
	}
	return out
}
