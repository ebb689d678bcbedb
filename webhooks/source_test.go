package webhooks

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
)

// follow runs src.Follow from sequence 1 on its own goroutine and hands
// over each batch it ingests; stop cancels it and returns Follow's error.
func follow(t *testing.T, src Source) (batches <-chan []uint64, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan []uint64, 16)
	done := make(chan error, 1)
	go func() {
		done <- src.Follow(ctx, 1, func(events []ledger.Event) error {
			seqs := make([]uint64, len(events))
			for i, e := range events {
				seqs[i] = e.Seq
			}
			out <- seqs
			return nil
		})
	}()
	var err error
	stopped := false
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			err = <-done
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return out, stop
}

// appendOne commits one event on a stream of its own: a commit of its own.
func appendOne(t *testing.T, store *boltlog.Store, n int) {
	t.Helper()
	_, err := store.Append(context.Background(), fmt.Sprintf("test-%d", n), ledger.Exactly(0), ledger.NewEvent{
		ID: ulid.Make(), Type: "test.happened", Time: time.Now(), Data: []byte(`{}`),
	})
	if err != nil {
		t.Fatalf("append %d: %v", n, err)
	}
}

func nextBatch(t *testing.T, batches <-chan []uint64) []uint64 {
	t.Helper()
	select {
	case b := <-batches:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no batch ingested within 10s")
		return nil
	}
}

// Commits made while the source lingers are ingested together, and a full
// batch ends the linger.
func TestFromLogGathersCommits(t *testing.T) {
	store, _ := boltlogtest.Open(t, nil)
	// What is committed when Follow starts is read at once, up to the head
	// as it was then: a full batch of four, so the source is then waiting
	// for commits after the fourth (not racing with the appends below).
	for n := 1; n <= 4; n++ {
		appendOne(t, store, n)
	}
	batches, stop := follow(t, FromLog(store, 4, time.Hour))
	if got := nextBatch(t, batches); fmt.Sprint(got) != "[1 2 3 4]" {
		t.Fatalf("catch-up ingest %v, want [1 2 3 4]", got)
	}
	for n := 5; n <= 7; n++ {
		appendOne(t, store, n)
	}
	// Three commits, each its own: with an hour's linger and room for four
	// events, the source must still be waiting. (It cannot ingest before
	// the eighth commit, so this check does not race with it.)
	select {
	case b := <-batches:
		t.Fatalf("ingested %v before the batch was full or the linger over", b)
	default:
	}
	appendOne(t, store, 8)
	if got := nextBatch(t, batches); fmt.Sprint(got) != "[5 6 7 8]" {
		t.Fatalf("second ingest %v, want [5 6 7 8] in one batch", got)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Follow returned %v, want context.Canceled", err)
	}
}

// A lone commit is ingested once the linger is over; cancelling during a
// linger ends Follow at once.
func TestFromLogLingerEnds(t *testing.T) {
	store, _ := boltlogtest.Open(t, nil)
	batches, stop := follow(t, FromLog(store, 0, time.Millisecond))
	appendOne(t, store, 1)
	if got := nextBatch(t, batches); fmt.Sprint(got) != "[1]" {
		t.Fatalf("ingested %v, want [1]", got)
	}
	appendOne(t, store, 2)
	if got := nextBatch(t, batches); fmt.Sprint(got) != "[2]" {
		t.Fatalf("ingested %v, want [2]", got)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Follow returned %v, want context.Canceled", err)
	}

	// An hour's linger, cancelled while it waits.
	batches, stop = follow(t, FromLog(store, 0, time.Hour))
	if got := nextBatch(t, batches); fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("catch-up ingested %v, want [1 2]", got)
	}
	appendOne(t, store, 3)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Follow returned %v, want context.Canceled", err)
	}
	select {
	case b := <-batches:
		t.Fatalf("ingested %v during the linger", b)
	default:
	}
}
