package store

import (
	"context"
	"fmt"
	"strings"

	"builds/app"
)

const userColumns = `id, created, updated, username, email, url, location, bio, admin, password_hash`

func scanUser(r rowScanner) (*app.User, error) {
	var u app.User
	if err := r.Scan(userDest(&u)...); err != nil {
		return nil, err
	}
	return &u, nil
}

// userDest returns the scan destinations of userColumns in u.
func userDest(u *app.User) []any {
	return []any{&u.ID, timeCol{&u.Created}, timeCol{&u.Updated}, &u.Username, &u.Email,
		&u.URL, &u.Location, &u.Bio, &u.Admin, &u.PasswordHash}
}

// CreateUser inserts u, setting its ID, Created and Updated.
func (db *DB) CreateUser(ctx context.Context, u *app.User) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	defer t.Rollback()
	if err := createUser(ctx, t, u); err != nil {
		return fmt.Errorf("create user %s: %w", u.Username, err)
	}
	return t.commit("create user")
}

func createUser(ctx context.Context, t *tx, u *app.User) error {
	id, err := insert(ctx, t, `INSERT INTO users (created, updated, username, email, url, location, bio, admin, password_hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		unix(t.now), unix(t.now), u.Username, u.Email, u.URL, u.Location, u.Bio, flag(u.Admin), u.PasswordHash)
	if err != nil {
		return formatError(err, "user")
	}
	u.ID, u.Created, u.Updated = id, t.now, t.now
	return nil
}

// FindUserByID returns the user with the given id.
func (db *DB) FindUserByID(ctx context.Context, id int64) (*app.User, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find user: %w", err)
	}
	defer t.Rollback()
	u, err := findUserByID(ctx, t, id)
	if err != nil {
		return nil, fmt.Errorf("find user %d: %w", id, err)
	}
	return u, t.commit("find user")
}

func findUserByID(ctx context.Context, t *tx, id int64) (*app.User, error) {
	u, err := scanUser(t.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
	return u, formatError(err, "user")
}

// FindUserByName returns the user with the given username.
func (db *DB) FindUserByName(ctx context.Context, username string) (*app.User, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find user: %w", err)
	}
	defer t.Rollback()
	u, err := scanUser(t.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE username = ?`, username))
	if err != nil {
		return nil, fmt.Errorf("find user %s: %w", username, formatError(err, "user"))
	}
	return u, t.commit("find user")
}

// FindUsers returns every user, oldest first.
func (db *DB) FindUsers(ctx context.Context) ([]*app.User, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find users: %w", err)
	}
	defer t.Rollback()
	users, err := queryList(ctx, t, scanUser, `SELECT `+userColumns+` FROM users ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("find users: %w", formatError(err, "user"))
	}
	return users, t.commit("find users")
}

// UpdateUser applies the non-nil fields of upd and returns the user.
func (db *DB) UpdateUser(ctx context.Context, id int64, upd app.UserUpdate) (*app.User, error) {
	t, err := db.begin(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("update user: %w", err)
	}
	defer t.Rollback()
	u, err := updateUser(ctx, t, id, upd)
	if err != nil {
		return nil, fmt.Errorf("update user %d: %w", id, err)
	}
	return u, t.commit("update user")
}

func updateUser(ctx context.Context, t *tx, id int64, upd app.UserUpdate) (*app.User, error) {
	set, args := []string{"updated = ?"}, []any{unix(t.now)}
	add := func(col string, v any) {
		set = append(set, col+" = ?")
		args = append(args, v)
	}
	if v := upd.Email; v != nil {
		add("email", *v)
	}
	if v := upd.PasswordHash; v != nil {
		add("password_hash", *v)
	}
	if v := upd.Admin; v != nil {
		add("admin", flag(*v))
	}
	if v := upd.URL; v != nil {
		add("url", *v)
	}
	if v := upd.Location; v != nil {
		add("location", *v)
	}
	if v := upd.Bio; v != nil {
		add("bio", *v)
	}
	args = append(args, id)
	u, err := scanUser(t.QueryRowContext(ctx, `UPDATE users SET `+strings.Join(set, ", ")+
		` WHERE id = ? RETURNING `+userColumns, args...))
	return u, formatError(err, "user")
}

// DeleteUser deletes the user; the schema cascades to their jobs (with
// tasks, artifacts and trigger deliveries), job groups, secrets, SSH keys,
// tokens and webhooks. Secrets they shared keep existing without a sharer.
func (db *DB) DeleteUser(ctx context.Context, id int64) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	defer t.Rollback()
	if err := execOne(ctx, t, `DELETE FROM users WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete user %d: %w", id, formatError(err, "user"))
	}
	return t.commit("delete user")
}

