package webhooks

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/stream"
	"github.com/payledger/payledger/stream/natstest"
)

// The dispatcher fed by a durable JetStream consumer, with the relay
// publishing the log to a real embedded NATS server: everything arrives;
// a restarted dispatcher resumes; a fresh webhooks.db behind the durable
// consumer's position gets the consumer recreated at its checkpoint; so
// does a consumer deleted on the server.
func TestJetStreamSource(t *testing.T) {
	e := newEnv(t)
	conn := relayed(t, e)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	rc := newReceiver(t, false, nil)
	rc.secret = func(string) string { return e.kr.SigningSecret("m1", 1) }
	e.merchant("m1", rc.URL())
	run := func(path string) (*Dispatcher, func()) {
		d, err := Open(path, e.config())
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- d.Run(rctx, FromStream(conn, stream.ConsumerConfig{FetchWait: 100 * time.Millisecond}))
		}()
		return d, func() {
			rcancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
			d.Close()
		}
	}
	path := filepath.Join(t.TempDir(), FileName)
	d, stop := run(path)
	e.paidInvoice("m1", "")
	checkDelivered(t, d, "m1", rc, 5)
	stop()

	// Restart on the same file: only the new events are delivered.
	inv := e.invoice("m1", "")
	e.cancel("m1", inv)
	d, stop = run(path)
	checkDelivered(t, d, "m1", rc, 7)
	if n := len(rc.accepted()); n != 7 {
		t.Errorf("%d webhooks accepted, want 7 (no duplicates)", n)
	}
	if d.Checkpoint() != e.store.Head().Seq {
		t.Errorf("checkpoint %d, head %d", d.Checkpoint(), e.store.Head().Seq)
	}
	stop()

	// A new, empty webhooks.db: the consumer is far ahead of its
	// checkpoint (0) and is recreated; every event is ingested again.
	d, stop = run(filepath.Join(t.TempDir(), FileName))
	defer stop()
	checkDelivered(t, d, "m1", rc, 7)

	// The durable consumer deleted on the server (by an operator, or with
	// its stream): the source makes it anew at the checkpoint and the
	// events after it are delivered.
	if err := conn.JetStream().DeleteConsumer(ctx, conn.Config().Stream, DefaultDurable); err != nil {
		t.Fatal(err)
	}
	inv = e.invoice("m1", "")
	e.cancel("m1", inv)
	checkDelivered(t, d, "m1", rc, 9)
}

// relayed is a connection to an embedded NATS server whose event stream a
// relay fills from e's log until the test ends.
func relayed(t *testing.T, e *env) *stream.Conn {
	t.Helper()
	srv := natstest.RunServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	conn, err := stream.Open(ctx, stream.Config{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	if _, err := conn.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	relay, err := stream.NewRelay(conn, e.store, stream.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-relayDone; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return conn
}

// recreations records when the source logged that it makes its consumer
// anew.
type recreations struct {
	mu sync.Mutex
	at []time.Time
}

func (r *recreations) Enabled(context.Context, slog.Level) bool { return true }
func (r *recreations) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recreations) WithGroup(string) slog.Handler            { return r }
func (r *recreations) Handle(_ context.Context, rec slog.Record) error {
	if strings.Contains(rec.Message, "recreating") {
		r.mu.Lock()
		r.at = append(r.at, time.Now())
		r.mu.Unlock()
	}
	return nil
}

func (r *recreations) times() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.at)
}

// TestJetStreamSourcePausesWhenStuck: a stream that lacks the event at the
// dispatcher's checkpoint (an operator's limits removed it) makes every new
// consumer stop at the same gap. The source makes it anew after a growing
// pause rather than in a tight loop, and delivers nothing past the gap.
func TestJetStreamSourcePausesWhenStuck(t *testing.T) {
	e := newEnv(t)
	srv := natstest.RunServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recreations{}
	conn, err := stream.Open(ctx, stream.Config{URL: srv.ClientURL(), Logger: slog.New(rec)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The stream as payledger makes it, but for an operator's leave to
	// delete messages, as limits would remove them.
	scfg := conn.StreamConfig()
	scfg.DenyDelete, scfg.DenyPurge = false, false
	if _, err := conn.JetStream().CreateStream(ctx, scfg); err != nil {
		t.Fatal(err)
	}
	rc := newReceiver(t, false, nil)
	rc.secret = func(string) string { return e.kr.SigningSecret("m1", 1) }
	e.merchant("m1", rc.URL())
	e.paidInvoice("m1", "")
	relay, err := stream.NewRelay(conn, e.store, stream.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(rctx) }()
	if err := relay.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rcancel()
	if err := <-relayDone; err != nil {
		t.Fatal(err)
	}
	s, err := conn.JetStream().Stream(ctx, conn.Config().Stream)
	if err != nil {
		t.Fatal(err)
	}
	// The first: no consumer can hand over anything at all, so nothing
	// ever counts as progress between recreations.
	if err := s.DeleteMsg(ctx, 1); err != nil {
		t.Fatal(err)
	}

	d, err := Open(filepath.Join(t.TempDir(), FileName), e.config())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	dctx, dcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- d.Run(dctx, FromStream(conn, stream.ConsumerConfig{FetchWait: 100 * time.Millisecond}))
	}()
	deadline := time.Now().Add(20 * time.Second)
	for len(rec.times()) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d recreations in 20 s, want 4", len(rec.times()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	dcancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	at := rec.times()
	// Pauses of 100, 200, 400 ms before the 2nd, 3rd and 4th.
	if gap := at[3].Sub(at[2]); gap < 300*time.Millisecond {
		t.Errorf("recreations at %v: %s between the 3rd and 4th, want a growing pause", at, gap)
	}
	if d.Checkpoint() != 0 {
		t.Errorf("checkpoint %d: past event 1, which the stream lacks", d.Checkpoint())
	}
}
