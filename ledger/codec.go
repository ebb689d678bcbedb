package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"
	"time"
	"unicode/utf8"
)

// FormatV1 is the first (and current) record encoding. Persisted: never reuse
// or renumber a format version.
const FormatV1 byte = 1

// Limits on a record's variable parts, so a corrupt length cannot make the
// decoder allocate gigabytes.
const (
	MaxStringLen = 1 << 10 // stream, type, merchant, correlation, each claim
	MaxClaims    = 16
	MaxDataLen   = 1 << 20
)

const (
	fixedLen = 1 + 16 + 8 + 8 + 8 + 32 // format, id, seq, version, time, prev hash
	hashLen  = 32
)

// Encode appends the canonical encoding of e (format v1) to dst and returns it
// with e.Hash set to the SHA-256 of the encoded bytes before the hash.
//
// Layout, all integers big-endian:
//
//	format(1) id(16) seq(8) version(8) time_unix_nano(8) prev_hash(32)
//	stream type merchant correlation   each uvarint length + bytes
//	claims                             uvarint count, then each uvarint length + bytes
//	data                               uvarint length + bytes
//	hash(32)                           SHA-256 of everything above
func Encode(dst []byte, e *Event) []byte {
	start := len(dst)
	dst = append(dst, FormatV1)
	dst = append(dst, e.ID[:]...)
	dst = binary.BigEndian.AppendUint64(dst, e.Seq)
	dst = binary.BigEndian.AppendUint64(dst, e.Version)
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.Time.UnixNano()))
	dst = append(dst, e.PrevHash[:]...)
	dst = appendString(dst, e.Stream)
	dst = appendString(dst, e.Type)
	dst = appendString(dst, e.Merchant)
	dst = appendString(dst, e.Correlation)
	dst = binary.AppendUvarint(dst, uint64(len(e.Claims)))
	for _, c := range e.Claims {
		dst = appendString(dst, c)
	}
	dst = binary.AppendUvarint(dst, uint64(len(e.Data)))
	dst = append(dst, e.Data...)
	e.Hash = sha256.Sum256(dst[start:])
	return append(dst, e.Hash[:]...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// Decode parses one record, checking its format version and its hash. The
// returned event does not alias b. It fails with ErrUnsupportedVersion for a
// record of another format and ErrCorrupt for anything malformed; it never panics.
func Decode(b []byte) (Event, error) {
	var e Event
	if err := decode(b, &e, true); err != nil {
		return Event{}, err
	}
	return e, nil
}

// Decoder decodes records as Decode does, for a reader that decodes many
// records out of a buffer it reuses (a bbolt transaction's pages, a scan's
// chunk). Instead of one allocation per event for its data, it copies the
// data of consecutive events into shared slabs of decoderSlab bytes, which
// are never written again: an event's Data still aliases no record, and
// stays valid however long it is kept (it keeps its slab from the garbage
// collector, a few dozen kilobytes, as long as it is kept). The zero
// value is ready to use; a Decoder is not safe for concurrent use.
type Decoder struct {
	slab []byte
}

// decoderSlab is the size of a Decoder's slabs: large enough that an
// allocation serves a hundred events or more, small enough that an event
// kept for long (a test's, an API page's) does not keep much with it.
const decoderSlab = 64 << 10

// Decode parses one record as Decode does (the returned event does not
// alias b), its data carved from the Decoder's current slab.
func (d *Decoder) Decode(b []byte) (Event, error) {
	var e Event
	if err := decode(b, &e, false); err != nil {
		return Event{}, err
	}
	n := len(e.Data)
	if n > decoderSlab/4 {
		e.Data = append([]byte(nil), e.Data...)
		return e, nil
	}
	if cap(d.slab)-len(d.slab) < n {
		d.slab = make([]byte, 0, decoderSlab)
	}
	start := len(d.slab)
	d.slab = append(d.slab, e.Data...)
	e.Data = d.slab[start:len(d.slab):len(d.slab)]
	return e, nil
}

// CheckRecord verifies a record's format and hash without decoding its
// variable fields into an Event, and returns the header fields verification
// needs. It is the fast path of a full-log verification.
func CheckRecord(b []byte) (seq, version uint64, prev, hash Hash, err error) {
	if len(b) < 1 {
		return 0, 0, prev, hash, fmt.Errorf("%w: empty record", ErrCorrupt)
	}
	if b[0] != FormatV1 {
		return 0, 0, prev, hash, fmt.Errorf("%w: format %d", ErrUnsupportedVersion, b[0])
	}
	if len(b) < fixedLen+hashLen {
		return 0, 0, prev, hash, fmt.Errorf("%w: record of %d bytes is too short", ErrCorrupt, len(b))
	}
	body := b[:len(b)-hashLen]
	copy(hash[:], b[len(b)-hashLen:])
	if sha256.Sum256(body) != hash {
		return 0, 0, prev, hash, fmt.Errorf("%w: hash mismatch", ErrCorrupt)
	}
	seq = binary.BigEndian.Uint64(b[17:])
	version = binary.BigEndian.Uint64(b[25:])
	copy(prev[:], b[41:73])
	return seq, version, prev, hash, nil
}

func decode(b []byte, e *Event, copyData bool) error {
	if len(b) < 1 {
		return fmt.Errorf("%w: empty record", ErrCorrupt)
	}
	if b[0] != FormatV1 {
		return fmt.Errorf("%w: format %d", ErrUnsupportedVersion, b[0])
	}
	if len(b) < fixedLen+hashLen {
		return fmt.Errorf("%w: record of %d bytes is too short", ErrCorrupt, len(b))
	}
	body := b[:len(b)-hashLen]
	copy(e.Hash[:], b[len(b)-hashLen:])
	if sha256.Sum256(body) != e.Hash {
		return fmt.Errorf("%w: hash mismatch", ErrCorrupt)
	}
	copy(e.ID[:], b[1:17])
	e.Seq = binary.BigEndian.Uint64(b[17:])
	e.Version = binary.BigEndian.Uint64(b[25:])
	e.Time = time.Unix(0, int64(binary.BigEndian.Uint64(b[33:]))).UTC()
	copy(e.PrevHash[:], b[41:73])
	_, err := parseBody(body, e, copyData)
	return err
}

// parseBody checks the variable fields of a record body (the record without
// its trailing hash): every length in range, every string UTF-8, every varint
// in its shortest form (so one event has exactly one encoding), and no
// trailing bytes. With e non-nil it also fills e's variable fields; with e nil
// it allocates nothing. It returns the stream id, aliasing body.
func parseBody(body []byte, e *Event, copyData bool) ([]byte, error) {
	r := reader{b: body, off: fixedLen}
	stream := r.bytes()
	typ := r.bytes()
	merchant := r.bytes()
	correlation := r.bytes()
	if e != nil && r.err == nil {
		e.Stream = string(stream)
		e.Type = string(typ)
		e.Merchant = string(merchant)
		e.Correlation = string(correlation)
	}
	n := r.uvarint()
	if r.err == nil && n > MaxClaims {
		r.err = fmt.Errorf("%d claims", n)
	}
	if e != nil && n > 0 && r.err == nil {
		e.Claims = make([]string, 0, n)
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		c := r.bytes()
		if e != nil && r.err == nil {
			e.Claims = append(e.Claims, string(c))
		}
	}
	dl := r.uvarint()
	if r.err == nil && (dl > MaxDataLen || dl > uint64(len(body)-r.off)) {
		r.err = fmt.Errorf("data length %d", dl)
	}
	if r.err == nil {
		d := body[r.off : r.off+int(dl)]
		if e != nil {
			if copyData {
				d = append([]byte(nil), d...)
			}
			e.Data = d
		}
		r.off += int(dl)
	}
	if r.err == nil && r.off != len(body) {
		r.err = fmt.Errorf("%d trailing bytes", len(body)-r.off)
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, r.err)
	}
	return stream, nil
}

