package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"golang.org/x/crypto/ssh"
)

// SecretInput describes a new secret.
type SecretInput struct {
	Type SecretType
	Name string // optional, 3..512 chars
	Data []byte
	Path string // files only
	Mode int    // files only, e.g. 0o600
}

func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// ValidateSecret checks secret material before it is stored.
func ValidateSecret(in *SecretInput) error {
	if in.Name != "" && (len(in.Name) < 3 || len(in.Name) > 512) {
		return Errorf(EINVALID, "Name must be between 3 and 512 characters")
	}
	if len(in.Data) == 0 {
		return Errorf(EINVALID, "secret is empty")
	}
	if len(in.Data) > MaxSecretSize {
		return Errorf(EINVALID, "secret is %d bytes; the limit is %d bytes (16 KiB)", len(in.Data), MaxSecretSize)
	}
	switch in.Type {
	case SecretSSHKey:
		if _, err := ssh.ParseRawPrivateKey(in.Data); err != nil {
			var missing *ssh.PassphraseMissingError
			if errors.As(err, &missing) {
				return Errorf(EINVALID, "SSH key is protected by a passphrase; builds cannot use it")
			}
			return Errorf(EINVALID, "not an SSH private key: %v", err)
		}
	case SecretPGPKey:
		if err := validatePGP(in.Data); err != nil {
			return err
		}
	case SecretFile:
		if in.Path == "" {
			return Errorf(EINVALID, "file secrets need a path")
		}
		if strings.ContainsAny(in.Path, "\x00\n") {
			return Errorf(EINVALID, "invalid path %q", in.Path)
		}
		if in.Mode < 0 || in.Mode > 0o7777 {
			return Errorf(EINVALID, "mode %o is not a valid octal file mode", in.Mode)
		}
	default:
		return Errorf(EINVALID, "unknown secret type %q (want ssh_key, pgp_key or plaintext_file)", in.Type)
	}
	return nil
}

