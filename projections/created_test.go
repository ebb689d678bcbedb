package projections_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/projections"
)

// TestCreatedInvoiceView: the view the API builds from a create command's
// result equals the one the projector stored, field for field, for every
// invoice.created of a workload (API invoices) and an e-invoice with extra
// fields; compared before any later event changes the stored view.
func TestCreatedInvoiceView(t *testing.T) {
	st := newLog(t)
	g := newGen()
	mustAppend(t, st, g.merchant("m1", "2"))
	_, w := g.einvoice("m1")
	mustAppend(t, st, w)
	v := projections.NewViews(st.DB())
	n := 0
	check := func(e ledger.Event) {
		t.Helper()
		var d commands.InvoiceCreated
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		built, err := projections.CreatedInvoiceView(&d, e.Version, e.Time)
		if err != nil {
			t.Fatalf("seq %d: %v", e.Seq, err)
		}
		stored, err := v.Invoice(d.MerchantID, d.InvoiceID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(built, stored) {
			t.Errorf("seq %d:\nbuilt  %+v\nstored %+v", e.Seq, built, stored)
		}
		n++
	}
	for e, err := range st.Events(context.Background(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Type == commands.TypeInvoiceCreated {
			check(e)
		}
	}
	// API invoices, each checked right after its creation's append.
	for _, ws := range workload(g, rand.New(rand.NewPCG(3, 3)), []string{"m2"}, 300, 1) {
		for _, e := range mustAppend(t, st, ws...) {
			if e.Type == commands.TypeInvoiceCreated {
				check(e)
			}
		}
	}
	if n < 100 {
		t.Fatalf("checked %d invoices", n)
	}
	bad := commands.InvoiceCreated{MerchantID: "m1"}
	if _, err := projections.CreatedInvoiceView(&bad, 1, time.Now()); !isErr(err, projections.ErrMalformedEvent) {
		t.Errorf("no invoice id: %v", err)
	}
}
