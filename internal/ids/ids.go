// Package ids makes the ULIDs payledger hands out: invoice, payment, widget,
// merchant, API key, command and request ids, and the other ids its
// adapters choose.
//
// An invoice's or a widget's id is the only thing guarding its hosted page,
// so every id takes its 80 random bits from crypto/rand, afresh for each id.
// ulid.Make draws them from a math/rand stream seeded once from the start
// time, which one published id (a request id, say) lets anyone recover and
// run forward; ulid.Monotonic makes an id in the same millisecond as the
// last one by adding a small increment to it. Neither is used.
package ids

import (
	"crypto/rand"
	"fmt"
	"io"
	"time"

	"github.com/oklog/ulid/v2"
)

// entropy is where ids' random bits come from: crypto/rand, which is safe
// for concurrent use, so making an id takes no lock. Only a test changes it.
var entropy io.Reader = rand.Reader

// New returns a new id stamped with the current time.
func New() ulid.ULID {
	id, err := stamped(ulid.Now())
	if err != nil { // now is always within ULID's range
		panic(err)
	}
	return id
}

// At returns a new id stamped with t's millisecond, for a caller that keeps
// its own clock (the expiry scheduler, the checkpointer).
//
// Errors: ulid.ErrBigTime if no ULID can stamp t (before 1970, after 10889).
func At(t time.Time) (ulid.ULID, error) {
	if t.Before(time.Unix(0, 0)) {
		return ulid.ULID{}, fmt.Errorf("ids: stamp %s: %w", t, ulid.ErrBigTime)
	}
	return stamped(ulid.Timestamp(t))
}

func stamped(ms uint64) (ulid.ULID, error) {
	var id ulid.ULID
	if err := id.SetTime(ms); err != nil {
		return id, fmt.Errorf("ids: stamp %d ms: %w", ms, err)
	}
	// crypto/rand does not fail (it ends the program first); another
	// reader is a test's.
	if _, err := io.ReadFull(entropy, id[6:]); err != nil {
		panic(fmt.Sprintf("ids: entropy: %v", err))
	}
	return id, nil
}
