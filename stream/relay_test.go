package stream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/stream"
	"github.com/payledger/payledger/stream/natstest"
)

// The embedded server (Port -1), the stream, a relay from an existing log
// and from appends made while it runs, and the lag hook.
func TestStartEmbeddedRelaysLog(t *testing.T) {
	log := openLog(t)
	appendEvents(t, log, 0, 500, 50)

	var mu sync.Mutex
	var acked []uint64
	cfg := stream.Config{
		StoreDir: t.TempDir(),
		Port:     -1,
		Relay: stream.RelayConfig{OnAck: func(seq uint64, lag time.Duration) {
			mu.Lock()
			acked = append(acked, seq)
			mu.Unlock()
		}},
	}
	ctx := context.Background()
	node, err := stream.Start(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if node.Conn().Server() == nil {
		t.Fatal("no embedded server")
	}
	appendEvents(t, log, 500, 700, 7)
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := node.StopRelay(fctx); err != nil {
		t.Fatal(err)
	}
	if got := node.Relay().Position(); got != 1200 {
		t.Fatalf("position %d after flush, want 1200", got)
	}
	requireStreamEqualsLog(t, node.Conn(), log)
	mu.Lock()
	for i, seq := range acked {
		if seq != uint64(i+1) {
			t.Fatalf("OnAck call %d for sequence %d", i, seq)
		}
	}
	if len(acked) != 1200 {
		t.Fatalf("OnAck called %d times", len(acked))
	}
	mu.Unlock()

	// Analysts filter by merchant and resource.
	s, err := node.Conn().Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for filter, want := range map[string]uint64{
		"payledger.events.m-1.>":            400,
		"payledger.events._.>":              400,
		"payledger.events.*.invoice.>":      600,
		"payledger.events.m-2.invoice.*":    200,
		"payledger.events.*.rate.set":       300,
		"payledger.events.m-1.rate.set":     100,
		"payledger.events.*.payment.>":      300,
		"payledger.events.m-2.payment.>":    100,
		"payledger.events.m-2.invoice.paid": 100,
	} {
		info, err := s.Info(ctx, jetstreamSubjectFilter(filter))
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, c := range info.State.Subjects {
			n += c
		}
		if n != want {
			t.Errorf("%s: %d events, want %d", filter, n, want)
		}
	}
}

// NATS stopped and restarted (twice) while events are appended: the stream
// ends up equal to the log, sequence by sequence and hash by hash.
func TestRelayRidesOutNATSRestart(t *testing.T) {
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	log := openLog(t)
	conn := openConn(t, url, stream.Config{})
	relay, stop := startRelay(t, conn, log, stream.RelayConfig{
		MaxInFlight: 256, AckTimeout: time.Second, MaxBackoff: 200 * time.Millisecond,
	})
	app := startAppender(log, 20, time.Millisecond)
	for round := range 2 {
		waitPosition(t, relay, log.Head().Seq+200)
		natstest.Shutdown(srv)
		// Appends go on while NATS is away.
		waitHead(t, log, relay.Position()+500)
		srv = natstest.Restart(t, srv)
		t.Logf("round %d: restarted NATS at log head %d, relay at %d", round, log.Head().Seq, relay.Position())
	}
	waitPosition(t, relay, log.Head().Seq+200)
	app.stop(t)
	flush(t, relay, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	requireStreamEqualsLog(t, conn, log)
}

// JetStream refuses one event in the middle of a window of publishes (a
// subject at the stream's per-subject limit, with DiscardNewPerSubject)
// while the events after it are already on their way. Each event is sent
// on condition that the stream's last sequence is its predecessor's
// (Nats-Expected-Last-Sequence), so none after the refused one is stored:
// the stream holds exactly 1..N-1 while the refusal lasts, the relay sends
// again from N each time, and once the limit is lifted the stream is
// 1..M in order, with no gap and no duplicate.
func TestRelayStoresNothingAfterARefusedEvent(t *testing.T) {
	const total, refused = 200, 120
	srv := natstest.RunServer(t)
	conn := openConn(t, srv.ClientURL(), stream.Config{})
	unlimited := reconfigureStream(t, conn, func(c *jetstream.StreamConfig) {
		c.MaxMsgsPerSubject, c.DiscardNewPerSubject = 1, true
	})

	// Every event on a subject of its own but event 120, on event 1's.
	log := openLog(t)
	for i := 1; i <= total; i += 20 {
		evs := make([]ledger.NewEvent, 20)
		for j := range evs {
			merchant := fmt.Sprintf("m-%d", i+j)
			if i+j == refused {
				merchant = "m-1"
			}
			evs[j] = ledger.NewEvent{ID: ulid.Make(), Type: "invoice.created", Time: baseTime, Merchant: merchant,
				Data: json.RawMessage(fmt.Sprintf(`{"n": %d}`, i+j))}
		}
		if _, err := log.Append(context.Background(), fmt.Sprintf("invoice-%d", i), ledger.Any, evs...); err != nil {
			t.Fatal(err)
		}
	}

	logger, logged := fileLogger(t)
	relay, stop := startRelay(t, conn, log, stream.RelayConfig{
		MaxInFlight: total, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, Logger: logger,
	})
	// Refused twice: the relay has sent the window after 120 and, in a
	// second session, 120 again.
	natstest.WaitFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		out := logged()
		if strings.Contains(out, "relay stopped") {
			t.Fatalf("the relay stopped:\n%s", out)
		}
		if n := strings.Count(out, fmt.Sprintf("publish sequence %d: jetstream: ", refused)); n < 2 {
			return fmt.Errorf("sequence %d refused %d times (position %d)", refused, n, relay.Position())
		}
		return nil
	})
	s, err := conn.Stream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st := s.CachedInfo().State; st.Msgs != refused-1 || st.LastSeq != refused-1 {
		t.Fatalf("with %d refused, the stream holds %d messages up to %d, want 1..%d", refused, st.Msgs, st.LastSeq, refused-1)
	}
	if p := relay.Position(); p != refused-1 {
		t.Fatalf("position %d, want %d", p, refused-1)
	}

	reconfigureStream(t, conn, func(c *jetstream.StreamConfig) { *c = unlimited })
	flush(t, relay, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	requireStreamEqualsLog(t, conn, log)
}

// A relay stopped and started again resumes after the stream's last
// message, with no duplicate.
func TestRelayRestartResumes(t *testing.T) {
	srv := natstest.RunServer(t)
	log := openLog(t)
	conn := openConn(t, srv.ClientURL(), stream.Config{})
	appendEvents(t, log, 0, 300, 30)
	r1, stop1 := startRelay(t, conn, log, stream.RelayConfig{})
	flush(t, r1, 10*time.Second)
	appendEvents(t, log, 300, 100, 10)
	if err := stop1(); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, log, 400, 100, 10)
	r2, stop2 := startRelay(t, conn, log, stream.RelayConfig{})
	flush(t, r2, 10*time.Second)
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	if r2.Position() != 500 {
		t.Fatalf("position %d", r2.Position())
	}
	requireStreamEqualsLog(t, conn, log)
}

