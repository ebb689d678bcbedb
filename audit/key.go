package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/payledger/payledger/internal/durable"
)

// keyPrefix starts a checkpoint key file, naming the algorithm: the file is
// "ed25519:" and the 32-byte private key seed in 64 hex digits. Another
// algorithm would get another prefix; an unknown one is refused.
const keyPrefix = "ed25519:"

// LoadKey reads a checkpoint signing key file.
// Errors: ErrBadKey, or the I/O error.
func LoadKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseKeyFile(path, b)
}

func parseKeyFile(path string, b []byte) (ed25519.PrivateKey, error) {
	s, ok := strings.CutPrefix(strings.TrimSpace(string(b)), keyPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: %s does not start with %q", ErrBadKey, path, keyPrefix)
	}
	seed, err := hex.DecodeString(s)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: %s: want %d hex digits after %q", ErrBadKey, path, 2*ed25519.SeedSize, keyPrefix)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// LoadOrCreateKey reads the checkpoint signing key at path, or makes a new
// one there (mode 0600, synced) if there is none, and reports whether it
// did. Two processes creating it at once end up with the same key: the file
// is linked into place only if absent.
// Errors: ErrBadKey, or the I/O error.
func LoadOrCreateKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	b, created, err := durable.ReadOrCreate(path, 0o600, func() ([]byte, error) {
		seed := make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return nil, err
		}
		return []byte(keyPrefix + hex.EncodeToString(seed) + "\n"), nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint key: %w", err)
	}
	key, err = parseKeyFile(path, b)
	return key, created, err
}

// PublicKeyHex is a public key as checkpoints and payledger keygen write it.
func PublicKeyHex(pub ed25519.PublicKey) string { return hex.EncodeToString(pub) }

// ParsePublicKey parses an Ed25519 public key written as 64 hex digits or
// as base64 (standard or URL alphabet, padded or not) of its 32 bytes.
// Errors: ErrBadKey.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, keyPrefix) {
		return nil, fmt.Errorf("%w: this is a private key; give the public key (payledger keygen prints it)", ErrBadKey)
	}
	if len(s) == 2*ed25519.PublicKeySize {
		if b, err := hex.DecodeString(s); err == nil {
			return ed25519.PublicKey(b), nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == ed25519.PublicKeySize {
			return ed25519.PublicKey(b), nil
		}
	}
	return nil, fmt.Errorf("%w: an Ed25519 public key is 64 hex digits or 44 characters of base64", ErrBadKey)
}

// sameKey reports whether two public keys are equal.
func sameKey(a, b ed25519.PublicKey) bool { return bytes.Equal(a, b) }
