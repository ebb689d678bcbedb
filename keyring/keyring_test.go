package keyring

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenCreatesAndReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	a, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(path)
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
