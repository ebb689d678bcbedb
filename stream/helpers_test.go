package stream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/stream"
	"github.com/payledger/payledger/stream/natstest"
)

// openLog opens a log under t.TempDir(); when the test ends it verifies the
// whole chain and closes it.
func openLog(t testing.TB) *boltlog.Store {
	t.Helper()
	s, err := boltlog.Open(filepath.Join(t.TempDir(), "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := s.Verify(context.Background()); err != nil {
			t.Errorf("log verify: %v", err)
		}
		s.Close()
	})
	return s
}

var (
	merchants = []string{"m-1", "m-2", ""}
	types     = []string{"invoice.created", "payment.processed", "invoice.paid", "rate.set"}
	baseTime  = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
)

// appendEvents appends n events in appends of up to per events, each
// append to its own stream, numbering them from first (for their data).
func appendEvents(t testing.TB, s *boltlog.Store, first, n, per int) {
	t.Helper()
	if err := appendEventsErr(context.Background(), s, first, n, per); err != nil {
		t.Fatal(err)
	}
}

func appendEventsErr(ctx context.Context, s *boltlog.Store, first, n, per int) error {
	for i := first; i < first+n; i += per {
		k := min(per, first+n-i)
		evs := make([]ledger.NewEvent, k)
		for j := range evs {
			x := i + j
			evs[j] = ledger.NewEvent{
				ID:          ulid.Make(),
				Type:        types[x%len(types)],
				Time:        baseTime.Add(time.Duration(x) * time.Millisecond),
				Merchant:    merchants[x%len(merchants)],
				Correlation: fmt.Sprintf("req-%d", i),
				Data:        json.RawMessage(fmt.Sprintf(`{"n": %d, "note": "<b>&"}`, x)),
			}
		}
		if _, err := s.Append(ctx, fmt.Sprintf("invoice-%d", i%97), ledger.Any, evs...); err != nil {
			return err
		}
	}
	return nil
}

// startRelay runs a relay until the test ends (or stop is called) and
// returns it with a stop function that returns Run's error.
func startRelay(t testing.TB, conn *stream.Conn, log stream.Log, cfg stream.RelayConfig) (*stream.Relay, func() error) {
	t.Helper()
	r, err := stream.NewRelay(conn, log, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var runErr error
	stopped := false
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
		}
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return r, stop
}

// reconfigureStream creates the event stream if need be, applies change to
// its configuration, and returns the configuration it had before.
func reconfigureStream(t testing.TB, conn *stream.Conn, change func(*jetstream.StreamConfig)) jetstream.StreamConfig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := conn.EnsureStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := s.CachedInfo().Config
	cfg := before
	change(&cfg)
	if _, err := conn.JetStream().UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	return before
}

// openConn connects to url with the test stream settings.
func openConn(t testing.TB, url string, cfg stream.Config) *stream.Conn {
	t.Helper()
	cfg.URL = url
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := stream.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func flush(t testing.TB, r *stream.Relay, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("flush: %v (position %d)", err, r.Position())
	}
}

// requireStreamEqualsLog checks that stream sequence N holds log event N
// for every N, nothing more, nothing less.
func requireStreamEqualsLog(t testing.TB, conn *stream.Conn, log *boltlog.Store) {
	t.Helper()
	if err := streamEqualsLog(conn, log); err != nil {
		t.Fatal(err)
	}
}

func streamEqualsLog(conn *stream.Conn, log *boltlog.Store) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	head := log.Head()
	s, err := conn.Stream(ctx)
	if err != nil {
		return err
	}
	st := s.CachedInfo().State
	if st.Msgs != head.Seq || st.LastSeq != head.Seq || (head.Seq > 0 && st.FirstSeq != 1) {
		return fmt.Errorf("stream holds %d messages %d..%d, log head is %d", st.Msgs, st.FirstSeq, st.LastSeq, head.Seq)
	}
	if head.Seq == 0 {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	for want, err := range log.Events(ctx, 1) {
		if err != nil {
			return err
		}
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("stream message for %d: %w", want.Seq, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		got, err := stream.DecodeMessage(m.Headers(), m.Data(), meta.Sequence.Stream)
		if err != nil {
			return err
		}
		if got.Seq != want.Seq || got.Hash != want.Hash || got.ID != want.ID {
			return fmt.Errorf("stream sequence %d holds log event %d (hash %s), log has %s", meta.Sequence.Stream, got.Seq, got.Hash, want.Hash)
		}
		if wantSubj := conn.Subject(want.Merchant, want.Type); m.Subject() != wantSubj {
			return fmt.Errorf("sequence %d on subject %s, want %s", want.Seq, m.Subject(), wantSubj)
		}
	}
	return nil
}

// appender appends batches until stopped, and reports its error.
type appender struct {
	cancel context.CancelFunc
	done   chan error
}

func startAppender(s *boltlog.Store, per int, pause time.Duration) *appender {
	ctx, cancel := context.WithCancel(context.Background())
	a := &appender{cancel: cancel, done: make(chan error, 1)}
	go func() {
		i := int(s.Head().Seq)
		for ctx.Err() == nil {
			if err := appendEventsErr(context.Background(), s, i, per, per); err != nil {
				a.done <- err
				return
			}
			i += per
			if pause > 0 {
				t := time.NewTimer(pause)
				select {
				case <-t.C:
				case <-ctx.Done():
				}
			}
		}
		a.done <- nil
	}()
	return a
}

func (a *appender) stop(t testing.TB) {
	t.Helper()
	a.cancel()
	if err := <-a.done; err != nil {
		t.Fatalf("appender: %v", err)
	}
}

// waitHead waits until the log's head reaches seq.
func waitHead(t testing.TB, s *boltlog.Store, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if seq == 0 {
		return
	}
	if _, err := s.Wait(ctx, seq-1); err != nil {
		t.Fatalf("log did not reach %d: %v", seq, err)
	}
}

// waitPosition waits until the relay's position reaches seq.
func waitPosition(t testing.TB, r *stream.Relay, seq uint64) {
	t.Helper()
	natstest.WaitFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if p := r.Position(); p < seq {
			return fmt.Errorf("relay at %d, want %d", p, seq)
		}
		return nil
	})
}

func jetstreamSubjectFilter(f string) jetstream.StreamInfoOpt { return jetstream.WithSubjectFilter(f) }
