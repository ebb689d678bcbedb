package boltlog_test

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
)

// damagedCopy writes the first size bytes of the log at path to out, with
// the byte at off xored with 0xff.
func damagedCopy(t *testing.T, path, out string, size, off int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = b[:size]
	b[off] ^= 0xff
	if err := os.WriteFile(out, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedPageIsNamed: a damaged header (its id or its type) on a page
// of records makes bbolt panic when a read reaches it. Verify names the
// page's first sequence as a *VerifyError wrapping ErrDamaged and
// ledger.ErrCorrupt; Events yields the records before it and then an error
// naming it; Get, ReadStream and a read-write Open fail with ErrDamaged or
// succeed, and nothing panics.
func TestDamagedPageIsNamed(t *testing.T) {
	path := tamperLog(t, 1500)
	pageSize, size, first := boltlogtest.RecordPages(t, path)
	p := filepath.Join(t.TempDir(), "ledger.db")
	if len(first) < 4 {
		t.Fatalf("only %d leaves of records; the test needs a few", len(first))
	}
	var leaves [][2]uint64 // page id, first sequence
	for id, seq := range first {
		leaves = append(leaves, [2]uint64{id, seq})
	}
	slices.SortFunc(leaves, func(a, b [2]uint64) int { return cmp.Compare(a[1], b[1]) })
	for _, leaf := range leaves {
		for _, field := range []struct {
			name string
			off  int
		}{{"id", 0}, {"flags", 8}} {
			id, first := leaf[0], leaf[1]
			t.Run(fmt.Sprintf("page %d %s", id, field.name), func(t *testing.T) {
				damagedCopy(t, path, p, size, int(id)*pageSize+field.off)
				s, err := boltlog.Open(p, &boltlog.Options{ReadOnly: true})
				if err != nil {
					t.Fatalf("read-only open: %v", err)
				}
				defer s.Close()
				head, err := s.Verify(ctx)
				wantVerifyError(t, err, first, boltlog.ErrDamaged)
				if !errors.Is(err, ledger.ErrCorrupt) || head.Seq != first-1 || !strings.Contains(err.Error(), "damaged") {
					t.Fatalf("Verify = head %d, %v; want head %d and a damaged file", head.Seq, err, first-1)
				}
				var n uint64
				for e, err := range s.Events(ctx, 1) {
					if err != nil {
						if !errors.Is(err, boltlog.ErrDamaged) || !strings.Contains(err.Error(), fmt.Sprintf("cannot read sequence %d:", first)) {
							t.Fatalf("Events: %v", err)
						}
						break
					}
					n = e.Seq
				}
				if n != first-1 {
					t.Fatalf("Events yielded up to %d, want %d", n, first-1)
				}
				if _, err := s.Get(first); !errors.Is(err, boltlog.ErrDamaged) {
					t.Fatalf("Get(%d) = %v", first, err)
				}
				for i := range 3 {
					if _, err := s.ReadStream(ctx, fmt.Sprintf("s%d", i), 0); err != nil && !errors.Is(err, ledger.ErrCorrupt) {
						t.Fatalf("ReadStream: %v", err)
					}
				}
				s.Close()
				// A server's open reads the last page of records.
				rw, err := boltlog.Open(p, nil)
				if err == nil {
					rw.Close()
				}
				if last := id == leaves[len(leaves)-1][0]; last && !errors.Is(err, boltlog.ErrDamaged) || !last && err != nil {
					t.Fatalf("read-write open with page %d damaged (the last? %v): %v", id, last, err)
				}
			})
		}
	}
}

// TestDamagedPageSweep damages each page's id and type in turn: whatever
// the page holds (records, index, claims, the meta bucket, free space), no
// read panics; Verify passes or names a sequence.
func TestDamagedPageSweep(t *testing.T) {
	path := tamperLog(t, 600)
	pageSize, size, _ := boltlogtest.RecordPages(t, path)
	p := filepath.Join(t.TempDir(), "ledger.db")
	failed := 0
	for id := 2; id < size/pageSize; id++ {
		for _, off := range []int{0, 8} {
			damagedCopy(t, path, p, size, id*pageSize+off)
			s, err := boltlog.Open(p, &boltlog.Options{ReadOnly: true})
			if err != nil {
				if !errors.Is(err, ledger.ErrCorrupt) {
					t.Errorf("page %d+%d: read-only open: %v", id, off, err)
				}
				continue
			}
			var ve *ledger.VerifyError
			if _, err := s.Verify(ctx); err != nil {
				failed++
				if !errors.As(err, &ve) || ve.Seq == 0 {
					t.Errorf("page %d+%d: Verify = %v, want a *VerifyError", id, off, err)
				}
			}
			for _, err := range s.Events(ctx, 1) {
				if err != nil && !errors.Is(err, ledger.ErrCorrupt) {
					t.Errorf("page %d+%d: Events: %v", id, off, err)
				}
			}
			s.Close()
		}
	}
	if failed == 0 {
		t.Fatal("no damaged page failed Verify")
	}
}

// TestDamagedFreelistReleasesTheFile: a read-write open reads the
// freelist page, in bbolt's own Open; a damaged one panics there, after
// bbolt has opened and locked the file, and the DB it was building is
// never returned to be closed. The open fails with ErrDamaged, and leaves
// the file closed: a second open in the same process (read-write, which
// fails the same way, or read-only, which does not read the freelist, for
// verify) is not kept waiting for a lock the first one never released.
func TestDamagedFreelistReleasesTheFile(t *testing.T) {
	path := tamperLog(t, 300)
	pageSize, id := boltlogtest.FreelistPage(t, path)
	_, size, _ := boltlogtest.RecordPages(t, path)
	p := filepath.Join(t.TempDir(), "ledger.db")
	damagedCopy(t, path, p, size, int(id)*pageSize+8) // its type
	opts := &boltlog.Options{OpenTimeout: 200 * time.Millisecond}
	for i := range 2 {
		s, err := boltlog.Open(p, opts)
		if err == nil {
			s.Close()
		}
		if !errors.Is(err, boltlog.ErrDamaged) || errors.Is(err, boltlog.ErrLocked) {
			t.Fatalf("read-write open %d with the freelist page %d damaged = %v, want ErrDamaged", i+1, id, err)
		}
	}
	s, err := boltlog.Open(p, &boltlog.Options{ReadOnly: true, OpenTimeout: opts.OpenTimeout})
	if err != nil {
		t.Fatalf("read-only open after the failed ones: %v", err)
	}
	defer s.Close()
	if _, err := s.Verify(ctx); err != nil {
		t.Errorf("Verify: %v (the records are sound)", err)
	}
}
