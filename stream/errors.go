package stream

import (
	"errors"
	"fmt"
)

var (
	// ErrDiverged means the stream holds something other than the log: a
	// message that differs from the log event at its sequence, a stream that
	// is ahead of the log, or a last message that cannot be read. The relay
	// stops rather than publish after it.
	ErrDiverged = errors.New("stream: stream and log diverge")
	// ErrBadMessage means a stream message is not a well-formed payledger
	// event: bad JSON, a hash that does not match its contents, or headers
	// that disagree with its body or its stream sequence.
	ErrBadMessage = errors.New("stream: bad event message")
	// ErrConfig means a Config is invalid (say, no store directory for an
	// embedded server).
	ErrConfig = errors.New("stream: invalid config")
	// ErrLogAhead means a restore target log already holds events past the
	// stream's last sequence.
	ErrLogAhead = errors.New("stream: log is ahead of the stream")
	// ErrStopped means the relay stopped before a Flush was done.
	ErrStopped = errors.New("stream: relay stopped")
	// ErrConsumerGone means a durable consumer no longer exists on the
	// server (deleted by an operator, or with its stream): it hands over
	// nothing more, and its owner makes it anew from its own checkpoint.
	ErrConsumerGone = errors.New("stream: durable consumer gone")
)

// DivergedError names the sequence at which the stream and the log disagree.
type DivergedError struct {
	Seq    uint64
	Reason string
}

func (e *DivergedError) Error() string {
	return fmt.Sprintf("stream: stream and log diverge at sequence %d: %s", e.Seq, e.Reason)
}

// Unwrap makes errors.Is(err, ErrDiverged) true.
func (e *DivergedError) Unwrap() error { return ErrDiverged }

// MessageError names the stream sequence of a message that is not a valid
// event and why.
type MessageError struct {
	Seq    uint64
	Reason string
}

func (e *MessageError) Error() string {
	return fmt.Sprintf("stream: message at sequence %d: %s", e.Seq, e.Reason)
}

// Unwrap makes errors.Is(err, ErrBadMessage) true.
func (e *MessageError) Unwrap() error { return ErrBadMessage }
