package ids

import (
	"bytes"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

// TestEntropyIsCryptoRand: ids' random bits come from crypto/rand.
func TestEntropyIsCryptoRand(t *testing.T) {
	if entropy != rand.Reader {
		t.Fatalf("entropy is %T, not crypto/rand.Reader", entropy)
	}
}

// TestEveryIDReadsItsOwnBits: each id reads 80 bits of its own from the
// entropy source, even in the same millisecond as the last one (no
// monotonic increment from the previous id), and never makes do without.
func TestEveryIDReadsItsOwnBits(t *testing.T) {
	src := []byte{
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0f,
		0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a,
		0x01, 0x02, 0x03, // too few for another id
	}
	saved := entropy
	entropy = bytes.NewReader(src)
	t.Cleanup(func() { entropy = saved })

	at := time.Date(2026, 2, 25, 12, 0, 0, 0, time.UTC)
	a, err := At(at)
	if err != nil {
		t.Fatal(err)
	}
	b, err := At(at) // the same millisecond
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a[6:], src[:10]) || !bytes.Equal(b[6:], src[10:20]) {
		t.Fatalf("ids %x and %x: random parts are not the source's next 80 bits each", a, b)
	}
	if a.Time() != ulid.Timestamp(at) || b.Time() != ulid.Timestamp(at) {
		t.Fatalf("ids stamped %d and %d, want %d", a.Time(), b.Time(), ulid.Timestamp(at))
	}
	before := ulid.Now()
	c := New()
	if !bytes.Equal(c[6:], src[20:30]) {
		t.Fatalf("New's random part %x, want %x", c[6:], src[20:30])
	}
	if c.Time() < before || c.Time() > ulid.Now() {
		t.Fatalf("New stamped %d, not now", c.Time())
	}

	for _, bad := range []time.Time{{}, time.Unix(0, 0).Add(-time.Millisecond), time.Date(10890, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if id, err := At(bad); !errors.Is(err, ulid.ErrBigTime) {
			t.Fatalf("At(%s) = %s, %v; want ulid.ErrBigTime", bad, id, err)
		}
	}

	defer func() {
		if recover() == nil {
			t.Fatal("New made an id from 3 bytes of entropy")
		}
	}()
	New()
}

// TestConcurrentIDsAreUnique: ids made at once from many goroutines (many
// in one millisecond) are all different.
func TestConcurrentIDsAreUnique(t *testing.T) {
	const workers, each = 8, 2000
	made := make([][]ulid.ULID, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				made[w] = append(made[w], New())
			}
		})
	}
	wg.Wait()
	seen := make(map[ulid.ULID]bool, workers*each)
	for _, ids := range made {
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("id %s made twice", id)
			}
			seen[id] = true
		}
	}
}
