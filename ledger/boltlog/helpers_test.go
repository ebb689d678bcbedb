package boltlog_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/ledger"
)

var (
	ctx = context.Background()
	t0  = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
)

var evCount atomic.Int64

// ev is a small valid event of type typ, with optional claims.
func ev(typ string, claims ...string) ledger.NewEvent {
	n := evCount.Add(1)
	return ledger.NewEvent{
		ID:          ulid.Make(),
		Type:        typ,
		Time:        t0.Add(time.Duration(n) * time.Millisecond),
		Merchant:    "m-1",
		Correlation: fmt.Sprintf("req-%d", n),
		Claims:      claims,
		Data:        json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)),
	}
}

func evs(typ string, n int) []ledger.NewEvent {
	out := make([]ledger.NewEvent, n)
	for i := range out {
		out[i] = ev(typ)
	}
	return out
}

// countProjector counts events per type in its own bucket, with its
// checkpoint in the same transaction, and fails on the type poison (or
// panics on the type panic).
type countProjector struct {
	bucket string
	poison string
	inits  int
}

var errPoison = errors.New("poisoned event")

func (p *countProjector) Init(tx *bbolt.Tx) (uint64, error) {
	p.inits++
	b, err := tx.CreateBucketIfNotExists([]byte(p.bucket))
	if err != nil {
		return 0, err
	}
	if v := b.Get([]byte("_applied")); v != nil {
		return binary.BigEndian.Uint64(v), nil
	}
	return 0, nil
}

func (p *countProjector) Apply(tx *bbolt.Tx, events []ledger.Event) error {
	b := tx.Bucket([]byte(p.bucket))
	for _, e := range events {
		if p.poison != "" && e.Type == p.poison {
			return fmt.Errorf("sequence %d: %w", e.Seq, errPoison)
		}
		if e.Type == "panic" {
			panic("projector bug")
		}
		var n uint64
		if v := b.Get([]byte(e.Type)); v != nil {
			n = binary.BigEndian.Uint64(v)
		}
		if err := b.Put([]byte(e.Type), binary.BigEndian.AppendUint64(nil, n+1)); err != nil {
			return err
		}
		if err := b.Put([]byte("_applied"), binary.BigEndian.AppendUint64(nil, e.Seq)); err != nil {
			return err
		}
	}
	return nil
}

// count reads the projector's count of a type and its checkpoint.
func (p *countProjector) count(t *testing.T, db *bbolt.DB, typ string) (n, applied uint64) {
	t.Helper()
	err := db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(p.bucket))
		if b == nil {
			return errors.New("no projector bucket")
		}
		if v := b.Get([]byte(typ)); v != nil {
			n = binary.BigEndian.Uint64(v)
		}
		if v := b.Get([]byte("_applied")); v != nil {
			applied = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, applied
}

// within fails the test if ch does not deliver before the deadline.
func within[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("timed out after %s waiting for %s", d, what)
		panic("unreachable")
	}
}
