package webhooks

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/commands"
)

// TestSchedulerStopWaitsForLaunches: an entry begun by a commit's apply
// (on its goroutine, not the scheduler's) is launched after the lock is
// released. stop must not return before that launch: Run takes stop's
// return as "no attempt can start any more" and then closes the results
// channel an attempt would send on.
func TestSchedulerStopWaitsForLaunches(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	launched := make(chan dkey, 1)
	s := newScheduler(4, 4, func(e *entry) {
		close(entered)
		<-release // a goroutine preempted between the unlock and the launch
		launched <- e.key
	})
	k := makeKey(1, kindByteWebhook)
	go s.apply([]memOp{{key: k, due: time.Now().Add(-time.Second), host: "h"}}, nil)
	<-entered
	stopped := make(chan struct{})
	go func() { s.stop(); close(stopped) }()
	// A negative check: nothing signals that stop is (rightly) still
	// waiting, so it gets a short window to return wrongly. A stop that
	// does not wait has nothing to wait for and returns well within it; a
	// correct stop never fails it, however slow the machine.
	select {
	case <-stopped:
		t.Fatal("stop returned while a begun attempt was still to be launched")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not return after the launch")
	}
	if got := <-launched; got != k {
		t.Fatalf("launched %v", got)
	}
	// Closed: a due entry applied now is not begun.
	s.apply([]memOp{{key: makeKey(2, kindByteWebhook), due: time.Now().Add(-time.Second), host: "h"}}, nil)
	select {
	case k := <-launched:
		t.Fatalf("launched %v after stop", k)
	default:
	}
}

