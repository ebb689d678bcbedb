package boltlog_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
)

func TestAppendExpectedVersion(t *testing.T) {
	cases := []struct {
		name     string
		existing int // events already in the stream
		expected ledger.Expected
		ok       bool
	}{
		{"any on new stream", 0, ledger.Any, true},
		{"no-stream on new stream", 0, ledger.NoStream, true},
		{"exact 1 on new stream", 0, ledger.Exactly(1), false},
		{"any on stream at 2", 2, ledger.Any, true},
		{"no-stream on stream at 2", 2, ledger.NoStream, false},
		{"exact 2 on stream at 2", 2, ledger.Exactly(2), true},
		{"exact 1 on stream at 2 (stale)", 2, ledger.Exactly(1), false},
		{"exact 3 on stream at 2 (ahead)", 2, ledger.Exactly(3), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, _ := boltlogtest.Open(t, nil)
			if c.existing > 0 {
				if _, err := s.Append(ctx, "s", ledger.NoStream, evs("created", c.existing)...); err != nil {
					t.Fatal(err)
				}
			}
			// Another stream moves the global sequence on, so versions and
			// sequences differ.
			if _, err := s.Append(ctx, "other", ledger.Any, ev("x")); err != nil {
				t.Fatal(err)
			}
			before := s.Head()
			got, err := s.Append(ctx, "s", c.expected, ev("a"), ev("b"))
			v, verr := s.StreamVersion("s")
			if verr != nil {
				t.Fatal(verr)
			}
			if c.ok {
				if err != nil {
					t.Fatalf("append: %v", err)
				}
				if len(got) != 2 || got[0].Version != uint64(c.existing)+1 || got[1].Version != uint64(c.existing)+2 {
					t.Fatalf("versions %v", got)
				}
				if got[0].Seq != before.Seq+1 || got[0].PrevHash != before.Hash || got[1].PrevHash != got[0].Hash {
					t.Fatal("events not chained onto the head")
				}
				if v != uint64(c.existing)+2 || s.Head() != (ledger.Head{Seq: got[1].Seq, Hash: got[1].Hash}) {
					t.Fatalf("stream at %d, head %v", v, s.Head())
				}
				return
			}
			var ce *ledger.ConflictError
			if !errors.As(err, &ce) || !errors.Is(err, ledger.ErrVersionConflict) {
				t.Fatalf("append: %v, want a *ConflictError", err)
			}
			if ce.Stream != "s" || ce.Expected != c.expected || ce.Actual != uint64(c.existing) {
				t.Fatalf("conflict %+v", ce)
			}
			if got != nil || s.Head() != before || v != uint64(c.existing) {
				t.Fatal("a refused append wrote something")
			}
		})
	}
}

