package boltlog_test

import (
	"errors"
	"testing"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
)

// TestFailedMetaSync fails bbolt's own commit the way a disk does
// (boltlogtest.FailMetaSync): the meta page is written, then its fdatasync
// fails, and bbolt rolls back in memory while every later transaction reads
// the new meta. The store must refuse further appends, not write over the
// records that are visible, and say so through Failed.
func TestFailedMetaSync(t *testing.T) {
	s, path := boltlogtest.Open(t, nil)
	if _, err := s.Append(ctx, "a", ledger.NoStream, ev("ok")); err != nil {
		t.Fatal(err)
	}
	if err := s.Failed(); err != nil {
		t.Fatalf("Failed before the fault: %v", err)
	}
	restore := boltlogtest.FailMetaSync(t, s)
	_, errB := s.Append(ctx, "b", ledger.NoStream, ev("ok", "key-b"), ev("ok"), ev("ok"))
	restore() // the disk works again
	if !errors.Is(errB, ledger.ErrFailed) {
		t.Fatalf("append b: %v, want ledger.ErrFailed", errB)
	}
	if _, err := s.Append(ctx, "c", ledger.NoStream, ev("ok")); !errors.Is(err, ledger.ErrFailed) {
		t.Fatalf("append c after the failed commit: %v, want ledger.ErrFailed", err)
	}
	if err := s.Failed(); !errors.Is(err, ledger.ErrFailed) {
		t.Fatalf("Failed after the failed commit: %v, want ledger.ErrFailed", err)
	}
	if h := s.Head(); h.Seq != 1 {
		t.Fatalf("head %d after the failed commit, want 1", h.Seq)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened (Open checks the head against the last record), the log has
	// the commit, which the page cache kept; the cleanup verifies it.
	s2 := boltlogtest.OpenAt(t, path, nil)
	if h := s2.Head(); h.Seq != 4 {
		t.Fatalf("reopened head %d, want 4", h.Seq)
	}
	if s2.Failed() != nil {
		t.Fatalf("reopened log still failed: %v", s2.Failed())
	}
}