// The stream lacks the log's last events (as when JetStream loses unsynced
// writes in a crash): the relay finds its last message and fills the gap.
func TestRelayFillsGap(t *testing.T) {
	srv := natstest.RunServer(t)
	conn := openConn(t, srv.ClientURL(), stream.Config{})
	log := openLog(t)
	appendEvents(t, log, 0, 400, 40)

	// Another log with only the first 330 events has published them.
	short := openLog(t)
	var evs []ledger.Event
	for e, err := range log.Events(context.Background(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Seq <= 330 {
			evs = append(evs, e)
		}
	}
	if err := short.Import(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	r0, stop0 := startRelay(t, conn, short, stream.RelayConfig{})
	flush(t, r0, 10*time.Second)
	if err := stop0(); err != nil {
		t.Fatal(err)
	}

	r, stop := startRelay(t, conn, log, stream.RelayConfig{})
	flush(t, r, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	requireStreamEqualsLog(t, conn, log)
}

// A stream that holds another log's events, or more events than the log,
// stops the relay with ErrDiverged instead of publishing after it.
func TestRelayRefusesDivergedStream(t *testing.T) {
	for _, tc := range []struct {
		name        string
		other, mine int
	}{
		{"different events", 50, 80},
		{"stream ahead of log", 50, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := natstest.RunServer(t)
			conn := openConn(t, srv.ClientURL(), stream.Config{})
			other := openLog(t)
			appendEvents(t, other, 0, tc.other, 10)
			r0, stop0 := startRelay(t, conn, other, stream.RelayConfig{})
			flush(t, r0, 10*time.Second)
			if err := stop0(); err != nil {
				t.Fatal(err)
			}

			mine := openLog(t)
			if tc.mine > 0 {
				appendEvents(t, mine, 0, tc.mine, 10)
			}
			r, err := stream.NewRelay(conn, mine, stream.RelayConfig{})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = r.Run(ctx)
			var de *stream.DivergedError
			if !errors.Is(err, stream.ErrDiverged) || !errors.As(err, &de) || de.Seq != 50 {
				t.Fatalf("Run = %v, want ErrDiverged at 50", err)
			}
		})
	}
}

// A node whose external NATS is down when it starts starts anyway, and its
// relay publishes everything once NATS comes up.
func TestStartWithNATSDown(t *testing.T) {
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	natstest.Shutdown(srv)

	log := openLog(t)
	appendEvents(t, log, 0, 200, 20)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node, err := stream.Start(ctx, stream.Config{URL: url, Relay: stream.RelayConfig{MaxBackoff: 100 * time.Millisecond}}, log)
	if err != nil {
		t.Fatalf("Start with NATS down: %v", err)
	}
	defer node.Close()
	appendEvents(t, log, 200, 100, 10)
	natstest.Restart(t, srv)
	waitPosition(t, node.Relay(), 300)
	if err := node.StopRelay(ctx); err != nil {
		t.Fatal(err)
	}
	requireStreamEqualsLog(t, openConn(t, url, stream.Config{}), log)
}

// Shutting down while NATS is away does not wait for a flush that cannot
// happen; the next start publishes the rest.
func TestStopRelayWithNATSDown(t *testing.T) {
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	log := openLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node, err := stream.Start(ctx, stream.Config{URL: url}, log)
	if err != nil {
		t.Fatal(err)
	}
	appendEvents(t, log, 0, 100, 10)
	waitPosition(t, node.Relay(), 100)
	natstest.Shutdown(srv)
	appendEvents(t, log, 100, 100, 10)
	natstest.WaitFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if node.Conn().NATS().IsConnected() {
			return errors.New("still connected")
		}
		return nil
	})
	// A StopRelay that waits for the flush is still waiting at the
	// deadline (and returns only when ctx ends, 30 s in).
	stopped := make(chan error, 1)
	go func() { stopped <- node.StopRelay(ctx) }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		cancel()
		<-stopped
		node.Close()
		t.Fatal("StopRelay still waiting after 10 s with NATS down")
	}
	node.Close()

	// The next start publishes the rest.
	natstest.Restart(t, srv)
	node, err = stream.Start(ctx, stream.Config{URL: url}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if err := node.StopRelay(ctx); err != nil {
		t.Fatal(err)
	}
	requireStreamEqualsLog(t, node.Conn(), log)
}

