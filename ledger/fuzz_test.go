package ledger_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/payledger/payledger/ledger"
)

// FuzzDecode feeds arbitrary bytes to the record decoders, both as a whole
// record and as a body sealed with its correct hash (random bytes almost
// never carry a valid SHA-256, so without the second form the fuzzer would
// never get past the hash check). Nothing may panic, every failure is
// ErrCorrupt or ErrUnsupportedVersion, the three decoders agree, and what
// decodes re-encodes to exactly the same bytes (one encoding per event).
func FuzzDecode(f *testing.F) {
	recs, _ := chain(4, 2)
	for _, r := range recs {
		f.Add(r)
		f.Add(r[:len(r)-32])
	}
	e := sampleEvent()
	full := ledger.Encode(nil, &e)
	f.Add(full)
	f.Add(full[:len(full)-32])
	f.Add([]byte{})
	f.Add([]byte{ledger.FormatV1})
	f.Add([]byte{2, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		check(t, b)
		if len(b) > 0 {
			h := sha256.Sum256(b)
			check(t, append(append([]byte(nil), b...), h[:]...))
		}
	})
}

func check(t *testing.T, rec []byte) {
	e, err := ledger.Decode(rec)
	stream, merchant, oerr := ledger.RecordOwner(rec) // must not panic on anything
	if oerr != nil && !errors.Is(oerr, ledger.ErrCorrupt) && !errors.Is(oerr, ledger.ErrUnsupportedVersion) {
		t.Fatalf("RecordOwner error of no class: %v", oerr)
	}
	if err == nil && (oerr != nil || string(stream) != e.Stream || string(merchant) != e.Merchant) {
		t.Fatalf("RecordOwner = %q %q %v, Decode has %q %q", stream, merchant, oerr, e.Stream, e.Merchant)
	}
	_, _, _, _, cerr := ledger.CheckRecord(rec)
	verr := ledger.NewVerifier().CheckRaw(rec)
	if err != nil {
		if !errors.Is(err, ledger.ErrCorrupt) && !errors.Is(err, ledger.ErrUnsupportedVersion) {
			t.Fatalf("Decode error of no class: %v", err)
		}
		var ve *ledger.VerifyError
		if verr == nil || !errors.As(verr, &ve) {
			t.Fatalf("Decode failed (%v) but CheckRaw gave %v", err, verr)
		}
		return
	}
	if cerr != nil {
		t.Fatalf("Decode accepted a record CheckRecord refuses: %v", cerr)
	}
	if again := ledger.Encode(nil, &e); !bytes.Equal(again, rec) {
		t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, rec)
	}
	// A verifier fails only on the chain position (a fresh one expects seq 1).
	var ve *ledger.VerifyError
	if verr != nil && (!errors.As(verr, &ve) || !errors.Is(verr, ledger.ErrChainBroken)) {
		t.Fatalf("CheckRaw of a decodable record: %v", verr)
	}
	if e.Seq == 1 && e.Version == 1 && e.PrevHash.IsZero() && verr != nil {
		t.Fatalf("CheckRaw refused a valid first record: %v", verr)
	}
}
