package boltlog_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
)

// tamperLog writes a closed log of n events over three streams and returns
// its path. The tests below damage it behind the store's back.
func tamperLog(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := boltlog.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := s.Append(ctx, fmt.Sprintf("s%d", i%3), ledger.Any, ev("t")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// edit changes the raw bbolt file with the store closed.
func edit(t *testing.T, path string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// setRecordByte changes one byte of a stored record (a copy: bbolt's values
// live in a read-only memory map).
func setRecordByte(seq uint64, off int, fn func(byte) byte) func(*bbolt.Tx) error {
	return func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("log"))
		rec := append([]byte(nil), b.Get(seqKey(seq))...)
		if off < 0 {
			off += len(rec)
		}
		rec[off] = fn(rec[off])
		return b.Put(seqKey(seq), rec)
	}
}

func verifyRO(t *testing.T, path string) (ledger.Head, error) {
	t.Helper()
	s, err := boltlog.Open(path, &boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open: %v", err)
	}
	defer s.Close()
	return s.Verify(ctx)
}

func wantVerifyError(t *testing.T, err error, seq uint64, class error) {
	t.Helper()
	var ve *ledger.VerifyError
	if !errors.As(err, &ve) || ve.Seq != seq || !errors.Is(err, class) {
		t.Fatalf("got %v, want a *VerifyError at sequence %d wrapping %v", err, seq, class)
	}
}

// TestTamperedByteIsNamed changes one byte in each part of one stored record
// and checks that Verify names that record's sequence.
func TestTamperedByteIsNamed(t *testing.T) {
	for name, off := range map[string]int{"format": 0, "id": 5, "seq": 20, "time": 40, "prev hash": 50, "stream": 74, "data": -40, "hash": -1} {
		t.Run(name, func(t *testing.T) {
			path := tamperLog(t, 30)
			class := ledger.ErrCorrupt
			if off == 0 {
				class = ledger.ErrUnsupportedVersion
			}
			edit(t, path, setRecordByte(17, off, func(b byte) byte { return b ^ 0x20 }))
			_, err := verifyRO(t, path)
			wantVerifyError(t, err, 17, class)
			// A writable open checks only the tail, and reads of other
			// records still work; the damaged one fails closed.
			s, err := boltlog.Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Get(16); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(17); !errors.Is(err, class) {
				t.Fatalf("Get of the damaged record: %v", err)
			}
			_, err = s.Verify(ctx)
			wantVerifyError(t, err, 17, class)
		})
	}
}

// resealRecord rewrites a stored record after fn changes its event, with
// its hash recomputed: a record that is sound on its own, as one forged by
// someone who knows the format would be.
func resealRecord(t *testing.T, seq uint64, fn func(*ledger.Event)) func(*bbolt.Tx) error {
	return func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("log"))
		e, err := ledger.Decode(b.Get(seqKey(seq)))
		if err != nil {
			return err
		}
		old := e.Hash
		fn(&e)
		rec := ledger.Encode(nil, &e)
		if e.Hash == old {
			t.Errorf("resealing sequence %d left its hash as it was", seq)
		}
		return b.Put(seqKey(seq), rec)
	}
}

// TestResealedRecordBreaksChain: a middle record rewritten with its own
// hash recomputed passes every check of the record alone; only the
// previous-hash links show it. Verify names ErrChainBroken where the link
// fails: at the record if its own link is wrong, at the next one if its
// contents changed (the next record chains onto its old hash).
func TestResealedRecordBreaksChain(t *testing.T) {
	for _, c := range []struct {
		name string
		fn   func(*ledger.Event)
		seq  uint64
	}{
		{"previous hash replaced", func(e *ledger.Event) { e.PrevHash[0] ^= 0x20 }, 9},
		{"data rewritten", func(e *ledger.Event) { e.Data = []byte(`{"forged":true}`) }, 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := tamperLog(t, 20)
			edit(t, path, resealRecord(t, 9, c.fn))
			_, err := verifyRO(t, path)
			wantVerifyError(t, err, c.seq, ledger.ErrChainBroken)
			// The tail is intact: a writable open succeeds, reads the
			// forged record as sound, and its Verify names the break.
			s, err := boltlog.Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Get(9); err != nil {
				t.Fatalf("Get of the resealed record: %v", err)
			}
			_, err = s.Verify(ctx)
			wantVerifyError(t, err, c.seq, ledger.ErrChainBroken)
		})
	}
}

