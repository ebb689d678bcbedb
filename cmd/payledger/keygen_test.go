package main

import (
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/payledger/payledger/node"
)

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runCmd(t, "keygen", "--data-dir", dir, "--create")
	pub := strings.TrimSpace(out)
	if b, err := hex.DecodeString(pub); code != 0 || err != nil || len(b) != 32 || !strings.Contains(errs, "made a new checkpoint key") {
		t.Fatalf("keygen = %d %q %s", code, out, errs)
	}
	path := filepath.Join(dir, node.CheckpointKeyFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	// The same key again, never a new one.
	if code, out, errs := runCmd(t, "keygen", "--data-dir", dir); code != 0 || strings.TrimSpace(out) != pub || errs != "" {
		t.Fatalf("keygen again = %d %q %s", code, out, errs)
	}
	code, out, _ = runCmd(t, "keygen", "--key", path, "--base64")
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if code != 0 || err != nil || hex.EncodeToString(b) != pub {
		t.Fatalf("keygen --base64 = %d %q", code, out)
	}
	if err := os.WriteFile(path, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCmd(t, "keygen", "--data-dir", dir); code != 1 || !strings.Contains(errs, "malformed key") {
		t.Fatalf("keygen of a bad key file = %d: %s", code, errs)
	}
	if code, _, _ := runCmd(t, "keygen", "extra"); code != 2 {
		t.Fatalf("keygen with an argument = %d", code)
	}
}

// TestKeygenMakesAKeyOnlyForANode: a missing key is made where the data dir
// holds a log (as serve would on its next start) or with --create; a data
// dir with no log (a mistyped --data-dir) is refused, and neither the
// directory nor a key is made.
func TestKeygenMakesAKeyOnlyForANode(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "dta")
	code, out, errs := runCmd(t, "keygen", "--data-dir", missing)
	if code != 1 || out != "" || !strings.Contains(errs, "no event log") || !strings.Contains(errs, "--create") {
		t.Fatalf("keygen of a missing data dir = %d %q: %s", code, out, errs)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("keygen made the missing data dir: %v", err)
	}
	empty := t.TempDir()
	if code, _, errs := runCmd(t, "keygen", "--data-dir", empty); code != 1 || !strings.Contains(errs, "--create") {
		t.Fatalf("keygen of a data dir with no log = %d: %s", code, errs)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Fatalf("keygen left %v in a data dir with no log", ents)
	}

	node := auditLog(t, 1)
	code, out, errs = runCmd(t, "keygen", "--data-dir", node)
	if code != 0 || !strings.Contains(errs, "made a new checkpoint key") {
		t.Fatalf("keygen of a node with no key = %d: %s", code, errs)
	}
	pub := strings.TrimSpace(out)
	// The key of an existing file, by --key: printed, nothing made.
	if code, out, errs := runCmd(t, "keygen", "--data-dir", missing, "--key", filepath.Join(node, "checkpoint.key")); code != 0 || strings.TrimSpace(out) != pub || errs != "" {
		t.Fatalf("keygen --key of an existing key = %d %q: %s", code, out, errs)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("keygen --key made the data dir: %v", err)
	}
}

// TestKeygenReadsCheckpointKeyVariable: keygen takes the key where serve
// does: --checkpoint-key, else PAYLEDGER_CHECKPOINT_KEY, else
// <data-dir>/checkpoint.key. With the variable set it prints that key's
// public key and makes no other one in the data dir.
func TestKeygenReadsCheckpointKeyVariable(t *testing.T) {
	dir := auditLog(t, 1)
	keyPath := filepath.Join(t.TempDir(), "secrets", "checkpoint.key")
	code, out, errs := runCmd(t, "keygen", "--checkpoint-key", keyPath, "--create")
	if code != 0 {
		t.Fatalf("keygen --checkpoint-key --create = %d: %s", code, errs)
	}
	pub := strings.TrimSpace(out)
	t.Setenv("PAYLEDGER_CHECKPOINT_KEY", keyPath)
	code, out, errs = runCmd(t, "keygen", "--data-dir", dir)
	if code != 0 || strings.TrimSpace(out) != pub || errs != "" {
		t.Fatalf("keygen with PAYLEDGER_CHECKPOINT_KEY = %d %q: %s; want %s", code, out, errs, pub)
	}
	if _, err := os.Stat(filepath.Join(dir, node.CheckpointKeyFile)); !os.IsNotExist(err) {
		t.Fatalf("keygen with PAYLEDGER_CHECKPOINT_KEY made a key in the data dir: %v", err)
	}
	// The command line wins over the variable.
	other := filepath.Join(t.TempDir(), "other.key")
	code, out, _ = runCmd(t, "keygen", "--data-dir", dir, "--checkpoint-key", other)
	if code != 0 || strings.TrimSpace(out) == pub {
		t.Fatalf("keygen --checkpoint-key with the variable set = %d %q", code, out)
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatal(err)
	}
}
