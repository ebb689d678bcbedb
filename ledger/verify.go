package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Verifier checks a log record by record, in sequence order: each record's own
// hash, sequence continuity from 1, the previous-hash link, and that every
// stream's versions run 1, 2, 3, ... It holds one counter per stream.
type Verifier struct {
	next     uint64
	prev     Hash
	versions map[string]uint64
}

// NewVerifier starts a verification at sequence 1.
func NewVerifier() *Verifier {
	return &Verifier{next: 1, versions: make(map[string]uint64)}
}

// Count is the number of records verified so far.
func (v *Verifier) Count() uint64 { return v.next - 1 }

// Head is the last verified position.
func (v *Verifier) Head() Head { return Head{Seq: v.next - 1, Hash: v.prev} }

// CheckRaw verifies one encoded record. It returns a *VerifyError naming the
// sequence it expected when anything is wrong.
func (v *Verifier) CheckRaw(b []byte) error {
	seq, version, prev, hash, err := CheckRecord(b)
	if err != nil {
		return &VerifyError{Seq: v.next, Reason: err.Error(), Err: unwrapClass(err)}
	}
	r := reader{b: b[:len(b)-hashLen], off: fixedLen}
	n := r.uvarint()
	if r.err != nil || n > MaxStringLen || n > uint64(len(r.b)-r.off) {
		return &VerifyError{Seq: v.next, Reason: "bad stream field", Err: ErrCorrupt}
	}
	stream := b[r.off : r.off+int(n)]
	return v.check(seq, version, prev, hash, stream, nil)
}

// Check verifies one decoded event (its hash is recomputed from its fields).
func (v *Verifier) Check(e *Event) error {
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
	var last uint64
	if streamS != nil {
		last = v.versions[*streamS]
	} else {
		last = v.versions[string(streamB)]
	}
	if version != last+1 {
		return &VerifyError{Seq: seq, Reason: fmt.Sprintf("stream version %d follows %d", version, last), Err: ErrChainBroken}
	}
	if streamS != nil {
		v.versions[*streamS] = version
	} else {
		v.versions[string(streamB)] = version
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