func TestAppendReturnsWhatIsStored(t *testing.T) {
	s, _ := boltlogtest.Open(t, nil)
	got, err := s.Append(ctx, "inv-1", ledger.NoStream, ev("invoice.created", "m-1/ext/1"), ev("invoice.paid"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range got {
		stored, err := s.Get(e.Seq)
		if err != nil {
			t.Fatal(err)
		}
		if stored.Hash != e.Hash || stored.ID != e.ID || !stored.Time.Equal(e.Time) || string(stored.Data) != string(e.Data) {
			t.Fatalf("stored %+v\nreturned %+v", stored, e)
		}
	}
	read, err := s.ReadStream(ctx, "inv-1", 2)
	if err != nil || len(read) != 1 || read[0].Type != "invoice.paid" {
		t.Fatalf("ReadStream from 2 = %v, %v", read, err)
	}
	if read, _ := s.ReadStream(ctx, "inv", 0); len(read) != 0 {
		t.Fatal("ReadStream of a prefix of a stream id returned events")
	}
	if _, err := s.Get(3); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("Get past the head = %v", err)
	}
}

func TestClaims(t *testing.T) {
	s, _ := boltlogtest.Open(t, nil)
	if _, err := s.Append(ctx, "inv-a", ledger.NoStream, ev("invoice.created", "m-1/ext/42")); err != nil {
		t.Fatal(err)
	}
	before := s.Head()
	_, err := s.Append(ctx, "inv-b", ledger.NoStream, ev("invoice.created", "m-1/ext/7", "m-1/ext/42"))
	var ce *ledger.ClaimError
	if !errors.As(err, &ce) || !errors.Is(err, ledger.ErrClaimed) || ce.Key != "m-1/ext/42" || ce.Holder != "inv-a" {
		t.Fatalf("claim of a held key = %v", err)
	}
	if s.Head() != before {
		t.Fatal("refused claim wrote something")
	}
	if _, ok, _ := s.ClaimHolder("m-1/ext/7"); ok {
		t.Fatal("refused append's other claim was taken")
	}
	// With several claims held, the first in the event's order is named.
	if _, err := s.Append(ctx, "inv-c", ledger.NoStream, ev("invoice.created", "m-1/ext/8", "m-1/ext/9")); err != nil {
		t.Fatal(err)
	}
	_, err = s.Append(ctx, "inv-d", ledger.NoStream, ev("invoice.created", "m-1/ext/new", "m-1/ext/9", "m-1/ext/8"))
	if !errors.As(err, &ce) || ce.Key != "m-1/ext/9" || ce.Holder != "inv-c" {
		t.Fatalf("two held claims = %v, want the first (m-1/ext/9)", err)
	}
	// The holder may claim its key again.
	if _, err := s.Append(ctx, "inv-a", ledger.Exactly(1), ev("invoice.updated", "m-1/ext/42")); err != nil {
		t.Fatalf("re-claim by the holder: %v", err)
	}
	if h, ok, err := s.ClaimHolder("m-1/ext/42"); err != nil || !ok || h != "inv-a" {
		t.Fatalf("ClaimHolder = %q %v %v", h, ok, err)
	}
	// Two streams of one atomic append cannot take the same key.
	_, err = s.AppendWrites(ctx,
		ledger.Write{Stream: "x", Expected: ledger.NoStream, Events: []ledger.NewEvent{ev("t", "k")}},
		ledger.Write{Stream: "y", Expected: ledger.NoStream, Events: []ledger.NewEvent{ev("t", "k")}})
	if !errors.Is(err, ledger.ErrClaimed) {
		t.Fatalf("same key in two writes: %v", err)
	}
	// Racing claims: exactly one stream gets the key.
	var wg sync.WaitGroup
	results := make([]error, 32)
	for i := range results {
		wg.Go(func() {
			_, results[i] = s.Append(ctx, fmt.Sprintf("race-%d", i), ledger.NoStream, ev("t", "contested"))
		})
	}
	wg.Wait()
	won := 0
	for _, err := range results {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ledger.ErrClaimed):
			t.Fatalf("racing claim: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d streams claimed one key", won)
	}
}

