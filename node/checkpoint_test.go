package node_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/audit"
	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/internal/durable"
	"github.com/payledger/payledger/ledger"
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
	if err := os.Chmod(path, 0o646); err != nil {
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

// shiftedClock is the system clock moved forward by a settable offset.
type shiftedClock struct{ offset atomic.Int64 }

func (c *shiftedClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

func (c *shiftedClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// TestLastCheckpointCoversExpiries: a node stopped while its scheduler is
// expiring invoices still ends its log with a checkpoint of everything
// before it. The checkpointer stops after the scheduler: stopped together,
// an expiry appended after the last checkpoint's head was read was left
// uncovered.
func TestLastCheckpointCoversExpiries(t *testing.T) {
	dir := t.TempDir()
	clock := &shiftedClock{}
	n, err := node.Open(context.Background(), node.Config{DataDir: dir, Addr: "127.0.0.1:0", NoNATS: true, Demo: true, Out: io.Discard,
		Clock: clock, Checkpoints: node.CheckpointConfig{Every: 1 << 30, Interval: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			n.Close()
		}
	}()
	m, err := n.CreateMerchant(context.Background(), "expiring", "2")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 400 {
		if _, err := n.Service.CreateInvoice(ctx, commands.CreateInvoice{
			Meta:      commands.Meta{CommandID: ulid.Make(), Time: clock.Now(), Correlation: "test"},
			InvoiceID: ulid.Make(), MerchantID: m.MerchantID, Amount: "100.00", Currency: "UAH",
			CustomerID: "c", ExternalID: fmt.Sprintf("o-%d", i), Rate: decimal.RequireFromString(node.DemoRates["UAH"]),
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Every invoice falls due; stop the node while the scheduler expires them.
	before := n.Log.Head().Seq
	clock.offset.Store(int64(2 * time.Hour))
	n.Scheduler.Kick()
	deadline := time.Now().Add(10 * time.Second)
	for n.Log.Head().Seq == before {
		if time.Now().After(deadline) {
			t.Fatal("the scheduler expired nothing")
		}
		time.Sleep(time.Millisecond)
	}
	pub := n.Checkpoints.PublicKey()
	closed = true
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := boltlog.Open(filepath.Join(dir, node.LogFile), &boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	last, err := s.Get(s.Head().Seq)
	if err != nil {
		t.Fatal(err)
	}
	r, err := audit.Run(ctx, s, audit.Options{PublicKeys: []ed25519.PublicKey{pub}, ScratchDir: t.TempDir()})
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	if last.Type != audit.TypeCheckpointSigned || r.Uncovered != 1 {
		t.Fatalf("the log does not end with a checkpoint of everything before it: last %s at %d, %d events not covered by a checkpoint",
			last.Type, last.Seq, r.Uncovered)
	}
}

// TestNodeRefusesUnreadableCheckpoints: a node whose log holds a checkpoint
// event it cannot decode does not start (it used to start, log an error and
// serve with no checkpoints signed), and the error names its sequence.
func TestNodeRefusesUnreadableCheckpoints(t *testing.T) {
	dir := t.TempDir()
	st, err := boltlog.Open(filepath.Join(dir, node.LogFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := st.Append(context.Background(), audit.StreamCheckpoints, ledger.NoStream, ledger.NewEvent{
		ID: ulid.Make(), Type: audit.TypeCheckpointSigned, Time: time.Now(), Data: []byte(`{"seq": "not a checkpoint"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(context.Background(), node.Config{DataDir: dir, Addr: "127.0.0.1:0", NoNATS: true, Out: io.Discard})
	if err == nil {
		n.Close()
		t.Fatal("a node started on a log whose last checkpoint does not decode")
	}
	if want := fmt.Sprintf("sequence %d", evs[0].Seq); !strings.Contains(err.Error(), "checkpoints") || !strings.Contains(err.Error(), want) {
		t.Fatalf("open: %v, want the checkpoints' error naming %s", err, want)
	}
}
