package stream_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/stream"
)

func sealed(t testing.TB, data string) ledger.Event {
	t.Helper()
	n := ledger.NewEvent{
		ID:          ulid.MustParse("01J9Z3Q4R5S6T7V8W9X0Y1Z2A3"),
		Type:        "invoice.created",
		Time:        time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC),
		Merchant:    "m<1>&",
		Correlation: "req-1",
		Claims:      []string{"ext:m1:42"},
		Data:        json.RawMessage(data),
	}
	_, e := ledger.Seal(nil, "invoice-1", 7, 2, ledger.Hash{1, 2, 3}, &n)
	return e
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	e := sealed(t, `{"amount":"1500.00","purpose":"\u003cb\u003e"}`)
	want, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if got := stream.AppendJSON(nil, &e); string(got) != string(want) {
		t.Errorf("AppendJSON =\n%s\nencoding/json =\n%s", got, want)
	}
}

func TestMessageRoundTrip(t *testing.T) {
	// Data as a client might send it: spaces and raw HTML characters, which
	// encoding/json would rewrite (and so break the hash).
	e := sealed(t, `{"amount": "1500.00", "purpose": "<b>&"}`)
	m := stream.Message("", &e)
	if m.Subject != "payledger.events.m<1%3E&.invoice.created" {
		t.Errorf("subject %q", m.Subject)
	}
	for k, want := range map[string]string{
		"Nats-Msg-Id":         e.ID.String(),
		stream.HeaderSeq:      "7",
		stream.HeaderHash:     e.Hash.String(),
		stream.HeaderPrevHash: e.PrevHash.String(),
		stream.HeaderStream:   "invoice-1",
		stream.HeaderVersion:  "2",
		stream.HeaderType:     "invoice.created",
	} {
		if got := m.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	got, err := stream.DecodeMessage(m.Header, m.Data, 7)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hash != e.Hash || string(got.Data) != string(e.Data) || !got.Time.Equal(e.Time) {
		t.Errorf("round trip changed the event:\n%+v\n%+v", got, e)
	}

	bad := []struct {
		name   string
		mutate func(h nats.Header, body []byte) []byte
		seq    uint64
	}{
		{"altered data", func(h nats.Header, b []byte) []byte {
			return []byte(strings.Replace(string(b), "1500.00", "9500.00", 1))
		}, 7},
		{"wrong stream sequence", func(h nats.Header, b []byte) []byte { return b }, 8},
		{"header hash", func(h nats.Header, b []byte) []byte { h.Set(stream.HeaderHash, ledger.Hash{}.String()); return b }, 7},
		{"header seq", func(h nats.Header, b []byte) []byte { h.Set(stream.HeaderSeq, "8"); return b }, 7},
		{"msg id", func(h nats.Header, b []byte) []byte { h.Set("Nats-Msg-Id", "x"); return b }, 7},
		{"not json", func(h nats.Header, b []byte) []byte { return b[1:] }, 7},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			m := stream.Message("", &e)
			body := tt.mutate(m.Header, m.Data)
			_, err := stream.DecodeMessage(m.Header, body, tt.seq)
			var me *stream.MessageError
			if !errors.Is(err, stream.ErrBadMessage) || !errors.As(err, &me) || me.Seq != tt.seq {
				t.Fatalf("DecodeMessage = %v, want a MessageError at %d", err, tt.seq)
			}
		})
	}
}

func TestHeaderValuesEscaped(t *testing.T) {
	n := ledger.NewEvent{ID: ulid.Make(), Type: "x\r\ny", Time: time.Now(), Data: json.RawMessage(`{}`)}
	_, e := ledger.Seal(nil, "s\n1%", 1, 1, ledger.Hash{}, &n)
	m := stream.Message("", &e)
	if got := m.Header.Get(stream.HeaderStream); got != "s%0A1%25" {
		t.Errorf("stream header %q", got)
	}
	if got := m.Header.Get(stream.HeaderType); got != "x%0D%0Ay" {
		t.Errorf("type header %q", got)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	e := sealed(f, `{"a": [1, 2, {"b": null}]}`)
	m := stream.Message("", &e)
	f.Add(m.Data, m.Header.Get(stream.HeaderSeq), m.Header.Get(stream.HeaderHash), uint64(7))
	f.Add([]byte(`{}`), "", "", uint64(0))
	f.Add([]byte(`{"seq":1,"data":}`), "1", "", uint64(1))
	f.Fuzz(func(t *testing.T, body []byte, seqH, hashH string, seq uint64) {
		h := nats.Header{}
		for k, v := range m.Header {
			h[k] = v
		}
		h.Set(stream.HeaderSeq, seqH)
		h.Set(stream.HeaderHash, hashH)
		got, err := stream.DecodeMessage(h, body, seq)
		if err != nil {
			if !errors.Is(err, stream.ErrBadMessage) {
				t.Fatalf("error %v is not ErrBadMessage", err)
			}
			return
		}
		// Whatever decodes must verify and survive a round trip.
		again, err := stream.DecodeMessage(h, stream.AppendJSON(nil, &got), seq)
		if err != nil || again.Hash != got.Hash {
			t.Fatalf("round trip of an accepted message failed: %v", err)
		}
	})
}

// TestDecodeMessageRefusesOtherSpellings: a body must be exactly the form
// the relay writes (AppendJSON), as an export line must (audit.ReadExport):
// the same event spelled another way (an id in lower case, a hash in upper
// case, white space, keys reordered) is refused, so one event has one body.
func TestDecodeMessageRefusesOtherSpellings(t *testing.T) {
	e := sealed(t, `{"amount": "1500.00"}`)
	n := ledger.NewEvent{ID: e.ID, Type: e.Type, Time: e.Time, Merchant: e.Merchant, Correlation: e.Correlation, Claims: e.Claims, Data: e.Data}
	_, e = ledger.Seal(nil, e.Stream, e.Seq, e.Version, ledger.Hash{0xab, 0xcd, 0xef}, &n) // a prev_hash with letters
	id, hash, prev := e.ID.String(), e.Hash.String(), e.PrevHash.String()
	for name, mutate := range map[string]func(string) string{
		"id in lower case":        func(b string) string { return strings.Replace(b, id, strings.ToLower(id), 1) },
		"hash in upper case":      func(b string) string { return strings.Replace(b, hash, strings.ToUpper(hash), 1) },
		"prev_hash in upper case": func(b string) string { return strings.Replace(b, prev, strings.ToUpper(prev), 1) },
		"white space":             func(b string) string { return strings.Replace(b, `"seq":7`, `"seq": 7`, 1) },
		"keys reordered": func(b string) string {
			return `{"seq":7,"id":"` + id + `"` + strings.TrimPrefix(b, `{"id":"`+id+`","seq":7`)
		},
	} {
		t.Run(name, func(t *testing.T) {
			m := stream.Message("", &e)
			body := mutate(string(m.Data))
			if body == string(m.Data) {
				t.Fatal("the mutation changed nothing")
			}
			_, err := stream.DecodeMessage(m.Header, []byte(body), 7)
			var me *stream.MessageError
			if !errors.Is(err, stream.ErrBadMessage) || !errors.As(err, &me) || me.Seq != 7 {
				t.Fatalf("DecodeMessage of %s = %v, want a MessageError at 7", body, err)
			}
		})
	}
}
