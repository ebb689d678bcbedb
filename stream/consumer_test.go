package stream_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/stream"
	"github.com/payledger/payledger/stream/natstest"
)

// recorder is a handler that records what it handled and can fail.
type recorder struct {
	mu    sync.Mutex
	seqs  []uint64
	calls map[uint64]int
	fail  func(seq uint64, call int) bool
}

func (r *recorder) handle(ctx context.Context, e ledger.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[uint64]int{}
	}
	r.calls[e.Seq]++
	if r.fail != nil && r.fail(e.Seq, r.calls[e.Seq]) {
		return errors.New("handler failed")
	}
	r.seqs = append(r.seqs, e.Seq)
	return nil
}

func (r *recorder) handled() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.seqs...)
}

func (r *recorder) waitCount(t *testing.T, n int) {
	t.Helper()
	natstest.WaitFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if got := len(r.handled()); got < n {
			return fmt.Errorf("handled %d of %d", got, n)
		}
		return nil
	})
}

func runConsumer(t *testing.T, conn *stream.Conn, cfg stream.ConsumerConfig, h stream.Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := stream.NewConsumer(ctx, conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, h) }()
	stopped, runErr := false, error(nil)
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
		}
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func TestConsumerInOrderWithRedelivery(t *testing.T) {
	conn, _ := publishedLog(t, 1000, 50)

	rec := &recorder{fail: func(seq uint64, call int) bool { return (seq == 37 || seq == 700) && call <= 2 }}
	stop := runConsumer(t, conn, stream.ConsumerConfig{Durable: "proj", Batch: 64, MinBackoff: time.Millisecond, FetchWait: 100 * time.Millisecond}, rec.handle)
	rec.waitCount(t, 1000)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := rec.handled()
	for i, seq := range got {
		if seq != uint64(i+1) {
			t.Fatalf("handled[%d] = %d: out of order", i, seq)
		}
	}
	if rec.calls[37] != 3 || rec.calls[700] != 3 {
		t.Errorf("failing events handed %d and %d times, want 3", rec.calls[37], rec.calls[700])
	}
}

// A durable consumer stopped and started again carries on where it was
// (at least once: an event may come again, none is skipped).
func TestConsumerResumesDurable(t *testing.T) {
	conn, _ := publishedLog(t, 600, 50)

	first := &recorder{}
	stop := runConsumer(t, conn, stream.ConsumerConfig{Durable: "w", Batch: 50, FetchWait: 100 * time.Millisecond}, func(ctx context.Context, e ledger.Event) error {
		if e.Seq > 300 {
			<-ctx.Done() // stop mid-stream
			return ctx.Err()
		}
		return first.handle(ctx, e)
	})
	first.waitCount(t, 300)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	second := &recorder{}
	stop = runConsumer(t, conn, stream.ConsumerConfig{Durable: "w", Batch: 50, FetchWait: 100 * time.Millisecond}, second.handle)
	second.waitCount(t, 300)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := second.handled()
	if got[0] > 301 || got[len(got)-1] != 600 {
		t.Fatalf("second run handled %d..%d", got[0], got[len(got)-1])
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("second run: %d after %d", got[i], got[i-1])
		}
	}
}