func TestAppendWritesIsAtomic(t *testing.T) {
	s, _ := boltlogtest.Open(t, nil)
	if _, err := s.Append(ctx, "a", ledger.NoStream, ev("t")); err != nil {
		t.Fatal(err)
	}
	before := s.Head()
	_, err := s.AppendWrites(ctx,
		ledger.Write{Stream: "a", Expected: ledger.Exactly(1), Events: []ledger.NewEvent{ev("t"), ev("t")}},
		ledger.Write{Stream: "b", Expected: ledger.Exactly(5), Events: []ledger.NewEvent{ev("t")}})
	var ce *ledger.ConflictError
	if !errors.As(err, &ce) || ce.Stream != "b" {
		t.Fatalf("conflicting second write: %v", err)
	}
	if s.Head() != before {
		t.Fatal("a multi-stream append with one conflict wrote something")
	}
	if v, _ := s.StreamVersion("a"); v != 1 {
		t.Fatalf("stream a at %d", v)
	}
	// A write with no events is a condition: it must hold, and writes nothing.
	_, err = s.AppendWrites(ctx,
		ledger.Write{Stream: "a", Expected: ledger.Exactly(1), Events: []ledger.NewEvent{ev("t")}},
		ledger.Write{Stream: "guard", Expected: ledger.Exactly(3)})
	if !errors.Is(err, ledger.ErrVersionConflict) || s.Head() != before {
		t.Fatalf("failed condition: %v", err)
	}
	got, err := s.AppendWrites(ctx,
		ledger.Write{Stream: "a", Expected: ledger.Exactly(1), Events: []ledger.NewEvent{ev("t1"), ev("t2")}},
		ledger.Write{Stream: "guard", Expected: ledger.NoStream},
		ledger.Write{Stream: "b", Expected: ledger.NoStream, Events: []ledger.NewEvent{ev("t3")}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Type != "t1" || got[1].Type != "t2" || got[2].Type != "t3" ||
		got[2].Stream != "b" || got[2].Version != 1 || got[1].Version != 3 || got[2].Seq != before.Seq+3 {
		t.Fatalf("multi-stream append returned %+v", got)
	}
	if v, _ := s.StreamVersion("guard"); v != 0 {
		t.Fatal("a condition created its stream")
	}
}

func TestInvalidAppends(t *testing.T) {
	s, _ := boltlogtest.Open(t, nil)
	noType := ev("")
	badJSON := ev("t")
	badJSON.Data = []byte("{nope")
	cases := []struct {
		name   string
		writes []ledger.Write
	}{
		{"no events", []ledger.Write{{Stream: "s", Expected: ledger.Any}}},
		{"nothing at all", nil},
		{"no stream", []ledger.Write{{Stream: "", Expected: ledger.Any, Events: []ledger.NewEvent{ev("t")}}}},
		{"no type", []ledger.Write{{Stream: "s", Expected: ledger.Any, Events: []ledger.NewEvent{noType}}}},
		{"bad json", []ledger.Write{{Stream: "s", Expected: ledger.Any, Events: []ledger.NewEvent{ev("t"), badJSON}}}},
		{"expected below any", []ledger.Write{{Stream: "s", Expected: -2, Events: []ledger.NewEvent{ev("t")}}}},
		{"stream twice", []ledger.Write{
			{Stream: "s", Expected: ledger.Any, Events: []ledger.NewEvent{ev("t")}},
			{Stream: "s", Expected: ledger.Any, Events: []ledger.NewEvent{ev("t")}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := s.AppendWrites(ctx, c.writes...); !errors.Is(err, ledger.ErrInvalidEvent) {
				t.Fatalf("got %v, want ErrInvalidEvent", err)
			}
			if s.Head().Seq != 0 {
				t.Fatal("an invalid append wrote something")
			}
		})
	}
}

func TestProjectorErrorRollsBackOnlyThatAppend(t *testing.T) {
	p := &countProjector{bucket: "counts", poison: "poison"}
	s, _ := boltlogtest.Open(t, &boltlog.Options{Projectors: []boltlog.Projector{p}})
	if _, err := s.Append(ctx, "s", ledger.NoStream, ev("ok")); err != nil {
		t.Fatal(err)
	}
	before := s.Head()
	_, err := s.Append(ctx, "s", ledger.Exactly(1), ev("ok"), ev("poison"))
	if !errors.Is(err, errPoison) {
		t.Fatalf("poisoned append: %v", err)
	}
	if _, err := s.Append(ctx, "s", ledger.Exactly(1), ev("panic")); err == nil {
		t.Fatal("append whose projector panicked succeeded")
	}
	if s.Head() != before {
		t.Fatal("a failed projection left events in the log")
	}
	if v, _ := s.StreamVersion("s"); v != 1 {
		t.Fatalf("stream at %d after a rolled-back append", v)
	}
	if n, applied := p.count(t, s.DB(), "ok"); n != 1 || applied != 1 {
		t.Fatalf("view counted %d events up to %d; the rolled-back ok event leaked into it", n, applied)
	}
	if _, err := s.Append(ctx, "s", ledger.Exactly(1), ev("ok")); err != nil {
		t.Fatalf("append after a failed one: %v", err)
	}
	if n, applied := p.count(t, s.DB(), "ok"); n != 2 || applied != 2 {
		t.Fatalf("view counted %d up to %d", n, applied)
	}
}

// TestGroupFailuresDoNotSpread runs many concurrent appends, some of which
// conflict or fail their projection, while the writer is held so they queue
// into shared commits; every good append must succeed.
func TestGroupFailuresDoNotSpread(t *testing.T) {
	gate := make(chan struct{})
	entered := make(chan struct{})
	var once sync.Once
	hold := projectorFunc(func(tx *bbolt.Tx, events []ledger.Event) error {
		if events[0].Type == "gate" {
			once.Do(func() { close(entered) })
			<-gate
		}
		return nil
	})
	var maxAppends int
	var mu sync.Mutex
	p := &countProjector{bucket: "counts", poison: "poison"}
	s, _ := boltlogtest.Open(t, &boltlog.Options{
		Projectors: []boltlog.Projector{hold, p},
		OnCommit: func(events, appends int, took time.Duration) {
			mu.Lock()
			maxAppends = max(maxAppends, appends)
			mu.Unlock()
		},
	})
	gateDone := make(chan error, 1)
	go func() { _, err := s.Append(ctx, "gate", ledger.Any, ev("gate")); gateDone <- err }()
	within(t, entered, 10*time.Second, "the writer to hold")

	const n = 300
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			switch i % 3 {
			case 0: // good, own stream
				_, errs[i] = s.Append(ctx, fmt.Sprintf("good-%d", i), ledger.NoStream, ev("ok"))
			case 1: // all race for one new stream: one wins, the rest conflict
				_, errs[i] = s.Append(ctx, "contested", ledger.NoStream, ev("ok"))
			case 2: // fails its projection after writing began
				if i%2 == 0 {
					_, errs[i] = s.Append(ctx, fmt.Sprintf("bad-%d", i), ledger.NoStream, ev("ok"), ev("poison"))
				} else {
					_, errs[i] = s.Append(ctx, fmt.Sprintf("good-%d", i), ledger.NoStream, ev("ok"))
				}
			}
		})
	}
	close(gate)
	wg.Wait()
	if err := within(t, gateDone, 10*time.Second, "the gate append"); err != nil {
		t.Fatal(err)
	}
	good, contestedWins := 0, 0
	for i, err := range errs {
		switch {
		case i%3 == 1 && err == nil:
			contestedWins++
		case i%3 == 1:
			if !errors.Is(err, ledger.ErrVersionConflict) {
				t.Errorf("contested append %d: %v", i, err)
			}
		case i%3 == 2 && i%2 == 0:
			if !errors.Is(err, errPoison) {
				t.Errorf("poisoned append %d: %v", i, err)
			}
		case err != nil:
			t.Errorf("good append %d failed: %v", i, err)
		default:
			good++
		}
	}
	if contestedWins != 1 {
		t.Fatalf("%d appends won one new stream", contestedWins)
	}
	want := uint64(good + contestedWins + 1) // + the gate
	if h := s.Head(); h.Seq != want {
		t.Fatalf("head at %d, want %d events", h.Seq, want)
	}
	if c, _ := p.count(t, s.DB(), "ok"); c != want-1 {
		t.Fatalf("view counted %d ok events, want %d", c, want-1)
	}
	t.Logf("largest commit held %d appends", maxAppends)
	if maxAppends < 2 {
		t.Fatal("appends did not share commits")
	}
}

