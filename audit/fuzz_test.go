package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/stream"
)

// FuzzReadExport feeds payledger import's reader arbitrary input: it never
// panics, an error is an *ExportError or the reader's, every event it
// yields was its line exactly (so the lines read re-encode to the input
// read so far), and a stream re-encoded from the events re-reads to the
// same events.
func FuzzReadExport(f *testing.F) {
	b := newBuilder(f, true)
	b.history()
	exp := exportOf(f, b.readOnly())
	lines := bytes.SplitAfter(exp, []byte("\n"))
	f.Add(exp)
	f.Add(bytes.Join(lines[:3], nil))
	f.Add(bytes.TrimSuffix(lines[0], []byte("\n"))) // the last line without its LF
	f.Add(append(bytes.Clone(lines[0]), '\n'))      // an empty line
	f.Add(bytes.Replace(lines[1], []byte(`"seq":2`), []byte(`"seq": 2`), 1))
	f.Add([]byte("{}\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		var evs []ledger.Event
		var read []byte
		for e, err := range ReadExport(bytes.NewReader(in)) {
			if err != nil {
				var xe *ExportError
				if !errors.As(err, &xe) {
					t.Fatalf("error %v (%T), want an *ExportError", err, err)
				}
				if xe.Line != len(evs)+1 {
					t.Fatalf("error names line %d after %d events", xe.Line, len(evs))
				}
				break
			}
			evs = append(evs, e)
			read = append(stream.AppendJSON(read, &e), '\n')
		}
		if !bytes.HasPrefix(append(bytes.Clone(in), '\n'), read) {
			t.Fatalf("events read are not the input's lines:\n%q\n%q", in, read)
		}
		var again []ledger.Event
		for e, err := range ReadExport(bytes.NewReader(read)) {
			if err != nil {
				t.Fatalf("re-encoded stream: %v", err)
			}
			again = append(again, e)
		}
		if len(again) != len(evs) || (len(evs) > 0 && !reflect.DeepEqual(again, evs)) {
			t.Fatalf("re-read %d events, want %d:\n%+v\n%+v", len(again), len(evs), again, evs)
		}
	})
}

// FuzzDecodeCheckpoint feeds a checkpoint.signed event's data decoder
// arbitrary bytes: it never panics, refuses with ErrCheckpoint, and what it
// accepts encodes back (as SignCheckpoint's events do) to data it accepts
// as the same checkpoint.
func FuzzDecodeCheckpoint(f *testing.F) {
	cp := SignCheckpoint(testKey, ledger.Head{Seq: 42, Hash: ledger.Hash{1, 2, 3}}, t0)
	good := mustJSON(f, cp)
	f.Add(good)
	f.Add(bytes.Replace(good, []byte(`"seq":42`), []byte(`"seq":42,"extra":1`), 1))
	f.Add([]byte(strings.ToUpper(string(good))))
	f.Add(append(bytes.Clone(good), ' ', '{', '}'))
	f.Add([]byte(`{"seq":1,"hash":"","public_key":"","signature":"","signed_at":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCheckpoint(data)
		if err != nil {
			if !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("error %v, want ErrCheckpoint", err)
			}
			return
		}
		again, err := DecodeCheckpoint(mustJSON(t, c))
		if err != nil || again.Seq != c.Seq || again.Hash != c.Hash || again.PublicKey != c.PublicKey ||
			again.Signature != c.Signature || !again.SignedAt.Equal(c.SignedAt) {
			t.Fatalf("re-encoded: %+v, %v; want %+v", again, err, c)
		}
		if _, err := c.Key(); err != nil {
			t.Fatalf("accepted a checkpoint whose key does not parse: %v", err)
		}
		// Verify never panics on what decodes; a signature it accepts is over (Seq, Hash).
		if pub, _ := c.Key(); c.Verify(pub) == nil && c.Signature != cp.Signature && c.Seq == cp.Seq && c.Hash == cp.Hash && c.PublicKey == cp.PublicKey {
			// Ed25519 signatures are deterministic and Go refuses a malleated
			// one: a second signature over the same message is a forgery.
			t.Fatalf("a signature other than the key's verifies: %s", c.Signature)
		}
	})
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
