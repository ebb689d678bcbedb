package boltlog

import "errors"

var (
	// ErrLocked means another process (a running server, say) holds the log
	// file's lock, so it cannot be opened until that process stops.
	ErrLocked = errors.New("boltlog: log file is locked by another process")
	// ErrReadOnly means an append or import on a store opened with Options.ReadOnly.
	ErrReadOnly = errors.New("boltlog: log opened read-only")
	// ErrNotLog means the file is not a payledger log: it is empty, or a
	// bbolt database without the log's buckets (another program's).
	ErrNotLog = errors.New("boltlog: not a payledger log")
	// ErrTruncated means the file is shorter than the pages its bbolt meta
	// page counts: a copy cut short, which cannot be read.
	ErrTruncated = errors.New("boltlog: log file is truncated")
	// ErrDamaged means bbolt found a page of the log file malformed (a
	// flipped bit, a bad copy) while reading it: the records on that page,
	// and those found through it, cannot be read. Errors matching it also
	// match ledger.ErrCorrupt.
	ErrDamaged = errors.New("boltlog: log file is damaged")
)
