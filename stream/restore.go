package stream

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
)

// Importer is a log that takes events committed elsewhere.
type Importer interface {
	Head() ledger.Head
	Import(ctx context.Context, events []ledger.Event) error
}

var _ Importer = (*boltlog.Store)(nil)

// importBatch is how many events one Import commits.
const importBatch = 2048

// Restore copies into log the stream's events after log's head, up to the
// stream's last message when Restore began, checking the hash chain as it
// goes: each message's hash against its contents, its sequence against the
// stream's, its previous hash against the event before (and, for a log that
// is not empty, the stream's event at the log's head against the head).
// progress, if set, is called after each committed batch. It returns the
// log's new head.
//
// Events are imported in batches of up to 2048. On a broken chain the batch
// that holds the break is dropped whole: an altered event that was rehashed
// to match itself is only given away by the next event's previous hash, so
// the events just before a break are suspect too. A batch's last event waits
// for the next batch, so that even it is imported only after its successor
// vouched for it. (The stream's very last event has no next event to vouch
// for it.)
//
// Errors: *ledger.VerifyError (ledger.ErrChainBroken or ledger.ErrCorrupt)
// naming the first sequence that does not fit; ErrLogAhead when the log already holds events past the stream;
// *DivergedError when the stream's event at the log's head is another; the
// log's and the JetStream API's errors.
func Restore(ctx context.Context, conn *Conn, log Importer, progress func(ledger.Head)) (ledger.Head, error) {
	head := log.Head()
	s, err := conn.Stream(ctx)
	if err != nil {
		return head, err
	}
	last := s.CachedInfo().State.LastSeq
	if head.Seq > last {
		return head, fmt.Errorf("%w: log head %d, stream ends at %d", ErrLogAhead, head.Seq, last)
	}
	if head.Seq > 0 {
		m, err := s.GetMsg(ctx, head.Seq)
		if err != nil {
			return head, fmt.Errorf("read stream sequence %d: %w", head.Seq, err)
		}
		e, err := DecodeMessage(m.Header, m.Data, head.Seq)
		if err != nil {
			return head, err
		}
		if e.Hash != head.Hash {
			return head, &DivergedError{Seq: head.Seq, Reason: "the stream's event differs from the log's head"}
		}
	}
	if head.Seq == last {
		return head, nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{conn.AllSubjects()},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    head.Seq + 1,
	})
	if err != nil {
		return head, fmt.Errorf("read stream: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return head, fmt.Errorf("read stream: %w", err)
	}
	defer it.Stop()

	batch := make([]ledger.Event, 0, importBatch)
	prev := head
	// flush imports the batch but for its last keep events, which stay for
	// the next batch: an event is imported only once the next one's
	// previous hash has vouched for it, even across batches.
	flush := func(keep int) error {
		n := len(batch) - keep
		if n <= 0 {
			return nil
		}
		if err := log.Import(ctx, batch[:n]); err != nil {
			return err
		}
		head = ledger.Head{Seq: batch[n-1].Seq, Hash: batch[n-1].Hash}
		batch = append(batch[:0], batch[n:]...)
		if progress != nil {
			progress(head)
		}
		return nil
	}
	for prev.Seq < last {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return head, fmt.Errorf("read stream after %d: %w", prev.Seq, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return head, fmt.Errorf("read stream after %d: %w", prev.Seq, err)
		}
		seq := meta.Sequence.Stream
		if seq != prev.Seq+1 {
			return head, &ledger.VerifyError{Seq: prev.Seq + 1, Reason: fmt.Sprintf("the stream has no message at %d (next is %d)", prev.Seq+1, seq), Err: ledger.ErrChainBroken}
		}
		e, err := DecodeMessage(m.Headers(), m.Data(), seq)
		if err != nil {
			var me *MessageError
			reason := err.Error()
			if errors.As(err, &me) {
				reason = me.Reason
			}
			return head, &ledger.VerifyError{Seq: seq, Reason: reason, Err: ledger.ErrCorrupt}
		}
		if e.PrevHash != prev.Hash {
			return head, &ledger.VerifyError{Seq: seq, Reason: "previous hash does not match the hash of the event before", Err: ledger.ErrChainBroken}
		}
		batch = append(batch, e)
		prev = ledger.Head{Seq: e.Seq, Hash: e.Hash}
		if len(batch) == importBatch {
			if err := flush(1); err != nil {
				return head, err
			}
		}
	}
	return head, flush(0)
}