type projectorFunc func(tx *bbolt.Tx, events []ledger.Event) error

func (projectorFunc) Init(*bbolt.Tx) (uint64, error) { return 1 << 62, nil } // needs no catch-up
func (f projectorFunc) Apply(tx *bbolt.Tx, events []ledger.Event) error {
	return f(tx, events)
}

func TestProjectorCatchUpOnReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	s := boltlogtest.OpenAt(t, path, nil)
	for i := range 10 {
		if _, err := s.Append(ctx, fmt.Sprintf("s%d", i%3), ledger.Any, ev("ok")); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	// A projector added to an existing log catches up before the first append.
	p := &countProjector{bucket: "counts"}
	s = boltlogtest.OpenAt(t, path, &boltlog.Options{Projectors: []boltlog.Projector{p}})
	if n, applied := p.count(t, s.DB(), "ok"); n != 10 || applied != 10 {
		t.Fatalf("after catch-up: %d events up to %d", n, applied)
	}
	if _, err := s.Append(ctx, "s0", ledger.Any, ev("ok")); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Reopened with its checkpoint, it applies nothing twice.
	s = boltlogtest.OpenAt(t, path, &boltlog.Options{Projectors: []boltlog.Projector{p}})
	if n, applied := p.count(t, s.DB(), "ok"); n != 11 || applied != 11 {
		t.Fatalf("after reopen: %d events up to %d", n, applied)
	}
	// A dropped view is rebuilt from the log.
	if err := s.DB().Update(func(tx *bbolt.Tx) error { return tx.DeleteBucket([]byte("counts")) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = boltlogtest.OpenAt(t, path, &boltlog.Options{Projectors: []boltlog.Projector{p}})
	if n, applied := p.count(t, s.DB(), "ok"); n != 11 || applied != 11 {
		t.Fatalf("after rebuild: %d events up to %d", n, applied)
	}
	// A projector that cannot catch up stops Open.
	s.Close()
	bad := &countProjector{bucket: "other", poison: "ok"}
	if _, err := boltlog.Open(path, &boltlog.Options{Projectors: []boltlog.Projector{bad}}); !errors.Is(err, errPoison) {
		t.Fatalf("open with a failing projector: %v", err)
	}
}

// appendProjector is a countProjector that also counts, under
// "_appended", the events it is given through ApplyAppend.
type appendProjector struct{ countProjector }

func (p *appendProjector) ApplyAppend(tx *bbolt.Tx, events []ledger.Event) error {
	b := tx.Bucket([]byte(p.bucket))
	var n uint64
	if v := b.Get([]byte("_appended")); v != nil {
		n = binary.BigEndian.Uint64(v)
	}
	if err := b.Put([]byte("_appended"), binary.BigEndian.AppendUint64(nil, n+uint64(len(events)))); err != nil {
		return err
	}
	return p.Apply(tx, events)
}

// TestAppendProjector: an AppendProjector gets an append's events through
// ApplyAppend, and a catch-up's batches and an import's events through
// Apply, whose ends are not appends' ends.
func TestAppendProjector(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	s := boltlogtest.OpenAt(t, path, nil)
	for range 5 {
		if _, err := s.Append(ctx, "s0", ledger.Any, ev("ok")); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	check := func(s *boltlog.Store, p *appendProjector, what string, wantAll, wantAppended uint64) {
		t.Helper()
		all, applied := p.count(t, s.DB(), "ok")
		appended, _ := p.count(t, s.DB(), "_appended")
		if all != wantAll || applied != wantAll || appended != wantAppended {
			t.Errorf("%s: %d events applied up to %d, %d through ApplyAppend; want %d, %d", what, all, applied, appended, wantAll, wantAppended)
		}
	}

	p := &appendProjector{countProjector{bucket: "counts"}}
	s = boltlogtest.OpenAt(t, path, &boltlog.Options{Projectors: []boltlog.Projector{p}})
	check(s, p, "after the catch-up", 5, 0)
	if _, err := s.Append(ctx, "s1", ledger.Any, ev("ok"), ev("ok")); err != nil {
		t.Fatal(err)
	}
	check(s, p, "after an append", 7, 2)

	var all []ledger.Event
	for e, err := range s.Events(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, e)
	}
	ip := &appendProjector{countProjector{bucket: "counts"}}
	dst, _ := boltlogtest.Open(t, &boltlog.Options{Projectors: []boltlog.Projector{ip}})
	if err := dst.Import(ctx, all); err != nil {
		t.Fatal(err)
	}
	check(dst, ip, "after an import", 7, 0)
}

func TestImport(t *testing.T) {
	src, _ := boltlogtest.Open(t, nil)
	for i := range 20 {
		claims := []string(nil)
		if i%5 == 0 {
			claims = []string{fmt.Sprintf("key-%d", i)}
		}
		if _, err := src.Append(ctx, fmt.Sprintf("s%d", i%4), ledger.Any, ev("t", claims...)); err != nil {
			t.Fatal(err)
		}
	}
	var all []ledger.Event
	for e, err := range src.Events(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, e)
	}

	dst, _ := boltlogtest.Open(t, nil)
	if err := dst.Import(ctx, all[:7]); err != nil {
		t.Fatal(err)
	}
	refuse := func(name string, events []ledger.Event, seq uint64, class error) {
		t.Helper()
		before := dst.Head()
		err := dst.Import(ctx, events)
		var ve *ledger.VerifyError
		if !errors.As(err, &ve) || ve.Seq != seq || !errors.Is(err, class) {
			t.Fatalf("%s: %v, want *VerifyError at %d wrapping %v", name, err, seq, class)
		}
		if dst.Head() != before {
			t.Fatalf("%s: a refused import wrote something", name)
		}
	}
	refuse("gap", all[8:12], 8, ledger.ErrChainBroken)
	refuse("replay", all[5:9], 8, ledger.ErrChainBroken)
	wrongPrev := append([]ledger.Event(nil), all[7:10]...)
	wrongPrev[1].PrevHash = all[0].Hash
	refuse("wrong previous hash", wrongPrev, 9, ledger.ErrChainBroken)
	tampered := append([]ledger.Event(nil), all[7:10]...)
	tampered[2].Data = []byte(`{"n":-1}`)
	refuse("tampered data", tampered, 10, ledger.ErrCorrupt)
	forgedHash := append([]ledger.Event(nil), all[7:10]...)
	forgedHash[0].Hash[0] ^= 1
	refuse("tampered hash", forgedHash, 8, ledger.ErrCorrupt)
	wrongVersion := append([]ledger.Event(nil), all[7:10]...)
	wrongVersion[0].Version++
	refuse("wrong version", wrongVersion, 8, ledger.ErrChainBroken)

	if err := dst.Import(ctx, all[7:]); err != nil {
		t.Fatal(err)
	}
	if dst.Head() != src.Head() {
		t.Fatalf("imported head %v, source %v", dst.Head(), src.Head())
	}
	if h, ok, _ := dst.ClaimHolder("key-15"); !ok || h != "s3" {
		t.Fatalf("imported claim held by %q", h)
	}
	// The chain continues after an import.
	got, err := dst.Append(ctx, "s1", ledger.Exactly(5), ev("after"))
	if err != nil || got[0].Seq != 21 || got[0].PrevHash != all[19].Hash {
		t.Fatalf("append after import: %v %v", got, err)
	}
	// An import cannot take a key another stream holds.
	next := ledger.NewEvent{ID: ev("x").ID, Type: "t", Time: t0, Data: []byte(`{}`), Claims: []string{"key-0"}}
	_, forged := ledger.Seal(nil, "intruder", 22, 1, got[0].Hash, &next)
	refuse("stolen claim", []ledger.Event{forged}, 22, ledger.ErrChainBroken)
}

func TestWait(t *testing.T) {
	s, _ := boltlogtest.Open(t, nil)
	if _, err := s.Append(ctx, "s", ledger.Any, ev("t")); err != nil {
		t.Fatal(err)
	}
	if h, err := s.Wait(ctx, 0); err != nil || h.Seq != 1 {
		t.Fatalf("Wait for a passed sequence = %v, %v", h, err)
	}
	type result struct {
		h   ledger.Head
		err error
	}
	waited := make(chan result, 1)
	go func() { h, err := s.Wait(ctx, 1); waited <- result{h, err} }()
	select {
	case r := <-waited:
		t.Fatalf("Wait returned before an append: %+v", r)
	default:
	}
	got, err := s.Append(ctx, "s", ledger.Any, ev("t"), ev("t"))
	if err != nil {
		t.Fatal(err)
	}
	r := within(t, waited, 10*time.Second, "Wait to see the append")
	if r.err != nil || r.h.Seq != 3 || r.h.Hash != got[1].Hash {
		t.Fatalf("Wait = %+v", r)
	}

	cctx, cancel := contextWithCancel()
	go func() { h, err := s.Wait(cctx, 10); waited <- result{h, err} }()
	cancel()
	if r := within(t, waited, 10*time.Second, "Wait to see its context end"); !errors.Is(r.err, errCanceled) {
		t.Fatalf("Wait after cancel = %+v", r)
	}
	go func() { h, err := s.Wait(ctx, 10); waited <- result{h, err} }()
	s.Close()
	if r := within(t, waited, 10*time.Second, "Wait to see Close"); !errors.Is(r.err, ledger.ErrClosed) {
		t.Fatalf("Wait after Close = %+v", r)
	}
	if _, err := s.Append(ctx, "s", ledger.Any, ev("t")); !errors.Is(err, ledger.ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
}

// TestReadsChunkAndMayAppend reads more records than one scan chunk, and
// appends from inside the loops with a tiny memory map, which deadlocked when
// the loop bodies ran inside the read transaction (bbolt's writer must wait
// for readers to remap).
func TestReadsChunkAndMayAppend(t *testing.T) {
	s, _ := boltlogtest.Open(t, &boltlog.Options{InitialMmapSize: 1 << 15})
	const n = 10_000
	for i := 0; i < n; i += 1000 {
		if _, err := s.Append(ctx, fmt.Sprintf("s%d", i/1000%3), ledger.Any, evs("bulk", 1000)...); err != nil {
			t.Fatal(err)
		}
	}
	next := uint64(1)
	for e, err := range s.Events(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Seq != next {
			t.Fatalf("iterator gave %d, want %d", e.Seq, next)
		}
		if e.Seq%2000 == 0 {
			// Enough to outgrow the memory map (it doubles as the file grows).
			side := evs("side", 1000)
			for i := range side {
				side[i].Data = []byte(`"` + strings.Repeat("x", 2000) + `"`)
			}
			if _, err := s.Append(ctx, "side", ledger.Any, side...); err != nil {
				t.Fatal(err)
			}
		}
		next++
	}
	if next != n+1 {
		t.Fatalf("iterated %d events, want %d (the head when iteration began)", next-1, n)
	}
	// From the middle, across a chunk boundary, stopping early.
	count := 0
	for e, err := range s.Events(ctx, 4090) {
		if err != nil || e.Seq != uint64(4090+count) {
			t.Fatalf("event %v, %v", e.Seq, err)
		}
		if count++; count == 10 {
			break
		}
	}
	seen := 0
	last := uint64(n - 5)
	err := s.ScanRaw(ctx, n-5, func(seq uint64, rec []byte) error {
		if seq != last {
			return fmt.Errorf("ScanRaw gave %d, want %d", seq, last)
		}
		if _, err := ledger.Decode(rec); err != nil {
			return err
		}
		last++
		seen++
		return nil
	})
	if err != nil || uint64(seen) != s.Head().Seq-(n-5)+1 {
		t.Fatalf("ScanRaw saw %d records: %v", seen, err)
	}
	stop := errors.New("stop")
	if err := s.ScanRaw(ctx, 1, func(uint64, []byte) error { return stop }); err != stop {
		t.Fatalf("ScanRaw did not return fn's error: %v", err)
	}
	cctx, cancel := contextWithCancel()
	cancel()
	for _, err := range s.Events(cctx, 1) {
		if !errors.Is(err, errCanceled) {
			t.Fatalf("iterating with an ended context: %v", err)
		}
	}
}

func TestOpenLockedAndReadOnly(t *testing.T) {
	s, path := boltlogtest.Open(t, nil)
	if _, err := s.Append(ctx, "s", ledger.Any, ev("t")); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		_, err := boltlog.Open(path, &boltlog.Options{OpenTimeout: 50 * time.Millisecond, ReadOnly: ro})
		if !errors.Is(err, boltlog.ErrLocked) {
			t.Fatalf("open of a log in use (read-only %v): %v", ro, err)
		}
	}
	s.Close()

	ro, err := boltlog.Open(path, &boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.Append(ctx, "s", ledger.Any, ev("t")); !errors.Is(err, boltlog.ErrReadOnly) {
		t.Fatalf("append to a read-only log: %v", err)
	}
	if h, err := ro.Verify(ctx); err != nil || h.Seq != 1 {
		t.Fatalf("verify read-only: %v %v", h, err)
	}
	// Two readers share the file.
	ro2, err := boltlog.Open(path, &boltlog.Options{ReadOnly: true, OpenTimeout: time.Second})
	if err != nil {
		t.Fatalf("second reader: %v", err)
	}
	ro2.Close()

	if _, err := boltlog.Open(filepath.Join(t.TempDir(), "missing.db"), &boltlog.Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only open created a log")
	}
	other := filepath.Join(t.TempDir(), "other.db")
	db, err := bbolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("x")); return err })
	db.Close()
	if _, err := boltlog.Open(other, &boltlog.Options{ReadOnly: true}); !errors.Is(err, boltlog.ErrNotLog) {
		t.Fatalf("read-only open of another bbolt file: %v", err)
	}
	// An empty file (a copy that never got its bytes) is named as such, and
	// stays empty.
	empty := filepath.Join(t.TempDir(), "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := boltlog.Open(empty, &boltlog.Options{ReadOnly: true}); !errors.Is(err, boltlog.ErrNotLog) || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("read-only open of an empty file: %v, want ErrNotLog saying it is empty", err)
	}
	if fi, err := os.Stat(empty); err != nil || fi.Size() != 0 {
		t.Fatalf("the empty file changed: %v %v", fi, err)
	}
}

