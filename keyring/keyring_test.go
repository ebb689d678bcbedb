package keyring

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func TestOpenCreatesAndReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	a, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.SigningSecret("m1", 1) != b.SigningSecret("m1", 1) {
		t.Fatal("reloaded keyring derives another secret")
	}
	if a.SigningSecret("m1", 1) == a.SigningSecret("m1", 2) || a.SigningSecret("m1", 1) == a.SigningSecret("m2", 1) {
		t.Fatal("secrets of other versions or merchants collide")
	}
	key, err := SigningKeyFromSecret(a.SigningSecret("m1", 1))
	if err != nil || string(key) != string(a.SigningKey("m1", 1)) {
		t.Fatalf("SigningKeyFromSecret: %v", err)
	}
}

func TestNewAPIKey(t *testing.T) {
	k, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.Key, APIKeyPrefix) || len(k.Key) != 46 || !EqualHash(HashAPIKey(k.Key), k.Hash) || EqualHash(HashAPIKey(k.Key+"x"), k.Hash) {
		t.Fatalf("bad key %+v", k)
	}
	if strings.Contains(k.Hash, k.Key) || k.Prefix != k.Key[:10] {
		t.Fatal("hash or prefix wrong")
	}
}

// TestOpenRefusesMalformedKey: a master key file that is not 32 bytes of
// hex stops the node (ErrBadMasterKey) rather than being replaced: a new key
// would silently change every merchant's signing secret.
func TestOpenRefusesMalformedKey(t *testing.T) {
	for name, content := range map[string]string{
		"empty":     "",
		"not hex":   strings.Repeat("zz", 32),
		"too short": strings.Repeat("ab", 31),
		"too long":  strings.Repeat("ab", 33),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "master.key")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(path, nil); !errors.Is(err, ErrBadMasterKey) {
				t.Fatalf("Open = %v, want ErrBadMasterKey", err)
			}
			if b, _ := os.ReadFile(path); string(b) != content {
				t.Fatal("a malformed key file was overwritten")
			}
		})
	}
}

// TestOpenCreatesPrivateFile: a new master key is 64 hex digits in a file
// only its owner can read, in a directory created for it, with no
// temporary file left behind.
func TestOpenCreatesPrivateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "keys")
	path := filepath.Join(dir, "master.key")
	if _, err := Open(path, nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("master key mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if raw, err := hex.DecodeString(strings.TrimSpace(string(b))); err != nil || len(raw) != 32 {
		t.Errorf("master key file %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("files beside the key: %v", entries)
	}
}

// TestDeriveSeparatesPurposes: derived keys depend on the purpose and the
// master key, and never equal a signing key.
func TestDeriveSeparatesPurposes(t *testing.T) {
	var m1, m2 [32]byte
	m2[0] = 1
	a, b := New(m1), New(m2)
	if len(a.Derive("pages-csrf")) != 32 {
		t.Fatal("derived key is not 32 bytes")
	}
	if bytes.Equal(a.Derive("pages-csrf"), a.Derive("idempotency")) {
		t.Error("two purposes share a key")
	}
	if bytes.Equal(a.Derive("pages-csrf"), b.Derive("pages-csrf")) {
		t.Error("two master keys derive the same key")
	}
	if !bytes.Equal(a.Derive("pages-csrf"), New(m1).Derive("pages-csrf")) {
		t.Error("derivation is not deterministic")
	}
	if bytes.Equal(a.Derive("signing-secret/m1/1"), a.SigningKey("m1", 1)) {
		t.Error("a purpose collides with a signing key")
	}
}

// TestSecretHash: the log records the SHA-256 of a signing secret, never the
// secret.
func TestSecretHash(t *testing.T) {
	secret := New([32]byte{}).SigningSecret("m1", 1)
	sum := sha256.Sum256([]byte(secret))
	if h := SecretHash(secret); h != hex.EncodeToString(sum[:]) || strings.Contains(h, strings.TrimPrefix(secret, "whsec_")) {
		t.Fatalf("SecretHash = %q", h)
	}
}

// TestOpenConcurrentCreation: processes starting on an empty data dir at
// once all end up with the one master key on disk, never one of their own
// that a later rename replaced.
func TestOpenConcurrentCreation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	const n = 16
	secrets := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := Open(path, nil)
			if err != nil {
				t.Error(err)
				return
			}
			secrets[i] = k.SigningSecret("m1", 1)
		}()
	}
	wg.Wait()
	onDisk, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range secrets {
		if s != onDisk.SigningSecret("m1", 1) {
			t.Fatalf("opener %d derives from a key that is not on disk", i)
		}
	}
}

// writeKey writes a valid master key with a mode (chmod: the umask does not
// narrow it) and returns its path and hex text.
func writeKey(t *testing.T, mode os.FileMode) (path, text string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "master.key")
	text = strings.Repeat("5a", 32)
	if err := os.WriteFile(path, []byte(text+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path, text
}

// TestOpenRefusesWritableKeyFile: a master key file that others may write
// is refused (whoever can write it can swap the key every signing secret
// derives from), with an error that names the file and its mode but not the
// key.
func TestOpenRefusesWritableKeyFile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permission bits")
	}
	for _, mode := range []os.FileMode{0o602, 0o666, 0o646, 0o622} {
		t.Run(mode.String(), func(t *testing.T) {
			path, text := writeKey(t, mode)
			var logs bytes.Buffer
			_, err := openLogged(path, &logs)
			if !errors.Is(err, ErrMasterKeyPermissions) {
				t.Fatalf("Open of a %v key file = %v, want ErrMasterKeyPermissions", mode, err)
			}
			if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, mode.String()) || strings.Contains(msg, text) {
				t.Errorf("error %q: want the path and the mode, never the key", msg)
			}
			if strings.Contains(logs.String(), text) {
				t.Errorf("the key was logged: %s", logs.String())
			}
		})
	}
}

// TestOpenWarnsOfReadableKeyFile: a master key file that group or others
// may read, or its group may write, but others may not write, is opened
// (Kubernetes mounts secrets 0644 by default, and an fsGroup gives the
// pod's group read and write on a volume's files) with a warning that names
// the file and its mode, never the key. An owner-only file opens without
// one.
func TestOpenWarnsOfReadableKeyFile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permission bits")
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o444, 0o600, 0o400, 0o660, 0o620} {
		t.Run(mode.String(), func(t *testing.T) {
			path, text := writeKey(t, mode)
			var logs bytes.Buffer
			kr, err := openLogged(path, &logs)
			if err != nil {
				t.Fatalf("Open of a %v key file: %v", mode, err)
			}
			if kr.SigningSecret("m1", 1) != New([32]byte(bytes.Repeat([]byte{0x5a}, 32))).SigningSecret("m1", 1) {
				t.Fatal("opened another key")
			}
			warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), path) &&
				strings.Contains(logs.String(), mode.String())
			if want := mode&0o064 != 0; warned != want {
				t.Errorf("mode %v: warned %v, want %v; logs:\n%s", mode, warned, want, logs.String())
			}
			if strings.Contains(logs.String(), text) {
				t.Errorf("the key was logged: %s", logs.String())
			}
		})
	}
}

// openLogged opens a key file with its logs to w.
func openLogged(path string, w io.Writer) (*Keyring, error) {
	return Open(path, &Options{Logger: slog.New(slog.NewTextHandler(w, nil))})
}
