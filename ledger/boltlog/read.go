package boltlog

import (
	"context"
	"encoding/binary"
	"fmt"
	"iter"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/ledger"
)

// scanChunk is how many records one read transaction covers while scanning:
// long read transactions would stop bbolt from growing its memory map.
const scanChunk = 4096

// StreamVersion returns the stream's current version (0 if it has no events).
func (s *Store) StreamVersion(stream string) (uint64, error) {
	var v uint64
	err := s.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketStreams).Get([]byte(stream)); b != nil {
			v = binary.BigEndian.Uint64(b)
		}
		return nil
	})
	return v, err
}

// ReadStream returns the stream's events with version >= from, in order.
//
// Errors: ledger.ErrCorrupt or ledger.ErrUnsupportedVersion for a bad record.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64) ([]ledger.Event, error) {
	var out []ledger.Event
	err := s.db.View(func(tx *bbolt.Tx) error {
		logB := tx.Bucket(bucketLog)
		prefix := append([]byte(stream), 0)
		start := binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), max(from, 1))
		c := tx.Bucket(bucketIndex).Cursor()
		for k, v := c.Seek(start); k != nil && len(k) == len(prefix)+8 && string(k[:len(prefix)]) == string(prefix); k, v = c.Next() {
			rec := logB.Get(v)
			if rec == nil {
				return fmt.Errorf("%w: stream %q index points at missing sequence %d", ledger.ErrCorrupt, stream, binary.BigEndian.Uint64(v))
			}
			e, err := ledger.Decode(rec)
			if err != nil {
				return fmt.Errorf("stream %q sequence %d: %w", stream, binary.BigEndian.Uint64(v), err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// Get returns the event at a global sequence, or ledger.ErrNotFound.
func (s *Store) Get(seq uint64) (ledger.Event, error) {
	var e ledger.Event
	err := s.db.View(func(tx *bbolt.Tx) error {
		rec := tx.Bucket(bucketLog).Get(seqKey(seq))
		if rec == nil {
			return fmt.Errorf("sequence %d: %w", seq, ledger.ErrNotFound)
		}
		var err error
		e, err = ledger.Decode(rec)
		if err != nil {
			return fmt.Errorf("sequence %d: %w", seq, err)
		}
		return nil
	})
	return e, err
}

// ClaimHolder returns the stream that holds a unique key.
func (s *Store) ClaimHolder(key string) (stream string, ok bool, err error) {
	err = s.db.View(func(tx *bbolt.Tx) error {
		if h := tx.Bucket(bucketClaims).Get([]byte(key)); h != nil {
			stream, ok = string(h), true
		}
		return nil
	})
	return stream, ok, err
}

// ScanRaw calls fn with every stored record from sequence from to the head as
// it was when the scan began, in order, in constant memory. rec is valid only
// during the call. It stops at the first error fn returns, or when ctx ends.
func (s *Store) ScanRaw(ctx context.Context, from uint64, fn func(seq uint64, rec []byte) error) error {
	return s.scanRaw(ctx, from, s.Head().Seq, fn)
}

func (s *Store) scanRaw(ctx context.Context, from, end uint64, fn func(seq uint64, rec []byte) error) error {
	next := max(from, 1)
	for next <= end {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := s.db.View(func(tx *bbolt.Tx) error {
			c := tx.Bucket(bucketLog).Cursor()
			n := 0
			for k, v := c.Seek(seqKey(next)); k != nil && n < scanChunk; k, v = c.Next() {
				seq := binary.BigEndian.Uint64(k)
				if seq > end {
					next = end + 1
					return nil
				}
				if err := fn(seq, v); err != nil {
					return err
				}
				next = seq + 1
				n++
			}
			if n == 0 {
				next = end + 1 // nothing further stored
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Events iterates over decoded events from sequence from to the head as it
// was when iteration began, in constant memory. Iteration stops at the first
// error, which is yielded with a zero event.
func (s *Store) Events(ctx context.Context, from uint64) iter.Seq2[ledger.Event, error] {
	return func(yield func(ledger.Event, error) bool) {
		stopped := false
		err := s.ScanRaw(ctx, from, func(seq uint64, rec []byte) error {
			e, err := ledger.Decode(rec)
			if err != nil {
				return fmt.Errorf("sequence %d: %w", seq, err)
			}
			if !yield(e, nil) {
				stopped = true
				return errStop
			}
			return nil
		})
		if err != nil && !stopped {
			yield(ledger.Event{}, err)
		}
	}
}

// Verify walks the whole log: every record's format and hash, sequence
// continuity from 1, the previous-hash chain, per-stream versions, the stream
// index, and that the stored head is the last record. It returns the verified
// head, or a *ledger.VerifyError naming the first bad sequence.
func (s *Store) Verify(ctx context.Context) (ledger.Head, error) {
	v := ledger.NewVerifier()
	h := s.Head()
	err := s.scanRaw(ctx, 1, h.Seq, func(seq uint64, rec []byte) error {
		if err := v.CheckRaw(rec); err != nil {
			return err
		}
		if seq != v.Head().Seq {
			return &ledger.VerifyError{Seq: seq, Reason: fmt.Sprintf("stored under key %d but records sequence %d", seq, v.Head().Seq), Err: ledger.ErrChainBroken}
		}
		return nil
	})
	if err != nil {
		return v.Head(), err
	}
	if v.Head() != h {
		return v.Head(), &ledger.VerifyError{Seq: v.Head().Seq + 1, Reason: fmt.Sprintf("log ends at %d but head says %d", v.Head().Seq, h.Seq), Err: ledger.ErrChainBroken}
	}
	return v.Head(), nil
}

type stopError struct{}

func (stopError) Error() string { return "stop" }

var errStop error = stopError{}