// TestRelayRepublishesWhenIdle: publishes in flight are lost (the
// connection drops with them, or they vanish and their acknowledgements
// never come) and nothing is appended after. The relay, with everything
// committed already published, must still notice and publish the events
// again, not wait for the next commit.
func TestRelayRepublishesWhenIdle(t *testing.T) {
	for _, cut := range []bool{true, false} {
		name := map[bool]string{true: "connection dropped", false: "acknowledgements never come"}[cut]
		t.Run(name, func(t *testing.T) {
			srv := natstest.RunServer(t)
			px := newHoldProxy(t, srv.Addr().String())
			log := openLog(t)
			conn := openConn(t, px.URL(), stream.Config{})
			relay, stop := startRelay(t, conn, log, stream.RelayConfig{AckTimeout: time.Second, MaxBackoff: 100 * time.Millisecond})
			appendEvents(t, log, 0, 10, 5)
			flush(t, relay, 10*time.Second)

			px.setHold(true) // the next publishes never reach the server
			appendEvents(t, log, 10, 5, 5)
			natstest.WaitFor(t, 10*time.Second, 5*time.Millisecond, func() error {
				if n := px.held(); n < 5 {
					return fmt.Errorf("%d of 5 publishes sent", n)
				}
				return nil
			})
			if cut {
				px.cut()
			}
			px.setHold(false)
			// Nothing more is appended. Ten AckTimeouts is plenty.
			flush(t, relay, 10*time.Second)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			requireStreamEqualsLog(t, conn, log)
		})
	}
}

