package webhooks

import (
	"context"
	"path/filepath"
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
	srv := natstest.RunServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn, err := stream.Open(ctx, stream.Config{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	relay, err := stream.NewRelay(conn, e.store, stream.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-relayDone; err != nil {
			t.Errorf("relay: %v", err)
		}
	}()

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
