package web

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/graphql-go/graphql"
)

// JSON output: runQuery's leaves, written straight into the response
// buffer (gql_exec.go), and the /query response around them.

// appendBuiltinLeaf appends the commonest leaves, strings and small
// integers of the built-in scalars, without Serialize: graphql-go formats
// every string through fmt.Sprintf("%v") and boxes every integer, which
// gives them back unchanged at a cost per field. It reports false for
// anything else, which goes through Serialize.
func appendBuiltinLeaf(b []byte, t *graphql.Scalar, v any) ([]byte, bool) {
	switch t {
	case graphql.String, graphql.ID:
		if s, ok := v.(string); ok {
			return appendJSONString(b, s), true
		}
	case graphql.Int:
		var n int64
		switch v := v.(type) {
		case int:
			n = int64(v)
		case int64:
			n = v
		default:
			return b, false
		}
		if n >= math.MinInt32 && n <= math.MaxInt32 { // else Serialize makes it null
			return strconv.AppendInt(b, n, 10), true
		}
	}
	return b, false
}

// appendJSONValue appends a serialized leaf value.
func appendJSONValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		return appendJSONString(b, v)
	case bool:
		return strconv.AppendBool(b, v)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case int32:
		return strconv.AppendInt(b, int64(v), 10)
	}
	j, err := json.Marshal(v)
	if err != nil {
		return append(b, "null"...)
	}
	return append(b, j...)
}

// appendJSONString appends s as a JSON string escaped as encoding/json
// escapes it (HTML-safe, invalid UTF-8 replaced).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			if r == utf8.RuneError {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// writeGraphQLResponse sends resp, encoded into buf, as one body of known
// length: a page of results is larger than net/http's buffer and would
// otherwise go out in chunks.
func writeGraphQLResponse(w http.ResponseWriter, status int, resp *gqlResponse, buf []byte) {
	body, err := resp.appendJSON(buf)
	if err != nil {
		body = []byte(`{"data":null,"errors":[{"message":"internal error","extensions":{"code":"INTERNAL"}}]}` + "\n")
		status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// appendJSON appends resp as encoding/json would encode it, taking data
// that is already JSON (runQuery's) as it is.
func (r *gqlResponse) appendJSON(b []byte) ([]byte, error) {
	var data []byte
	switch d := r.Data.(type) {
	case nil:
		data = []byte("null")
	case json.RawMessage:
		data = d
	default:
		var err error
		if data, err = json.Marshal(d); err != nil {
			return nil, fmt.Errorf("encode graphql data: %w", err)
		}
	}
	b = append(append(b, `{"data":`...), data...)
	if len(r.Errors) > 0 {
		errs, err := json.Marshal(r.Errors)
		if err != nil {
			return nil, fmt.Errorf("encode graphql errors: %w", err)
		}
		b = append(append(b, `,"errors":`...), errs...)
	}
	return append(b, '}', '\n'), nil
}
