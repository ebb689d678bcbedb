package boltlog

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"iter"
	"sync"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/ledger"
)

// A scan reads the log in chunks of at most scanChunk records or
// scanChunkBytes bytes, one short read transaction each: a long read
// transaction would stop bbolt from growing its memory map (and the writer
// with it) and from reusing freed pages.
const (
	scanChunk      = 4096
	scanChunkBytes = 4 << 20
)

// StreamVersion returns the stream's current version (0 if it has no events).
func (s *Store) StreamVersion(stream string) (uint64, error) {
	var v uint64
	err := s.view(func(tx *bbolt.Tx) error {
		v = streamVersion(tx.Bucket(bucketIndex).Cursor(), stream, &arena{})
		return nil
	})
	return v, err
}

// ReadStream returns the stream's events with version >= from, in order.
//
// Errors: ledger.ErrCorrupt or ledger.ErrUnsupportedVersion for a bad record
// (or an index entry that points at another stream's record, or a version
// missing from the index, or a damaged page: ErrDamaged), or ctx.Err().
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64) ([]ledger.Event, error) {
	var out []ledger.Event
	err := s.view(func(tx *bbolt.Tx) error {
		logB := tx.Bucket(bucketLog)
		prefix := append([]byte(stream), 0)
		want := max(from, 1) // the next version; a missing index entry shows as a jump
		start := binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), want)
		c := tx.Bucket(bucketIndex).Cursor()
		for k, v := c.Seek(start); k != nil && len(k) == len(prefix)+8 && string(k[:len(prefix)]) == string(prefix); k, v = c.Next() {
			if len(out)%1024 == 1023 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if len(v) != 8 {
				return fmt.Errorf("%w: stream %q: index entry of %d bytes", ledger.ErrCorrupt, stream, len(v))
			}
			if version := binary.BigEndian.Uint64(k[len(prefix):]); version != want {
				return fmt.Errorf("%w: stream %q: index has version %d where %d belongs", ledger.ErrCorrupt, stream, version, want)
			}
			want++
			seq := binary.BigEndian.Uint64(v)
			rec := logB.Get(v)
			if rec == nil {
				return fmt.Errorf("%w: stream %q index points at missing sequence %d", ledger.ErrCorrupt, stream, seq)
			}
			e, err := ledger.Decode(rec)
			if err != nil {
				return fmt.Errorf("stream %q sequence %d: %w", stream, seq, err)
			}
			if version := binary.BigEndian.Uint64(k[len(prefix):]); e.Stream != stream || e.Version != version || e.Seq != seq {
				return fmt.Errorf("%w: stream %q version %d: index points at sequence %d, which holds stream %q version %d", ledger.ErrCorrupt, stream, version, seq, e.Stream, e.Version)
			}
			out = append(out, e)
		}
		return nil
	})
	if isDamage(err) {
		err = fmt.Errorf("stream %q: %w", stream, err)
	}
	return out, err
}

