package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Verifier checks a log record by record, in sequence order: each record's own
// hash, sequence continuity from 1, the previous-hash link, and that every
// stream's versions run 1, 2, 3, ... It holds one counter per stream.
type Verifier struct {
	next     uint64
	prev     Hash
	versions map[string]*uint64 // a pointer, so updating a known stream does not allocate its key
}

// NewVerifier starts a verification at sequence 1.
func NewVerifier() *Verifier {
	return &Verifier{next: 1, versions: make(map[string]*uint64)}
}

// Count is the number of records verified so far.
func (v *Verifier) Count() uint64 { return v.next - 1 }

// Head is the last verified position.
func (v *Verifier) Head() Head { return Head{Seq: v.next - 1, Hash: v.prev} }

// CheckRaw verifies one encoded record: its format, hash and layout (every
// field decodes), then its place in the chain. It returns a *VerifyError
// naming the sequence it expected when anything is wrong. It does not
// allocate, except for the first record of each stream.
func (v *Verifier) CheckRaw(b []byte) error {
	seq, version, prev, hash, err := CheckRecord(b)
	if err != nil {
		return &VerifyError{Seq: v.next, Reason: err.Error(), Err: unwrapClass(err)}
	}
	stream, err := parseBody(b[:len(b)-hashLen], nil, false)
	if err != nil {
		return &VerifyError{Seq: v.next, Reason: err.Error(), Err: ErrCorrupt}
	}
	return v.check(seq, version, prev, hash, stream, nil)
}

// StreamVersion is the last verified version of a stream (0 if none).
func (v *Verifier) StreamVersion(stream string) uint64 {
	if p := v.versions[stream]; p != nil {
		return *p
	}
	return 0
}

// Streams is the number of distinct streams verified so far.
func (v *Verifier) Streams() int { return len(v.versions) }

// Check verifies one decoded event (its hash is recomputed from its fields).
// An event whose time a record cannot hold is refused (ErrCorrupt).
func (v *Verifier) Check(e *Event) error {
	if !time.Unix(0, e.Time.UnixNano()).Equal(e.Time) {
		// A record holds Unix nanoseconds (years 1678 to 2262): outside
		// them UnixNano wraps, and a time moved by 2^64 ns would encode,
		// and hash, exactly as the logged one.
		return &VerifyError{Seq: v.next, Reason: fmt.Sprintf("event time %s is outside what a record holds", e.Time), Err: ErrCorrupt}
	}
	var scratch [512]byte
	want := e.Hash
	c := *e
	Encode(scratch[:0], &c)
	if c.Hash != want {
		return &VerifyError{Seq: v.next, Reason: "hash does not match the event's contents", Err: ErrCorrupt}
	}
	return v.check(e.Seq, e.Version, e.PrevHash, e.Hash, nil, &e.Stream)
}

func (v *Verifier) check(seq, version uint64, prev, hash Hash, streamB []byte, streamS *string) error {
	if seq != v.next {
		return &VerifyError{Seq: v.next, Reason: fmt.Sprintf("found sequence %d", seq), Err: ErrChainBroken}
	}
	if prev != v.prev {
		return &VerifyError{Seq: seq, Reason: "previous hash does not match the hash of the record before", Err: ErrChainBroken}
	}
	var p *uint64
	if streamS != nil {
		p = v.versions[*streamS]
	} else {
		p = v.versions[string(streamB)]
	}
	var last uint64
	if p != nil {
		last = *p
	}
	if version != last+1 {
		return &VerifyError{Seq: seq, Reason: fmt.Sprintf("stream version %d follows %d", version, last), Err: ErrChainBroken}
	}
	switch {
	case p != nil:
		*p = version
	case streamS != nil:
		p = new(uint64)
		*p = version
		v.versions[*streamS] = p
	default:
		p = new(uint64)
		*p = version
		v.versions[string(streamB)] = p
	}
	v.prev = hash
	v.next++
	return nil
}

