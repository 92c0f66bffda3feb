package app

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
)

// PageSize is the number of results per API page, as on builds.sr.ht.
const PageSize = 25

// Cursors are opaque to clients: "<kind>.<next id>.<mac>", base64url. The
// MAC binds the id to the list kind, so a forged cursor or one taken from
// another list is rejected instead of leaking rows.
type cursorCodec struct{ key []byte }

func (c cursorCodec) mac(kind string, id int64) string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte("cursor\x00" + kind + "\x00" + strconv.FormatInt(id, 10)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// Encode returns the cursor for the next page starting at id.
func (c cursorCodec) Encode(kind string, id int64) string {
	raw := kind + "." + strconv.FormatInt(id, 10) + "." + c.mac(kind, id)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// Decode returns the id a cursor of kind points at; nil cursor means the
// first page.
func (c cursorCodec) Decode(kind string, cursor *string) (*int64, error) {
	if cursor == nil || *cursor == "" {
		return nil, nil
	}
	invalid := Errorf(EINVALID, "Invalid cursor")
	raw, err := base64.RawURLEncoding.DecodeString(*cursor)
	if err != nil {
		return nil, invalid
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 3 || parts[0] != kind {
		return nil, invalid
	}
	id, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || id <= 0 {
		return nil, invalid
	}
	if !hmac.Equal([]byte(parts[2]), []byte(c.mac(kind, id))) {
		return nil, invalid
	}
	return &id, nil
}

// paginate fetches one keyset page of a list, newest first. fetch returns
// rows with id <= before (nil = from the newest), at most limit rows; one
// row more than the page is asked for, and its id becomes the next
// cursor ("" at the end).
func paginate[T any](c cursorCodec, kind string, cursor *string, size int, id func(T) int64, fetch func(before *int64, limit int) ([]T, error)) ([]T, string, error) {
	before, err := c.Decode(kind, cursor)
	if err != nil {
		return nil, "", err
	}
	rows, err := fetch(before, size+1)
	if err != nil {
		return nil, "", err
	}
	if len(rows) > size {
		return rows[:size], c.Encode(kind, id(rows[size])), nil
	}
	return rows, "", nil
}
