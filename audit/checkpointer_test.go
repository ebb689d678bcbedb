package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func checkpointsIn(t *testing.T, b *builder) []CheckpointSigned {
	t.Helper()
	evs, err := b.s.ReadStream(context.Background(), StreamCheckpoints, 1)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]CheckpointSigned, len(evs))
	for i, e := range evs {
		if out[i], err = DecodeCheckpoint(e.Data); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestCheckpointerEveryNEvents(t *testing.T) {
	b := newBuilder(t, true)
	b.merchant("m1")
	c := NewCheckpointer(b.s, testKey, CheckpointConfig{Every: 5, Interval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for i := range 12 {
		b.invoice("m1", "o"+string(rune('a'+i)))
	}
	waitFor(t, 5*time.Second, "two checkpoints", func() bool { return len(checkpointsIn(t, b)) >= 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cps := checkpointsIn(t, b)
	// Stopping signs what came after the last one; a second stop signs nothing.
	last := cps[len(cps)-1]
	if head := b.s.Head().Seq; last.Seq != head-1 {
		t.Fatalf("last checkpoint signs %d, head %d", last.Seq, head)
	}
	if _, ok, err := c.Checkpoint(context.Background()); ok || err != nil {
		t.Fatalf("checkpoint with nothing new = %v %v", ok, err)
	}
	pub := c.PublicKey()
	for _, cp := range cps {
		if err := cp.Verify(pub); err != nil {
			t.Fatal(err)
		}
	}
	// The projections ignored the checkpoint events, and the whole log verifies.
	if _, err := run(t, b.readOnly(), pub); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestCheckpointerInterval(t *testing.T) {
	b := newBuilder(t, true)
	b.merchant("m1")
	c := NewCheckpointer(b.s, testKey, CheckpointConfig{Interval: 20 * time.Millisecond, Now: func() time.Time { return t0 }})
	var idle atomic.Int64
	c.idle = func() { idle.Add(1) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	// Nothing new after a checkpoint: once an interval has passed, Run
	// waits for the next append (idle), having signed no more checkpoints,
	// rather than sign one per interval.
	wantIdle := func(times int64, checkpoints int) {
		t.Helper()
		waitFor(t, 5*time.Second, "Run to wait for an append", func() bool {
			return idle.Load() >= times || len(checkpointsIn(t, b)) > checkpoints
		})
		if n := len(checkpointsIn(t, b)); n != checkpoints || idle.Load() != times {
			t.Fatalf("%d checkpoints, %d idle intervals with nothing appended since checkpoint %d", n, idle.Load(), checkpoints)
		}
	}
	wantIdle(1, 1)
	b.invoice("m1", "o1")
	wantIdle(2, 2)
	cps := checkpointsIn(t, b)
	if cps[1].Seq != 3 || !cps[1].SignedAt.Equal(t0) {
		t.Fatalf("second checkpoint %+v", cps[1])
	}
	cancel()
	<-done
	// A new checkpointer picks up where the log's last checkpoint is.
	c2 := NewCheckpointer(b.s, testKey, CheckpointConfig{})
	if _, ok, err := c2.Checkpoint(context.Background()); ok || err != nil {
		t.Fatalf("a new checkpointer signed again: %v %v", ok, err)
	}
}

func TestCheckpointerStopsWhenTheLogCloses(t *testing.T) {
	b := newBuilder(t, false)
	c := NewCheckpointer(b.s, testKey, CheckpointConfig{})
	done := make(chan error, 1)
	// Load the last checkpoint first, as a node does: Run finds it loaded
	// and goes straight to waiting on the log, so closing the log can only
	// end that wait (before or while Run is in it), never Run's own load.
	if err := c.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	go func() { done <- c.Run(context.Background()) }()
	b.s.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the log closed")
	}
}

func TestCheckpointMessageIsUnambiguous(t *testing.T) {
	var h ledger.Hash
	h[0], h[31] = 0xab, 0x01
	got := string(CheckpointMessage(42, h))
	want := "payledger-checkpoint-v1\n42\nab" + strings.Repeat("00", 30) + "01"
	if got != want {
		t.Fatalf("message %q, want %q", got, want)
	}
	cp := SignCheckpoint(testKey, ledger.Head{Seq: 42, Hash: h}, t0)
	pub := testKey.Public().(ed25519.PublicKey)
	if err := cp.Verify(pub); err != nil {
		t.Fatal(err)
	}
	for _, other := range []CheckpointSigned{{Seq: 43, Hash: h, Signature: cp.Signature}, {Seq: 4, Hash: h, Signature: cp.Signature}} {
		if err := other.Verify(pub); !errors.Is(err, ErrCheckpoint) {
			t.Fatalf("signature of 42 verified for %d", other.Seq)
		}
	}
}

func TestDecodeCheckpointIsStrict(t *testing.T) {
	cp := SignCheckpoint(testKey, ledger.Head{Seq: 1}, t0)
	good := `{"seq":1,"hash":"` + cp.Hash.String() + `","public_key":"` + cp.PublicKey + `","signature":"` + cp.Signature + `","signed_at":"2026-02-25T12:00:00Z"}`
	if _, err := DecodeCheckpoint([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		strings.Replace(good, `"seq":1`, `"seq":1,"extra":2`, 1),
		strings.Replace(good, cp.PublicKey, strings.ToUpper(cp.PublicKey), 1),
		strings.Replace(good, cp.PublicKey, cp.PublicKey[:10], 1),
		strings.Replace(good, `,"signed_at":"2026-02-25T12:00:00Z"`, ``, 1),
		good + `{}`,
	} {
		if _, err := DecodeCheckpoint([]byte(bad)); !errors.Is(err, ErrCheckpoint) {
			t.Errorf("DecodeCheckpoint(%s) = %v", bad, err)
		}
	}
}

func TestCheckpointKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "checkpoint.key")
	k1, created, err := LoadOrCreateKey(path)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v %v", fi.Mode(), err)
	}
	k2, created, err := LoadOrCreateKey(path)
	if err != nil || created || !k1.Equal(k2) {
		t.Fatalf("reload: created %v, same %v, %v", created, k1.Equal(k2), err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("left %d files behind", len(entries))
	}
	// Racing creators share one key.
	race := filepath.Join(t.TempDir(), "checkpoint.key")
	keys := make([]ed25519.PrivateKey, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[i], _, _ = LoadOrCreateKey(race)
		}()
	}
	wg.Wait()
	for _, k := range keys {
		if !k.Equal(keys[0]) {
			t.Fatal("racing creators got different keys")
		}
	}
	if err := os.WriteFile(path, []byte("rsa:00\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKey(path); !errors.Is(err, ErrBadKey) {
		t.Fatalf("unknown key type: %v", err)
	}
}

func TestParsePublicKey(t *testing.T) {
	pub := testKey.Public().(ed25519.PublicKey)
	for _, s := range []string{
		hex.EncodeToString(pub), " " + hex.EncodeToString(pub) + "\n",
		base64.StdEncoding.EncodeToString(pub), base64.RawURLEncoding.EncodeToString(pub),
	} {
		got, err := ParsePublicKey(s)
		if err != nil || !got.Equal(pub) {
			t.Errorf("ParsePublicKey(%q) = %x %v", s, got, err)
		}
	}
	for _, s := range []string{"", "abc", hex.EncodeToString(pub)[:62], "ed25519:" + hex.EncodeToString(pub)} {
		if _, err := ParsePublicKey(s); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParsePublicKey(%q) = %v", s, err)
		}
	}
}

// TestSnapshotWhileAppending copies a log that is being appended to; the
// copy is a whole log, verified end to end.
func TestSnapshotWhileAppending(t *testing.T) {
	b := newBuilder(t, true)
	b.history()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := commands.UUID(b.id())
			if _, err := b.s.AppendWrites(context.Background(), w(commands.StreamID(commands.StreamInvoice, id), b.ev(commands.TypeInvoiceCreated, "m1", commands.InvoiceCreated{
				InvoiceID: id, MerchantID: "m1", Source: commands.SourceAPI, Amount: amount, Currency: "UAH",
				ConversionRate: rate, CommissionPercent: pct, GrossUSDT: conv.GrossUSDT, FeeUSDT: conv.FeeUSDT,
				MerchantUSDT: conv.MerchantUSDT, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour),
			}))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	stopAppends := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopAppends()
	// The snapshot starts while the appends are under way.
	started := b.s.Head().Seq
	waitFor(t, 5*time.Second, "20 appends", func() bool { return b.s.Head().Seq >= started+20 })
	path := filepath.Join(t.TempDir(), "backup.db")
	head, size, err := Snapshot(b.s, path)
	stopAppends()
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi == nil || fi.Size() != size || head.Seq < 20 {
		t.Fatalf("snapshot of %d bytes at %d", size, head.Seq)
	}
	if _, _, err := Snapshot(b.s, path); !errors.Is(err, os.ErrExist) {
		t.Fatalf("snapshot over an existing file: %v", err)
	}
	s := openReadOnly(t, path)
	if s.Head() != head {
		t.Fatalf("copy head %+v, snapshot said %+v", s.Head(), head)
	}
	if _, err := run(t, s, testKey.Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("Run on the snapshot: %v", err)
	}
}
