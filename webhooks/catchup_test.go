package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/projections"
	"github.com/payledger/payledger/stream"
)

// fromEnvLog feeds a dispatcher from the env's log, as serve does.
func fromEnvLog(_ *testing.T, e *env) Source { return FromLog(e.store, 0, 0) }

// fromEnvStream feeds a dispatcher through a durable JetStream consumer
// on an embedded server that a relay publishes the env's log to, as
// payledger worker webhooks does.
func fromEnvStream(t *testing.T, e *env) Source {
	return FromStream(relayed(t, e), stream.ConsumerConfig{FetchWait: 100 * time.Millisecond})
}

// sources are the two ways a dispatcher is fed, for the tests that must
// hold for both.
var sources = []struct {
	name string
	src  func(*testing.T, *env) Source
}{
	{"log", fromEnvLog},
	{"stream", fromEnvStream},
}

// tearDueKey replaces the due index record of delivery k in the
// webhooks.db at path with one a byte short (a torn write), and returns a
// function that puts the right one back.
func tearDueKey(t *testing.T, path string, k dkey) (repair func()) {
	t.Helper()
	var key, host []byte
	update := func(fn func(b *bbolt.Bucket) error) {
		t.Helper()
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bbolt.Tx) error { return fn(tx.Bucket(bDue)) }); err != nil {
			t.Fatal(err)
		}
	}
	update(func(b *bbolt.Bucket) error {
		c := b.Cursor()
		for ck, v := c.First(); ck != nil; ck, v = c.Next() {
			if len(ck) == 17 && bytes.Equal(ck[8:], k[:]) {
				key, host = bytes.Clone(ck), bytes.Clone(v)
			}
		}
		if key == nil {
			t.Fatalf("delivery %x is not in the due index", k)
		}
		if err := b.Delete(key); err != nil {
			return err
		}
		return b.Put(key[:16], host)
	})
	return func() {
		update(func(b *bbolt.Bucket) error {
			if err := b.Delete(key[:16]); err != nil {
				return err
			}
			return b.Put(key, host)
		})
	}
}

// runToError runs d on src and returns Run's error, failing the test if
// Run is still going after a while: it should have stopped on its own.
func runToError(t *testing.T, d *Dispatcher, src Source, rc *receiver) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, src) }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		d.schedMu.Lock()
		installed := d.sched != nil
		d.schedMu.Unlock()
		cancel()
		err := <-done
		t.Fatalf("Run still going after 10 s (schedule installed: %v, checkpoint %d, %d attempts made); on cancel it returned %v",
			installed, d.Checkpoint(), len(rc.requests()), err)
		return nil
	}
}

// deliversOnce runs d on src until delivery id of the upgraded setup u is
// delivered, then stops it: the receiver must have had exactly one
// attempt, signed with the merchant's current secret.
func deliversOnce(t *testing.T, d *Dispatcher, src Source, u *upgraded, id string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, src) }()
	waitFor(t, 10*time.Second, func() error {
		del, err := d.Delivery("m1", id)
		if err == nil && del.Status != StatusDelivered {
			err = errors.New("delivery " + del.Status)
		}
		return err
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	reqs := u.rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d attempts, want 1", len(reqs))
	}
	if reqs[0].VerifyErr != nil {
		t.Errorf("the webhook does not verify with the current secret: %v", reqs[0].VerifyErr)
	}
}

// TestScheduleLoadFails: a due index that does not load (the due
// webhook's own record torn) fails Run with an error that says so, both
// when the ingest that ends a catch-up after an upgrade loads it and when
// Run loads it at its start, and whichever source feeds the dispatcher (a
// JetStream consumer hands a failed batch again, and must not find the
// schedule's installation spent). A dispatcher that skipped the record, or
// ran on without its schedule, would never deliver the webhook and say
// nothing. Nothing is attempted meanwhile; once the record is repaired the
// webhook goes, once.
func TestScheduleLoadFails(t *testing.T) {
	for _, tc := range sources {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			u := openUpgraded(t, e)
			path := u.d.DB().Path()
			if err := u.d.Close(); err != nil {
				t.Fatal(err)
			}
			repair := tearDueKey(t, path, u.key)
			d, err := Open(path, e.config())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			src := tc.src(t, e)
			check := func(when string, err error) {
				t.Helper()
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "load schedule") {
					t.Fatalf("%s: Run returned %v, want the schedule's load failing on a corrupt record", when, err)
				}
			}

			check("during the catch-up", runToError(t, d, src, u.rc))
			if d.viewsAt != u.cp || d.Checkpoint() != u.cp {
				t.Fatalf("views at %d, checkpoint %d; want both at %d", d.viewsAt, d.Checkpoint(), u.cp)
			}
			check("views level", runToError(t, d, src, u.rc))
			if n := len(u.rc.requests()); n != 0 {
				t.Errorf("%d attempts without a schedule", n)
			}
			id := u.evs[len(u.evs)-1].ID.String()
			if del, err := d.Delivery("m1", id); err != nil || del.Status != StatusPending || del.AttemptCount != 0 {
				t.Fatalf("delivery after the failures: %+v, %v; want pending, never attempted", del, err)
			}

			// Repaired: the webhook goes, once.
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			repair()
			if d, err = Open(path, e.config()); err != nil {
				t.Fatal(err)
			}
			deliversOnce(t, d, src, u, id)
		})
	}
}