// NATS stopped while events are appended: the backlog grows with each
// append, and the lag of an event committed during the outage counts from
// its commit (its time), so it is at least as long as the outage it
// waited out, not the moment the relay read it after reconnecting.
func TestRelayLagAndBacklogSpanOutage(t *testing.T) {
	srv := natstest.RunServer(t)
	log := openLog(t)
	conn := openConn(t, srv.ClientURL(), stream.Config{})
	var mu sync.Mutex
	lags := map[uint64]time.Duration{}
	relay, stop := startRelay(t, conn, log, stream.RelayConfig{
		AckTimeout: time.Second, MaxBackoff: 100 * time.Millisecond,
		OnAck: func(seq uint64, lag time.Duration) {
			mu.Lock()
			lags[seq] = lag
			mu.Unlock()
		},
	})
	appendNow := func(n int) uint64 {
		t.Helper()
		evs := make([]ledger.NewEvent, n)
		for i := range evs {
			evs[i] = ledger.NewEvent{ID: ulid.Make(), Type: "invoice.created", Time: time.Now(), Merchant: "m-1", Data: json.RawMessage(`{}`)}
		}
		got, err := log.Append(context.Background(), "invoice-outage", ledger.Any, evs...)
		if err != nil {
			t.Fatal(err)
		}
		return got[len(got)-1].Seq
	}
	waitPosition(t, relay, appendNow(5))
	if b := relay.Backlog(); b != 0 {
		t.Fatalf("backlog %d with everything published", b)
	}

	natstest.Shutdown(srv)
	// The outage, as the first event committed in it sees it: from after
	// its commit to the server's restart.
	first := appendNow(1)
	committed := time.Now()
	for i := range 3 {
		appendNow(10)
		if b, want := relay.Backlog(), uint64(1+10*(i+1)); b != want {
			t.Fatalf("backlog %d during the outage after %d events, want %d", b, want, want)
		}
	}
	// Let the outage last a measurable while: until the relay has retried
	// (its connection has noticed the server is gone).
	natstest.WaitFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if conn.NATS().IsConnected() {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	natstest.Restart(t, srv) // natstest shuts the new server down at the end of the test
	outage := time.Since(committed)
	head := log.Head().Seq
	waitPosition(t, relay, head)
	natstest.WaitFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if b := relay.Backlog(); b != 0 {
			return fmt.Errorf("backlog %d", b)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if lag := lags[first]; lag < outage {
		t.Fatalf("lag %v of sequence %d, appended during an outage of %v", lag, first, outage)
	}
	t.Logf("outage %v, lag of sequence %d %v", outage, first, lags[first])
}
