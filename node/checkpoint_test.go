package node_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/audit"
	"github.com/payledger/payledger/internal/durable"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/node"
)

// TestNodeSignsCheckpoints: a node makes its key on first start, signs
// checkpoints as events are appended and once more as it stops, and its
// log then verifies against the public key alone.
func TestNodeSignsCheckpoints(t *testing.T) {
	dir := t.TempDir()
	n, err := node.Open(context.Background(), node.Config{DataDir: dir, Addr: "127.0.0.1:0", NoNATS: true, Demo: true, Out: io.Discard,
		Checkpoints: node.CheckpointConfig{Every: 2, Interval: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := n.Log.StreamVersion(audit.StreamCheckpoints)
		if err != nil {
			t.Fatal(err)
		}
		if v >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint after %d events", n.Log.Head().Seq)
		}
		time.Sleep(5 * time.Millisecond)
	}
	pub := n.Checkpoints.PublicKey()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	key, err := audit.LoadKey(filepath.Join(dir, node.CheckpointKeyFile))
	if err != nil || !key.Public().(ed25519.PublicKey).Equal(pub) {
		t.Fatalf("key file: %v", err)
	}

	s, err := boltlog.Open(filepath.Join(dir, node.LogFile), &boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := audit.Run(context.Background(), s, audit.Options{PublicKeys: []ed25519.PublicKey{pub}, ScratchDir: t.TempDir()})
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	last, err := s.Get(s.Head().Seq)
	if err != nil || last.Type != audit.TypeCheckpointSigned || r.Uncovered != 1 || r.Views != "compared" {
		t.Fatalf("the log does not end with a checkpoint of everything before it: last %s, report %+v", last.Type, r)
	}
}

// TestNodeRefusesWritableCheckpointKey: a node does not start with a
// checkpoint signing key file its group or others may write (whoever can
// write it can sign checkpoints of a forged log), and says which file.
func TestNodeRefusesWritableCheckpointKey(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permission bits")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, node.CheckpointKeyFile)
	if _, _, err := audit.LoadOrCreateKey(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o664); err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(context.Background(), node.Config{DataDir: dir, Addr: "127.0.0.1:0", NoNATS: true, Out: io.Discard})
	if err == nil {
		n.Close()
		t.Fatal("a node started with a checkpoint key file others may write")
	}
	if !errors.Is(err, durable.ErrSecretWritable) || !strings.Contains(err.Error(), path) {
		t.Fatalf("open: %v, want ErrSecretWritable naming %s", err, path)
	}
}
