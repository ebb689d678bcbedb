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
	code, out, errs := runCmd(t, "keygen", "--data-dir", dir)
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
