package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
)

// runner runs a dispatcher's Run as the node's supervisor does: stop
// cancels its context and waits for it to return, and Run can be started
// again on the same dispatcher.
type runner struct {
	t      *testing.T
	e      *env
	d      *Dispatcher
	cancel context.CancelFunc
	done   chan error
	// followEnded is closed when the current Run's source returns: Run
	// saw its context end and is stopping (giving its attempts the grace).
	followEnded chan struct{}
}

func (r *runner) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done, r.followEnded = cancel, make(chan error, 1), make(chan struct{})
	src := &endSignal{Source: FromLog(r.e.store, 0, 0), ended: r.followEnded}
	go func() { r.done <- r.d.Run(ctx, src) }()
}

// endSignal is a Source that closes ended when its Follow returns.
type endSignal struct {
	Source
	ended chan struct{}
}

func (s *endSignal) Follow(ctx context.Context, from uint64, ingest func([]ledger.Event) error) error {
	defer close(s.ended)
	return s.Source.Follow(ctx, from, ingest)
}

// settled reports, for waitFor, whether d runs, has ingested log to its
// head, and has no attempt in flight or scheduled: then none can start
// until something is appended or redelivered. A test shows with it that
// something is not sent (again), instead of sleeping to see. Under
// writeMu no commit is half applied to the schedule.
func settled(d *Dispatcher, log *boltlog.Store) error {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	s := running(d)
	if s == nil {
		return errors.New("the dispatcher is not running")
	}
	if c, h := d.Checkpoint(), log.Head().Seq; c < h {
		return fmt.Errorf("ingested up to %d of %d", c, h)
	}
	if inflight, due := s.counts(); inflight+due > 0 {
		return fmt.Errorf("%d attempts in flight, %d scheduled", inflight, due)
	}
	return nil
}

// stop cancels Run and returns how long it took to return.
func (r *runner) stop() time.Duration {
	r.t.Helper()
	start := time.Now()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Fatalf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		r.t.Fatal("Run did not return")
	}
	return time.Since(start)
}

