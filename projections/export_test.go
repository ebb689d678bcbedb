package projections

import (
	"sync/atomic"

	"go.etcd.io/bbolt"
)

// FailFirstViewSync makes the next fsync of a rebuild's file fail with err
// and the later ones succeed, as a real disk may report a lost write once
// only, until the returned function restores the real sync. Not for
// parallel tests.
func FailFirstViewSync(err error) (restore func()) {
	real := syncViews
	var failed atomic.Bool
	syncViews = func(db *bbolt.DB) error {
		if failed.CompareAndSwap(false, true) {
			return err
		}
		return real(db)
	}
	return func() { syncViews = real }
}

// RebuildTxEvents is how many events a rebuild applies per transaction.
func RebuildTxEvents() int { return rebuildTxEvents }

// SetRebuildTxEvents makes rebuilds commit every n events until the
// returned function restores the default. Not for parallel tests.
func SetRebuildTxEvents(n int) (restore func()) {
	old := rebuildTxEvents
	rebuildTxEvents = n
	return func() { rebuildTxEvents = old }
}

// FormatVersion is this build's views format.
const FormatVersion = formatVersion
