package projections

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"
	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/ledger"
)

// Rebuild tuning. Chunks are the unit handed between the pipeline's
// goroutines; the decoders may run rebuildAhead chunks ahead of the writer.
const (
	rebuildChunk = 1024
	rebuildAhead = 16
)

// rebuildTxEvents events make one transaction, amortizing the commit (a
// variable so that tests can make a small log span many transactions).
//
// The size is set by what a fresh process pays for memory, as payledger
// replay runs: each new heap page is a page fault (about 3.5 µs of system
// time on the benchmark machine), and the heap grows to GOGC times what the
// rebuild keeps live, which grows with the transaction (its views and dirty
// pages). Against 64,000 events, 16,000 took a replay of the benchmark log
// (181,313 events, four runs each way, interleaved) from about 92,000 page
// faults and 480 MB resident to 68,000 and 415 MB, and from about 230,000
// to 260,000 events/s. BenchmarkRebuild, which reuses a heap grown by its
// setup, gained about 4%. Four chunks ahead instead of 16 saved another
// 60 MB, but was about 5% slower in the benchmark.
var rebuildTxEvents = 16_000

// ScratchOptions are the bbolt options for a new file that Rebuild writes
// and nothing else uses while it does (payledger replay's scratch file):
// 16 KiB pages, because a rebuild writes every page of the file and a write
// system call per 4 KiB page costs more than the page (larger pages cost
// more again once the tree is big: a key changed in an old page rewrites the
// whole page), and no freelist sync, because the file is written once.
func ScratchOptions() *bbolt.Options {
	return &bbolt.Options{
		Timeout:         time.Second,
		PageSize:        16 << 10,
		InitialMmapSize: 1 << 30, // address space, not memory: no remapping while the file grows
		FreelistType:    bbolt.FreelistMapType,
		NoFreelistSync:  true,
	}
}

// Rebuild replays events into fresh views in dst: it drops dst's v_ buckets,
// then applies the events in large transactions with the same code the
// inline Projector runs, so the result equals the live views (Compare). With
// a non-zero until it stops at the first event whose time is after until: a
// prefix of the log, so the views are those the log had at that point.
//
// Decoding (the iterator's own, then each event's JSON) runs on other
// goroutines than the bbolt writes. dst must be another file than the log
// the events come from, and nothing else may use it during the rebuild: its
// NoSync and NoGrowSync are set for the duration (a rebuild cut short is
// thrown away, not recovered), and the file is synced once at the end.
//
// Errors: the iterator's error, ctx.Err(), the Projector's errors
// (ErrMalformedEvent, ErrUnbalanced, ErrInconsistent, ErrSequenceGap), or bbolt's.
func Rebuild(ctx context.Context, events iter.Seq2[ledger.Event, error], dst *bbolt.DB, until time.Time) (Summary, error) {
	if err := dst.Update(func(tx *bbolt.Tx) error {
		if err := dropViews(tx); err != nil {
			return err
		}
		return createViews(tx)
	}); err != nil {
		return Summary{}, fmt.Errorf("rebuild: reset views: %w", err)
	}
	noSync, noGrowSync := dst.NoSync, dst.NoGrowSync
	dst.NoSync, dst.NoGrowSync = true, true
	err := rebuild(ctx, events, dst, until)
	dst.NoSync, dst.NoGrowSync = noSync, noGrowSync
	if err != nil {
		return Summary{}, fmt.Errorf("rebuild: %w", err)
	}
	if err := syncViews(dst); err != nil {
		return Summary{}, fmt.Errorf("rebuild: sync: %w", err)
	}
	return Summarize(dst)
}

// syncViews fsyncs a rebuild's file; tests replace it to make a sync fail,
// which a healthy disk never does on demand.
var syncViews = (*bbolt.DB).Sync

// chunk is a run of consecutive events on its way through the pipeline.
type chunk struct {
	events []ledger.Event
	data   []any
	err    error         // the iterator's or a decode error, after the good events
	done   chan struct{} // closed once data is decoded
}

