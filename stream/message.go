package stream

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/payledger/payledger/ledger"
)

// Headers of an event message. Persisted in the stream: never rename.
const (
	HeaderSeq      = "Payledger-Seq"       // log sequence, decimal
	HeaderHash     = "Payledger-Hash"      // the event's hash, 64 hex digits
	HeaderPrevHash = "Payledger-Prev-Hash" // the previous event's hash
	HeaderStream   = "Payledger-Stream"    // the event's stream id, escaped
	HeaderVersion  = "Payledger-Version"   // the event's stream version, decimal
	HeaderType     = "Payledger-Type"      // the event type, escaped
)

// MaxMessageSize bounds the message (headers and body) of any event the
// log accepts: data at ledger.MaxDataLen, and the stream id, type,
// merchant, correlation id and every claim at ledger.MaxStringLen of bytes
// that JSON escapes six to one. NATS must take messages this large (the
// embedded server does: its max_payload is EmbeddedMaxPayload), or the
// relay stops at such an event (ErrTooLarge).
const MaxMessageSize = ledger.MaxDataLen + 8*ledger.MaxStringLen*(4+ledger.MaxClaims) + 4096

// EmbeddedMaxPayload is the embedded server's max_payload.
const EmbeddedMaxPayload = 4 << 20

// Message builds the message that carries e: its subject, the body (the
// event's JSON form, see AppendJSON) and the headers, Nats-Msg-Id = the
// event id among them. The relay adds the expected-last-sequence headers.
func Message(prefix string, e *ledger.Event) *nats.Msg {
	m := &nats.Msg{}
	fillMessage(m, Subject(prefix, e.Merchant, e.Type), e)
	return m
}

// fillMessage makes m the message of e on subject, reusing m's header map
// and data buffer (the relay recycles its messages once published).
func fillMessage(m *nats.Msg, subject string, e *ledger.Event) {
	id, hash, prev := e.ID.String(), e.Hash.String(), e.PrevHash.String()
	h := m.Header
	if h == nil {
		h = make(nats.Header, 8)
		m.Header = h
	}
	set := func(k, v string) {
		if vs := h[k]; len(vs) == 1 {
			vs[0] = v
			return
		}
		h[k] = []string{v}
	}
	set(jetstream.MsgIDHeader, id)
	set(HeaderSeq, strconv.FormatUint(e.Seq, 10))
	set(HeaderHash, hash)
	set(HeaderPrevHash, prev)
	set(HeaderStream, headerValue(e.Stream))
	set(HeaderVersion, strconv.FormatUint(e.Version, 10))
	set(HeaderType, headerValue(e.Type))
	m.Subject = subject
	m.Reply = ""
	if m.Data == nil {
		m.Data = make([]byte, 0, 320+len(e.Data))
	}
	m.Data = appendJSON(m.Data[:0], e, id, hash, prev)
}

// headerValue escapes what a NATS header value cannot hold (control
// characters) and '%' itself as %XX.
func headerValue(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hexDigits = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == '%' {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

// AppendJSON appends the event's JSON form to dst: the form encoding/json
// gives ledger.Event, except that data is copied byte for byte as the log
// holds it (encoding/json would compact and re-escape it, and the hash
// covers those bytes). json.Unmarshal into a ledger.Event gives back an
// event whose hash checks, as long as data has no white space around it.
func AppendJSON(dst []byte, e *ledger.Event) []byte {
	return appendJSON(dst, e, e.ID.String(), e.Hash.String(), e.PrevHash.String())
}

// appendJSON is AppendJSON with the id and hashes already rendered.
func appendJSON(dst []byte, e *ledger.Event, id, hash, prev string) []byte {
	dst = append(dst, `{"id":"`...)
	dst = append(dst, id...)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendUint(dst, e.Seq, 10)
	dst = append(dst, `,"stream":`...)
	dst = appendString(dst, e.Stream)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendUint(dst, e.Version, 10)
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, e.Type)
	dst = append(dst, `,"time":"`...)
	dst = e.Time.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	if e.Merchant != "" {
		dst = append(dst, `,"merchant":`...)
		dst = appendString(dst, e.Merchant)
	}
	if e.Correlation != "" {
		dst = append(dst, `,"correlation":`...)
		dst = appendString(dst, e.Correlation)
	}
	if len(e.Claims) > 0 {
		dst = append(dst, `,"claims":[`...)
		for i, c := range e.Claims {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, c)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"data":`...)
	if len(e.Data) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, e.Data...)
	}
	dst = append(dst, `,"prev_hash":"`...)
	dst = append(dst, prev...)
	dst = append(dst, `","hash":"`...)
	dst = append(dst, hash...)
	return append(dst, `"}`...)
}

// appendString appends s as a JSON string, escaped as encoding/json does.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always marshals
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// DecodeMessage parses a stream message into the event it carries and
// checks it: the event's hash against its contents, and the Nats-Msg-Id,
// Payledger-Seq, Payledger-Hash and Payledger-Prev-Hash headers against the
// event, and that the body is exactly AppendJSON's form of the event (one
// spelling per event: ids in upper case, hashes in lower case). A non-zero
// streamSeq must equal the event's sequence. It does not check the chain
// (the previous event); ledger.Verifier and boltlog.Store.Import do.
//
// Errors: *MessageError (ErrBadMessage).
func DecodeMessage(h nats.Header, data []byte, streamSeq uint64) (ledger.Event, error) {
	bad := func(format string, a ...any) (ledger.Event, error) {
		return ledger.Event{}, &MessageError{Seq: streamSeq, Reason: fmt.Sprintf(format, a...)}
	}
	var e ledger.Event
	if err := json.Unmarshal(data, &e); err != nil {
		return bad("body is not an event: %v", err)
	}
	if streamSeq != 0 && e.Seq != streamSeq {
		return bad("carries log sequence %d", e.Seq)
	}
	if streamSeq == 0 {
		streamSeq = e.Seq
	}
	var scratch [512]byte
	c := e
	ledger.Encode(scratch[:0], &c)
	if c.Hash != e.Hash {
		return bad("hash does not match the event's contents")
	}
	// One event, one body: json.Unmarshal also takes an id in lower case
	// (or with letters outside Crockford's base32), white space and keys
	// in any order. As for an export line (audit.ReadExport), only the
	// relay's form is taken.
	id, hash, prev := e.ID.String(), e.Hash.String(), e.PrevHash.String()
	var canon [1024]byte
	if string(appendJSON(canon[:0], &e, id, hash, prev)) != string(data) {
		return bad("body is not in the form the relay writes (AppendJSON): re-encoded or spelled otherwise")
	}
	if got := h.Get(jetstream.MsgIDHeader); got != id {
		return bad("%s %q is not the event id %s", jetstream.MsgIDHeader, got, e.ID)
	}
	if got := h.Get(HeaderSeq); got != strconv.FormatUint(e.Seq, 10) {
		return bad("%s %q is not the event's sequence %d", HeaderSeq, got, e.Seq)
	}
	if got := h.Get(HeaderHash); got != hash {
		return bad("%s %q is not the event's hash", HeaderHash, got)
	}
	if got := h.Get(HeaderPrevHash); got != prev {
		return bad("%s %q is not the event's previous hash", HeaderPrevHash, got)
	}
	return e, nil
}