func TestUnknownRecordFormatFailsClosed(t *testing.T) {
	path := tamperLog(t, 10)
	edit(t, path, setRecordByte(4, 0, func(byte) byte { return 9 }))
	s, err := boltlog.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Get(4); !errors.Is(err, ledger.ErrUnsupportedVersion) {
		t.Fatalf("Get: %v", err)
	}
	if _, err := s.ReadStream(ctx, "s0", 1); !errors.Is(err, ledger.ErrUnsupportedVersion) {
		t.Fatalf("ReadStream over it: %v", err)
	}
	n := 0
	for e, err := range s.Events(ctx, 1) {
		if err != nil {
			if !errors.Is(err, ledger.ErrUnsupportedVersion) || n != 3 {
				t.Fatalf("Events after %d: %v", n, err)
			}
			break
		}
		if e.Seq != uint64(n+1) {
			t.Fatalf("Events gave %d", e.Seq)
		}
		n++
	}
	_, err = s.Verify(ctx)
	wantVerifyError(t, err, 4, ledger.ErrUnsupportedVersion)
}

func TestNewerLogFormatRefused(t *testing.T) {
	path := tamperLog(t, 3)
	edit(t, path, func(tx *bbolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("format"), []byte{2}) })
	for _, ro := range []bool{false, true} {
		if _, err := boltlog.Open(path, &boltlog.Options{ReadOnly: ro}); !errors.Is(err, ledger.ErrUnsupportedVersion) {
			t.Fatalf("open (read-only %v) of a format-2 log: %v", ro, err)
		}
	}
}

func TestDamagedTail(t *testing.T) {
	path := tamperLog(t, 12)
	edit(t, path, setRecordByte(12, -50, func(b byte) byte { return b + 1 }))
	// Appending after a damaged record would chain onto it: refused.
	_, err := boltlog.Open(path, nil)
	wantVerifyError(t, err, 12, ledger.ErrCorrupt)
	// An auditor can still open it read-only and be told where.
	_, err = verifyRO(t, path)
	wantVerifyError(t, err, 12, ledger.ErrCorrupt)
}

func TestStructuralDamage(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(tx *bbolt.Tx) error
		seq    uint64
		class  error
		opened bool // a writable Open still succeeds
	}{
		{"record deleted", func(tx *bbolt.Tx) error { return tx.Bucket([]byte("log")).Delete(seqKey(9)) }, 9, ledger.ErrChainBroken, true},
		{"records swapped", func(tx *bbolt.Tx) error {
			b := tx.Bucket([]byte("log"))
			r5, r6 := append([]byte(nil), b.Get(seqKey(5))...), append([]byte(nil), b.Get(seqKey(6))...)
			if err := b.Put(seqKey(5), r6); err != nil {
				return err
			}
			return b.Put(seqKey(6), r5)
		}, 5, ledger.ErrChainBroken, true},
		{"record beyond the head", func(tx *bbolt.Tx) error {
			b := tx.Bucket([]byte("log"))
			return b.Put(seqKey(21), append([]byte(nil), b.Get(seqKey(20))...))
		}, 21, ledger.ErrChainBroken, false},
		{"head moved back", func(tx *bbolt.Tx) error {
			m := tx.Bucket([]byte("meta"))
			h := append([]byte(nil), m.Get([]byte("head"))...)
			binary.BigEndian.PutUint64(h, 15)
			return m.Put([]byte("head"), h)
		}, 16, ledger.ErrChainBroken, false},
		{"head hash altered", func(tx *bbolt.Tx) error {
			m := tx.Bucket([]byte("meta"))
			h := append([]byte(nil), m.Get([]byte("head"))...)
			h[20] ^= 1
			return m.Put([]byte("head"), h)
		}, 20, ledger.ErrCorrupt, false},
		{"index entry repointed", func(tx *bbolt.Tx) error {
			// s1's 3rd event is sequence 8; point it at sequence 11 (s1's 4th).
			return tx.Bucket([]byte("index")).Put(append([]byte("s1\x00"), seqKey(3)...), seqKey(11))
		}, 8, ledger.ErrCorrupt, true},
		{"index entry deleted", func(tx *bbolt.Tx) error {
			return tx.Bucket([]byte("index")).Delete(append([]byte("s2\x00"), seqKey(2)...))
		}, 6, ledger.ErrCorrupt, true},
		{"index entry added", func(tx *bbolt.Tx) error {
			return tx.Bucket([]byte("index")).Put(append([]byte("s9\x00"), seqKey(1)...), seqKey(13))
		}, 13, ledger.ErrCorrupt, true},
		{"last index entry of a stream deleted", func(tx *bbolt.Tx) error {
			// s0's last event is version 7, sequence 19: without its entry
			// the next append to s0 would reuse version 7.
			return tx.Bucket([]byte("index")).Delete(append([]byte("s0\x00"), seqKey(7)...))
		}, 19, ledger.ErrCorrupt, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := tamperLog(t, 20)
			edit(t, path, c.edit)
			_, err := verifyRO(t, path)
			wantVerifyError(t, err, c.seq, c.class)
			s, err := boltlog.Open(path, nil)
			if c.opened != (err == nil) {
				t.Fatalf("writable open: %v", err)
			}
			if err == nil {
				s.Close()
			}
		})
	}
}

