package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/audit"
	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
	"github.com/payledger/payledger/stream"
)

// TestRunPassesTheDomainsLogs drives the real domain (commands.Service)
// with random concurrent commands, with version conflicts, late, under-,
// over- and duplicate payments, cancels, expiries and widget invoices,
// while a Checkpointer signs every 50 events: whatever the domain writes,
// the audit finds no fault, in the log or in its export.
func TestRunPassesTheDomainsLogs(t *testing.T) {
	total := 4000
	if testing.Short() {
		total = 1000
	}
	path := filepath.Join(t.TempDir(), "ledger.db")
	store, err := boltlog.Open(path, &boltlog.Options{Projectors: []boltlog.Projector{&projections.Projector{}}})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	cp := audit.NewCheckpointer(store, key, audit.CheckpointConfig{Every: 50, Interval: 10 * time.Millisecond})
	cpCtx, stopCP := context.WithCancel(context.Background())
	cpDone := make(chan error, 1)
	go func() { cpDone <- cp.Run(cpCtx) }()

	svc := commands.NewService(store, commands.Config{})
	ctx := context.Background()
	t0 := time.Date(2026, 2, 25, 12, 0, 0, 0, time.UTC)
	var clock atomic.Int64
	meta := func() commands.Meta {
		return commands.Meta{CommandID: ulid.Make(), Time: t0.Add(time.Duration(clock.Load()) * time.Second)}
	}
	merchants := []string{"ma", "mb"}
	for i, m := range merchants {
		name, comm := "Shop "+m, []string{"0", "2.5"}[i]
		if err := svc.RegisterMerchant(ctx, commands.RegisterMerchant{Meta: meta(), MerchantID: m,
			Settings: commands.MerchantSettings{Name: &name, CommissionPercent: &comm},
			Key:      commands.APIKeyIssued{KeyID: "k-" + m, KeyHash: strings.Repeat(string(rune('a'+i)), 64), Prefix: "pl_" + m},
			Secret:   commands.SecretMaterial{SecretHash: strings.Repeat(string(rune('d'+i)), 64)}}); err != nil {
			t.Fatal(err)
		}
	}
	rates := map[string]decimal.Decimal{"UAH": decimal.RequireFromString("41.50"), "USD": decimal.NewFromInt(1)}
	for cur, r := range rates {
		if _, err := svc.SetRate(ctx, commands.SetRate{Meta: meta(), Currency: cur, Rate: r.String()}); err != nil {
			t.Fatal(err)
		}
	}
	w, err := svc.CreateWidget(ctx, commands.CreateWidget{Meta: meta(), MerchantID: "ma", NewID: ulid.Make(), Kind: commands.WidgetUnlimited})
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu       sync.Mutex
		invoices []string
		payments []string
		done     atomic.Int64
		wg       sync.WaitGroup
		errc     = make(chan error, 8)
	)
	expected := []error{commands.ErrInvalidTransition, commands.ErrInvoiceNotPayable, commands.ErrNotDue, commands.ErrConflict, commands.ErrValidation, commands.ErrMethodInvalid, commands.ErrCurrencyInvalid}
	for wk := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(wk), 7))
			for done.Add(1) <= int64(total) {
				if r.IntN(40) == 0 {
					clock.Add(int64(r.IntN(600)))
				}
				mu.Lock()
				inv, pay := "", ""
				if len(invoices) > 0 {
					inv = invoices[r.IntN(len(invoices))]
				}
				if len(payments) > 0 {
					pay = payments[r.IntN(len(payments))]
				}
				mu.Unlock()
				var err error
				switch op := r.IntN(100); {
				case op < 25 || inv == "":
					var created *commands.Invoice
					created, err = svc.CreateInvoice(ctx, commands.CreateInvoice{Meta: meta(), InvoiceID: ulid.Make(), MerchantID: merchants[r.IntN(2)],
						Amount: fmt.Sprintf("%d.%02d", 1+r.IntN(5000), r.IntN(100)), Currency: "UAH", ExternalID: ulid.Make().String(), CustomerID: "c", Rate: rates["UAH"]})
					if err == nil {
						mu.Lock()
						invoices = append(invoices, created.InvoiceID)
						mu.Unlock()
					}
				case op < 30:
					var created *commands.Invoice
					created, err = svc.CreateWidgetInvoice(ctx, commands.CreateWidgetInvoice{Meta: meta(), InvoiceID: ulid.Make(), WidgetID: w.WidgetID,
						Amount: "100.00", Method: "visamaster.uah", Rate: rates["UAH"]})
					if err == nil {
						mu.Lock()
						invoices = append(invoices, created.InvoiceID)
						mu.Unlock()
					}
				case op < 55:
					method := []string{"visamaster.uah", "visamaster.usd"}[r.IntN(2)]
					var p *commands.Payment
					p, _, err = svc.CreatePayment(ctx, commands.CreatePayment{Meta: meta(), PaymentID: ulid.Make(), InvoiceID: inv, Method: method, MethodRate: rates["USD"]})
					if err == nil {
						mu.Lock()
						payments = append(payments, p.PaymentID)
						mu.Unlock()
					}
				case op < 80 && pay != "":
					paid := []string{"", "", "", "1.00", "999999.00"}[r.IntN(5)]
					_, err = svc.ProcessPayment(ctx, commands.ProcessPayment{Meta: meta(), PaymentID: pay, PaidAmount: paid})
				case op < 87 && pay != "":
					to := []string{commands.PaymentStatusConfirmed, commands.PaymentStatusRejected, commands.PaymentStatusCancelled, commands.PaymentStatusError}[r.IntN(4)]
					_, err = svc.TransitionPayment(ctx, commands.PaymentTransition{Meta: meta(), PaymentID: pay, Status: to})
				case op < 93:
					_, err = svc.CancelInvoice(ctx, commands.CancelInvoice{Meta: meta(), InvoiceID: inv})
				default:
					_, err = svc.ExpireInvoice(ctx, commands.ExpireInvoice{Meta: meta(), InvoiceID: inv})
				}
				if err != nil && !slicesContainsErr(expected, err) {
					select {
					case errc <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("unexpected error: %v", err)
	}
	stopCP()
	if err := <-cpDone; err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	ro, err := boltlog.Open(path, &boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	pub := []ed25519.PublicKey{cp.PublicKey()}
	r, err := audit.Run(ctx, ro, audit.Options{PublicKeys: pub, ScratchDir: t.TempDir()})
	if err != nil {
		t.Fatalf("audit of the domain's log: %v", err)
	}
	if r.Invoices["success"] == 0 || r.Checkpoints < 5 || r.PostingEvents == 0 || r.Views != "compared" || r.Uncovered != 1 {
		t.Fatalf("the simulation tested too little: %+v", r)
	}
	var exp []byte
	for e, err := range ro.Events(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		exp = append(stream.AppendJSON(exp, &e), '\n')
	}
	if _, err := audit.VerifyExport(ctx, bytes.NewReader(exp), audit.Options{PublicKeys: pub}); err != nil {
		t.Fatalf("audit of the export: %v", err)
	}
	t.Logf("%d events: invoices %v, %d with postings, %d checkpoints", r.Events, r.Invoices, r.PostingEvents, r.Checkpoints)
}

func slicesContainsErr(list []error, err error) bool {
	for _, e := range list {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
