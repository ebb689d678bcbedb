package projections

import (
	"errors"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"
)

// TestViewGuardAllocs: the guard every read of the views runs in (a
// deferred recover, boltlog.GuardRead) allocates nothing: a guarded read
// allocates what the same read unguarded does (bbolt's transaction).
func TestViewGuardAllocs(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "views.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bbolt.Tx) error { _, err := (&Projector{}).Init(tx); return err }); err != nil {
		t.Fatal(err)
	}
	v := NewViews(db)
	var n uint64
	read := func(tx *bbolt.Tx) error { n = u64(tx.Bucket(bMeta).Get(keyCheckpoint)); return nil }
	errNoViews := errors.New("no views")
	unguarded := func(fn func(*bbolt.Tx) error) error { // view without the guard
		return v.db.View(func(tx *bbolt.Tx) error {
			if tx.Bucket(bMeta) == nil {
				return errNoViews
			}
			return fn(tx)
		})
	}
	bare := testing.AllocsPerRun(500, func() { _ = unguarded(read) })
	guarded := testing.AllocsPerRun(500, func() { _ = v.view(read) })
	t.Logf("allocations per read: %v unguarded, %v guarded", bare, guarded)
	if guarded > bare {
		t.Errorf("a guarded read allocates %v times, the same read unguarded %v", guarded, bare)
	}
	_ = n
}
