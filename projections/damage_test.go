package projections_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
	"github.com/payledger/payledger/projections"
)

// TestViewsDamagedPage: a damaged page of the due index made bbolt panic in
// Due and NextDue, which the expiry scheduler calls on its own goroutine,
// where nothing recovers: the process died. Every read of the views is
// guarded: Due fails with ErrDamaged (and ledger.ErrCorrupt), NextDue says
// nothing is due, and Damaged remembers the first.
func TestViewsDamagedPage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	st := openLog(t, path, &projections.Projector{})
	g := newGen()
	mustAppend(t, st, g.merchant("m1", "2"))
	for i := range 200 {
		_, w := g.invoice("m1", fmt.Sprintf("o-%d", i), "1500.00", "UAH", "41.50", "2")
		mustAppend(t, st, w)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	pageSize, _, first := boltlogtest.BucketPages(t, path, "v_due")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for id := range first {
		b[int(id)*pageSize+8] ^= 0xff // every leaf's type
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err = boltlog.Open(path, &boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	v := projections.NewViews(st.DB())
	if err := v.Damaged(); err != nil {
		t.Fatalf("Damaged before any read = %v", err)
	}
	if cp := v.Checkpoint(); cp != st.Head().Seq {
		t.Fatalf("checkpoint %d, head %d: a sound page reads", cp, st.Head().Seq)
	}
	_, err = v.Due(time.Now().Add(24*time.Hour), projections.Due{}, 10)
	if !errors.Is(err, boltlog.ErrDamaged) || !errors.Is(err, ledger.ErrCorrupt) {
		t.Errorf("Due on a damaged page = %v, want ErrDamaged", err)
	}
	if at, ok := v.NextDue(); ok {
		t.Errorf("NextDue on a damaged page = %v", at)
	}
	if err := v.Damaged(); !errors.Is(err, boltlog.ErrDamaged) {
		t.Errorf("Damaged after a damaged read = %v", err)
	}
}