// TestOpenWritableRefusesWhatIsNotALog: a writable open takes a missing
// file, or a bbolt file with no bucket at all (one whose creation was cut
// before the log's first transaction), as a new log, but refuses, and
// leaves byte for byte as it was, an empty file and a bbolt file of
// something else: another program's buckets (a webhooks store, a replay's
// views), or a meta bucket with no format.
func TestOpenWritableRefusesWhatIsNotALog(t *testing.T) {
	bboltFile := func(t *testing.T, fill func(tx *bbolt.Tx) error) string {
		t.Helper()
		path := filepath.Join(t.TempDir(), "ledger.db")
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if fill != nil {
			if err := db.Update(fill); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		return path
	}
	buckets := func(names ...string) func(tx *bbolt.Tx) error {
		return func(tx *bbolt.Tx) error {
			for _, n := range names {
				b, err := tx.CreateBucket([]byte(n))
				if err != nil {
					return err
				}
				if err := b.Put([]byte("k"), []byte("v")); err != nil {
					return err
				}
			}
			return nil
		}
	}
	empty := filepath.Join(t.TempDir(), "ledger.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path, says string
	}{
		{"an empty file", empty, "empty"},
		{"a webhooks store", bboltFile(t, buckets("w_meta", "w_deliveries")), `"w_deliveries"`},
		{"a replay's views", bboltFile(t, buckets("v_meta", "v_invoices")), `"v_invoices"`},
		{"a meta bucket with no format", bboltFile(t, buckets("meta")), "no format"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before, err := os.ReadFile(c.path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := boltlog.Open(c.path, nil)
			if err == nil {
				s.Close()
			}
			if !errors.Is(err, boltlog.ErrNotLog) || !strings.Contains(err.Error(), c.says) {
				t.Errorf("writable open of %s: %v, want ErrNotLog saying %s", c.name, err, c.says)
			}
			if after, _ := os.ReadFile(c.path); string(after) != string(before) {
				t.Errorf("the writable open changed %s (%d bytes, now %d)", c.name, len(before), len(after))
			}
		})
	}

	// New logs: a missing file, and a bbolt file with no bucket yet.
	for name, path := range map[string]string{
		"a missing file":           filepath.Join(t.TempDir(), "ledger.db"),
		"a bbolt file, no buckets": bboltFile(t, nil),
	} {
		s := boltlogtest.OpenAt(t, path, nil)
		if _, err := s.Append(ctx, "s", ledger.Any, ev("t")); err != nil {
			t.Fatalf("%s: append: %v", name, err)
		}
	}
}
