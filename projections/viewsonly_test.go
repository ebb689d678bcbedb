package projections_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/projections"
)

// viewBuckets are what a views-only projector keeps; the other v_ buckets
// (indexes, counters, balances) it leaves empty.
var viewBuckets = map[string]bool{
	"v_invoices": true, "v_payments": true, "v_widgets": true, "v_merchants": true,
	"v_api_keys": true, "v_api_key_ids": true, "v_rates": true,
}

// TestViewsOnly: a ViewsOnly projector, fed the log in appends of every
// size, holds exactly the full projection's views, byte for byte, and no
// index, counter or balance; its meta says what it is, and Init drops the
// views of the other kind, so that its owner replays the log into them.
func TestViewsOnly(t *testing.T) {
	st := newLog(t)
	appendAll(t, st, workload(newGen(), rand.New(rand.NewPCG(5, 5)), []string{"m1", "m2", "m3"}, 600, 23))

	db, err := bbolt.Open(filepath.Join(t.TempDir(), "webhooks.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p := &projections.Projector{ViewsOnly: true}
	if err := db.Update(func(tx *bbolt.Tx) error { _, err := p.Init(tx); return err }); err != nil {
		t.Fatal(err)
	}
	var batch []ledger.Event
	apply := func() {
		if err := db.Update(func(tx *bbolt.Tx) error { return p.Apply(tx, batch) }); err != nil {
			t.Fatal(err)
		}
		batch = batch[:0]
	}
	n := 0
	for e, err := range st.Events(context.Background(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, e)
		if n++; len(batch) >= 1+n%37 {
			apply()
		}
	}
	apply()

	full, lean := 0, 0
	if err := st.DB().View(func(ftx *bbolt.Tx) error {
		return db.View(func(vtx *bbolt.Tx) error {
			return ftx.ForEach(func(name []byte, fb *bbolt.Bucket) error {
				if !strings.HasPrefix(string(name), "v_") || string(name) == "v_meta" {
					return nil
				}
				vb := vtx.Bucket(name)
				if vb == nil {
					t.Errorf("views-only database lacks bucket %s", name)
					return nil
				}
				if !viewBuckets[string(name)] {
					if k, _ := vb.Cursor().First(); k != nil {
						t.Errorf("views-only database has %s key %q", name, k)
					}
					return nil
				}
				return fb.ForEach(func(k, v []byte) error {
					full++
					if got := vb.Get(k); !bytes.Equal(got, v) {
						t.Errorf("%s %q: views-only %s, full %s", name, k, got, v)
					} else {
						lean++
					}
					return nil
				})
			})
		})
	}); err != nil {
		t.Fatal(err)
	}
	if full == 0 || lean != full {
		t.Fatalf("%d of %d view keys equal", lean, full)
	}
	if cp := projections.NewViews(db).Checkpoint(); cp != st.Head().Seq {
		t.Fatalf("views-only checkpoint %d, head %d", cp, st.Head().Seq)
	}

	// Another kind's projector drops the views and starts from 0; the
	// same kind keeps them.
	init := func(p *projections.Projector) uint64 {
		var cp uint64
		if err := db.Update(func(tx *bbolt.Tx) error { var err error; cp, err = p.Init(tx); return err }); err != nil {
			t.Fatal(err)
		}
		return cp
	}
	if cp := init(&projections.Projector{ViewsOnly: true}); cp != st.Head().Seq {
		t.Fatalf("views-only Init again: checkpoint %d, want %d", cp, st.Head().Seq)
	}
	if cp := init(&projections.Projector{}); cp != 0 {
		t.Fatalf("full Init of a views-only database: checkpoint %d, want 0", cp)
	}
	if err := db.View(func(tx *bbolt.Tx) error {
		if k, _ := tx.Bucket([]byte("v_invoices")).Cursor().First(); k != nil {
			t.Errorf("invoice %q survived a change of kind", k)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if cp := init(&projections.Projector{ViewsOnly: true}); cp != 0 {
		t.Fatalf("views-only Init of a full database: checkpoint %d, want 0", cp)
	}
}
