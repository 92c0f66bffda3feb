package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"
)

// Web sessions are server-side: the browser holds a random token, the
// store holds its hash. Logging out deletes the row, so a copied cookie
// stops working at once; changing the password ends every other session.

// SessionLifetime is how long a web session lasts after login.
const SessionLifetime = 30 * 24 * time.Hour

// Session is a logged-in browser.
type Session struct {
	ID      int64
	UserID  int64
	Hash    string // HashToken of the cookie value
	Created time.Time
	Expires time.Time
}

// SessionStore is implemented by stores that keep web sessions (store.DB).
// It is separate from Store so that test fakes of Store need not carry it.
type SessionStore interface {
	// CreateSession inserts sess (setting ID and Created) and deletes
	// sessions that have expired.
	CreateSession(ctx context.Context, sess *Session) error
	FindSessionByHash(ctx context.Context, hash string) (*Session, error)
	DeleteSession(ctx context.Context, hash string) error
	// DeleteUserSessions deletes every session of userID except the one
	// whose hash is keepHash ("" keeps none).
	DeleteUserSessions(ctx context.Context, userID int64, keepHash string) error
}

func (s *Service) sessions() (SessionStore, error) {
	ss, ok := s.Store.(SessionStore)
	if !ok {
		return nil, fmt.Errorf("web sessions: store %T does not keep sessions", s.Store)
	}
	return ss, nil
}

// CreateSession starts a web session for user and returns the cookie value.
func (s *Service) CreateSession(ctx context.Context, user *User) (string, *Session, error) {
	ss, err := s.sessions()
	if err != nil {
		return "", nil, err
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	token := base64.RawURLEncoding.EncodeToString(raw)
	sess := &Session{UserID: user.ID, Hash: HashToken(token), Expires: s.now().Add(SessionLifetime)}
	if err := ss.CreateSession(ctx, sess); err != nil {
		return "", nil, fmt.Errorf("create session: %w", err)
	}
	return token, sess, nil
}

// SessionAuth resolves a session cookie value to an identity. Unknown and
// expired sessions are EUNAUTHORIZED.
func (s *Service) SessionAuth(ctx context.Context, token string) (*Auth, error) {
	bad := Errorf(EUNAUTHORIZED, "session expired; please log in again")
	if token == "" || len(token) > 256 {
		return nil, bad
	}
	ss, err := s.sessions()
	if err != nil {
		return nil, err
	}
	sess, err := ss.FindSessionByHash(ctx, HashToken(token))
	if ErrorCode(err) == ENOTFOUND {
		return nil, bad
	} else if err != nil {
		return nil, fmt.Errorf("find session: %w", err)
	}
	if !s.now().Before(sess.Expires) {
		return nil, bad
	}
	u, err := s.Store.FindUserByID(ctx, sess.UserID)
	if err != nil {
		return nil, fmt.Errorf("find session user: %w", err)
	}
	return &Auth{Kind: AuthSession, User: u}, nil
}

// EndSession logs a browser out; an unknown session is not an error.
func (s *Service) EndSession(ctx context.Context, token string) error {
	ss, err := s.sessions()
	if err != nil {
		return err
	}
	err = ss.DeleteSession(ctx, HashToken(token))
	if err != nil && ErrorCode(err) != ENOTFOUND {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// ChangePassword checks the caller's current password, sets a new one and
// ErrWrongPassword is ChangePassword's answer to a wrong current
// password; the web UI counts it as a failed password guess.
var ErrWrongPassword = &Error{Code: EINVALID, Message: "the current password is wrong"}

// ends the caller's other sessions (keepToken is the current cookie).
func (s *Service) ChangePassword(ctx context.Context, current, password, keepToken string) error {
	u, err := requireUser(ctx)
	if err != nil {
		return err
	}
	if u.PasswordHash != "" && !checkPassword(u.PasswordHash, current) {
		return ErrWrongPassword
	}
	if err := s.SetPassword(ctx, u.ID, password); err != nil {
		return err
	}
	ss, err := s.sessions()
	if err != nil {
		return err
	}
	keep := ""
	if keepToken != "" {
		keep = HashToken(keepToken)
	}
	if err := ss.DeleteUserSessions(ctx, u.ID, keep); err != nil {
		return fmt.Errorf("end other sessions: %w", err)
	}
	return nil
}

// Account settings pages list and remove the caller's own keys and tokens.

// SSHKeys lists the caller's SSH keys.
func (s *Service) SSHKeys(ctx context.Context) ([]*SSHKey, error) {
	u, err := requireUser(ctx)
	if err != nil {
		return nil, err
	}
	return s.Store.FindSSHKeys(ctx, u.ID)
}

// DeleteSSHKey removes one of the caller's SSH keys.
func (s *Service) DeleteSSHKey(ctx context.Context, id int64) error {
	u, err := requireUser(ctx)
	if err != nil {
		return err
	}
	if err := s.Store.DeleteSSHKey(ctx, u.ID, id); err != nil {
		if ErrorCode(err) == ENOTFOUND {
			return Errorf(ENOTFOUND, "no such SSH key: %d", id)
		}
		return fmt.Errorf("delete ssh key: %w", err)
	}
	return nil
}

// Tokens lists the caller's personal access tokens (hashes only).
func (s *Service) Tokens(ctx context.Context) ([]*Token, error) {
	u, err := requireUser(ctx)
	if err != nil {
		return nil, err
	}
	return s.Store.FindTokens(ctx, u.ID)
}
