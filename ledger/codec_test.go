package ledger_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/ledger"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.UTC)

func sampleEvent() ledger.Event {
	return ledger.Event{
		ID:          ulid.MustParse("01JD0000000000000000000000"),
		Seq:         42,
		Stream:      "invoice-01JD",
		Version:     3,
		Type:        "invoice.paid",
		Time:        t0,
		Merchant:    "m-1",
		Correlation: "req-9",
		Claims:      []string{"m-1/external/abc", "m-1/einvoice/77"},
		Data:        json.RawMessage(`{"amount":"1500.00","currency":"UAH"}`),
		PrevHash:    sha256.Sum256([]byte("previous")),
	}
}

func TestCodecRoundTrip(t *testing.T) {
	cases := map[string]func(e *ledger.Event){
		"full":             func(e *ledger.Event) {},
		"no claims":        func(e *ledger.Event) { e.Claims = nil },
		"no merchant":      func(e *ledger.Event) { e.Merchant, e.Correlation = "", "" },
		"empty data":       func(e *ledger.Event) { e.Data = nil },
		"first record":     func(e *ledger.Event) { e.Seq, e.Version, e.PrevHash = 1, 1, ledger.Hash{} },
		"long strings":     func(e *ledger.Event) { e.Stream = strings.Repeat("s", ledger.MaxStringLen) },
		"unicode":          func(e *ledger.Event) { e.Merchant = "магазин-№1" },
		"many claims":      func(e *ledger.Event) { e.Claims = strings.Split(strings.Repeat("k,", ledger.MaxClaims-1)+"k", ",") },
		"pre-1970 time":    func(e *ledger.Event) { e.Time = time.Date(1969, 7, 20, 20, 17, 0, 0, time.UTC) },
		"large data":       func(e *ledger.Event) { e.Data = json.RawMessage(`"` + strings.Repeat("x", 200_000) + `"`) },
		"big sequence":     func(e *ledger.Event) { e.Seq, e.Version = 1<<63+5, 1<<40 },
		"local time input": func(e *ledger.Event) { e.Time = t0.In(time.FixedZone("UTC+3", 3*3600)) },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			e := sampleEvent()
			mod(&e)
			rec := ledger.Encode(nil, &e)
			if e.Hash.IsZero() {
				t.Fatal("Encode did not set the hash")
			}
			if got := sha256.Sum256(rec[:len(rec)-32]); ledger.Hash(got) != e.Hash || !bytes.Equal(rec[len(rec)-32:], e.Hash[:]) {
				t.Fatal("hash is not SHA-256 of the record body")
			}
			d, err := ledger.Decode(rec)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !d.Time.Equal(e.Time) || d.Time.Location() != time.UTC {
				t.Fatalf("time %v, want %v in UTC", d.Time, e.Time)
			}
			d.Time, e.Time = time.Time{}, time.Time{}
			if len(e.Data) == 0 && len(d.Data) == 0 {
				d.Data, e.Data = nil, nil
			}
			if !equalJSON(t, d, e) {
				t.Fatalf("decoded\n%+v\nwant\n%+v", d, e)
			}
			// Re-encoding the decoded event gives the same bytes.
			d2, _ := ledger.Decode(rec)
			if again := ledger.Encode(nil, &d2); !bytes.Equal(again, rec) {
				t.Fatal("re-encoding changed the bytes")
			}
			// The decoded event does not alias the record.
			d3, _ := ledger.Decode(rec)
			for i := range rec {
				rec[i] = 0
			}
			if d3.Stream != sampleOr(mod).Stream || (len(d3.Data) > 0 && d3.Data[0] == 0) {
				t.Fatal("decoded event aliases the record")
			}
			// Fast path agrees.
			rec = ledger.Encode(nil, &d2)
			seq, ver, prev, hash, err := ledger.CheckRecord(rec)
			if err != nil || seq != d2.Seq || ver != d2.Version || prev != d2.PrevHash || hash != d2.Hash {
				t.Fatalf("CheckRecord = %d %d %v %v %v", seq, ver, prev, hash, err)
			}
			s, ver, seq, err := ledger.RecordPosition(rec)
			if err != nil || string(s) != d2.Stream || ver != d2.Version || seq != d2.Seq {
				t.Fatalf("RecordPosition = %q %d %d, %v", s, ver, seq, err)
			}
			s, m, err := ledger.RecordOwner(rec)
			if err != nil || string(s) != d2.Stream || string(m) != d2.Merchant {
				t.Fatalf("RecordOwner = %q %q, %v", s, m, err)
			}
		})
	}
}

