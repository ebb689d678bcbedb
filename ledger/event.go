package ledger

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/oklog/ulid/v2"
)

// Hash is a SHA-256 digest.
type Hash [32]byte

// String renders the hash as lower-case hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the all-zero hash (the "previous hash" of sequence 1).
func (h Hash) IsZero() bool { return h == Hash{} }

// MarshalText renders the hash as hex in JSON.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText parses a hash in its one spelling, 64 lower-case hex
// digits: another spelling of the same hash would give an event (or an
// export line, or a stream message) a second JSON form.
//
// Errors: ErrCorrupt.
func (h *Hash) UnmarshalText(b []byte) error {
	if len(b) != 64 {
		return fmt.Errorf("%w: hash of %d characters, not 64 lower-case hex digits", ErrCorrupt, len(b))
	}
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%w: hash is not 64 lower-case hex digits", ErrCorrupt)
		}
	}
	_, err := hex.Decode(h[:], b)
	return err
}

// ParseHash parses 64 lower-case hex digits.
//
// Errors: ErrCorrupt.
func ParseHash(s string) (Hash, error) {
	var h Hash
	err := h.UnmarshalText([]byte(s))
	return h, err
}

// Event is one immutable, committed record of the log.
//
// Seq is global (1, 2, 3, ... with no gaps); Version counts the events of one
// stream from 1. Hash is SHA-256 over the record's canonical encoding, which
// includes PrevHash, the Hash of the record at Seq-1 (zero for Seq 1).
type Event struct {
	ID          ulid.ULID       `json:"id"`
	Seq         uint64          `json:"seq"`
	Stream      string          `json:"stream"`
	Version     uint64          `json:"version"`
	Type        string          `json:"type"`
	Time        time.Time       `json:"time"`
	Merchant    string          `json:"merchant,omitempty"`
	Correlation string          `json:"correlation,omitempty"`
	Claims      []string        `json:"claims,omitempty"`
	Data        json.RawMessage `json:"data"`
	PrevHash    Hash            `json:"prev_hash"`
	Hash        Hash            `json:"hash"`
}

// NewEvent is an event proposed for appending: everything but the position
// (sequence, version) and the chain (hashes), which the log assigns.
//
// ID and Time come from the caller, so a command decides them deterministically.
// Claims are unique keys (an external id per merchant, say) that this event takes
// for its stream; an append whose claim another stream already holds fails with
// ErrClaimed and writes nothing. Its *ClaimError names the first held claim in
// the append's order (writes, events, then each event's claims).
type NewEvent struct {
	ID          ulid.ULID
	Type        string
	Time        time.Time
	Merchant    string
	Correlation string
	Claims      []string
	Data        json.RawMessage
}

// Expected is the stream version an append expects: Any, NoStream, or an exact
// version (>= 1).
type Expected int64

const (
	// Any appends whatever the stream's version.
	Any Expected = -1
	// NoStream appends only if the stream has no events yet.
	NoStream Expected = 0
)

// Exactly expects the stream to be at version v (v == 0 is NoStream).
func Exactly(v uint64) Expected { return Expected(v) }

func (e Expected) String() string {
	switch {
	case e == Any:
		return "any"
	case e == NoStream:
		return "no-stream"
	default:
		return strconv.FormatInt(int64(e), 10)
	}
}

// Write is the events for one stream in an atomic, possibly multi-stream, append.
type Write struct {
	Stream   string
	Expected Expected
	Events   []NewEvent
}

// Head is the position of the last committed event.
type Head struct {
	Seq  uint64 `json:"seq"`
	Hash Hash   `json:"hash"`
}
