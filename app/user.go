package app

import (
	"net/mail"
	"regexp"
	"time"
)

// User is an account. Usernames follow SourceHut's rules.
type User struct {
	ID           int64
	Created      time.Time
	Updated      time.Time
	Username     string
	Email        string
	URL          string
	Location     string
	Bio          string
	Admin        bool
	PasswordHash string // bcrypt; "" = no password login
}

// CanonicalName is the user's name prefixed with "~".
func (u *User) CanonicalName() string { return "~" + u.Username }

// SSHKey is a public key a user may use for `ssh ... connect <id>`.
type SSHKey struct {
	ID          int64
	UserID      int64
	Created     time.Time
	Key         string // authorized_keys form, without options
	Fingerprint string // SHA256:...
	Comment     string
}

// Token is a personal access token. Only its hash is stored; the secret is
// shown once at creation.
type Token struct {
	ID       int64
	UserID   int64
	Created  time.Time
	Expires  *time.Time
	LastUsed *time.Time
	Hash     string // hex sha256 of the token
	Grants   string // ParseGrants syntax; "" = all
	Comment  string
}

// Expired reports whether the token is past its expiry at now.
func (t *Token) Expired(now time.Time) bool {
	return t.Expires != nil && !now.Before(*t.Expires)
}

var usernameRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{1,29}$`)

// ValidateUsername checks SourceHut's username rules.
func ValidateUsername(name string) error {
	if !usernameRE.MatchString(name) {
		return Errorf(EINVALID, "invalid username %q: use 2-30 lowercase letters, digits, '_' or '-', starting with a letter or '_'", name)
	}
	return nil
}

// ValidateEmail checks that email is a single bare address.
func ValidateEmail(email string) error {
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || a.Name != "" {
		return Errorf(EINVALID, "invalid email address %q", email)
	}
	return nil
}
