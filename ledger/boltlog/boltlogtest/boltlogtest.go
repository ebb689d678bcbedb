// Package boltlogtest opens event logs for tests, each in its own temporary
// directory, and verifies every log's hash chain, stream index and head when
// the test ends: the invariant check every test of code that appends gets
// for free (as bbolt's own tests check each database's consistency).
package boltlogtest

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
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

// ClaimRace is a log on which a test decides what happens between a
// command's lookup of a unique key (ClaimHolder) and the rest of the
// command: Arm(prefix, f) makes the next lookup of a key with that prefix
// run f after reading the key and before answering, so the caller goes on
// with what it read, as if f had run concurrently just after its check
// (f's own lookups, through the log itself, see the truth). Every other
// method is the log's.
type ClaimRace struct {
	*boltlog.Store

	mu     sync.Mutex
	prefix string
	then   func()
}

// Arm sets f to run once, within the next ClaimHolder of a key with prefix.
func (s *ClaimRace) Arm(prefix string, f func()) {
	s.mu.Lock()
	s.prefix, s.then = prefix, f
	s.mu.Unlock()
}

// ClaimHolder is the log's, running the armed function, if the key has
// its prefix, between the lookup and the answer.
func (s *ClaimRace) ClaimHolder(key string) (string, bool, error) {
	stream, ok, err := s.Store.ClaimHolder(key)
	s.mu.Lock()
	then := s.then
	if then != nil && strings.HasPrefix(key, s.prefix) {
		s.then = nil
	} else {
		then = nil
	}
	s.mu.Unlock()
	if then != nil {
		then()
	}
	return stream, ok, err
}