func sampleOr(mod func(*ledger.Event)) ledger.Event {
	e := sampleEvent()
	mod(&e)
	return e
}

func equalJSON(t *testing.T, a, b ledger.Event) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

// TestEncodingIsStable pins the v1 layout: if this hash changes, every stored
// log stops verifying. Never update it; add a new format version instead.
func TestEncodingIsStable(t *testing.T) {
	e := sampleEvent()
	rec := ledger.Encode(nil, &e)
	if rec[0] != ledger.FormatV1 || ledger.FormatV1 != 1 {
		t.Fatalf("format byte %d", rec[0])
	}
	if got := binary.BigEndian.Uint64(rec[17:]); got != 42 {
		t.Fatalf("seq at offset 17 = %d", got)
	}
	if got := binary.BigEndian.Uint64(rec[25:]); got != 3 {
		t.Fatalf("version at offset 25 = %d", got)
	}
	if got := int64(binary.BigEndian.Uint64(rec[33:])); got != t0.UnixNano() {
		t.Fatalf("time at offset 33 = %d", got)
	}
	if !bytes.Equal(rec[41:73], e.PrevHash[:]) || rec[73] != byte(len(e.Stream)) {
		t.Fatal("prev hash or stream length misplaced")
	}
	const want = "820169a6ee57321987135f4e19270d8c4b2ee6a2d593cc1d5200a518b2cfd4be"
	if got := e.Hash.String(); got != want {
		t.Fatalf("v1 hash of the sample event changed: %s, want %s", got, want)
	}
}