func rebuild(ctx context.Context, events iter.Seq2[ledger.Event, error], dst *bbolt.DB, until time.Time) (err error) {
	var wg sync.WaitGroup
	defer wg.Wait() // runs after cancel: every goroutine sees ctx end
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Every chunk goes to the decoders first, then to the writer, so each
	// chunk the writer receives will be decoded.
	work := make(chan *chunk, rebuildAhead)
	ordered := make(chan *chunk, rebuildAhead)
	free := make(chan *chunk, 2*rebuildAhead+8) // chunks the writer is done with, for reuse
	newChunk := func() *chunk {
		select {
		case c := <-free:
			c.events, c.data, c.err = c.events[:0], c.data[:0], nil
			c.done = make(chan struct{})
			return c
		default:
			return &chunk{events: make([]ledger.Event, 0, rebuildChunk), done: make(chan struct{})}
		}
	}

	// Producer: reads the iterator into chunks, in order.
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ordered)
		defer close(work)
		send := func(c *chunk) bool {
			select {
			case work <- c:
			case <-ctx.Done():
				return false
			}
			select {
			case ordered <- c:
				return true
			case <-ctx.Done():
				return false
			}
		}
		c := newChunk()
		for e, err := range events {
			if err != nil {
				c.err = err
				break
			}
			if !until.IsZero() && e.Time.After(until) {
				break
			}
			c.events = append(c.events, e)
			if len(c.events) == rebuildChunk {
				if !send(c) {
					return
				}
				c = newChunk()
			}
		}
		send(c)
	}()

	// Decoders: JSON data of each chunk, in parallel, one fewer than the
	// CPUs: the writer is the critical path and should have one to itself
	// (the decoders run ahead of it). On 2 CPUs one decoder against two:
	// BenchmarkRebuild median 258k against 251k events/s, and 2.5% less
	// CPU an event, eight interleaved runs each.
	for range max(1, runtime.GOMAXPROCS(0)-1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cache := newCache()
			for c := range work {
				c.data = slices.Grow(c.data[:0], len(c.events))[:len(c.events)]
				for i := range c.events {
					d, err := prepare(&c.events[i], cache)
					if err != nil {
						c.err = err
						c.events = c.events[:i]
						break
					}
					c.data[i] = d
					// The writer needs the envelope, not the JSON: let the
					// data go now rather than when the chunk is reused.
					c.events[i].Data = nil
				}
				close(c.done)
			}
		}()
	}

	// Writer: this goroutine, in log order.
	var tx *bbolt.Tx
	var s *state
	defer func() {
		if tx != nil {
			_ = tx.Rollback()
		}
	}()
	inTx := 0
	// After each commit the file is synced on another goroutine, one sync
	// at a time: the pages reach the disk while the next transaction is
	// built, and Rebuild's final Sync waits only for the last ones. A failed
	// sync fails the rebuild: a later fsync may not report that error again.
	var (
		syncing = make(chan struct{}, 1) // full while a sync runs
		syncErr error                    // written by the sync goroutine before it empties syncing
	)
	defer func() {
		syncing <- struct{}{} // wait for the last background sync
		if err == nil && syncErr != nil {
			err = fmt.Errorf("sync: %w", syncErr)
		}
	}()
	pre := newPreallocator(dst.Path())
	defer func() {
		if ferr := pre.finish(); err == nil && ferr != nil {
			err = fmt.Errorf("free the blocks past the end: %w", ferr)
		}
	}()
	commit := func() error {
		if err := s.flush(); err != nil {
			return err
		}
		err := tx.Commit()
		tx, inTx = nil, 0
		if err != nil {
			return err
		}
		pre.extend()
		select {
		case syncing <- struct{}{}:
			if syncErr != nil {
				<-syncing // the deferred wait takes the slot again
				return fmt.Errorf("sync: %w", syncErr)
			}
			go func() {
				if err := syncViews(dst); err != nil {
					syncErr = err
				}
				<-syncing
			}()
		default: // one is running: a later commit starts the next
		}
		return nil
	}
	for c := range ordered {
		<-c.done
		if err := ctx.Err(); err != nil {
			return err
		}
		for i := range c.events {
			if tx == nil {
				var err error
				if tx, err = dst.Begin(true); err != nil {
					return err
				}
				if s == nil {
					if s, err = newState(tx); err == nil {
						s.carried = newCarried()
					}
				} else {
					err = s.reset(tx)
				}
				if err != nil {
					return err
				}
				s.b.packPages()
			}
			if err := s.apply(&c.events[i], c.data[i]); err != nil {
				return err
			}
			if inTx++; inTx >= rebuildTxEvents {
				if err := commit(); err != nil {
					return err
				}
			}
		}
		if c.err != nil {
			return c.err
		}
		clear(c.events)
		clear(c.data)
		select {
		case free <- c:
		default:
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if tx != nil {
		return commit()
	}
	return nil
}

// Compare compares the views of two databases, bucket by bucket and key by
// key (buckets not named "v_..." are ignored), and returns a *DiffError
// (ErrMismatch) naming the first difference, or nil when they are equal.
// Errors: *DiffError, or bbolt's.
func Compare(a, b *bbolt.DB) error {
	return a.View(func(ta *bbolt.Tx) error {
		return b.View(func(tb *bbolt.Tx) error {
			na, nb := viewBuckets(ta), viewBuckets(tb)
			for i, j := 0, 0; i < len(na) || j < len(nb); {
				switch {
				case j == len(nb) || (i < len(na) && na[i] < nb[j]):
					return &DiffError{Bucket: na[i]}
				case i == len(na) || nb[j] < na[i]:
					return &DiffError{Bucket: nb[j]}
				}
				if err := compareBucket(na[i], ta.Bucket([]byte(na[i])), tb.Bucket([]byte(nb[j]))); err != nil {
					return err
				}
				i++
				j++
			}
			return nil
		})
	})
}

func viewBuckets(tx *bbolt.Tx) []string {
	var names []string
	_ = tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
		if bytes.HasPrefix(name, []byte(viewPrefix)) {
			names = append(names, string(name))
		}
		return nil
	})
	slices.Sort(names)
	return names
}

