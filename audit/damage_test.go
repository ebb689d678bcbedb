package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
)

// TestRunDamagedViewPage: the views share the log's file and are read
// around the Store, so a damaged page among them made bbolt panic in
// Run's views checks (verify crashed with a stack trace). Every page of a
// projected log is damaged in turn (its id, then its type): Run never
// panics, and a damaged view page is a projections fault saying the views
// are damaged.
func TestRunDamagedViewPage(t *testing.T) {
	b := newBuilder(t, true)
	b.merchant("m1")
	b.merchant("m2")
	b.rate()
	for i := range 40 {
		m := []string{"m1", "m2"}[i%2]
		inv := b.invoice(m, fmt.Sprintf("o-%d", i))
		if i%3 != 0 {
			b.pay(m, inv, b.payment(m, inv), false)
		}
	}
	if err := b.s.Close(); err != nil {
		t.Fatal(err)
	}
	pageSize, size, _ := boltlogtest.RecordPages(t, b.path)
	good, err := os.ReadFile(b.path)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ledger.db")
	viewFaults := 0
	for id := 2; id < size/pageSize; id++ {
		for _, off := range []int{0, 8} {
			damaged := append([]byte(nil), good[:size]...)
			damaged[id*pageSize+off] ^= 0xff
			if err := os.WriteFile(p, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := boltlog.Open(p, &boltlog.Options{ReadOnly: true})
			if err != nil {
				continue // the open's own reads found it
			}
			_, err = Run(context.Background(), s, Options{ScratchDir: t.TempDir()})
			s.Close()
			var f *Fault
			if errors.As(err, &f) && f.Check == CheckProjections && strings.Contains(f.Reason, "the views are damaged") {
				if !errors.Is(err, boltlog.ErrDamaged) {
					t.Errorf("page %d+%d: %v does not match ErrDamaged", id, off, err)
				}
				viewFaults++
			}
		}
	}
	if viewFaults == 0 {
		t.Fatal("no damaged page was found among the views")
	}
}