func TestDecodeRejects(t *testing.T) {
	e := sampleEvent()
	good := ledger.Encode(nil, &e)
	body := good[:len(good)-32]
	reseal := func(body []byte) []byte {
		h := sha256.Sum256(body)
		return append(append([]byte(nil), body...), h[:]...)
	}
	// Offset of the stream length byte, then of the type.
	const streamOff = 73
	cases := []struct {
		name string
		rec  []byte
		want error
	}{
		{"empty", nil, ledger.ErrCorrupt},
		{"format 0", append([]byte{0}, good[1:]...), ledger.ErrUnsupportedVersion},
		{"format 2", append([]byte{2}, good[1:]...), ledger.ErrUnsupportedVersion},
		{"format 255 short", []byte{255}, ledger.ErrUnsupportedVersion},
		{"too short", good[:50], ledger.ErrCorrupt},
		{"hash only", good[:len(good)-1], ledger.ErrCorrupt},
		{"flipped body byte", flip(good, 100), ledger.ErrCorrupt},
		{"flipped hash byte", flip(good, len(good)-1), ledger.ErrCorrupt},
		{"flipped seq", flip(good, 20), ledger.ErrCorrupt},
		{"trailing byte resealed", reseal(append(append([]byte(nil), body...), 0)), ledger.ErrCorrupt},
		{"truncated resealed", reseal(body[:len(body)-3]), ledger.ErrCorrupt},
		{"huge stream length resealed", reseal(setByte(body, streamOff, 0xff)), ledger.ErrCorrupt},
		{"non-minimal varint resealed", reseal(nonMinimal(body, streamOff)), ledger.ErrCorrupt},
		{"bad utf-8 resealed", reseal(setByte(body, streamOff+1, 0xff)), ledger.ErrCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := ledger.Decode(c.rec); !errors.Is(err, c.want) {
				t.Fatalf("Decode: %v, want %v", err, c.want)
			}
			v := ledger.NewVerifier()
			err := v.CheckRaw(c.rec)
			var ve *ledger.VerifyError
			if !errors.As(err, &ve) || ve.Seq != 1 || !errors.Is(err, c.want) {
				t.Fatalf("CheckRaw: %v, want *VerifyError at 1 wrapping %v", err, c.want)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x01
	return c
}

func setByte(b []byte, i int, v byte) []byte {
	c := append([]byte(nil), b...)
	c[i] = v
	return c
}

// nonMinimal re-encodes the one-byte varint at i as two bytes (same value).
func nonMinimal(b []byte, i int) []byte {
	c := append([]byte(nil), b[:i]...)
	c = append(c, b[i]|0x80, 0x00)
	return append(c, b[i+1:]...)
}

func TestValidateNew(t *testing.T) {
	good := func() ledger.NewEvent {
		return ledger.NewEvent{ID: ulid.Make(), Type: "t", Time: t0, Data: json.RawMessage(`{}`)}
	}
	cases := []struct {
		name   string
		stream string
		mod    func(*ledger.NewEvent)
		ok     bool
	}{
		{"good", "s", func(*ledger.NewEvent) {}, true},
		{"no stream", "", func(*ledger.NewEvent) {}, false},
		{"NUL in stream", "a\x00b", func(*ledger.NewEvent) {}, false},
		{"stream too long", strings.Repeat("s", ledger.MaxStringLen+1), func(*ledger.NewEvent) {}, false},
		{"bad utf-8 stream", "\xff", func(*ledger.NewEvent) {}, false},
		{"no type", "s", func(e *ledger.NewEvent) { e.Type = "" }, false},
		{"no id", "s", func(e *ledger.NewEvent) { e.ID = ulid.ULID{} }, false},
		{"no time", "s", func(e *ledger.NewEvent) { e.Time = time.Time{} }, false},
		{"time out of range", "s", func(e *ledger.NewEvent) { e.Time = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) }, false},
		{"bad json", "s", func(e *ledger.NewEvent) { e.Data = json.RawMessage(`{`) }, false},
		{"no data", "s", func(e *ledger.NewEvent) { e.Data = nil }, false},
		{"indented data", "s", func(e *ledger.NewEvent) { e.Data = json.RawMessage("{\n  \"a\": 1\n}") }, false},
		{"data with leading space", "s", func(e *ledger.NewEvent) { e.Data = json.RawMessage(` {"a": 1}`) }, false},
		{"data with trailing tab", "s", func(e *ledger.NewEvent) { e.Data = json.RawMessage("{\"a\": 1}\t") }, false},
		{"spaced data", "s", func(e *ledger.NewEvent) { e.Data = json.RawMessage(`{"a": "x\ny"}`) }, true},
		{"empty claim", "s", func(e *ledger.NewEvent) { e.Claims = []string{""} }, false},
		{"too many claims", "s", func(e *ledger.NewEvent) { e.Claims = make([]string, ledger.MaxClaims+1) }, false},
		{"merchant too long", "s", func(e *ledger.NewEvent) { e.Merchant = strings.Repeat("m", ledger.MaxStringLen+1) }, false},
		{"data too big", "s", func(e *ledger.NewEvent) { e.Data = json.RawMessage(`"` + strings.Repeat("x", ledger.MaxDataLen) + `"`) }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := good()
			c.mod(&e)
			err := ledger.ValidateNew(c.stream, &e)
			if c.ok != (err == nil) || (err != nil && !errors.Is(err, ledger.ErrInvalidEvent)) {
				t.Fatalf("ValidateNew = %v, want ok=%v", err, c.ok)
			}
		})
	}
}

func TestExpectedString(t *testing.T) {
	for e, want := range map[ledger.Expected]string{ledger.Any: "any", ledger.NoStream: "no-stream", ledger.Exactly(7): "7"} {
		if e.String() != want {
			t.Errorf("%d.String() = %q, want %q", int64(e), e.String(), want)
		}
	}
	if ledger.Exactly(0) != ledger.NoStream {
		t.Error("Exactly(0) is not NoStream")
	}
}

func TestHashText(t *testing.T) {
	h := ledger.Hash(sha256.Sum256([]byte("x")))
	p, err := ledger.ParseHash(h.String())
	if err != nil || p != h {
		t.Fatalf("ParseHash = %v, %v", p, err)
	}
	if _, err := ledger.ParseHash("abc"); err == nil {
		t.Fatal("short hash parsed")
	}
	if _, err := ledger.ParseHash(strings.Repeat("zz", 32)); err == nil {
		t.Fatal("non-hex hash parsed")
	}
	// Lower-case hex is the one spelling (String, and the JSON of an
	// event): another spelling of the same hash is refused, in JSON too.
	s := h.String()
	i := strings.IndexAny(s, "abcdef")
	for _, other := range []string{strings.ToUpper(s), s[:i] + strings.ToUpper(s[i:i+1]) + s[i+1:]} {
		if _, err := ledger.ParseHash(other); !errors.Is(err, ledger.ErrCorrupt) {
			t.Errorf("ParseHash(%s) = %v, want ErrCorrupt", other, err)
		}
		var head ledger.Head
		if err := json.Unmarshal([]byte(`{"seq":1,"hash":"`+other+`"}`), &head); err == nil {
			t.Errorf("json.Unmarshal took hash %s", other)
		}
	}
}

// TestDecoder: a Decoder decodes what Decode does, from one reused buffer
// (as a scan hands records), and each event's Data stays its own: not the
// buffer's, and not overwritten by later events, even when appended to.
func TestDecoder(t *testing.T) {
	var dec ledger.Decoder
	buf := make([]byte, 0, 1<<20) // reused for every record, as ScanRaw's chunk
	var got, want []ledger.Event
	sizes := []int{0, 1, 37, 300, 4000, 16 << 10, 16<<10 + 1, 200_000, 5}
	for i := range 600 {
		e := sampleEvent()
		e.Seq = uint64(i + 1)
		e.Data = json.RawMessage(`"` + strings.Repeat(string(rune('a'+i%26)), sizes[i%len(sizes)]) + `"`)
		buf = ledger.Encode(buf[:0], &e)
		d, err := dec.Decode(buf)
		if err != nil {
			t.Fatal(err)
		}
		w, err := ledger.Decode(buf)
		if err != nil {
			t.Fatal(err)
		}
		clear(buf) // the scan moves on: nothing decoded may alias it
		got, want = append(got, d), append(want, w)
		if i > 0 {
			// An append to the previous event's data reallocates it
			// rather than write over this one's.
			prev := &got[i-1]
			_ = append(prev.Data, '!')
		}
	}
	for i := range got {
		g, w := got[i], want[i]
		if !bytes.Equal(g.Data, w.Data) || g.Seq != w.Seq || g.Hash != w.Hash || g.Stream != w.Stream || g.Type != w.Type ||
			g.Merchant != w.Merchant || g.Correlation != w.Correlation || !g.Time.Equal(w.Time) || strings.Join(g.Claims, ",") != strings.Join(w.Claims, ",") {
			t.Fatalf("event %d: Decoder gave %+v, Decode %+v", i, g, w)
		}
	}
	if _, err := dec.Decode([]byte{ledger.FormatV1, 1, 2}); !errors.Is(err, ledger.ErrCorrupt) {
		t.Errorf("a short record: %v, want %v", err, ledger.ErrCorrupt)
	}
}
