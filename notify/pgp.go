package notify

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// pgpSigner signs outgoing mail as PGP/MIME (RFC 3156).
type pgpSigner struct {
	entity *openpgp.Entity
	config *packet.Config
}

// loadPGPSigner reads an armored private key file ([mail] pgp-key). The key
// must not be passphrase-protected: the service has nobody to ask.
func loadPGPSigner(path string) (*pgpSigner, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load pgp key: %w", err)
	}
	defer f.Close()
	list, err := openpgp.ReadArmoredKeyRing(f)
	if err != nil {
		return nil, fmt.Errorf("load pgp key %s: %w", path, err)
	}
	for _, e := range list {
		key, ok := e.SigningKey(time.Now())
		if !ok || key.PrivateKey == nil {
			continue
		}
		if key.PrivateKey.Encrypted {
			return nil, fmt.Errorf("load pgp key %s: the signing key is passphrase-protected; export it without a passphrase", path)
		}
		return &pgpSigner{entity: e, config: &packet.Config{DefaultHash: crypto.SHA256}}, nil
	}
	return nil, fmt.Errorf("load pgp key %s: no private key usable for signing", path)
}

// multipartSigned wraps a MIME entity (headers, blank line, body, ending in
// CRLF) into a multipart/signed entity with a detached signature over the
// entity's exact bytes. The result starts with the Content-Type header.
func (s *pgpSigner) multipartSigned(part []byte) ([]byte, error) {
	var sig bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&sig, s.entity, bytes.NewReader(part), s.config); err != nil {
		return nil, fmt.Errorf("sign email: %w", err)
	}
	micalg, err := micalgOf(sig.Bytes())
	if err != nil {
		return nil, fmt.Errorf("sign email: %w", err)
	}
	var rb [12]byte
	rand.Read(rb[:])
	boundary := "=_builds_" + hex.EncodeToString(rb[:])

	var b bytes.Buffer
	fmt.Fprintf(&b, "Content-Type: multipart/signed; boundary=\"%s\";\r\n micalg=%s; protocol=\"application/pgp-signature\"\r\n\r\n", boundary, micalg)
	b.WriteString("This is an OpenPGP/MIME signed message (RFC 4880 and 3156)\r\n")
	fmt.Fprintf(&b, "--%s\r\n", boundary)
	b.Write(part)
	fmt.Fprintf(&b, "\r\n--%s\r\n", boundary)
	b.WriteString("Content-Type: application/pgp-signature; name=\"signature.asc\"\r\n")
	b.WriteString("Content-Description: OpenPGP digital signature\r\n")
	b.WriteString("Content-Disposition: attachment; filename=\"signature.asc\"\r\n\r\n")
	b.WriteString(strings.ReplaceAll(strings.TrimRight(sig.String(), "\n"), "\n", "\r\n"))
	fmt.Fprintf(&b, "\r\n\r\n--%s--\r\n", boundary)
	return b.Bytes(), nil
}

// micalgOf names the hash of an armored signature as RFC 3156 wants it
// (the key may veto the configured hash, so it is read back).
func micalgOf(armored []byte) (string, error) {
	block, err := armor.Decode(bytes.NewReader(armored))
	if err != nil {
		return "", fmt.Errorf("read signature: %w", err)
	}
	p, err := packet.Read(block.Body)
	if err != nil {
		return "", fmt.Errorf("read signature: %w", err)
	}
	sig, ok := p.(*packet.Signature)
	if !ok {
		return "", errors.New("read signature: not a signature packet")
	}
	names := map[crypto.Hash]string{
		crypto.SHA1: "pgp-sha1", crypto.SHA224: "pgp-sha224", crypto.SHA256: "pgp-sha256",
		crypto.SHA384: "pgp-sha384", crypto.SHA512: "pgp-sha512",
	}
	if n, ok := names[sig.Hash]; ok {
		return n, nil
	}
	return "", fmt.Errorf("signature uses unsupported hash %v", sig.Hash)
}