func unwrapClass(err error) error {
	if errors.Is(err, ErrUnsupportedVersion) {
		return ErrUnsupportedVersion
	}
	return ErrCorrupt
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// ValidateNew checks an event proposed for stream before it is appended.
func ValidateNew(stream string, e *NewEvent) error {
	switch {
	case stream == "" || len(stream) > MaxStringLen || !utf8.ValidString(stream) || strings.IndexByte(stream, 0) >= 0:
		return fmt.Errorf("%w: stream id must be 1 to %d bytes of UTF-8 without NUL", ErrInvalidEvent, MaxStringLen)
	case e.Type == "" || len(e.Type) > MaxStringLen || !utf8.ValidString(e.Type):
		return fmt.Errorf("%w: event type must be 1 to %d bytes of UTF-8", ErrInvalidEvent, MaxStringLen)
	case e.ID == [16]byte{}:
		return fmt.Errorf("%w: %s: no event id", ErrInvalidEvent, e.Type)
	case e.Time.IsZero():
		return fmt.Errorf("%w: %s: no event time", ErrInvalidEvent, e.Type)
	case !time.Unix(0, e.Time.UnixNano()).Equal(e.Time):
		// The record stores Unix nanoseconds: years 1678 to 2262.
		return fmt.Errorf("%w: %s: event time %s out of range", ErrInvalidEvent, e.Type, e.Time)
	case len(e.Merchant) > MaxStringLen || !utf8.ValidString(e.Merchant):
		return fmt.Errorf("%w: %s: merchant id too long or not UTF-8", ErrInvalidEvent, e.Type)
	case len(e.Correlation) > MaxStringLen || !utf8.ValidString(e.Correlation):
		return fmt.Errorf("%w: %s: correlation id too long or not UTF-8", ErrInvalidEvent, e.Type)
	case len(e.Claims) > MaxClaims:
		return fmt.Errorf("%w: %s: more than %d claims", ErrInvalidEvent, e.Type, MaxClaims)
	case len(e.Data) > MaxDataLen:
		return fmt.Errorf("%w: %s: data over %d bytes", ErrInvalidEvent, e.Type, MaxDataLen)
	case !json.Valid(e.Data):
		return fmt.Errorf("%w: %s: data is not valid JSON", ErrInvalidEvent, e.Type)
	case bytes.IndexByte(e.Data, '\n') >= 0 || bytes.IndexByte(e.Data, '\r') >= 0:
		// Outside strings a line break is only white space; refusing it
		// keeps every event one line of JSON Lines, byte for byte.
		return fmt.Errorf("%w: %s: data holds a line break (marshal it compact)", ErrInvalidEvent, e.Type)
	case isJSONSpace(e.Data[0]) || isJSONSpace(e.Data[len(e.Data)-1]):
		// A JSON parser drops white space around a value, so data carried
		// inside JSON (export, the stream) would no longer hash the same.
		return fmt.Errorf("%w: %s: data starts or ends with white space", ErrInvalidEvent, e.Type)
	}
	for _, c := range e.Claims {
		if c == "" || len(c) > MaxStringLen || !utf8.ValidString(c) {
			return fmt.Errorf("%w: %s: claim must be 1 to %d bytes of UTF-8", ErrInvalidEvent, e.Type, MaxStringLen)
		}
	}
	return nil
}

// Seal places a proposed event at a position in the chain (sequence, stream
// version, previous hash), appends its encoding to dst, and returns the
// encoding and the committed form of the event, hash set.
func Seal(dst []byte, stream string, seq, version uint64, prev Hash, n *NewEvent) ([]byte, Event) {
	e := Event{
		ID: n.ID, Seq: seq, Stream: stream, Version: version, Type: n.Type,
		Time: n.Time.UTC(), Merchant: n.Merchant, Correlation: n.Correlation,
		Claims: n.Claims, Data: n.Data, PrevHash: prev,
	}
	dst = Encode(dst, &e)
	return dst, e
}
