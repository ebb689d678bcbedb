// Package boltlogtest opens event logs for tests, each in its own temporary
// directory, and verifies every log's hash chain, stream index and head when
// the test ends: the invariant check every test of code that appends gets
// for free (as bbolt's own tests check each database's consistency).
package boltlogtest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
)

// FileName is the log's file name inside the test's directory.
const FileName = "ledger.db"

// Open opens a new log in t.TempDir() with opts (nil for the defaults) and
// registers a cleanup that closes it and verifies it. It returns the store
// and the file's path.
func Open(t testing.TB, opts *boltlog.Options) (*boltlog.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileName)
	return OpenAt(t, path, opts), path
}

// OpenAt opens the log at path, with the same cleanup as Open. A test may
// close the store itself earlier (Close is idempotent).
func OpenAt(t testing.TB, path string, opts *boltlog.Options) *boltlog.Store {
	t.Helper()
	s, err := boltlog.Open(path, opts)
	if err != nil {
		t.Fatalf("open log: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close log: %v", err)
		}
		Verify(t, path)
	})
	return s
}

// Verify opens the (closed) log at path read-only, verifies it end to end
// and reports any failure on t. It returns the verified head.
func Verify(t testing.TB, path string) ledger.Head {
	t.Helper()
	s, err := boltlog.Open(path, &boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Errorf("verify log %s: %v", path, err)
		return ledger.Head{}
	}
	defer s.Close()
	h, err := s.Verify(context.Background())
	if err != nil {
		t.Errorf("verify log %s: %v", path, err)
	}
	return h
}