// RecordPosition returns an encoded record's place in the log: its stream id
// (aliasing b), stream version and global sequence. It checks only the layout
// up to the stream id, not the hash: call it on records that CheckRecord or a
// Verifier has accepted.
//
// Errors: ErrUnsupportedVersion, ErrCorrupt.
func RecordPosition(b []byte) (stream []byte, version, seq uint64, err error) {
	r, err := headerReader(b)
	if err != nil {
		return nil, 0, 0, err
	}
	stream = r.bytes()
	if r.err != nil {
		return nil, 0, 0, fmt.Errorf("%w: %v", ErrCorrupt, r.err)
	}
	return stream, binary.BigEndian.Uint64(b[25:]), binary.BigEndian.Uint64(b[17:]), nil
}

// headerReader checks a record's format and length and returns a reader at
// its first variable field, for the functions that read the header in place.
func headerReader(b []byte) (reader, error) {
	if len(b) < 1 {
		return reader{}, fmt.Errorf("%w: empty record", ErrCorrupt)
	}
	if b[0] != FormatV1 {
		return reader{}, fmt.Errorf("%w: format %d", ErrUnsupportedVersion, b[0])
	}
	if len(b) < fixedLen+hashLen {
		return reader{}, fmt.Errorf("%w: record of %d bytes is too short", ErrCorrupt, len(b))
	}
	return reader{b: b[:len(b)-hashLen], off: fixedLen}, nil
}

// RecordOwner returns an encoded record's stream id and merchant id, both
// aliasing b, without checking the hash or decoding the rest: a filter that
// costs little on records a reader will skip (a merchant's event feed scans
// everyone's). Decode what it keeps.
//
// Errors: ErrUnsupportedVersion, ErrCorrupt.
func RecordOwner(b []byte) (stream, merchant []byte, err error) {
	r, err := headerReader(b)
	if err != nil {
		return nil, nil, err
	}
	stream = r.bytes()
	r.bytes() // type
	merchant = r.bytes()
	if r.err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrCorrupt, r.err)
	}
	return stream, merchant, nil
}

type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.err = fmt.Errorf("bad varint at offset %d", r.off)
		return 0
	}
	if n != (bits.Len64(v|1)+6)/7 {
		r.err = fmt.Errorf("varint at offset %d not in shortest form", r.off)
		return 0
	}
	r.off += n
	return v
}

// bytes reads a length-prefixed UTF-8 string, aliasing r.b.
func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > MaxStringLen || n > uint64(len(r.b)-r.off) {
		r.err = fmt.Errorf("string length %d at offset %d", n, r.off)
		return nil
	}
	s := r.b[r.off : r.off+int(n)]
	if !utf8.Valid(s) {
		r.err = fmt.Errorf("invalid UTF-8 at offset %d", r.off)
		return nil
	}
	r.off += int(n)
	return s
}
