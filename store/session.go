package store

import (
	"context"
	"fmt"

	"builds/app"
)

var _ app.SessionStore = (*DB)(nil)

const sessionColumns = `id, user_id, hash, created, expires`

func scanSession(r rowScanner) (*app.Session, error) {
	var s app.Session
	if err := r.Scan(&s.ID, &s.UserID, &s.Hash, timeCol{&s.Created}, timeCol{&s.Expires}); err != nil {
		return nil, err
	}
	return &s, nil
}

// CreateSession inserts s, setting its ID and Created, and sweeps expired
// sessions in the same transaction.
func (db *DB) CreateSession(ctx context.Context, s *app.Session) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	defer t.Rollback()
	if _, err := t.ExecContext(ctx, `DELETE FROM sessions WHERE expires <= ?`, unix(t.now)); err != nil {
		return fmt.Errorf("create session: sweep expired: %w", err)
	}
	id, err := insert(ctx, t, `INSERT INTO sessions (user_id, hash, created, expires) VALUES (?, ?, ?, ?)`,
		s.UserID, s.Hash, unix(t.now), unix(s.Expires))
	if err != nil {
		return fmt.Errorf("create session: %w", formatError(err, "session"))
	}
	s.ID, s.Created = id, t.now
	return t.commit("create session")
}

// FindSessionByHash returns the session whose token hash is hash.
func (db *DB) FindSessionByHash(ctx context.Context, hash string) (*app.Session, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find session: %w", err)
	}
	defer t.Rollback()
	s, err := scanSession(t.QueryRowContext(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE hash = ?`, hash))
	if err != nil {
		return nil, fmt.Errorf("find session: %w", formatError(err, "session"))
	}
	return s, t.commit("find session")
}

// DeleteSession deletes the session whose token hash is hash.
func (db *DB) DeleteSession(ctx context.Context, hash string) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	defer t.Rollback()
	if err := execOne(ctx, t, `DELETE FROM sessions WHERE hash = ?`, hash); err != nil {
		return fmt.Errorf("delete session: %w", formatError(err, "session"))
	}
	return t.commit("delete session")
}

// DeleteUserSessions deletes the user's sessions except the one with
// keepHash.
func (db *DB) DeleteUserSessions(ctx context.Context, userID int64, keepHash string) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("delete user sessions: %w", err)
	}
	defer t.Rollback()
	if _, err := t.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ? AND hash <> ?`, userID, keepHash); err != nil {
		return fmt.Errorf("delete sessions of user %d: %w", userID, err)
	}
	return t.commit("delete user sessions")
}