const sshKeyColumns = `id, user_id, created, key, fingerprint, comment`

func scanSSHKey(r rowScanner) (*app.SSHKey, error) {
	var k app.SSHKey
	if err := r.Scan(&k.ID, &k.UserID, timeCol{&k.Created}, &k.Key, &k.Fingerprint, &k.Comment); err != nil {
		return nil, err
	}
	return &k, nil
}

// CreateSSHKey inserts k, setting its ID and Created.
func (db *DB) CreateSSHKey(ctx context.Context, k *app.SSHKey) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("create SSH key: %w", err)
	}
	defer t.Rollback()
	id, err := insert(ctx, t, `INSERT INTO ssh_keys (user_id, created, key, fingerprint, comment) VALUES (?, ?, ?, ?, ?)`,
		k.UserID, unix(t.now), k.Key, k.Fingerprint, k.Comment)
	if err != nil {
		return fmt.Errorf("create SSH key %s: %w", k.Fingerprint, formatError(err, "SSH key"))
	}
	k.ID, k.Created = id, t.now
	return t.commit("create SSH key")
}

// FindSSHKeys returns the user's SSH keys, oldest first.
func (db *DB) FindSSHKeys(ctx context.Context, userID int64) ([]*app.SSHKey, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find SSH keys: %w", err)
	}
	defer t.Rollback()
	keys, err := queryList(ctx, t, scanSSHKey, `SELECT `+sshKeyColumns+` FROM ssh_keys WHERE user_id = ? ORDER BY id`, userID)
	if err != nil {
		return nil, fmt.Errorf("find SSH keys of user %d: %w", userID, formatError(err, "SSH key"))
	}
	return keys, t.commit("find SSH keys")
}

// FindUserBySSHFingerprint returns the owner of the key with fingerprint.
func (db *DB) FindUserBySSHFingerprint(ctx context.Context, fingerprint string) (*app.User, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find user by SSH key: %w", err)
	}
	defer t.Rollback()
	u, err := scanUser(t.QueryRowContext(ctx, `SELECT `+prefixColumns("u", userColumns)+`
		FROM users u JOIN ssh_keys k ON k.user_id = u.id WHERE k.fingerprint = ?`, fingerprint))
	if err != nil {
		return nil, fmt.Errorf("find user by SSH key %s: %w", fingerprint, formatError(err, "SSH key"))
	}
	return u, t.commit("find user by SSH key")
}

// DeleteSSHKey deletes the user's key keyID.
func (db *DB) DeleteSSHKey(ctx context.Context, userID, keyID int64) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("delete SSH key: %w", err)
	}
	defer t.Rollback()
	if err := execOne(ctx, t, `DELETE FROM ssh_keys WHERE id = ? AND user_id = ?`, keyID, userID); err != nil {
		return fmt.Errorf("delete SSH key %d: %w", keyID, formatError(err, "SSH key"))
	}
	return t.commit("delete SSH key")
}

// prefixColumns qualifies each column of a column list with alias.
func prefixColumns(alias, cols string) string {
	parts := strings.Split(cols, ", ")
	for i, p := range parts {
		parts[i] = alias + "." + p
	}
	return strings.Join(parts, ", ")
}
