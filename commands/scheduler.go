package commands

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
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
type Scheduler struct {
	svc   *Service
	src   DueSource
	clock Clock
	log   *slog.Logger
	kick  chan struct{}

	mu      sync.Mutex
	entropy ulid.MonotonicReader

	expired, failed atomic.Uint64
}

// SchedulerStats counts what a scheduler's passes did since it was made.
type SchedulerStats struct {
	Expired uint64 // invoices and widgets expired
	Failed  uint64 // expiries that failed with an unexpected error; an item that fails on every pass counts once a pass
}

// Stats returns the scheduler's counters (for metrics).
func (s *Scheduler) Stats() SchedulerStats {
	return SchedulerStats{Expired: s.expired.Load(), Failed: s.failed.Load()}
}

// NewScheduler returns a scheduler; clock nil means the system clock.
func NewScheduler(svc *Service, src DueSource, clock Clock, log *slog.Logger) *Scheduler {
	if clock == nil {
		clock = SystemClock{}
	}
	if log == nil {
		log = slog.Default()
	}
	return &Scheduler{svc: svc, src: src, clock: clock, log: log, kick: make(chan struct{}, 1),
		entropy: ulid.Monotonic(ulid.DefaultEntropy(), 0)}
}

// Kick wakes the scheduler to look again (after an invoice was created with
// an earlier expiry than it was waiting for).
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
		if err != nil && ctx.Err() == nil {
			s.log.Error("expiry scheduler", "err", err)
		}
		wait := maxWait
		if next, ok := s.src.NextDue(); ok {
			wait = min(max(next.Sub(s.clock.Now()), 0), maxWait)
		}
		if wait == 0 && (n == 0 || err != nil) {
			// Something due could not be expired (an error, or a stale
			// entry): back off instead of spinning.
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
// settled, not due, gone) is skipped, and an unexpected error is logged with
// the item's kind and id while the pass goes on with the rest. The pass then
// returns the first such error, so that Run logs it and backs off before
// trying the item again.
//
// Errors: the DueSource's, ctx.Err(), or the first item's failure, wrapped
// with how many failed.
func (s *Scheduler) RunOnce(ctx context.Context) (int, error) {
	n, failed := 0, 0
	var first error
	end := s.clock.Now() // items that fall due during the pass wait for the next
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
			err := s.expire(ctx, s.clock.Now(), it)
			switch {
			case err == nil:
				n++
				s.expired.Add(1)
			case errors.Is(err, ErrInvalidTransition), errors.Is(err, ErrNotDue), errors.Is(err, ErrNotFound):
				// Already settled or not due: the view will drop it.
			case ctx.Err() != nil:
				return n, ctx.Err()
			default:
				s.log.Error("expire", "kind", it.Kind, "id", it.ID, "err", err)
				s.failed.Add(1)
				if failed++; first == nil {
					first = err
				}
			}
		}
		if len(items) < duePage {
			break
		}
		after = items[len(items)-1]
	}
	if first != nil {
		return n, fmt.Errorf("%d due item(s) not expired, the first: %w", failed, first)
	}
	return n, nil
}

// expire issues the command that expires it.
func (s *Scheduler) expire(ctx context.Context, now time.Time, it Due) error {
	meta := Meta{CommandID: s.newID(now), Time: now, Correlation: "scheduler"}
	var err error
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

func (s *Scheduler) newID(t time.Time) ulid.ULID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ulid.MustNew(ulid.Timestamp(t), s.entropy)
}
