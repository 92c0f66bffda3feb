package notify

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"builds/app"
)

// KeyFile is the name of the generated signing key under the data dir.
const KeyFile = "webhook.key"

// LoadKey returns the Ed25519 key that signs webhook and trigger payloads:
// [webhooks] private-key when set, else <data-dir>/webhook.key, which is
// created (mode 0600) with a new random key on first use. Both hold a
// base64 seed (32 bytes) or full private key (64 bytes).
func LoadKey(cfg *app.Config) (ed25519.PrivateKey, error) {
	if cfg.Webhooks.PrivateKey != "" {
		key, err := decodeKey(cfg.Webhooks.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("load webhook key: webhooks.private-key: %w", err)
		}
		return key, nil
	}
	path := filepath.Join(cfg.Builds.DataDir, KeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createKey(path)
	} else if err != nil {
		return nil, fmt.Errorf("load webhook key: %w", err)
	}
	key, err := decodeKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("load webhook key %s: %w", path, err)
	}
	return key, nil
}

// createKey writes a new key to path. O_EXCL makes two processes starting
// at once agree on one key: the loser reads the winner's file.
func createKey(path string) (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate webhook key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create webhook key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		data, rerr := os.ReadFile(path)
		if rerr != nil {
			return nil, fmt.Errorf("load webhook key: %w", rerr)
		}
		return decodeKey(string(data))
	} else if err != nil {
		return nil, fmt.Errorf("create webhook key: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(key.Seed()) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("write webhook key: %w", err)
	}
	return key, nil
}

func decodeKey(s string) (ed25519.PrivateKey, error) {
	s = strings.TrimSpace(s)
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, errors.New("not valid base64")
	}
	switch len(raw) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(raw), nil
	case ed25519.PrivateKeySize:
		key := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
		if !key.Equal(ed25519.PrivateKey(raw)) {
			return nil, errors.New("public half of the key does not match its seed")
		}
		return key, nil
	}
	return nil, fmt.Errorf("decodes to %d bytes, want 32 (seed) or 64 (private key)", len(raw))
}

// PublicKey returns the base64 public key that verifies payload signatures,
// the form published for webhook receivers.
func PublicKey(key ed25519.PrivateKey) string {
	return base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
}

// sign returns what a payload carries: a random nonce and the base64
// Ed25519 signature of body followed by the nonce (behaviour.md §4.9).
func sign(key ed25519.PrivateKey, body []byte) (nonce, sig string) {
	var b [8]byte
	rand.Read(b[:]) // never fails
	nonce = fmt.Sprintf("%x", b)
	msg := append(append([]byte{}, body...), nonce...)
	return nonce, base64.StdEncoding.EncodeToString(ed25519.Sign(key, msg))
}
