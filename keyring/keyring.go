// Package keyring makes and derives payledger's secrets so that none of them
// is ever written to the event log: API keys are random and only their SHA-256
// hashes are recorded; merchants' signing secrets are derived from the node's
// master key, the merchant id and a version number, so the log records only
// the version and a hash.
package keyring

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/payledger/payledger/internal/durable"
	"github.com/payledger/payledger/internal/ids"
)

// APIKeyPrefix starts every API key, so a leaked key is recognisable.
const APIKeyPrefix = "pl_"

// Keyring holds the node's master key.
type Keyring struct {
	master [32]byte
}

// New returns a keyring over a given master key (tests, or a key from a secret store).
func New(master [32]byte) *Keyring { return &Keyring{master: master} }

// Options configures Open. A nil *Options means the zero value, whose
// fields mean their defaults.
type Options struct {
	// Logger receives the warning about a key file others may read or its
	// group may write.
	// Default slog.Default().
	Logger *slog.Logger
}

// Open loads the master key from path, creating it (mode 0600, synced) if
// absent. Of two processes creating it at once, both end up with the one
// that reached the disk first. A key file others may write is refused:
// whoever can write it can swap the key that every signing secret derives
// from. One its group may write, or its group or others may read, is used
// with a warning (durable.CheckSecret says why). Neither the error nor the
// log holds the key.
//
// Errors: ErrBadMasterKey, ErrMasterKeyPermissions, or the I/O error.
func Open(path string, opts *Options) (*Keyring, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	// Synced before Open returns: merchants' signing secrets derive from
	// this key as soon as it is in use.
	b, _, err := durable.ReadOrCreate(path, 0o600, func() ([]byte, error) {
		var k [32]byte
		if _, err := rand.Read(k[:]); err != nil {
			return nil, fmt.Errorf("generate: %w", err)
		}
		return []byte(hex.EncodeToString(k[:]) + "\n"), nil
	})
	if err != nil {
		return nil, fmt.Errorf("keyring: master key: %w", err)
	}
	if err := durable.CheckSecret(path, "master key", o.Logger); err != nil {
		if errors.Is(err, durable.ErrSecretWritable) {
			return nil, fmt.Errorf("%w: %w", ErrMasterKeyPermissions, err)
		}
		return nil, fmt.Errorf("keyring: master key: %w", err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != 32 {
		return nil, fmt.Errorf("%w: %s", ErrBadMasterKey, path)
	}
	var k [32]byte
	copy(k[:], raw)
	return New(k), nil
}

// APIKey is a freshly made API key. Key is shown once; only Hash is stored.
type APIKey struct {
	ID     string // ULID
	Key    string // "pl_" + 43 characters
	Hash   string // hex SHA-256 of Key
	Prefix string // the first 10 characters of Key, for display
}

// NewAPIKey makes a random API key.
func NewAPIKey() (APIKey, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return APIKey{}, fmt.Errorf("keyring: api key: %w", err)
	}
	key := APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return APIKey{ID: ids.New().String(), Key: key, Hash: HashAPIKey(key), Prefix: key[:10]}, nil
}

// HashAPIKey is the hex SHA-256 of a key: how keys are stored and looked up.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// EqualHash compares two hashes in constant time.
func EqualHash(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// SigningSecret derives a merchant's signing secret of a version:
// "whsec_" + base64 of HMAC-SHA256(master, "signing-secret/<merchant>/<version>"),
// as Standard Webhooks names secrets.
func (k *Keyring) SigningSecret(merchantID string, version int) string {
	return "whsec_" + base64.StdEncoding.EncodeToString(k.SigningKey(merchantID, version))
}

// SigningKey is the raw HMAC key behind SigningSecret.
func (k *Keyring) SigningKey(merchantID string, version int) []byte {
	m := hmac.New(sha256.New, k.master[:])
	m.Write([]byte("signing-secret/" + merchantID + "/" + strconv.Itoa(version)))
	return m.Sum(nil)
}

// SecretHash is the hex SHA-256 of a signing secret, as recorded in the log.
func SecretHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// SigningKeyFromSecret decodes a "whsec_..." secret into its HMAC key (for
// merchants verifying webhooks, and tests).
func SigningKeyFromSecret(secret string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
}

// Derive returns a 32-byte key for a named purpose (CSRF tokens, stored
// idempotent responses), so every node sharing the master key agrees on it.
func (k *Keyring) Derive(purpose string) []byte {
	m := hmac.New(sha256.New, k.master[:])
	m.Write([]byte("derive/" + purpose))
	return m.Sum(nil)
}
