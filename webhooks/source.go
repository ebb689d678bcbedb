package webhooks

import (
	"context"
	"iter"

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

// FromLog follows the log in this process: it reads what is committed
// after the checkpoint, then waits for each new commit. batch bounds the
// events per ingest (0: 1024).
func FromLog(log Log, batch int) Source {
	if batch <= 0 {
		batch = DefaultMaxBatch
	}
	return &logSource{log: log, batch: batch}
}

type logSource struct {
	log   Log
	batch int
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
	}
}