func newRunner(t *testing.T, e *env, cfg Config) *runner {
	d, err := Open(filepath.Join(t.TempDir(), FileName), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{t: t, e: e, d: d}
	t.Cleanup(func() {
		if d.running.Load() {
			r.stop()
		}
		d.Close()
	})
	return r
}

func recv[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}

// A receiver holds a webhook open while the dispatcher is stopped and
// started again. Past the shutdown grace the attempt is aborted, and it is
// not recorded: no failed attempt (which would spend the delivery's retries
// and push its next attempt back) and, though the receiver answers 200 as
// the connection drops, no success either. After the restart the delivery
// is attempted again at once, and recorded delivered once, after one
// attempt.
func TestRestartAbortsHeldAttemptAndMakesItAgain(t *testing.T) {
	e := newEnv(t)
	held, cutOff := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	rc := newReceiver(t, false, func(r *http.Request, n int) (int, http.Header) {
		if calls.Add(1) == 1 {
			close(held)
			<-r.Context().Done() // the dispatcher hung up
			close(cutOff)
			return http.StatusOK, nil // an acknowledgement nobody reads
		}
		return http.StatusOK, nil
	})
	rc.secret = func(string) string { return e.kr.SigningSecret("m1", 1) }
	e.merchant("m1", rc.URL())
	cfg := e.config()
	cfg.AttemptTimeout = 30 * time.Second // the hold ends by the shutdown, not a timeout
	cfg.ShutdownGrace = 300 * time.Millisecond
	r := newRunner(t, e, cfg)
	r.start()
	inv := e.invoice("m1", "")
	recv(t, held, "request held")
	heldAt := time.Now()

	// Run gives the held attempt its grace before aborting it (a timer
	// never fires early, so this bound cannot flake); that it then aborts
	// it, rather than waiting out the 30 s attempt timeout, stop's 20 s
	// deadline shows.
	if took := r.stop(); took < cfg.ShutdownGrace {
		t.Errorf("Run returned %v after its context ended, before its grace of %v", took, cfg.ShutdownGrace)
	}
	recv(t, cutOff, "hang-up seen by the receiver")
	del, err := findFor(r.d, "m1", commands.TypeInvoiceCreated, inv)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.d.Delivery("m1", del.ID)
	if err != nil {
		t.Fatal(err)
	}
	got.Body = nil // not in failure messages
	if got.Status != StatusPending || got.AttemptCount != 0 || len(got.Attempts) != 0 || got.LastError != "" || got.NextAttemptAt == nil {
		t.Fatalf("after the cut-off attempt: %+v", got)
	}
	// Still due when the cut-off attempt was made, not pushed back by a
	// backoff: the next Run attempts it at once.
	if got.NextAttemptAt.After(heldAt) {
		t.Fatalf("next attempt at %v, after the cut-off attempt was under way at %v", got.NextAttemptAt, heldAt)
	}
	if st := r.d.Stats(); st.Attempts != 0 || st.Delivered != 0 || st.Failed != 0 {
		t.Fatalf("stats count the cut-off attempt: %+v", st)
	}

	r.start()
	waitFor(t, 5*time.Second, func() error { return statusIs(r.d, "m1", commands.TypeInvoiceCreated, inv, StatusDelivered) })
	// Nothing more in flight or scheduled: no extra attempt can come.
	waitFor(t, 5*time.Second, func() error { return settled(r.d, e.store) })
	got, _ = r.d.Delivery("m1", del.ID)
	got.Body = nil
	if got.Status != StatusDelivered || got.AttemptCount != 1 || len(got.Attempts) != 1 ||
		got.Attempts[0].N != 1 || got.Attempts[0].StatusCode != http.StatusOK || got.DeliveredAt == nil {
		t.Errorf("after the restart: %+v", got)
	}
	if p, _ := r.d.ListDeliveries("m1", ListQuery{Status: StatusDelivered}); p.Details.TotalObjects != 1 {
		t.Errorf("%d delivered, want 1", p.Details.TotalObjects)
	}
	if st := r.d.Stats(); st.Attempts != 1 || st.Delivered != 1 {
		t.Errorf("stats: %+v", st)
	}
	// The receiver saw the webhook twice, the same webhook-id both times:
	// the cut-off request and the one it acknowledged.
	reqs := rc.requests()
	if len(reqs) != 2 || reqs[0].ID != got.WebhookID || reqs[1].ID != got.WebhookID {
		t.Fatalf("receiver saw %d requests: %+v", len(reqs), reqs)
	}
	for _, q := range reqs {
		if q.VerifyErr != nil {
			t.Errorf("signature: %v", q.VerifyErr)
		}
	}
}

// An attempt the receiver answers within the shutdown grace is recorded
// as any other: a 2xx is delivered, and not sent again after a restart; a
// failure counts and is retried.
func TestShutdownGraceRecordsAttemptsThatFinish(t *testing.T) {
	for _, status := range []int{http.StatusOK, http.StatusBadGateway} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			e := newEnv(t)
			held, stopping := make(chan struct{}), make(chan struct{})
			var calls atomic.Int32
			rc := newReceiver(t, false, func(r *http.Request, n int) (int, http.Header) {
				if calls.Add(1) == 1 {
					close(held)
					<-stopping // answers once Run is stopping
					return status, nil
				}
				return http.StatusOK, nil
			})
			e.merchant("m1", rc.URL())
			cfg := e.config()
			cfg.AttemptTimeout = 30 * time.Second
			// Longer than stop's 20 s deadline: a Run that waits out the
			// grace, not just the attempt, fails there.
			cfg.ShutdownGrace = time.Minute
			cfg.BackoffBase, cfg.BackoffMax = 200*time.Millisecond, 200*time.Millisecond
			r := newRunner(t, e, cfg)
			r.start()
			inv := e.invoice("m1", "")
			recv(t, held, "request held")
			go func(ended <-chan struct{}) { <-ended; close(stopping) }(r.followEnded)
			r.stop()
			del, err := findFor(r.d, "m1", commands.TypeInvoiceCreated, inv)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := r.d.Delivery("m1", del.ID)
			got.Body = nil
			if got.AttemptCount != 1 || len(got.Attempts) != 1 || got.Attempts[0].StatusCode != status {
				t.Fatalf("the attempt that finished within the grace: %+v", got)
			}
			r.start()
			if status == http.StatusOK {
				// Nothing in flight or scheduled: no resend can come.
				waitFor(t, 5*time.Second, func() error { return settled(r.d, e.store) })
				if n := len(rc.requests()); n != 1 {
					t.Fatalf("receiver got %d requests, want 1", n)
				}
				return
			}
			waitFor(t, 5*time.Second, func() error { return statusIs(r.d, "m1", commands.TypeInvoiceCreated, inv, StatusDelivered) })
			got, _ = r.d.Delivery("m1", del.ID)
			if got.AttemptCount != 2 {
				t.Errorf("%d attempts, want the failed one and the delivered one", got.AttemptCount)
			}
		})
	}
}
