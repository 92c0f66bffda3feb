package store

import (
	"context"
	"fmt"

	"builds/app"
)

const secretColumns = `id, user_id, created, updated, uuid, name, from_user_id, type, data, path, mode`

func scanSecret(r rowScanner) (*app.Secret, error) {
	var s app.Secret
	err := r.Scan(&s.ID, &s.UserID, timeCol{&s.Created}, timeCol{&s.Updated}, &s.UUID, nullCol[string]{&s.Name},
		nullCol[int64]{&s.FromUserID}, &s.Type, &s.Data, nullCol[string]{&s.Path}, nullCol[int]{&s.Mode})
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// CreateSecret inserts s as given (the service encrypts Data first),
// setting its ID and times.
func (db *DB) CreateSecret(ctx context.Context, s *app.Secret) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("create secret: %w", err)
	}
	defer t.Rollback()
	data := s.Data
	if data == nil {
		data = []byte{} // the column is NOT NULL; an empty secret is still a value
	}
	id, err := insert(ctx, t, `INSERT INTO secrets (user_id, created, updated, uuid, name, from_user_id, type, data, path, mode)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.UserID, unix(t.now), unix(t.now), s.UUID, nullable(s.Name), nullable(s.FromUserID), s.Type, data,
		nullable(s.Path), nullable(s.Mode))
	if err != nil {
		return fmt.Errorf("create secret %s: %w", s.UUID, formatError(err, "secret"))
	}
	s.ID, s.Created, s.Updated = id, t.now, t.now
	return t.commit("create secret")
}

// FindSecrets returns a keyset page of the user's secrets, newest first.
func (db *DB) FindSecrets(ctx context.Context, userID int64, p app.Page) ([]*app.Secret, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find secrets: %w", err)
	}
	defer t.Rollback()
	cond, args := pageClause("user_id = ?", []any{userID}, p)
	list, err := queryList(ctx, t, scanSecret, `SELECT `+secretColumns+` FROM secrets WHERE `+cond, args...)
	if err != nil {
		return nil, fmt.Errorf("find secrets of user %d: %w", userID, formatError(err, "secret"))
	}
	return list, t.commit("find secrets")
}

// FindSecretByUUID returns the user's secret with the given UUID.
func (db *DB) FindSecretByUUID(ctx context.Context, userID int64, uuid string) (*app.Secret, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find secret: %w", err)
	}
	defer t.Rollback()
	s, err := scanSecret(t.QueryRowContext(ctx, `SELECT `+secretColumns+` FROM secrets WHERE user_id = ? AND uuid = ?`,
		userID, uuid))
	if err != nil {
		return nil, fmt.Errorf("find secret %s: %w", uuid, formatError(err, "secret"))
	}
	return s, t.commit("find secret")
}

// FindSecretByRef returns the user's secret whose UUID or name is ref. A
// UUID match wins over a name match.
func (db *DB) FindSecretByRef(ctx context.Context, userID int64, ref string) (*app.Secret, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find secret: %w", err)
	}
	defer t.Rollback()
	s, err := scanSecret(t.QueryRowContext(ctx, `SELECT `+secretColumns+` FROM secrets
		WHERE user_id = ? AND (uuid = ? OR name = ?) ORDER BY uuid = ? DESC LIMIT 1`, userID, ref, ref, ref))
	if err != nil {
		return nil, fmt.Errorf("find secret %s: %w", ref, formatError(err, "secret"))
	}
	return s, t.commit("find secret")
}

// DeleteSecret deletes the user's secret with the given UUID. Copies shared
// with other users are separate rows and stay.
func (db *DB) DeleteSecret(ctx context.Context, userID int64, uuid string) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("delete secret: %w", err)
	}
	defer t.Rollback()
	if err := execOne(ctx, t, `DELETE FROM secrets WHERE user_id = ? AND uuid = ?`, userID, uuid); err != nil {
		return fmt.Errorf("delete secret %s: %w", uuid, formatError(err, "secret"))
	}
	return t.commit("delete secret")
}

// pageClause appends keyset paging to a WHERE condition: rows with id <=
// BeforeID, newest first, at most Limit (0 = all).
func pageClause(cond string, args []any, p app.Page) (string, []any) {
	if p.BeforeID != nil {
		cond += " AND id <= ?"
		args = append(args, *p.BeforeID)
	}
	cond += " ORDER BY id DESC"
	if p.Limit > 0 {
		cond += " LIMIT ?"
		args = append(args, p.Limit)
	}
	return cond, args
}
