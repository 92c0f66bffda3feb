package store

import (
	"context"
	"fmt"

	"builds/app"
)

const tokenColumns = `id, user_id, created, expires, last_used, hash, grants, comment`

func scanToken(r rowScanner) (*app.Token, error) {
	var k app.Token
	if err := r.Scan(tokenDest(&k)...); err != nil {
		return nil, err
	}
	return &k, nil
}

// tokenDest returns the scan destinations of tokenColumns in k.
func tokenDest(k *app.Token) []any {
	return []any{&k.ID, &k.UserID, timeCol{&k.Created}, nullTimeCol{&k.Expires}, nullTimeCol{&k.LastUsed},
		&k.Hash, &k.Grants, &k.Comment}
}

// CreateToken inserts k, setting its ID and Created.
func (db *DB) CreateToken(ctx context.Context, k *app.Token) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("create token: %w", err)
	}
	defer t.Rollback()
	id, err := insert(ctx, t, `INSERT INTO tokens (user_id, created, expires, last_used, hash, grants, comment)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		k.UserID, unix(t.now), unixPtr(k.Expires), unixPtr(k.LastUsed), k.Hash, k.Grants, k.Comment)
	if err != nil {
		return fmt.Errorf("create token: %w", formatError(err, "token"))
	}
	k.ID, k.Created = id, t.now
	return t.commit("create token")
}

// FindTokenByHash returns the token whose hash is hash and its user. It
// authenticates every API request, so it is one statement, run without a
// transaction (see the package doc).
func (db *DB) FindTokenByHash(ctx context.Context, hash string) (*app.Token, *app.User, error) {
	var (
		k app.Token
		u app.User
	)
	err := db.autocommit().QueryRowContext(ctx, `SELECT `+prefixColumns("t", tokenColumns)+`, `+prefixColumns("u", userColumns)+`
		FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?`, hash).Scan(append(tokenDest(&k), userDest(&u)...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("find token by hash: %w", formatError(err, "token"))
	}
	return &k, &u, nil
}

// FindTokenByID returns the token with the given id.
func (db *DB) FindTokenByID(ctx context.Context, id int64) (*app.Token, error) {
	return db.findToken(ctx, "id", id)
}

// findToken finds one token by a unique column (a constant, never input).
func (db *DB) findToken(ctx context.Context, col string, v any) (*app.Token, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find token: %w", err)
	}
	defer t.Rollback()
	k, err := scanToken(t.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE `+col+` = ?`, v))
	if err != nil {
		return nil, fmt.Errorf("find token by %s: %w", col, formatError(err, "token"))
	}
	return k, t.commit("find token")
}

// FindTokens returns the user's tokens, oldest first.
func (db *DB) FindTokens(ctx context.Context, userID int64) ([]*app.Token, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find tokens: %w", err)
	}
	defer t.Rollback()
	list, err := queryList(ctx, t, scanToken, `SELECT `+tokenColumns+` FROM tokens WHERE user_id = ? ORDER BY id`, userID)
	if err != nil {
		return nil, fmt.Errorf("find tokens of user %d: %w", userID, formatError(err, "token"))
	}
	return list, t.commit("find tokens")
}

// TouchToken sets the token's LastUsed to the transaction's time.
func (db *DB) TouchToken(ctx context.Context, id int64) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("touch token: %w", err)
	}
	defer t.Rollback()
	if err := execOne(ctx, t, `UPDATE tokens SET last_used = ? WHERE id = ?`, unix(t.now), id); err != nil {
		return fmt.Errorf("touch token %d: %w", id, formatError(err, "token"))
	}
	return t.commit("touch token")
}

// DeleteToken deletes the token with the given id.
func (db *DB) DeleteToken(ctx context.Context, id int64) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("delete token: %w", err)
	}
	defer t.Rollback()
	if err := execOne(ctx, t, `DELETE FROM tokens WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete token %d: %w", id, formatError(err, "token"))
	}
	return t.commit("delete token")
}
