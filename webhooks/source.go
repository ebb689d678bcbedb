package webhooks

import (
	"context"
	"errors"
	"iter"
	"time"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
)

// Source feeds a Dispatcher committed events in sequence order.
type Source interface {
	// Follow calls ingest with batches of committed events in sequence
	// order, starting at sequence from, and waits for new ones until ctx
	// ends. It may pass an event again (ingest skips those it has); it must
	// never skip one. It returns ingest's error, its own, or ctx.Err().
	Follow(ctx context.Context, from uint64, ingest func([]ledger.Event) error) error
}

// Log is what FromLog reads; *boltlog.Store satisfies it.
type Log interface {
	// Events iterates over the events from a sequence to the current head.
	Events(ctx context.Context, from uint64) iter.Seq2[ledger.Event, error]
	// Wait blocks until the head passes seq.
	Wait(ctx context.Context, seq uint64) (ledger.Head, error)
}

var _ Log = (*boltlog.Store)(nil)

// DefaultLinger is how long serve's dispatcher lets commits gather (see
// FromLog). Under load the log commits every few milliseconds, a handful of
// events each. Gathering them took create-invoice in payledger bench from a
// median of 4,977 requests/s to 5,570 with 5 ms and 5,609 with 10 ms (three
// interleaved runs each). 5 ms, because the longer wait showed in the
// webhooks' latency: BenchmarkWebhookLatency's p99 was 41 to 57 ms with 5 ms
// against 46 to 94 ms with 10 ms (target 100 ms; 33 to 36 ms without).
const DefaultLinger = 5 * time.Millisecond

// FromLog follows the log in this process: it reads what is committed
// after the checkpoint, then waits for each new commit. batch bounds the
// events per ingest (0: DefaultMaxBatch).
//
// Once caught up, it lets a new commit wait up to linger for later ones (a
// full batch ends the wait), so that they share one ingest transaction: one
// commit and fsync of webhooks.db instead of one per log commit. 0: no wait.
func FromLog(log Log, batch int, linger time.Duration) Source {
	if batch <= 0 {
		batch = DefaultMaxBatch
	}
	return &logSource{log: log, batch: batch, linger: max(linger, 0)}
}

type logSource struct {
	log    Log
	batch  int
	linger time.Duration
}

func (s *logSource) Follow(ctx context.Context, from uint64, ingest func([]ledger.Event) error) error {
	next := max(from, 1)
	buf := make([]ledger.Event, 0, s.batch)
	for {
		buf = buf[:0]
		var ierr error
		for e, err := range s.log.Events(ctx, next) {
			if err != nil {
				return err
			}
			buf = append(buf, e)
			if len(buf) == s.batch {
				if ierr = ingest(buf); ierr != nil {
					return ierr
				}
				next = buf[len(buf)-1].Seq + 1
				buf = buf[:0]
			}
		}
		if len(buf) > 0 {
			if ierr = ingest(buf); ierr != nil {
				return ierr
			}
			next = buf[len(buf)-1].Seq + 1
		}
		if _, err := s.log.Wait(ctx, next-1); err != nil {
			return err
		}
		if err := s.gather(ctx, next); err != nil {
			return err
		}
	}
}

// gather waits, up to the linger, for a full batch from next to be
// committed.
func (s *logSource) gather(ctx context.Context, next uint64) error {
	if s.linger == 0 {
		return nil
	}
	lctx, cancel := context.WithTimeout(ctx, s.linger)
	defer cancel()
	// The head passes next+batch-2 once next..next+batch-1 are committed.
	_, err := s.log.Wait(lctx, next+uint64(s.batch)-2)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return nil // lingered long enough: take what there is
	}
	return err
}