// Get returns the event at a global sequence, or ledger.ErrNotFound
// (ledger.ErrCorrupt for a bad record or a damaged page: ErrDamaged).
func (s *Store) Get(seq uint64) (ledger.Event, error) {
	var e ledger.Event
	err := s.view(func(tx *bbolt.Tx) error {
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
	if isDamage(err) {
		err = fmt.Errorf("sequence %d: %w", seq, err)
	}
	return e, err
}

// ClaimHolder returns the stream that holds a unique key.
func (s *Store) ClaimHolder(key string) (stream string, ok bool, err error) {
	err = s.view(func(tx *bbolt.Tx) error {
		if h := tx.Bucket(bucketClaims).Get([]byte(key)); h != nil {
			stream, ok = string(h), true
		}
		return nil
	})
	return stream, ok, err
}

// scanBuffer holds one ScanRaw chunk: the records' bytes, their sequences
// and where each ends in buf.
type scanBuffer struct {
	buf  []byte
	seqs []uint64
	ends []int
}

var scanBuffers = sync.Pool{New: func() any { return new(scanBuffer) }}

// ScanRaw calls fn with every stored record from sequence from to the head as
// it was when the scan began, in order, in constant memory. rec is a copy
// valid only during the call. fn runs outside any transaction, so it may
// append to the log. It stops at the first error fn returns, or when ctx ends.
//
// Errors: fn's error, ctx.Err(), ledger.ErrCorrupt for a key of the log
// bucket that is not a sequence or for a damaged page (ErrDamaged, naming
// the first sequence it could not read), after fn has had the records
// before it, or an I/O error. A missing record shows up as a jump in seq; ScanRaw does not
// check records (Verify does).
func (s *Store) ScanRaw(ctx context.Context, from uint64, fn func(seq uint64, rec []byte) error) error {
	end := s.Head().Seq
	next := max(from, 1)
	// The chunk buffers are reused across calls: followers (the relay, the
	// webhook dispatcher) call ScanRaw once per chunk, and growing a fresh
	// buffer to a chunk's size each time cost the relay a tenth of its CPU.
	sb := scanBuffers.Get().(*scanBuffer)
	defer scanBuffers.Put(sb)
	buf, seqs, ends := sb.buf, sb.seqs, sb.ends
	defer func() { sb.buf, sb.seqs, sb.ends = buf[:0], seqs[:0], ends[:0] }()
	for next <= end {
		if err := ctx.Err(); err != nil {
			return err
		}
		buf, seqs, ends = buf[:0], seqs[:0], ends[:0]
		var badKey error // the chunk ends before it; fn gets the records before
		err := s.view(func(tx *bbolt.Tx) error {
			c := tx.Bucket(bucketLog).Cursor()
			for k, v := c.Seek(seqKey(next)); k != nil && len(seqs) < scanChunk && len(buf) < scanChunkBytes; k, v = c.Next() {
				seq, err := logSeq(k)
				if err != nil {
					badKey = err
					break
				}
				if seq > end {
					break
				}
				buf = append(buf, v...)
				seqs = append(seqs, seq)
				ends = append(ends, len(buf))
			}
			return nil
		})
		if isDamage(err) {
			// The records copied before the damaged page are good.
			badKey, err = err, nil
		}
		if err != nil {
			return err
		}
		start := 0
		for i, seq := range seqs {
			if err := fn(seq, buf[start:ends[i]:ends[i]]); err != nil {
				return err
			}
			start = ends[i]
		}
		if len(seqs) > 0 {
			next = seqs[len(seqs)-1] + 1
		}
		if isDamage(badKey) {
			return fmt.Errorf("cannot read sequence %d: %w", next, badKey)
		}
		if badKey != nil {
			return fmt.Errorf("after sequence %d: %w", next-1, badKey)
		}
		if len(seqs) == 0 {
			return nil // nothing further stored
		}
	}
	return nil
}

// scanInTx is ScanRaw calling fn inside the read transactions, without the
// copy: rec aliases the memory map. fn must not wait for an append.
func (s *Store) scanInTx(ctx context.Context, from, end uint64, fn func(seq uint64, rec []byte) error) error {
	next := max(from, 1)
	for next <= end {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := s.view(func(tx *bbolt.Tx) error {
			c := tx.Bucket(bucketLog).Cursor()
			n := 0
			for k, v := c.Seek(seqKey(next)); k != nil && n < scanChunk; k, v = c.Next() {
				seq, err := logSeq(k)
				if err != nil {
					return &ledger.VerifyError{Seq: next, Reason: err.Error(), Err: ledger.ErrCorrupt}
				}
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
			return damageAt(err, next, "")
		}
	}
	return nil
}

// Events iterates over decoded events from sequence from to the head as it
// was when iteration began, in constant memory. The loop body runs outside
// any transaction, so it may append. Iteration stops at the first error,
// which is yielded with a zero event: ledger.ErrCorrupt or
// ledger.ErrUnsupportedVersion for a bad record, ctx.Err(), or an I/O error.
func (s *Store) Events(ctx context.Context, from uint64) iter.Seq2[ledger.Event, error] {
	return func(yield func(ledger.Event, error) bool) {
		stopped := false
		var dec ledger.Decoder
		err := s.ScanRaw(ctx, from, func(seq uint64, rec []byte) error {
			e, err := dec.Decode(rec)
			if err != nil {
				return fmt.Errorf("sequence %d: %w", seq, err)
			}
			if e.Seq != seq {
				return fmt.Errorf("%w: sequence %d holds a record of sequence %d", ledger.ErrCorrupt, seq, e.Seq)
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

// Verify walks the whole log: every record's format, hash and layout,
// sequence continuity from 1, the previous-hash chain, per-stream versions,
// that the stream index (which also gives each stream's current version)
// holds exactly one entry per record, and that the stored head is the last
// record. It checks the head as it was when
// Verify began; appends may go on meanwhile. It does not check the claims
// bucket against the records.
//
// Errors: a *ledger.VerifyError naming the first bad sequence (wrapping
// ledger.ErrCorrupt, ledger.ErrUnsupportedVersion or ledger.ErrChainBroken;
// for a damaged page, ErrDamaged and ledger.ErrCorrupt, naming the first
// sequence that could not be read), ctx.Err(), or an I/O error. The head
// returned is the last verified one.
func (s *Store) Verify(ctx context.Context) (ledger.Head, error) {
	v := ledger.NewVerifier()
	h := s.Head()
	seed := maphash.MakeSeed()
	var (
		digest uint64
		entry  []byte
	)
	err := s.scanInTx(ctx, 1, h.Seq, func(seq uint64, rec []byte) error {
		if err := v.CheckRaw(rec); err != nil {
			return err
		}
		if seq != v.Head().Seq {
			return &ledger.VerifyError{Seq: v.Head().Seq, Reason: fmt.Sprintf("record of sequence %d stored under key %d", v.Head().Seq, seq), Err: ledger.ErrChainBroken}
		}
		stream, version, _, _ := ledger.RecordPosition(rec) // CheckRaw has parsed it
		entry = indexEntry(entry[:0], stream, version, seq)
		digest += maphash.Bytes(seed, entry)
		return nil
	})
	if err != nil {
		return v.Head(), err
	}
	if v.Head().Seq != h.Seq {
		return v.Head(), &ledger.VerifyError{Seq: v.Head().Seq + 1, Reason: fmt.Sprintf("log ends at %d but head says %d", v.Head().Seq, h.Seq), Err: ledger.ErrChainBroken}
	}
	if err := s.verifyTail(h); err != nil {
		return v.Head(), err
	}
	if v.Head() != h {
		return v.Head(), &ledger.VerifyError{Seq: h.Seq, Reason: "stored head hash does not match the last record", Err: ledger.ErrCorrupt}
	}
	if err := s.verifyIndex(ctx, v, h, seed, digest); err != nil {
		return v.Head(), err
	}
	return v.Head(), nil
}

// indexEntry is an index key and value: stream 0x00 version(8), seq(8).
func indexEntry(dst, stream []byte, version, seq uint64) []byte {
	dst = append(append(dst, stream...), 0)
	dst = binary.BigEndian.AppendUint64(dst, version)
	return binary.BigEndian.AppendUint64(dst, seq)
}

// verifyTail checks, in one snapshot, that the stored head is the last record
// and that nothing beyond the verified head h breaks that.
func (s *Store) verifyTail(h ledger.Head) error {
	err := s.view(func(tx *bbolt.Tx) error {
		head, err := readHead(tx.Bucket(bucketMeta))
		if err != nil {
			return &ledger.VerifyError{Seq: h.Seq + 1, Reason: err.Error(), Err: ledger.ErrCorrupt}
		}
		// A key outside the sequences 1 to h is beyond the scan's reach.
		c := tx.Bucket(bucketLog).Cursor()
		if k, _ := c.First(); k != nil {
			first, err := logSeq(k)
			if err == nil && first == 0 {
				err = fmt.Errorf("a record stored under sequence 0")
			}
			if err != nil {
				return &ledger.VerifyError{Seq: 1, Reason: "first key: " + err.Error(), Err: ledger.ErrCorrupt}
			}
		}
		var last uint64
		if k, _ := c.Last(); k != nil {
			if last, err = logSeq(k); err != nil {
				return &ledger.VerifyError{Seq: h.Seq + 1, Reason: "last key: " + err.Error(), Err: ledger.ErrCorrupt}
			}
		}
		switch {
		case head.Seq < h.Seq:
			return &ledger.VerifyError{Seq: head.Seq + 1, Reason: fmt.Sprintf("stored head went back from %d to %d", h.Seq, head.Seq), Err: ledger.ErrChainBroken}
		case last != head.Seq:
			return &ledger.VerifyError{Seq: min(last, head.Seq) + 1, Reason: fmt.Sprintf("last record is %d but head says %d", last, head.Seq), Err: ledger.ErrChainBroken}
		}
		return nil
	})
	return damageAt(err, h.Seq+1, "head or log bucket: ")
}

// verifyIndex compares the stream index with the records: a keyed sum over
// every index entry up to h must equal the one Verify computed from the
// records, with as many entries. Only on a mismatch does it look entry by
// entry for the first bad sequence.
func (s *Store) verifyIndex(ctx context.Context, v *ledger.Verifier, h ledger.Head, seed maphash.Seed, want uint64) error {
	var (
		got   uint64
		n     uint64
		entry []byte
	)
	err := s.scanBucket(ctx, bucketIndex, func(tx *bbolt.Tx, k, val []byte) error {
		if len(val) != 8 {
			return &ledger.VerifyError{Seq: h.Seq + 1, Reason: fmt.Sprintf("index entry %q of %d bytes", k, len(val)), Err: ledger.ErrCorrupt}
		}
		if seq := binary.BigEndian.Uint64(val); seq > h.Seq {
			// Appended since Verify began, so its record is in this
			// snapshot (both are written in one transaction); an entry
			// with no such record would set the stream's version.
			stream, version, recSeq, err := ledger.RecordPosition(tx.Bucket(bucketLog).Get(val))
			entry = indexEntry(entry[:0], stream, version, seq)
			if err != nil || recSeq != seq || string(k) != string(entry[:len(entry)-8]) {
				return &ledger.VerifyError{Seq: h.Seq + 1, Reason: fmt.Sprintf("index entry %q points at sequence %d, past the head, which does not hold that event", k, seq), Err: ledger.ErrCorrupt}
			}
			return nil
		}
		entry = append(append(entry[:0], k...), val...)
		got += maphash.Bytes(seed, entry)
		n++
		return nil
	})
	if err != nil {
		return damageAt(err, h.Seq+1, "stream index: ")
	}
	if got == want && n == h.Seq {
		return nil
	}
	return s.findIndexError(ctx, h)
}

// findIndexError looks for the first sequence whose index entry is wrong,
// missing or extra.
func (s *Store) findIndexError(ctx context.Context, h ledger.Head) error {
	first := uint64(0)
	reason := ""
	note := func(seq uint64, r string) {
		if first == 0 || seq < first {
			first, reason = seq, r
		}
	}
	err := s.view(func(tx *bbolt.Tx) error {
		index := tx.Bucket(bucketIndex)
		logB := tx.Bucket(bucketLog)
		c := logB.Cursor()
		for k, rec := c.First(); k != nil; k, rec = c.Next() {
			seq, err := logSeq(k)
			if err != nil {
				return err // Verify's scan and verifyTail report it first
			}
			if seq > h.Seq {
				break
			}
			stream, version, _, err := ledger.RecordPosition(rec)
			if err != nil {
				return err
			}
			ik := indexEntry(nil, stream, version, 0)
			if got := index.Get(ik[:len(ik)-8]); got == nil || len(got) != 8 || binary.BigEndian.Uint64(got) != seq {
				note(seq, fmt.Sprintf("index entry for stream %q version %d is missing or does not point at this record", stream, version))
				break
			}
		}
		ic := index.Cursor()
		for k, val := ic.First(); k != nil; k, val = ic.Next() {
			if len(val) != 8 || len(k) < 9 || k[len(k)-9] != 0 {
				note(h.Seq+1, fmt.Sprintf("malformed index entry %q", k))
				continue
			}
			seq := binary.BigEndian.Uint64(val)
			if seq > h.Seq {
				continue
			}
			stream, version := k[:len(k)-9], binary.BigEndian.Uint64(k[len(k)-8:])
			e, err := ledger.Decode(logB.Get(val))
			if err != nil || e.Stream != string(stream) || e.Version != version {
				note(seq, fmt.Sprintf("index entry for stream %q version %d points at this record, which is not that event", stream, version))
			}
		}
		return nil
	})
	if err != nil {
		return damageAt(err, h.Seq+1, "")
	}
	if first == 0 {
		first, reason = h.Seq+1, "stream index does not match the records"
	}
	return &ledger.VerifyError{Seq: first, Reason: reason, Err: ledger.ErrCorrupt}
}

// scanBucket calls fn with every key and value of a bucket, and the read
// transaction they are from, in chunks of read transactions. Keys are never
// deleted, so resuming after the last key seen misses nothing that existed
// when the scan began.
func (s *Store) scanBucket(ctx context.Context, name []byte, fn func(tx *bbolt.Tx, k, v []byte) error) error {
	var after []byte
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		done := true
		err := s.view(func(tx *bbolt.Tx) error {
			c := tx.Bucket(name).Cursor()
			var k, v []byte
			if after == nil {
				k, v = c.First()
			} else if k, v = c.Seek(after); k != nil && string(k) == string(after) {
				k, v = c.Next()
			}
			for n := 0; k != nil; k, v = c.Next() {
				if n == scanChunk {
					done = false
					break
				}
				if err := fn(tx, k, v); err != nil {
					return err
				}
				after = append(after[:0], k...)
				n++
			}
			return nil
		})
		if err != nil || done {
			return err
		}
	}
}

type stopError struct{}

func (stopError) Error() string { return "stop" }

var errStop error = stopError{}