// TestCatchUpIngestFails: an ingest that fails during the catch-up after
// an upgrade (here the projector refuses an event) commits nothing and
// ends Run with its error; the schedule is not installed on the strength
// of views that never caught up, so nothing is attempted. The next Run in
// the same process (serve's supervisor starts one) follows from where the
// views are, not from past the checkpoint, which would leave them behind
// for good: no schedule, nothing delivered, and no word of it until a new
// event failed on the views' gap. Here the due webhook goes once, signed
// with the current secret.
func TestCatchUpIngestFails(t *testing.T) {
	e := newEnv(t)
	u := openUpgraded(t, e)
	d := u.d
	bad := u.evs[u.rotated]
	bad.Data = []byte("{")
	src := sourceFunc(func(ctx context.Context, from uint64, ingest func([]ledgerEvent) error) error {
		if err := ingest(u.evs[:u.rotated]); err != nil {
			return err
		}
		return ingest(append([]ledgerEvent{bad}, u.evs[u.rotated+1:]...))
	})
	err := runToError(t, d, src, u.rc)
	if err == nil || !strings.Contains(err.Error(), "project sequence") {
		t.Fatalf("Run: %v, want the projector's refusal", err)
	}
	if want := u.evs[u.rotated-1].Seq; d.viewsAt != want || d.Checkpoint() != u.cp {
		t.Errorf("views at %d, checkpoint %d; want %d, %d", d.viewsAt, d.Checkpoint(), want, u.cp)
	}
	if n := len(u.rc.requests()); n != 0 {
		t.Fatalf("%d attempts before the views caught up", n)
	}

	deliversOnce(t, d, FromLog(e.store, 0, 0), u, u.evs[len(u.evs)-1].ID.String())
}

// TestIngestErrorEndsRun: an ingest that fails the same way each time it
// is tried (here a view in webhooks.db that does not decode, which the
// next event needs) ends Run with its error, whichever source feeds the
// dispatcher: serve's supervisor logs it and starts Run again, and
// payledger worker webhooks exits non-zero. A JetStream consumer used to
// hand the batch again for ever, and the worker sat there delivering
// nothing. Nothing of the batch is recorded; once the view is repaired,
// every webhook goes, once.
func TestIngestErrorEndsRun(t *testing.T) {
	for _, tc := range sources {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			rc := newReceiver(t, false, nil)
			rc.secret = func(string) string { return e.kr.SigningSecret("m1", 1) }
			e.merchant("m1", rc.URL())
			first := e.invoice("m1", "")
			d, _ := ingested(t, e)
			defer d.Close()
			cp := d.Checkpoint()

			var key, good []byte
			if err := d.DB().Update(func(tx *bbolt.Tx) error {
				b := tx.Bucket(vInvoices)
				key, good = b.Cursor().First()
				key, good = bytes.Clone(key), bytes.Clone(good)
				return b.Put(key, []byte{0xff, 0xff, 0xff})
			}); err != nil {
				t.Fatal(err)
			}
			e.cancel("m1", first)
			src := tc.src(t, e)
			err := runToError(t, d, src, rc)
			if !errors.Is(err, projections.ErrCorrupt) {
				t.Fatalf("Run: %v, want the corrupt view", err)
			}
			if d.Checkpoint() != cp {
				t.Fatalf("checkpoint %d after the failed ingest, want %d", d.Checkpoint(), cp)
			}

			if err := d.DB().Update(func(tx *bbolt.Tx) error { return tx.Bucket(vInvoices).Put(key, good) }); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx, src) }()
			head := e.store.Head().Seq
			waitFor(t, 10*time.Second, func() error {
				if cp := d.Checkpoint(); cp != head {
					return fmt.Errorf("checkpoint %d, log head %d", cp, head)
				}
				return nil
			})
			p, err := d.ListDeliveries("m1", ListQuery{PageSize: MaxPageSize})
			if err != nil {
				t.Fatal(err)
			}
			want := p.Details.TotalObjects
			checkDelivered(t, d, "m1", rc, want)
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run after the repair: %v", err)
			}
			if n := len(rc.accepted()); n != want {
				t.Errorf("%d webhooks accepted for %d deliveries", n, want)
			}
		})
	}
}
