// Package secrets encrypts environment secrets at rest (AES-256-GCM) with a key from the process
// environment, and resolves {{env.KEY}} references.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
)

// Box seals and opens values with one key.
type Box struct {
	aead cipher.AEAD
	key  []byte
}

// ErrNoKey is returned when secrets are used without a configured key.
var ErrNoKey = errors.New("no secrets key configured (ERPSTREAM_SECRETS_KEY)")

// NewBox takes a base64 key of 32 bytes (`openssl rand -base64 32`).
func NewBox(keyB64 string) (*Box, error) {
	key, err := base64.StdEncoding.DecodeString(keyB64)
	if err != nil || len(key) != 32 {
		return nil, errors.New("ERPSTREAM_SECRETS_KEY must be 32 bytes, base64 encoded")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead, key: key}, nil
}

// Derive returns a 32-byte key for one purpose (HMAC-SHA256 of the label under the box's key),
// so other keys (signing keys per org) follow from the one secret without being stored.
func (b *Box) Derive(label string) ([]byte, error) {
	if b == nil {
		return nil, ErrNoKey
	}
	m := hmac.New(sha256.New, b.key)
	m.Write([]byte("erpstream derived key\x00" + label))
	return m.Sum(nil), nil
}

// NewKey makes a random key in the form NewBox takes.
func NewKey() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

// Seal encrypts plaintext; additional binds it to its place (org and key), so a ciphertext cannot
// be moved to another variable.
func (b *Box) Seal(plaintext, additional string) (string, error) {
	if b == nil {
		return "", ErrNoKey
	}
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := b.aead.Seal(nonce, nonce, []byte(plaintext), []byte(additional))
	return base64.StdEncoding.EncodeToString(out), nil
}

// Open decrypts what Seal produced.
func (b *Box) Open(sealed, additional string) (string, error) {
	if b == nil {
		return "", ErrNoKey
	}
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil || len(raw) < b.aead.NonceSize() {
		return "", errors.New("malformed ciphertext")
	}
	plain, err := b.aead.Open(nil, raw[:b.aead.NonceSize()], raw[b.aead.NonceSize():], []byte(additional))
	if err != nil {
		return "", errors.New("ciphertext does not open with this key")
	}
	return string(plain), nil
}

// refPattern matches {{env.KEY}} with optional spaces.
var refPattern = regexp.MustCompile(`\{\{\s*env\.([A-Za-z0-9][A-Za-z0-9_.\-]{0,127})\s*\}\}`)

// IsReference reports whether s is exactly one {{env.KEY}} reference.
func IsReference(s string) bool {
	m := refPattern.FindStringIndex(s)
	return m != nil && m[0] == 0 && m[1] == len(s)
}

// Resolve replaces every {{env.KEY}} in s through lookup; a missing key fails naming it.
func Resolve(s string, lookup func(key string) (string, bool)) (string, error) {
	var missing string
	out := refPattern.ReplaceAllStringFunc(s, func(m string) string {
		key := refPattern.FindStringSubmatch(m)[1]
		v, ok := lookup(key)
		if !ok && missing == "" {
			missing = key
		}
		return v
	})
	if missing != "" {
		return "", fmt.Errorf("environment variable %q is not set", missing)
	}
	return out, nil
}
