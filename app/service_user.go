package app

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Password hashing: PBKDF2-SHA256 from the standard library, stored as
// "pbkdf2-sha256$<iterations>$<salt>$<hash>".
const passwordIterations = 200_000

// MinPasswordLength is the shortest password accepted.
const MinPasswordLength = 8

func hashPassword(pw string) (string, error) {
	if len(pw) < MinPasswordLength {
		return "", Errorf(EINVALID, "password must be at least %d characters", MinPasswordLength)
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	key, err := pbkdf2.Key(sha256.New, pw, salt, passwordIterations, 32)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("pbkdf2-sha256$%d$%s$%s", passwordIterations, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

func checkPassword(stored, pw string) bool {
	parts := strings.Split(stored, "$")
	if len(parts) != 4 || parts[0] != "pbkdf2-sha256" {
		return false
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 {
		return false
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[2])
	want, err2 := enc.DecodeString(parts[3])
	if err1 != nil || err2 != nil {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, pw, salt, iter, len(want))
	return err == nil && subtle.ConstantTimeCompare(got, want) == 1
}

// CreateUser adds an account (command line / admin). password may be "".
func (s *Service) CreateUser(ctx context.Context, username, email string, admin bool, password string) (*User, error) {
	if err := ValidateUsername(username); err != nil {
		return nil, err
	}
	if err := ValidateEmail(email); err != nil {
		return nil, err
	}
	u := &User{Username: username, Email: email, Admin: admin}
	if password != "" {
		h, err := hashPassword(password)
		if err != nil {
			return nil, err
		}
		u.PasswordHash = h
	}
	if err := s.Store.CreateUser(ctx, u); err != nil {
		if ErrorCode(err) == ECONFLICT {
			return nil, Errorf(ECONFLICT, "user %q already exists", username)
		}
		return nil, fmt.Errorf("create user: %w", err)
	}
	return u, nil
}

// SetPassword changes a user's password.
func (s *Service) SetPassword(ctx context.Context, userID int64, password string) error {
	h, err := hashPassword(password)
	if err != nil {
		return err
	}
	_, err = s.Store.UpdateUser(ctx, userID, UserUpdate{PasswordHash: &h})
	return err
}

// Login checks a username and password; the error never says which was wrong.
func (s *Service) Login(ctx context.Context, username, password string) (*User, error) {
	bad := Errorf(EUNAUTHORIZED, "invalid username or password")
	u, err := s.Store.FindUserByName(ctx, username)
	if err != nil {
		checkPassword("pbkdf2-sha256$200000$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", password) // same cost as a real check
		return nil, bad
	}
	if u.PasswordHash == "" || !checkPassword(u.PasswordHash, password) {
		return nil, bad
	}
	return u, nil
}

// AddSSHKey parses an authorized_keys line and attaches it to a user.
func (s *Service) AddSSHKey(ctx context.Context, userID int64, line string) (*SSHKey, error) {
	pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(line)))
	if err != nil {
		return nil, Errorf(EINVALID, "invalid SSH public key: %v", err)
	}
	k := &SSHKey{
		UserID:      userID,
		Key:         strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))),
		Fingerprint: ssh.FingerprintSHA256(pub),
		Comment:     comment,
	}
	if err := s.Store.CreateSSHKey(ctx, k); err != nil {
		if ErrorCode(err) == ECONFLICT {
			return nil, Errorf(ECONFLICT, "SSH key %s is already registered", k.Fingerprint)
		}
		return nil, fmt.Errorf("add ssh key: %w", err)
	}
	return k, nil
}

// UserBySSHKey finds the account a public key belongs to.
func (s *Service) UserBySSHKey(ctx context.Context, pub ssh.PublicKey) (*User, error) {
	return s.Store.FindUserBySSHFingerprint(ctx, ssh.FingerprintSHA256(pub))
}

// ParseExpiry parses token lifetimes: "90d", "12h", "30m", Go durations;
// "" or "never" means no expiry.
func ParseExpiry(s string) (*time.Duration, error) {
	if s == "" || s == "never" {
		return nil, nil
	}
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 {
			return nil, Errorf(EINVALID, "invalid expiry %q: use e.g. 90d, 12h or never", s)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d <= 0 {
			return nil, Errorf(EINVALID, "invalid expiry %q: use e.g. 90d, 12h or never", s)
		}
	}
	return &d, nil
}

