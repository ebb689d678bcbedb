package projections

import (
	"bytes"
	"fmt"
	"sync"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
)

// Projector maintains every view inside the log's write transaction
// (boltlog.Options.Projectors). The zero value is ready to use.
//
// Apply is deterministic (it reads only the events and its own buckets),
// idempotent (events at or below the checkpoint are skipped), and ignores
// event types it does not know while still advancing the checkpoint. Known
// types with data that do not decode, postings that do not balance, events
// on aggregates the views do not hold, or changes the commands never make
// (an invoice paid twice, a payment going back from a final status, a
// payment created for an invoice that is not pending, an invoice paid by
// another invoice's payment or not right after its payment.processed, an
// invoice.paid whose paid_at or paid_amount is not its payment.processed's
// at or paid_amount, a payment.processed with allocation invoice or an
// invoice.paid whose late flag is not commands.PaidLate's) fail the append,
// and a rebuild or catch-up of a log that holds one: the inline projection
// is the last line of defence before a bad event is committed, and a view
// never shows a state its events cannot reach.
//
// Inline, boltlog calls ApplyAppend, which also refuses an append in which
// a payment.processed with allocation invoice is not followed by its
// invoice.paid (any other event after it, or the append's end), as the
// commands never write. A log may hold one all the same (restored from the
// stream up to a message whose append's next one had not been published;
// written before that rule): Apply, and ApplyAppend past it, project it
// (the audit reports it), because refusing what follows would refuse every
// later append, and any rebuild once something did follow.
type Projector struct {
	// ViewsOnly keeps the views a reader looks up by id (invoices,
	// payments, widgets, merchants, API keys, rates) and leaves out the
	// indexes, counters and balances: for the webhook dispatcher, which
	// reads three of those views back inside its own transaction and
	// nothing else, and would otherwise write a second copy of every
	// index (about 8% of a create-invoice's CPU). The views are byte for
	// byte those of a full projection. A views-only database says so in
	// its meta, and Init drops the views of the other kind, so that its
	// owner projects them again from the first event.
	ViewsOnly bool
}

var _ boltlog.AppendProjector = (*Projector)(nil)

// states keeps Apply's state (its maps and slices) from one append to the
// next; reset clears it.
var states sync.Pool

// Init creates the view buckets and returns the checkpoint. Views written by
// an older view format, or by a projector of the other kind (ViewsOnly),
// are dropped (the log then replays into them); a newer format fails with
// ErrUnsupportedVersion.
func (p *Projector) Init(tx *bbolt.Tx) (uint64, error) {
	if meta := tx.Bucket(bMeta); meta != nil {
		switch f := meta.Get(keyFormat); {
		case len(f) == 1 && f[0] == formatVersion && (meta.Get(keyViewsOnly) != nil) == p.ViewsOnly:
		case len(f) == 1 && f[0] > formatVersion:
			return 0, fmt.Errorf("%w: views format %d, this build reads %d", ErrUnsupportedVersion, f[0], formatVersion)
		default:
			if err := dropViews(tx); err != nil {
				return 0, err
			}
		}
	} else if err := dropViews(tx); err != nil {
		// No meta: any stray v_ buckets are partial and must go.
		return 0, err
	}
	if err := createViews(tx); err != nil {
		return 0, err
	}
	if p.ViewsOnly {
		if err := tx.Bucket(bMeta).Put(keyViewsOnly, []byte{}); err != nil {
			return 0, err
		}
	}
	return u64(tx.Bucket(bMeta).Get(keyCheckpoint)), nil
}

// Apply applies events in sequence order: a catch-up's or an import's
// batch, which may end anywhere, even between a payment.processed and its
// invoice.paid (v_meta's "paying" record lets the next batch check that
// invoice.paid against it). Errors: ErrMalformedEvent, ErrUnbalanced, ErrInconsistent,
// ErrIllegalTransition, ErrSequenceGap, ErrCorrupt, or bbolt's.
func (p *Projector) Apply(tx *bbolt.Tx, events []ledger.Event) error {
	return p.apply(tx, events, false)
}

// ApplyAppend applies one append's events (boltlog's append path): as
// Apply, and it also refuses, with ErrInconsistent, an append in which a
// payment.processed with allocation invoice is followed by another event
// than its invoice.paid, or by none: the commands append the two together,
// in that order.
func (p *Projector) ApplyAppend(tx *bbolt.Tx, events []ledger.Event) error {
	return p.apply(tx, events, true)
}

func (p *Projector) apply(tx *bbolt.Tx, events []ledger.Event, appended bool) error {
	s, _ := states.Get().(*state)
	var err error
	if s == nil {
		s, err = newState(tx)
	} else {
		err = s.reset(tx)
	}
	if err != nil {
		return err
	}
	s.viewsOnly, s.appending = p.ViewsOnly, appended
	defer func() {
		s.tx, s.b, s.viewsOnly, s.appending = nil, buckets{}, false, false
		states.Put(s)
	}()
	for i := range events {
		e := &events[i]
		if e.Seq <= s.checkpoint {
			continue
		}
		data, err := prepare(e, nil)
		if err != nil {
			return err
		}
		if err := s.apply(e, data); err != nil {
			return err
		}
	}
	if appended && s.checkpoint != s.start && s.paying.seq == s.checkpoint {
		return fmt.Errorf("sequence %d (%s on %s): %w: it ends the append: its invoice.paid must follow it in the same append",
			s.paying.seq, commands.TypePaymentProcessed, s.paying.stream, ErrInconsistent)
	}
	return s.flush()
}

func createViews(tx *bbolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
	}
	return tx.Bucket(bMeta).Put(keyFormat, []byte{formatVersion})
}

// dropViews deletes every bucket whose name starts with "v_".
func dropViews(tx *bbolt.Tx) error {
	var names [][]byte
	if err := tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
		if bytes.HasPrefix(name, []byte(viewPrefix)) {
			names = append(names, bytes.Clone(name))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, n := range names {
		if err := tx.DeleteBucket(n); err != nil {
			return fmt.Errorf("drop %s: %w", n, err)
		}
	}
	return nil
}
