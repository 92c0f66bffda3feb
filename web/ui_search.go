package web

import (
	"strings"
	"unicode"

	"builds/app"
)

// searchPlaceholder is shown in every job search box.
const searchPlaceholder = "Search jobs... status:failed image:debian tags:release"

// parseSearch reads a job search (behaviour.md §5): whitespace-separated
// terms, double quotes group words, "key:value" filters by status, image
// or tags, a leading "!" negates, and bare words match the note.
func parseSearch(q string) ([]app.SearchTerm, error) {
	var terms []app.SearchTerm
	for _, tok := range splitSearch(q) {
		t := app.SearchTerm{}
		if strings.HasPrefix(tok.text, "!") && !tok.quotedAll {
			t.Negate = true
			tok.text = tok.text[1:]
		}
		if key, value, ok := strings.Cut(tok.text, ":"); ok && !tok.quotedKey {
			switch key {
			case "status":
				st := strings.ToLower(value)
				if !validJobStatus(st) {
					return nil, app.Errorf(app.EINVALID, "Invalid status: '%s'", value)
				}
				value = st
			case "image", "tags":
			default:
				return nil, app.Errorf(app.EINVALID, "Invalid search key '%s'", key)
			}
			t.Key, t.Value = key, value
		} else {
			t.Value = tok.text
		}
		if t.Key == "" && t.Value == "" {
			continue
		}
		terms = append(terms, t)
	}
	return terms, nil
}

func validJobStatus(s string) bool {
	for _, st := range app.JobStatuses {
		if string(st) == s {
			return true
		}
	}
	return false
}

type searchToken struct {
	text string
	// quotedAll: the whole token was quoted ("!x" is then literal);
	// quotedKey: a quote began before any ':' (so it is not a key).
	quotedAll, quotedKey bool
}

// splitSearch splits on unquoted whitespace, dropping the quotes.
func splitSearch(q string) []searchToken {
	var (
		out    []searchToken
		cur    strings.Builder
		tok    searchToken
		quoted bool
		seen   bool
	)
	flush := func() {
		if seen {
			tok.text = cur.String()
			out = append(out, tok)
		}
		cur.Reset()
		tok, seen = searchToken{}, false
	}
	for _, r := range q {
		switch {
		case r == '"':
			if !seen {
				tok.quotedAll = true
			}
			if !strings.Contains(cur.String(), ":") {
				tok.quotedKey = true
			}
			quoted, seen = !quoted, true
		case unicode.IsSpace(r) && !quoted:
			flush()
		default:
			cur.WriteRune(r)
			seen = true
		}
	}
	flush()
	return out
}
