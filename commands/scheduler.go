package commands

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payledger/payledger/internal/ids"
)

// Clock is the scheduler's time source; tests inject a manual one.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }

// After is time.After.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Due is an invoice or widget whose expiry time has come or will come.
type Due struct {
	Kind       string // "invoice" or "widget"
	ID         string
	MerchantID string
	At         time.Time
}

// DueSource lists what is due, from a view kept from the log, so a restarted
// scheduler catches up on everything overdue.
type DueSource interface {
	// Due returns up to limit items due at or before t, earliest first, in
	// a fixed order of At, Kind, ID. An after with a non-empty ID is the
	// last item of the previous page: the list starts past it, whether or
	// not it is still due.
	Due(t time.Time, after Due, limit int) ([]Due, error)
	// NextDue returns the earliest due time, if any.
	NextDue() (time.Time, bool)
}

// Scheduler expires invoices and widgets at their expiry time by issuing the
// expire commands. It sleeps until the earliest due time or until Kick.
//
// An item whose expiry fails with an unexpected error is tried again after
// a backoff of its own, doubling from retryMin to retryMax; the backoffs
// are kept in memory only, so a success or a restart starts an item's
// afresh.
type Scheduler struct {
	svc   *Service
	src   DueSource
	clock Clock
	log   *slog.Logger
	kick  chan struct{}

	pass    sync.Mutex // one pass at a time; guards retries and wake
	retries map[dueKey]*retry
	wake    time.Time // when the last pass left something to do: a retry, or an item it did not reach (zero: unknown)

	expired, failed atomic.Uint64
	retrying        atomic.Int64
}

// dueKey names a due item.
type dueKey struct{ kind, id string }

// retry is the backoff of an item whose expiry failed.
type retry struct {
	wait time.Duration // the current step: retryMin, doubled after every failure up to retryMax
	next time.Time     // the item is not tried before
	seen bool          // met by the current pass
}

// The backoff of an item whose expiry keeps failing.
const (
	retryMin = time.Second
	retryMax = 5 * time.Minute
)

// SchedulerStats counts what a scheduler's passes did since it was made.
type SchedulerStats struct {
	Expired uint64 // invoices and widgets expired
	// Failed counts expiry attempts that failed with an unexpected error.
	// A failing item is tried once per backoff step (1 s doubling to
	// 5 min), so it counts at most that often.
	Failed uint64
	// Retrying is how many items wait for their next try after a failure.
	Retrying uint64
}

// Stats returns the scheduler's counters (for metrics).
func (s *Scheduler) Stats() SchedulerStats {
	return SchedulerStats{Expired: s.expired.Load(), Failed: s.failed.Load(), Retrying: uint64(s.retrying.Load())}
}

// NewScheduler returns a scheduler; clock nil means the system clock.
func NewScheduler(svc *Service, src DueSource, clock Clock, log *slog.Logger) *Scheduler {
	if clock == nil {
		clock = SystemClock{}
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Scheduler{svc: svc, src: src, clock: clock, log: log, kick: make(chan struct{}, 1),
		retries: map[dueKey]*retry{}}
	svc.OnDue(s.Kick) // every creation through svc, whichever adapter made it
	return s
}

// Kick wakes the scheduler to look again (after an invoice or a widget was
// created, maybe with an earlier expiry than it was waiting for). The
// Service calls it (OnDue); other callers need not.
func (s *Scheduler) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// maxWait bounds a sleep, so a missed kick costs at most this long.
const maxWait = time.Minute

// Run expires what is due until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	for {
		n, err := s.RunOnce(ctx)
		var items *expireFailures
		if err != nil && ctx.Err() == nil && !errors.As(err, &items) {
			// Items' failures were logged one by one, once a backoff step.
			s.log.Error("expiry scheduler", "err", err)
		}
		now := s.clock.Now()
		wait := maxWait
		if next, ok := s.src.NextDue(); ok {
			wait = min(max(next.Sub(now), 0), maxWait)
		}
		if wait == 0 {
			// What is due still is after the pass: items waiting for their
			// retry, or stale entries. Sleep until the first retry or the
			// first item the pass did not reach, if the pass knows one.
			wait = time.Second
			if at := s.wakeAt(); !at.IsZero() {
				wait = min(max(at.Sub(now), 0), maxWait)
			}
		}
		if wait == 0 && (n == 0 || err != nil) {
			// Nothing expired: back off instead of spinning.
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		case <-s.clock.After(wait):
		}
	}
}

// duePage is how many due items RunOnce reads at a time.
const duePage = 256