func TestReadStreamRefusesBadIndex(t *testing.T) {
	path := tamperLog(t, 9)
	edit(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("index")).Put(append([]byte("s1\x00"), seqKey(2)...), seqKey(3))
	})
	s, err := boltlog.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.ReadStream(ctx, "s1", 1); !errors.Is(err, ledger.ErrCorrupt) {
		t.Fatalf("ReadStream through a repointed index entry: %v", err)
	}
}

// TestReadStreamRefusesVersionGap: with an index entry missing in the middle
// of a stream, ReadStream must not hand a command the stream without that
// event (an aggregate missing, say, its invoice.paid would decide on a
// wrong state); it fails closed, from version 1 or from the missing one.
func TestReadStreamRefusesVersionGap(t *testing.T) {
	path := tamperLog(t, 9) // s1 holds sequences 2, 5, 8 as versions 1, 2, 3
	edit(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("index")).Delete(append([]byte("s1\x00"), seqKey(2)...))
	})
	s, err := boltlog.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, from := range []uint64{0, 1, 2} {
		if evs, err := s.ReadStream(ctx, "s1", from); !errors.Is(err, ledger.ErrCorrupt) {
			t.Errorf("ReadStream(s1, %d) over a missing version 2 = %d events, %v; want ErrCorrupt", from, len(evs), err)
		}
	}
	// Reads that do not cross the gap still work.
	if evs, err := s.ReadStream(ctx, "s1", 3); err != nil || len(evs) != 1 || evs[0].Version != 3 {
		t.Errorf("ReadStream(s1, 3) = %v, %v", evs, err)
	}
	if evs, err := s.ReadStream(ctx, "s0", 1); err != nil || len(evs) != 3 {
		t.Errorf("ReadStream(s0, 1) = %d events, %v", len(evs), err)
	}
}

// TestVerifyIndexEntryBeyondHead: an index entry that points past the head
// is not "appended since Verify began" when no record is there. Left
// unreported, it makes the stream's version 8 while the log holds 7: every
// append to s0 that expects version 7 conflicts, and ReadStream fails.
func TestVerifyIndexEntryBeyondHead(t *testing.T) {
	path := tamperLog(t, 20) // s0 holds versions 1 to 7, the last at sequence 19
	edit(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("index")).Put(append([]byte("s0\x00"), seqKey(8)...), seqKey(999))
	})
	_, err := verifyRO(t, path)
	wantVerifyError(t, err, 21, ledger.ErrCorrupt)

	s, err := boltlog.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Verify(ctx)
	wantVerifyError(t, err, 21, ledger.ErrCorrupt)
	// Entries really appended during a Verify point at their records and
	// pass: TestVerifyWhileAppending.
}

// TestBadLogKey: a key in the log bucket that is not an 8-byte sequence
// (bbolt lets any tool add one) is damage to report, wherever it sorts:
// Verify names it, a writable Open refuses it at the tail, and reads stop
// at it instead of crashing the process on a short key or reading a long
// one as the sequence of its first 8 bytes.
func TestBadLogKey(t *testing.T) {
	cases := []struct {
		name   string
		key    []byte
		seq    uint64 // the sequence Verify names
		opened bool   // a writable Open still succeeds (the tail is intact)
		reason string
	}{
		{"after the last", []byte("abc"), 21, false, `"log" bucket key of 3 bytes`},
		{"before the first", []byte{0, 0, 0, 0}, 1, true, `"log" bucket key of 4 bytes`},
		{"between two", append(seqKey(5), 1), 6, true, `"log" bucket key of 9 bytes`},
		{"sequence 0", seqKey(0), 1, true, "sequence 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := tamperLog(t, 20)
			edit(t, path, func(tx *bbolt.Tx) error {
				b := tx.Bucket([]byte("log"))
				return b.Put(c.key, append([]byte(nil), b.Get(seqKey(6))...))
			})
			wantBadKey := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, ledger.ErrCorrupt) || !strings.Contains(err.Error(), c.reason) {
					t.Fatalf("%s: %v; want ErrCorrupt saying %s", what, err, c.reason)
				}
			}
			_, err := verifyRO(t, path)
			wantVerifyError(t, err, c.seq, ledger.ErrCorrupt)
			wantBadKey("read-only Verify", err)

			s, err := boltlog.Open(path, nil)
			if !c.opened {
				wantVerifyError(t, err, c.seq, ledger.ErrCorrupt)
				wantBadKey("writable Open", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = s.Verify(ctx)
			wantVerifyError(t, err, c.seq, ledger.ErrCorrupt)
			wantBadKey("Verify", err)
			if len(c.key) == 8 {
				return // a sequence key: reads from sequence 1 never reach it
			}
			n := uint64(0)
			for e, err := range s.Events(ctx, 1) {
				if err != nil {
					if n+1 != c.seq {
						t.Fatalf("Events failed after %d events: %v", n, err)
					}
					wantBadKey("Events", err)
					break
				}
				if n++; e.Seq != n {
					t.Fatalf("Events gave sequence %d as number %d", e.Seq, n)
				}
			}
		})
	}
}