func TestConsumerFilterAndBatch(t *testing.T) {
	conn, log := publishedLog(t, 300, 30)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := stream.NewConsumer(ctx, conn, stream.ConsumerConfig{
		Durable:        "m1-invoices",
		FilterSubjects: []string{conn.Filter("m-1", "invoice.>")},
		FetchWait:      100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []ledger.Event
	done := make(chan error, 1)
	go func() {
		done <- c.RunBatch(ctx, func(ctx context.Context, events []ledger.Event) error {
			mu.Lock()
			got = append(got, events...)
			mu.Unlock()
			return nil
		})
	}()
	want := 0
	for e, err := range log.Events(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Merchant == "m-1" && (e.Type == "invoice.created" || e.Type == "invoice.paid") {
			want++
		}
	}
	natstest.WaitFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) < want {
			return fmt.Errorf("%d of %d", len(got), want)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, e := range got {
		if e.Merchant != "m-1" || (e.Type != "invoice.created" && e.Type != "invoice.paid") {
			t.Fatalf("filtered consumer got %s %s", e.Merchant, e.Type)
		}
	}
	if len(got) != want {
		t.Fatalf("got %d events, want %d", len(got), want)
	}
}

// TestConsumerHandsRedeliveryAfterCrash: a worker of the durable fetched
// events 1..5 and died before acknowledging them. The next worker (a new
// Consumer) gets 6..20 first, and 1..5 come back after AckWait, behind
// them; it must hand them over, not take them for redeliveries of events
// it handled.
func TestConsumerHandsRedeliveryAfterCrash(t *testing.T) {
	conn, _ := publishedLog(t, 20, 5)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := stream.ConsumerConfig{Durable: "w", Batch: 50, AckWait: 2 * time.Second, FetchWait: 200 * time.Millisecond}
	if _, err := stream.NewConsumer(ctx, conn, cfg); err != nil {
		t.Fatal(err)
	}
	raw, err := conn.JetStream().Consumer(ctx, conn.Config().Stream, "w")
	if err != nil {
		t.Fatal(err)
	}
	b, err := raw.Fetch(5, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range b.Messages() {
		n++
	}
	if n != 5 {
		t.Fatalf("the crashed worker fetched %d", n)
	}

	rec := &recorder{}
	stop := runConsumer(t, conn, cfg, rec.handle)
	rec.waitCount(t, 20)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := rec.handled()
	for seq := uint64(1); seq <= 20; seq++ {
		if !slices.Contains(got, seq) {
			t.Errorf("event %d was never handed to the handler (handled %v)", seq, got)
		}
	}
}

// TestConsumerGoneEndsRun: a durable consumer deleted on the server (by an
// operator, or with its stream) hands over nothing more. Run must say so
// with ErrConsumerGone, for its owner to make it anew from its checkpoint,
// rather than ask the server again at once, forever, while the events
// committed meanwhile go to no one.
func TestConsumerGoneEndsRun(t *testing.T) {
	conn, _ := publishedLog(t, 100, 50)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := stream.NewConsumer(ctx, conn, stream.ConsumerConfig{Durable: "gone", FetchWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, rec.handle) }()
	rec.waitCount(t, 100)
	if err := conn.JetStream().DeleteConsumer(ctx, conn.Config().Stream, "gone"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, stream.ErrConsumerGone) {
			t.Fatalf("Run after its consumer was deleted: %v, want ErrConsumerGone", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run still going 10s after its consumer was deleted")
	}
}

// TestNewConsumerWhileOldOneCloses: a worker whose durable consumer was
// deleted makes it anew at once, while the server may still be closing the
// old one. The server then answers "consumer closed" (or that the consumer
// does or does not exist) for a moment; NewConsumer must wait that out
// rather than fail, or the worker stops. Repeated, for the window is
// narrow.
func TestNewConsumerWhileOldOneCloses(t *testing.T) {
	conn, _ := publishedLog(t, 20, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := stream.ConsumerConfig{Durable: "closing", StartSeq: 21, FetchWait: 5 * time.Second}
	var deletes []chan error
	for i := range 30 {
		c, err := stream.NewConsumer(ctx, conn, cfg)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(rctx, func(context.Context, ledger.Event) error { return nil }) }()
		// Deleted while a pull waits on it, as under a running worker.
		natstest.WaitFor(t, 10*time.Second, time.Millisecond, func() error {
			info, err := c.Info(ctx)
			if err != nil {
				return err
			}
			if info.NumWaiting == 0 {
				return errors.New("no pull waiting")
			}
			return nil
		})
		// The next round's NewConsumer runs as soon as Run has seen the
		// deletion, while the server may not have finished it.
		deleted := make(chan error, 1)
		go func() { deleted <- conn.JetStream().DeleteConsumer(ctx, conn.Config().Stream, cfg.Durable) }()
		err = <-done
		stop()
		if !errors.Is(err, stream.ErrConsumerGone) {
			t.Fatalf("round %d: Run after its consumer was deleted: %v, want ErrConsumerGone", i, err)
		}
		deletes = append(deletes, deleted)
	}
	for _, d := range deletes {
		if err := <-d; err != nil {
			t.Errorf("delete: %v", err)
		}
	}
}

// TestNewConsumerRefusedConfigFails: an error no retry gets past (here a
// durable name the server finds too long) still fails NewConsumer at once.
func TestNewConsumerRefusedConfigFails(t *testing.T) {
	conn, _ := publishedLog(t, 1, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := stream.NewConsumer(ctx, conn, stream.ConsumerConfig{Durable: strings.Repeat("d", 300)})
	var ae *jetstream.APIError
	if !errors.As(err, &ae) || ctx.Err() != nil {
		t.Fatalf("NewConsumer with a 300-character durable name: %v (ctx %v), want the API's error at once", err, ctx.Err())
	}
}
