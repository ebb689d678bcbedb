package ledger_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/ledger"
)

// chain builds n sealed records over streams s0..s(k-1), round robin.
func chain(n, k int) ([][]byte, []ledger.Event) {
	recs := make([][]byte, 0, n)
	evs := make([]ledger.Event, 0, n)
	var prev ledger.Hash
	versions := map[string]uint64{}
	for i := 1; i <= n; i++ {
		stream := fmt.Sprintf("s%d", i%k)
		versions[stream]++
		ne := ledger.NewEvent{ID: ulid.Make(), Type: "t", Time: t0, Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
		rec, e := ledger.Seal(nil, stream, uint64(i), versions[stream], prev, &ne)
		prev = e.Hash
		recs = append(recs, rec)
		evs = append(evs, e)
	}
	return recs, evs
}

func TestVerifierAcceptsChain(t *testing.T) {
	recs, evs := chain(50, 3)
	raw, dec := ledger.NewVerifier(), ledger.NewVerifier()
	for i := range recs {
		if err := raw.CheckRaw(recs[i]); err != nil {
			t.Fatalf("CheckRaw %d: %v", i+1, err)
		}
		if err := dec.Check(&evs[i]); err != nil {
			t.Fatalf("Check %d: %v", i+1, err)
		}
	}
	want := ledger.Head{Seq: 50, Hash: evs[49].Hash}
	if raw.Head() != want || dec.Head() != want || raw.Count() != 50 {
		t.Fatalf("heads %v %v, want %v", raw.Head(), dec.Head(), want)
	}
	if raw.Streams() != 3 || raw.StreamVersion("s1") != 17 || raw.StreamVersion("nope") != 0 {
		t.Fatalf("streams %d, s1 at %d", raw.Streams(), raw.StreamVersion("s1"))
	}
}

func TestVerifierNamesFirstBadSequence(t *testing.T) {
	recs, evs := chain(10, 2)
	otherChain, _ := chain(10, 2)
	wrongVersion := func() []byte {
		e := evs[6]
		ne := ledger.NewEvent{ID: e.ID, Type: e.Type, Time: e.Time, Data: e.Data}
		rec, _ := ledger.Seal(nil, e.Stream, e.Seq, e.Version+1, e.PrevHash, &ne)
		return rec
	}
	cases := []struct {
		name    string
		mutate  func(recs [][]byte) [][]byte
		seq     uint64
		wantErr error
	}{
		{"tampered byte", func(r [][]byte) [][]byte { r[4] = flip(r[4], 90); return r }, 5, ledger.ErrCorrupt},
		{"dropped record", func(r [][]byte) [][]byte { return append(r[:3], r[4:]...) }, 4, ledger.ErrChainBroken},
		{"swapped records", func(r [][]byte) [][]byte { r[2], r[3] = r[3], r[2]; return r }, 3, ledger.ErrChainBroken},
		{"foreign record", func(r [][]byte) [][]byte { r[5] = otherChain[5]; return r }, 6, ledger.ErrChainBroken},
		{"wrong stream version", func(r [][]byte) [][]byte { r[6] = wrongVersion(); return r }, 7, ledger.ErrChainBroken},
		{"newer format", func(r [][]byte) [][]byte { r[8] = setByte(r[8], 0, 2); return r }, 9, ledger.ErrUnsupportedVersion},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs := c.mutate(append([][]byte(nil), recs...))
			v := ledger.NewVerifier()
			var err error
			for _, r := range rs {
				if err = v.CheckRaw(r); err != nil {
					break
				}
			}
			var ve *ledger.VerifyError
			if !errors.As(err, &ve) || ve.Seq != c.seq || !errors.Is(err, c.wantErr) {
				t.Fatalf("got %v, want *VerifyError at %d wrapping %v", err, c.seq, c.wantErr)
			}
		})
	}
}

func TestVerifierCheckDetectsEditedEvent(t *testing.T) {
	_, evs := chain(3, 1)
	v := ledger.NewVerifier()
	if err := v.Check(&evs[0]); err != nil {
		t.Fatal(err)
	}
	e := evs[1]
	e.Data = json.RawMessage(`{"i":999}`)
	var ve *ledger.VerifyError
	if err := v.Check(&e); !errors.As(err, &ve) || ve.Seq != 2 || !errors.Is(err, ledger.ErrCorrupt) {
		t.Fatalf("Check of an edited event = %v", err)
	}
}

func BenchmarkCheckRaw(b *testing.B) {
	recs, _ := chain(4096, 64)
	b.ReportAllocs()
	b.SetBytes(int64(len(recs[0])))
	v := ledger.NewVerifier()
	for i := 0; i < b.N; i++ {
		if i%len(recs) == 0 {
			v = ledger.NewVerifier()
		}
		if err := v.CheckRaw(recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVerifierCheckRefusesTimeOutsideRecordRange: a record stores its time as
// int64 Unix nanoseconds, which wrap every 2^64 ns (about 584 years). An
// event parsed from an export with its time moved by exactly that much
// encodes to the same bytes and hash as the logged one, so Check must refuse
// a time the record cannot hold rather than verify the altered line.
func TestVerifierCheckRefusesTimeOutsideRecordRange(t *testing.T) {
	_, evs := chain(3, 1)
	v := ledger.NewVerifier()
	if err := v.Check(&evs[0]); err != nil {
		t.Fatal(err)
	}
	e := evs[1]
	// Add 2^64 ns: three steps, as a Duration holds at most 2^63-1.
	e.Time = e.Time.Add(1<<63 - 1).Add(1<<63 - 1).Add(2)
	if e.Time.Equal(evs[1].Time) || e.Time.UnixNano() != evs[1].Time.UnixNano() {
		t.Fatalf("fixture: %s does not alias %s", e.Time, evs[1].Time)
	}
	// The altered event survives the export's JSON form unchanged.
	line, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var parsed ledger.Event
	if err := json.Unmarshal(line, &parsed); err != nil {
		t.Fatal(err)
	}
	var ve *ledger.VerifyError
	if err := v.Check(&parsed); !errors.As(err, &ve) || ve.Seq != 2 || !errors.Is(err, ledger.ErrCorrupt) {
		t.Fatalf("Check of an event %s moved by 2^64 ns = %v, want a *VerifyError at 2 wrapping ErrCorrupt", parsed.Time, err)
	}
	if err := v.Check(&evs[1]); err != nil {
		t.Fatalf("Check of the real event after the refusal: %v", err)
	}
}
