package ledger

import (
	"errors"
	"fmt"
)

var (
	// ErrCorrupt means a stored record does not decode or its hash does not match its bytes.
	ErrCorrupt = errors.New("ledger: corrupt record")
	// ErrUnsupportedVersion means a record was written by a newer (or unknown) format version.
	ErrUnsupportedVersion = errors.New("ledger: unsupported record format version")
	// ErrVersionConflict means an append's expected stream version did not match the stream.
	ErrVersionConflict = errors.New("ledger: stream version conflict")
	// ErrClaimed means an append tried to claim a unique key another stream holds.
	ErrClaimed = errors.New("ledger: unique key already claimed")
	// ErrInvalidEvent means an appended event is malformed (no id, type, time or stream, or bad JSON data).
	ErrInvalidEvent = errors.New("ledger: invalid event")
	// ErrChainBroken means verification found a record out of sequence, a wrong
	// previous hash, or a stream version out of order.
	ErrChainBroken = errors.New("ledger: hash chain broken")
	// ErrStorageFull means a commit failed because the disk (or quota) is
	// full: nothing of the failed appends was written, and appends succeed
	// again once space returns.
	ErrStorageFull = errors.New("ledger: storage full")
	// ErrFailed means a commit failed after it had become visible (the sync
	// of bbolt's meta page failed): whether those appends reached the disk
	// is known only once the log is reopened, and the store refuses every
	// append until then.
	ErrFailed = errors.New("ledger: log failed; restart to reopen it")
	// ErrNotFound means no event is stored at a sequence.
	ErrNotFound = errors.New("ledger: not found")
	// ErrClosed means the log has been closed.
	ErrClosed = errors.New("ledger: closed")
)

// ConflictError reports which stream's expected version did not match.
type ConflictError struct {
	Stream   string
	Expected Expected
	Actual   uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("ledger: stream %q: expected version %s, stream is at %d", e.Stream, e.Expected, e.Actual)
}

// Unwrap makes errors.Is(err, ErrVersionConflict) true.
func (e *ConflictError) Unwrap() error { return ErrVersionConflict }

// ClaimError reports the unique key that was taken and the stream that holds it.
type ClaimError struct {
	Key    string
	Holder string
}

func (e *ClaimError) Error() string {
	return fmt.Sprintf("ledger: unique key %q already claimed by stream %q", e.Key, e.Holder)
}

// Unwrap makes errors.Is(err, ErrClaimed) true.
func (e *ClaimError) Unwrap() error { return ErrClaimed }

// VerifyError names the first sequence number at which verification failed and why.
type VerifyError struct {
	Seq    uint64
	Reason string
	Err    error // ErrCorrupt, ErrUnsupportedVersion or ErrChainBroken
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("ledger: verify failed at sequence %d: %s", e.Seq, e.Reason)
}

// Unwrap returns the class of failure.
func (e *VerifyError) Unwrap() error { return e.Err }
