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
	// ErrTooLarge means NATS refuses an event's message for its size: it is
	// over the server's max_payload or the stream's maximum message size.
	// Retrying cannot change that, and skipping the event would leave a gap
	// in the stream, so the relay stops until an operator raises the limit.
	ErrTooLarge = errors.New("stream: event message too large")
	// ErrFilter means a subject filter is not a valid subject, or no
	// event subject can match it (it is outside the stream's subjects).
	ErrFilter = errors.New("stream: subject filter matches no event")
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

// TooLargeError names the event whose message NATS refuses for its size.
type TooLargeError struct {
	Seq   uint64 // the event's log (and stream) sequence
	Size  int    // the message's headers and body, in bytes (0: unknown)
	Limit string // what refused it
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("stream: event at sequence %d, a %d-byte message, is refused by %s", e.Seq, e.Size, e.Limit)
}

// Unwrap makes errors.Is(err, ErrTooLarge) true.
func (e *TooLargeError) Unwrap() error { return ErrTooLarge }
