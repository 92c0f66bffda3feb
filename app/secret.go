package app

import "time"

// SecretType is the kind of a secret.
type SecretType string

// Secret types (as stored, behaviour.md §1.7).
const (
	SecretSSHKey SecretType = "ssh_key"
	SecretPGPKey SecretType = "pgp_key"
	SecretFile   SecretType = "plaintext_file"
)

// MaxSecretSize is the largest secret accepted (16 KiB).
const MaxSecretSize = 16 * 1024

// Secret is a user's secret. Data is plaintext in memory only; the store
// keeps it encrypted.
type Secret struct {
	ID         int64
	UserID     int64
	Created    time.Time
	Updated    time.Time
	UUID       string
	Name       *string
	FromUserID *int64
	Type       SecretType
	Data       []byte // plaintext (decrypted by the Service)
	Path       *string
	Mode       *int
}

// Ref returns how a manifest refers to the secret: its name if set, else UUID.
func (s *Secret) Ref() string {
	if s.Name != nil && *s.Name != "" {
		return *s.Name
	}
	return s.UUID
}