// waitingFor is how many entries of a host's queue are for key k, and how
// many the queue holds in all.
func waitingFor(s *scheduler, host string, k dkey) (forKey, all int) {
	if s == nil {
		return 0, 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.hosts[host]
	if q == nil {
		return 0, 0
	}
	for e := q.head; e != nil; e = e.next {
		all++
		if e.key == k {
			forKey++
		}
	}
	if all != q.n {
		panic("host queue count out of step with its entries")
	}
	return forKey, all
}

// An entry waiting for a host slot that is moved or unscheduled leaves the
// host's queue at once: it does not stay there, marked, until a slot frees.
// Before, every move of a waiting delivery (a redelivery while its host is
// busy) left one such entry behind, without bound.
func TestSchedulerCancelledWaitingEntriesLeave(t *testing.T) {
	launched := make(chan dkey, 16)
	s := newScheduler(8, 1, func(e *entry) { launched <- e.key })
	busy, k, other := makeKey(1, kindByteWebhook), makeKey(2, kindByteWebhook), makeKey(3, kindByteWebhook)
	past := time.Now().Add(-time.Second)
	s.apply([]memOp{{key: busy, due: past, host: "h"}}, nil) // takes h's one slot
	if got := <-launched; got != busy {
		t.Fatalf("launched %v", got)
	}
	s.apply([]memOp{{key: k, due: past, host: "h"}, {key: other, due: past, host: "h"}}, nil)
	const n = 10000
	for i := range n {
		if i%2 == 0 {
			s.apply([]memOp{{key: k, due: time.Now(), host: "h"}}, nil) // moved (redelivered)
		} else {
			s.apply([]memOp{{key: k}, {key: k, due: time.Now(), host: "h"}}, nil) // unscheduled, then back
		}
	}
	if forKey, all := waitingFor(s, "h", k); forKey != 1 || all != 2 {
		t.Fatalf("after %d moves: %d entries for the delivery, %d in the host's queue; want 1 and 2", n, forKey, all)
	}
	// Unscheduled for good: nothing of it stays.
	s.apply([]memOp{{key: k}}, nil)
	if forKey, all := waitingFor(s, "h", k); forKey != 0 || all != 1 {
		t.Fatalf("unscheduled: %d entries for it, %d in the queue", forKey, all)
	}
	if _, due := s.counts(); due != 1 {
		t.Fatalf("%d scheduled, want 1", due)
	}
	// The slot frees: the one still waiting goes, once.
	s.done("h")
	if got := <-launched; got != other {
		t.Fatalf("launched %v, want %v", got, other)
	}
	// A negative check: a second launch would follow done at once, so a
	// short window catches it; a correct scheduler never fails it, however
	// slow the machine.
	select {
	case got := <-launched:
		t.Fatalf("launched %v too", got)
	case <-time.After(50 * time.Millisecond):
	}
	// A queue left empty with nothing in flight is dropped.
	s.done("h")
	s.mu.Lock()
	hosts := len(s.hosts)
	s.mu.Unlock()
	if hosts != 0 {
		t.Fatalf("%d host queues left", hosts)
	}
}

// running is the scheduler of a running dispatcher.
func running(d *Dispatcher) *scheduler {
	d.schedMu.Lock()
	defer d.schedMu.Unlock()
	return d.sched
}

// dueEntries counts the w_due entries of key k, and all of them.
func dueEntries(t *testing.T, d *Dispatcher, k dkey) (forKey, all int) {
	t.Helper()
	err := d.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bDue).ForEach(func(key, _ []byte) error {
			all++
			if len(key) == 17 && dkey(key[8:]) == k {
				forKey++
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return forKey, all
}

// Redelivering a delivery again and again while its host's slots are all
// taken (the receiver hangs) leaves one entry for it, in webhooks.db's due
// index and in the scheduler, not one per redelivery; once the host answers
// it is attempted once.
func TestRedeliveriesWhileHostBusyLeaveNoEntries(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	rc := newReceiver(t, false, func(r *http.Request, n int) (int, http.Header) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return http.StatusOK, nil
	})
	rc.secret = func(string) string { return e.kr.SigningSecret("m1", 1) }
	e.merchant("m1", rc.URL())
	cfg := e.config()
	cfg.AttemptTimeout = 30 * time.Second
	cfg.PerHostConcurrency = 1
	d, _ := e.dispatcher("", cfg)
	host := hostOf(rc.URL())

	e.invoice("m1", "") // its attempt hangs, holding the host's one slot
	waitFor(t, 5*time.Second, func() error {
		if d.Stats().InFlight != 1 {
			return errors.New("first attempt not under way")
		}
		return nil
	})
	inv := e.invoice("m1", "")
	var del Delivery
	var k dkey
	waitFor(t, 5*time.Second, func() error {
		var err error
		if del, err = findFor(d, "m1", commands.TypeInvoiceCreated, inv); err != nil {
			return err
		}
		k = makeKey(del.EventSeq, kindByteWebhook)
		if forKey, _ := waitingFor(running(d), host, k); forKey != 1 {
			return errors.New("second delivery not waiting for the host yet")
		}
		return nil
	})
	const n = 300
	for range n {
		if _, err := d.Redeliver("m1", del.ID); err != nil {
			t.Fatal(err)
		}
	}
	if forKey, all := waitingFor(running(d), host, k); forKey != 1 || all != 1 {
		t.Errorf("after %d redeliveries the host's queue holds %d entries for the delivery, %d in all; want 1 and 1", n, forKey, all)
	}
	// Its own and the one in flight.
	if forKey, all := dueEntries(t, d, k); forKey != 1 || all != 2 {
		t.Errorf("after %d redeliveries w_due holds %d entries for the delivery, %d in all; want 1 and 2", n, forKey, all)
	}
	if st := d.Stats(); st.Due != 1 || st.InFlight != 1 {
		t.Errorf("stats: %d due, %d in flight; want 1 and 1", st.Due, st.InFlight)
	}

	close(release)
	checkDelivered(t, d, "m1", rc, 2)
	got, err := d.Delivery("m1", del.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.AttemptCount != 1 || got.Redeliveries != n {
		t.Errorf("%d attempts, %d redeliveries; want 1 and %d", got.AttemptCount, got.Redeliveries, n)
	}
	if _, all := dueEntries(t, d, k); all != 0 {
		t.Errorf("%d w_due entries left after both were delivered", all)
	}
}