func compareBucket(name string, a, b *bbolt.Bucket) error {
	ca, cb := a.Cursor(), b.Cursor()
	ka, va := ca.First()
	kb, vb := cb.First()
	for ka != nil || kb != nil {
		switch c := compareKeys(ka, kb); {
		case c < 0:
			return &DiffError{Bucket: name, Key: bytes.Clone(ka), A: bytes.Clone(va)}
		case c > 0:
			return &DiffError{Bucket: name, Key: bytes.Clone(kb), B: bytes.Clone(vb)}
		}
		if !bytes.Equal(va, vb) {
			return &DiffError{Bucket: name, Key: bytes.Clone(ka), A: nonNilBytes(va), B: nonNilBytes(vb)}
		}
		ka, va = ca.Next()
		kb, vb = cb.Next()
	}
	return nil
}

// compareKeys orders keys with nil (the end of a bucket) last.
func compareKeys(a, b []byte) int {
	switch {
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return bytes.Compare(a, b)
}

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return bytes.Clone(b)
}

// Summarize describes the views in db: events applied, invoices, payments
// and widgets by status, balances per merchant, and posting totals per
// currency. It reads counters and sums, never every view.
// Errors: ErrNotFound (no views in db), ErrCorrupt, or bbolt's.
func Summarize(db *bbolt.DB) (Summary, error) {
	s := Summary{
		Invoices:      map[string]uint64{},
		Payments:      map[string]uint64{},
		Widgets:       map[string]uint64{},
		Balances:      map[string][]Balance{},
		PostingTotals: map[string]decimal.Decimal{},
	}
	err := db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if meta == nil {
			return fmt.Errorf("%w: no views in %s", ErrNotFound, db.Path())
		}
		s.Events = u64(meta.Get(keyEvents))
		s.Checkpoint = u64(meta.Get(keyCheckpoint))
		s.Merchants = tx.Bucket(bMerchants).Stats().KeyN
		if err := tx.Bucket(bCounters).ForEach(func(k, v []byte) error {
			var m map[string]uint64
			switch {
			case bytes.HasPrefix(k, []byte(ctrInvoiceStatus)):
				m = s.Invoices
			case bytes.HasPrefix(k, []byte(ctrPaymentStatus)):
				m = s.Payments
			case bytes.HasPrefix(k, []byte(ctrWidgetStatus)):
				m = s.Widgets
			default:
				return nil
			}
			status := k[bytes.LastIndexByte(k, 0)+1:]
			m[string(status)] += u64(v)
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bBalances).ForEach(func(k, v []byte) error {
			parts := strings.Split(string(k), "\x00")
			d, err := decimal.NewFromString(string(v))
			if len(parts) != 3 || err != nil {
				return fmt.Errorf("%w: balance %q", ErrCorrupt, k)
			}
			s.Balances[parts[0]] = append(s.Balances[parts[0]], Balance{Account: parts[1], Currency: parts[2], Amount: d})
			return nil
		}); err != nil {
			return err
		}
		var err error
		s.PostingTotals, err = postingTotals(tx)
		return err
	})
	if err != nil {
		return Summary{}, err
	}
	return s, nil
}

// carried holds the views one rebuild transaction wrote, for the next.
// Without it, each transaction read back and decoded (encoding/json) every
// view an earlier one had written that it touched again: an invoice created
// late in one transaction and paid early in the next. A view flush wrote is
// exactly what reading it back gives (the live Projector reads its views
// back every time, and Compare checks the two agree), and no one else
// holds it once its transaction is over. Only the last transaction's views
// are kept, so memory stays bounded by one transaction's.
type carried struct {
	invoices map[string]*InvoiceView
	payments map[string]*PaymentView
	widgets  map[string]*WidgetView
}

func newCarried() *carried {
	return &carried{
		invoices: make(map[string]*InvoiceView),
		payments: make(map[string]*PaymentView),
		widgets:  make(map[string]*WidgetView),
	}
}

// keep replaces what c holds with the views of s's transaction, which has
// been flushed and committed.
func (c *carried) keep(s *state) {
	clear(c.invoices)
	for id, en := range s.invoices {
		c.invoices[id] = en.v
	}
	clear(c.payments)
	for id, en := range s.payments {
		c.payments[id] = en.v
	}
	clear(c.widgets)
	for id, en := range s.widgets {
		c.widgets[id] = en.v
	}
}

// The views of a nil *carried (the inline Projector's) are nil maps: no
// lookup finds anything.

func (c *carried) invoiceViews() map[string]*InvoiceView {
	if c == nil {
		return nil
	}
	return c.invoices
}

func (c *carried) paymentViews() map[string]*PaymentView {
	if c == nil {
		return nil
	}
	return c.payments
}

func (c *carried) widgetViews() map[string]*WidgetView {
	if c == nil {
		return nil
	}
	return c.widgets
}
