package stream_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/stream"
	"github.com/payledger/payledger/stream/natstest"
)

// publishLog relays log to conn's stream and stops.
// publishedLog starts a JetStream server and returns a connection to it and
// a log of n events (per to an append) that the stream holds too.
func publishedLog(t *testing.T, n, per int) (*stream.Conn, *boltlog.Store) {
	t.Helper()
	srv := natstest.RunServer(t)
	conn := openConn(t, srv.ClientURL(), stream.Config{})
	log := openLog(t)
	appendEvents(t, log, 0, n, per)
	publishLog(t, conn, log)
	return conn, log
}

func publishLog(t *testing.T, conn *stream.Conn, log stream.Log) {
	t.Helper()
	r, stop := startRelay(t, conn, log, stream.RelayConfig{})
	flush(t, r, 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreRoundTrip(t *testing.T) {
	srv := natstest.RunServer(t)
	conn := openConn(t, srv.ClientURL(), stream.Config{})
	src := openLog(t)
	appendEvents(t, src, 0, 5000, 100)
	publishLog(t, conn, src)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dst := openLog(t)
	var batches int
	head, err := stream.Restore(ctx, conn, dst, func(ledger.Head) { batches++ })
	if err != nil {
		t.Fatal(err)
	}
	if head != src.Head() || dst.Head() != src.Head() {
		t.Fatalf("restored head %v, source head %v", head, src.Head())
	}
	if batches < 2 {
		t.Errorf("%d progress calls", batches)
	}

	// Incremental: new events reach the stream and a second restore takes
	// only those.
	appendEvents(t, src, 5000, 300, 30)
	publishLog(t, conn, src)
	if _, err := stream.Restore(ctx, conn, dst, nil); err != nil {
		t.Fatal(err)
	}
	if dst.Head() != src.Head() {
		t.Fatalf("restored head %v, source head %v", dst.Head(), src.Head())
	}
	for e, err := range dst.Events(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		want, err := src.Get(e.Seq)
		if err != nil || want.Hash != e.Hash {
			t.Fatalf("sequence %d differs: %v", e.Seq, err)
		}
	}
	// A log ahead of the stream is refused.
	appendEvents(t, dst, 9000, 1, 1)
	if _, err := stream.Restore(ctx, conn, dst, nil); !errors.Is(err, stream.ErrLogAhead) {
		t.Fatalf("Restore into a log ahead of the stream = %v", err)
	}
}

// tamperedStream publishes the log's events to the stream itself, as the
// relay would, changing the body of the event at sequence bad by fn.
func tamperedStream(t *testing.T, conn *stream.Conn, log *boltlog.Store, bad uint64, fn func(e ledger.Event, m *nats.Msg)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := conn.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	js := conn.JetStream()
	for e, err := range log.Events(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		m := stream.Message("", &e)
		if e.Seq == bad {
			fn(e, m)
		}
		if _, err := js.PublishMsg(ctx, m, jetstream.WithExpectLastSequence(e.Seq-1)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRestoreRefusesBrokenChain(t *testing.T) {
	rehash := func(e ledger.Event, m *nats.Msg) {
		// Headers and hash made to match: only the chain gives it away.
		e.Data = []byte(`{"n": 4200}`)
		ledger.Encode(nil, &e)
		*m = *stream.Message("", &e)
	}
	for _, tc := range []struct {
		name    string
		events  int
		bad     uint64
		tamper  func(e ledger.Event, m *nats.Msg)
		wantSeq uint64
		wantErr error
	}{
		{"altered data", 100, 42, func(e ledger.Event, m *nats.Msg) {
			m.Data = []byte(strings.Replace(string(m.Data), `"n": 41`, `"n": 42`, 1))
		}, 42, ledger.ErrCorrupt},
		{"altered and rehashed", 100, 42, rehash, 43, ledger.ErrChainBroken},
		// The last event of a full import batch: its successor, which gives
		// it away, is the first of the next batch.
		{"altered and rehashed, last of a batch", 2100, 2048, rehash, 2049, ledger.ErrChainBroken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := natstest.RunServer(t)
			conn := openConn(t, srv.ClientURL(), stream.Config{})
			src := openLog(t)
			appendEvents(t, src, 0, tc.events, 100)
			tamperedStream(t, conn, src, tc.bad, tc.tamper)

			dst := openLog(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := stream.Restore(ctx, conn, dst, nil)
			var ve *ledger.VerifyError
			if !errors.As(err, &ve) || ve.Seq != tc.wantSeq || !errors.Is(err, tc.wantErr) {
				t.Fatalf("Restore = %v, want a VerifyError at %d (%v)", err, tc.wantSeq, tc.wantErr)
			}
			if dst.Head().Seq >= tc.bad {
				t.Fatalf("restored up to %d, past the altered event %d", dst.Head().Seq, tc.bad)
			}
		})
	}
}