func validatePGP(data []byte) error {
	var (
		el  openpgp.EntityList
		err error
	)
	if bytes.Contains(data, []byte("-----BEGIN PGP")) {
		el, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	} else {
		el, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	if err != nil {
		return Errorf(EINVALID, "not a PGP key: %v", err)
	}
	for _, e := range el {
		if e.PrivateKey != nil {
			if e.PrivateKey.Encrypted {
				return Errorf(EINVALID, "PGP key is protected by a passphrase; builds cannot use it")
			}
			return nil
		}
	}
	return Errorf(EINVALID, "PGP key has no private key (export it with --export-secret-keys)")
}

func secretAD(userID int64, uuid string) string { return fmt.Sprintf("secret:%d:%s", userID, uuid) }

// CreateSecret stores a new secret for userID, encrypted at rest.
func (s *Service) CreateSecret(ctx context.Context, userID int64, in SecretInput) (*Secret, error) {
	if !isSystem(ctx) {
		if err := requireGrant(ctx, ScopeSecrets, RW); err != nil {
			return nil, err
		}
		if u := UserFromContext(ctx); u.ID != userID {
			return nil, Errorf(EFORBIDDEN, "cannot add secrets for another user")
		}
	}
	if err := ValidateSecret(&in); err != nil {
		return nil, err
	}
	sec := &Secret{UserID: userID, UUID: newUUID(), Type: in.Type}
	if in.Name != "" {
		sec.Name = &in.Name
	}
	if in.Type == SecretFile {
		sec.Path, sec.Mode = &in.Path, &in.Mode
	}
	stored := *sec
	stored.Data = s.sealer.seal(in.Data, secretAD(userID, sec.UUID))
	if err := s.Store.CreateSecret(ctx, &stored); err != nil {
		if ErrorCode(err) == ECONFLICT {
			return nil, Errorf(ECONFLICT, "a secret named %q already exists", in.Name)
		}
		return nil, fmt.Errorf("create secret: %w", err)
	}
	sec.ID, sec.Created, sec.Updated = stored.ID, stored.Created, stored.Updated
	return sec, nil
}

// SecretList is a page of secrets (material not included).
type SecretList struct {
	Secrets []*Secret
	Cursor  string
}

// Secrets lists the caller's secrets without their material.
func (s *Service) Secrets(ctx context.Context, cursor *string) (*SecretList, error) {
	if err := requireGrant(ctx, ScopeSecrets, RO); err != nil {
		return nil, err
	}
	u, err := requireUser(ctx)
	if err != nil {
		return nil, err
	}
	list, next, err := paginate(s.cursors, "secrets", cursor, PageSize, func(sec *Secret) int64 { return sec.ID },
		func(before *int64, limit int) ([]*Secret, error) {
			return s.Store.FindSecrets(ctx, u.ID, Page{BeforeID: before, Limit: limit})
		})
	if err != nil {
		return nil, fmt.Errorf("find secrets: %w", err)
	}
	out := &SecretList{Secrets: list, Cursor: next}
	for _, sec := range out.Secrets {
		sec.Data = nil
	}
	return out, nil
}

// ShareSecret copies the caller's secret to another user (irreversible).
func (s *Service) ShareSecret(ctx context.Context, uuid, username string) (*Secret, error) {
	if err := requireGrant(ctx, ScopeSecrets, RW); err != nil {
		return nil, err
	}
	u, err := requireUser(ctx)
	if err != nil {
		return nil, err
	}
	target, err := s.Store.FindUserByName(ctx, strings.TrimPrefix(username, "~"))
	if err != nil {
		return nil, Errorf(ENOTFOUND, "No such user")
	}
	if target.ID == u.ID {
		return nil, Errorf(EINVALID, "cannot share a secret with yourself")
	}
	sec, err := s.Store.FindSecretByUUID(ctx, u.ID, uuid)
	if err != nil {
		return nil, Errorf(ENOTFOUND, "No such secret")
	}
	plain, err := s.sealer.open(sec.Data, secretAD(u.ID, uuid))
	if err != nil {
		return nil, fmt.Errorf("share secret: %w", err)
	}
	cp := *sec
	cp.ID, cp.UserID, cp.FromUserID = 0, target.ID, &u.ID
	cp.Data = s.sealer.seal(plain, secretAD(target.ID, uuid))
	if err := s.Store.CreateSecret(ctx, &cp); err != nil {
		if ErrorCode(err) == ECONFLICT {
			return nil, Errorf(ECONFLICT, "~%s already has this secret (or one with the same name)", target.Username)
		}
		return nil, fmt.Errorf("share secret: %w", err)
	}
	sec.Data = nil
	return sec, nil
}

// DeleteSecret removes one of the caller's secrets.
func (s *Service) DeleteSecret(ctx context.Context, uuid string) (*Secret, error) {
	if err := requireGrant(ctx, ScopeSecrets, RW); err != nil {
		return nil, err
	}
	u, err := requireUser(ctx)
	if err != nil {
		return nil, err
	}
	sec, err := s.Store.FindSecretByUUID(ctx, u.ID, uuid)
	if err != nil {
		return nil, Errorf(ENOTFOUND, "No such secret")
	}
	if err := s.Store.DeleteSecret(ctx, u.ID, uuid); err != nil {
		return nil, err
	}
	sec.Data = nil
	return sec, nil
}

// JobSecrets lists (without material) the secrets a job references, for
// the job's owner; nil if the job has secrets disabled, empty for others.
func (s *Service) JobSecrets(ctx context.Context, job *Job) ([]*Secret, error) {
	if !job.Secrets {
		return nil, nil
	}
	if !isOwner(ctx, job) {
		return []*Secret{}, nil
	}
	m, err := ParseManifest([]byte(job.Manifest), 0)
	if err != nil {
		return []*Secret{}, nil
	}
	out := []*Secret{}
	for _, ref := range m.Secrets {
		sec, err := s.Store.FindSecretByRef(ctx, job.OwnerID, ref)
		if err != nil {
			continue
		}
		sec.Data = nil
		out = append(out, sec)
	}
	return out, nil
}

// ResolveSecret returns a job owner's secret by manifest reference with
// its material decrypted (runner only).
func (s *Service) ResolveSecret(ctx context.Context, ownerID int64, ref string) (*Secret, error) {
	sec, err := s.Store.FindSecretByRef(ctx, ownerID, ref)
	if err != nil {
		return nil, Errorf(ENOTFOUND, "secret %q not found for the job's owner", ref)
	}
	plain, err := s.sealer.open(sec.Data, secretAD(ownerID, sec.UUID))
	if err != nil {
		return nil, fmt.Errorf("resolve secret %q: %w", ref, err)
	}
	sec.Data = plain
	return sec, nil
}
