package boltlog_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
)

// TestExpectedVersionsUnderContention has 64 goroutines append to one stream
// the way a command does (read the version, append expecting it, retry on a
// conflict): every version has exactly one winner, versions run 1..N with no
// gap, and no acknowledged event is lost.
func TestExpectedVersionsUnderContention(t *testing.T) {
	const writers, each = 64, 10
	s, _ := boltlogtest.Open(t, nil)
	type won struct {
		id      ulid.ULID
		version uint64
	}
	wins := make([][]won, writers)
	conflicts := make([]int, writers)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for len(wins[w]) < each {
				v, err := s.StreamVersion("hot")
				if err != nil {
					errs <- err
					return
				}
				e := ev(fmt.Sprintf("w%d", w))
				got, err := s.Append(ctx, "hot", ledger.Exactly(v), e)
				switch {
				case errors.Is(err, ledger.ErrVersionConflict):
					conflicts[w]++
					continue
				case err != nil:
					errs <- err
					return
				}
				if got[0].Version != v+1 || got[0].ID != e.ID {
					errs <- fmt.Errorf("appended at %d expecting %d: got version %d", v, v, got[0].Version)
					return
				}
				wins[w] = append(wins[w], won{e.ID, got[0].Version})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const total = writers * each
	winner := make(map[uint64]ulid.ULID, total)
	nConflicts := 0
	for w := range writers {
		nConflicts += conflicts[w]
		for _, x := range wins[w] {
			if prev, dup := winner[x.version]; dup {
				t.Fatalf("version %d won twice (%s and %s)", x.version, prev, x.id)
			}
			winner[x.version] = x.id
		}
	}
	events, err := s.ReadStream(ctx, "hot", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != total || s.Head().Seq != total {
		t.Fatalf("%d events in the stream, head %d, want %d", len(events), s.Head().Seq, total)
	}
	for i, e := range events {
		if e.Version != uint64(i+1) || winner[e.Version] != e.ID {
			t.Fatalf("version %d holds %s, acknowledged winner %s", e.Version, e.ID, winner[e.Version])
		}
	}
	t.Logf("%d events, %d conflicts retried", total, nConflicts)
	if nConflicts == 0 {
		t.Log("no contention seen (a slow machine?)")
	}
}

// TestCloseRacingAppends closes the store while appends are in flight: each
// append either commits (and is in the log) or fails with ErrClosed (and is not).
func TestCloseRacingAppends(t *testing.T) {
	s, path := boltlogtest.Open(t, nil)
	const n = 200
	type result struct {
		events []ledger.Event
		err    error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			evs, err := s.Append(ctx, fmt.Sprintf("s%d", i), ledger.NoStream, ev("t"))
			results[i] = result{evs, err}
		})
	}
	close(start)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	committed := 0
	for _, r := range results {
		switch {
		case r.err == nil:
			committed++
		case !errors.Is(r.err, ledger.ErrClosed):
			t.Fatalf("append racing Close: %v", r.err)
		}
	}
	h := boltlogtest.Verify(t, path)
	if h.Seq != uint64(committed) {
		t.Fatalf("%d appends acknowledged, %d in the log", committed, h.Seq)
	}
	t.Logf("%d of %d appends beat Close", committed, n)
}

// TestVerifyWhileAppending verifies a live log while appends go on: the
// check covers the head as it was when Verify began and must not mistake
// newer records, index entries or stream versions for damage.
func TestVerifyWhileAppending(t *testing.T) {
	s, _ := boltlogtest.Open(t, nil)
	for i := range 50 {
		if _, err := s.Append(ctx, fmt.Sprintf("s%d", i), ledger.NoStream, evs("t", 400)...); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	appendErr := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				appendErr <- nil
				return
			default:
			}
			if _, err := s.Append(ctx, fmt.Sprintf("s%d", i%50), ledger.Any, evs("t", 20)...); err != nil {
				appendErr <- err
				return
			}
		}
	}()
	moved := 0
	for range 5 {
		h, err := s.Verify(ctx)
		if err != nil {
			close(stop)
			t.Fatalf("verify of a live log: %v", err)
		}
		if s.Head().Seq > h.Seq {
			moved++
		}
	}
	close(stop)
	t.Logf("the head moved during %d of 5 verifications", moved)
	if err := <-appendErr; err != nil {
		t.Fatal(err)
	}
}