// RunOnce expires everything due now and returns how many it expired.
//
// An item that cannot be expired does not hold up the others: the pass
// reads the due items a page at a time, each page past the last item of the
// one before, so it meets every item due now once. A stale entry (already
// settled, not due, gone) is skipped. An unexpected error is logged with the
// item's kind and id and the wait before its next try, while the pass goes
// on with the rest; the item is then not tried again before its backoff
// step has passed (1 s, doubled after every failure up to 5 min), so it is
// tried, counted and logged once per step. The pass then returns the first
// such error.
//
// Passes do not overlap: a RunOnce waits for one under way.
//
// Errors: the DueSource's, ctx.Err(), or the first item's failure, wrapped
// with how many failed.
func (s *Scheduler) RunOnce(ctx context.Context) (int, error) {
	s.pass.Lock()
	defer s.pass.Unlock()
	n, failed := 0, 0
	var first error
	end := s.clock.Now() // items that fall due during the pass wait for the next
	s.wake = time.Time{}
	for _, r := range s.retries {
		r.seen = false
	}
	var after Due
	for {
		items, err := s.src.Due(end, after, duePage)
		if err != nil {
			return n, err
		}
		for _, it := range items {
			if err := ctx.Err(); err != nil {
				return n, err
			}
			after = it
			k := dueKey{it.Kind, it.ID}
			now := s.clock.Now()
			r := s.retries[k]
			if r != nil {
				r.seen = true
				if now.Before(r.next) {
					continue
				}
			}
			err := s.expire(ctx, now, it)
			switch {
			case err == nil:
				n++
				s.expired.Add(1)
				s.forget(k)
			case errors.Is(err, ErrInvalidTransition), errors.Is(err, ErrNotDue), errors.Is(err, ErrNotFound):
				// Already settled or not due: the view will drop it.
				s.forget(k)
			case ctx.Err() != nil:
				return n, ctx.Err()
			default:
				if r == nil {
					r = &retry{seen: true}
					s.retries[k] = r
					s.retrying.Add(1)
				}
				r.wait = min(max(2*r.wait, retryMin), retryMax)
				r.next = now.Add(r.wait)
				s.log.Error("expire", "kind", it.Kind, "id", it.ID, "retry_in", r.wait, "err", err)
				s.failed.Add(1)
				if failed++; first == nil {
					first = err
				}
			}
		}
		if len(items) < duePage {
			break
		}
	}
	// The pass met every item due at end: a backoff it did not meet is of
	// an item settled or changed since, which needs none.
	for k, r := range s.retries {
		if !r.seen {
			s.forget(k)
		} else if s.wake.IsZero() || r.next.Before(s.wake) {
			s.wake = r.next
		}
	}
	// The first item past the pass: due at or after end, it may be due
	// before the retries (NextDue says only when the earliest, still
	// due, was).
	next, err := s.src.Due(end.Add(maxWait), after, 1)
	if err != nil {
		return n, err
	}
	if len(next) > 0 && (s.wake.IsZero() || next[0].At.Before(s.wake)) {
		s.wake = next[0].At
	}
	if first != nil {
		return n, &expireFailures{n: failed, first: first}
	}
	return n, nil
}

// expireFailures is RunOnce's error when due items failed to expire (each
// one logged already).
type expireFailures struct {
	n     int
	first error
}

func (e *expireFailures) Error() string {
	return fmt.Sprintf("%d due item(s) not expired, the first: %v", e.n, e.first)
}

func (e *expireFailures) Unwrap() error { return e.first }

// forget drops an item's backoff.
func (s *Scheduler) forget(k dueKey) {
	if _, ok := s.retries[k]; ok {
		delete(s.retries, k)
		s.retrying.Add(-1)
	}
}

// wakeAt returns when the last pass left something to do: the first retry
// of a failed item or the first item past the pass, whichever is sooner
// (zero: none known).
func (s *Scheduler) wakeAt() time.Time {
	s.pass.Lock()
	defer s.pass.Unlock()
	return s.wake
}

// expire issues the command that expires it.
func (s *Scheduler) expire(ctx context.Context, now time.Time, it Due) error {
	id, err := ids.At(now)
	if err != nil {
		return fmt.Errorf("expire %s %s: %w", it.Kind, it.ID, err)
	}
	meta := Meta{CommandID: id, Time: now, Correlation: "scheduler"}
	switch it.Kind {
	case "invoice":
		_, err = s.svc.ExpireInvoice(ctx, ExpireInvoice{Meta: meta, InvoiceID: it.ID})
	case "widget":
		_, err = s.svc.ChangeWidgetStatus(ctx, ChangeWidgetStatus{Meta: meta, WidgetID: it.ID, Status: WidgetStatusExpired})
	default:
		err = fmt.Errorf("unknown kind %q", it.Kind)
	}
	if err != nil {
		return fmt.Errorf("expire %s %s: %w", it.Kind, it.ID, err)
	}
	return nil
}