// CreateToken issues a personal access token. The returned secret is shown
// once; only its hash is stored.
func (s *Service) CreateToken(ctx context.Context, userID int64, grants string, expires *time.Duration, comment string) (string, *Token, error) {
	g, err := ParseGrants(grants)
	if err != nil {
		return "", nil, err
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	secret := base64.RawURLEncoding.EncodeToString(raw)
	t := &Token{UserID: userID, Hash: HashToken(secret), Grants: g.String(), Comment: comment}
	if expires != nil {
		e := s.now().Add(*expires)
		t.Expires = &e
	}
	if err := s.Store.CreateToken(ctx, t); err != nil {
		return "", nil, fmt.Errorf("create token: %w", err)
	}
	return secret, t, nil
}

// Authenticate resolves a Bearer token to an identity.
func (s *Service) Authenticate(ctx context.Context, secret string) (*Auth, error) {
	bad := Errorf(EUNAUTHORIZED, "Authentication error: invalid or expired access token")
	if secret == "" || len(secret) > 256 {
		return nil, bad
	}
	t, u, err := s.Store.FindTokenByHash(ctx, HashToken(secret))
	if ErrorCode(err) == ENOTFOUND {
		return nil, bad
	} else if err != nil {
		return nil, fmt.Errorf("find token: %w", err)
	}
	if t.Expired(s.now()) {
		return nil, bad
	}
	g, err := ParseGrants(t.Grants)
	if err != nil {
		return nil, fmt.Errorf("stored grants of token %d: %w", t.ID, err)
	}
	// Record use at most once a minute: a write per API request would
	// serialize every reader behind SQLite's write lock.
	if t.LastUsed == nil || s.now().Sub(*t.LastUsed) >= time.Minute {
		if err := s.Store.TouchToken(ctx, t.ID); err != nil {
			s.Log.Warn("touch token", "token_id", t.ID, "err", err)
		}
	}
	return &Auth{Kind: AuthToken, User: u, Grants: g, TokenID: t.ID}, nil
}

// RevokeToken deletes a token; the caller must own it unless system.
func (s *Service) RevokeToken(ctx context.Context, id int64) error {
	t, err := s.Store.FindTokenByID(ctx, id)
	if err != nil {
		return Errorf(ENOTFOUND, "no such token: %d", id)
	}
	if u := UserFromContext(ctx); !isSystem(ctx) && (u == nil || u.ID != t.UserID) {
		return Errorf(ENOTFOUND, "no such token: %d", id)
	}
	return s.Store.DeleteToken(ctx, id)
}

// DeleteUser removes the caller's account with all its jobs, logs,
// artifacts and secrets.
func (s *Service) DeleteUser(ctx context.Context, userID int64) error {
	jobs, err := s.Store.FindJobs(ctx, JobFilter{OwnerID: &userID})
	if err != nil {
		return fmt.Errorf("find jobs: %w", err)
	}
	for _, j := range jobs {
		if !j.Status.Final() {
			s.moveJob(ctx, j.ID, move{to: JobCancelled, reason: "account deleted"})
		}
	}
	if err := s.Store.DeleteUser(ctx, userID); err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	for _, j := range jobs {
		s.removeJobFiles(j.ID)
	}
	return nil
}

// DeleteAccount deletes the caller's own account with all its jobs, logs,
// artifacts, secrets and webhooks. Because it cannot be undone it needs a
// web session or a token carrying all grants; a token limited to some
// scopes is refused.
func (s *Service) DeleteAccount(ctx context.Context) (*User, error) {
	a := AuthFromContext(ctx)
	if a == nil || a.User == nil {
		return nil, Errorf(EUNAUTHORIZED, "authentication required")
	}
	switch {
	case a.Kind == AuthSession:
	case a.Kind == AuthToken && a.Grants == nil:
	default:
		return nil, Errorf(EFORBIDDEN, "access denied: deleting an account needs a token with all grants")
	}
	if err := s.DeleteUser(ctx, a.User.ID); err != nil {
		return nil, err
	}
	s.Log.Info("account deleted", "user", a.User.Username)
	return a.User, nil
}
