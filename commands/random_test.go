package commands_test

import (
	"context"
	"encoding/json"
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
	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
)

// expected are the business refusals a random command may meet; anything
// else fails the test.
var expected = []error{
	commands.ErrValidation, commands.ErrInvalidTransition, commands.ErrInvoiceNotPayable,
	commands.ErrDuplicateExternalID, commands.ErrNotDue, commands.ErrWidgetNotActive,
	commands.ErrDealsDisabled, commands.ErrMethodInvalid, commands.ErrCurrencyInvalid,
	commands.ErrNotFound, commands.ErrDuplicatePaymentID,
}

// TestRandomizedCommands issues 100,000 random commands from concurrent
// workers against a real log with the projections inline, then checks that
// views rebuilt from the log equal the live ones, that postings sum to zero
// per currency, that no invoice was paid twice, and that every balance is
// the sum of its postings. (-short: 10,000 commands.)
func TestRandomizedCommands(t *testing.T) {
	total := 100_000
	if testing.Short() {
		total = 10_000
	}
	dir := t.TempDir()
	store, err := boltlog.Open(filepath.Join(dir, "ledger.db"), &boltlog.Options{Projectors: []boltlog.Projector{&projections.Projector{}}})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	svc := commands.NewService(store, commands.Config{})
	views := projections.NewViews(store.DB())
	ctx := context.Background()

	var clock atomic.Int64 // seconds after t0; advances with the commands
	meta := func() commands.Meta {
		return commands.Meta{CommandID: ulid.Make(), Time: t0.Add(time.Duration(clock.Load()) * time.Second), Correlation: "sim"}
	}
	merchants := []string{"ma", "mb", "mc"}
	for i, m := range merchants {
		name, comm := "Shop "+m, []string{"0", "2", "3.5"}[i]
		if err := svc.RegisterMerchant(ctx, commands.RegisterMerchant{Meta: meta(), MerchantID: m,
			Settings: commands.MerchantSettings{Name: &name, CommissionPercent: &comm},
			Key:      commands.APIKeyIssued{KeyID: "k-" + m, KeyHash: hex64('a' + byte(i)), Prefix: "pl_" + m},
			Secret:   commands.SecretMaterial{SecretHash: hex64('d' + byte(i))}}); err != nil {
			t.Fatal(err)
		}
	}
	rates := map[string]decimal.Decimal{"UAH": dec("41.50"), "USD": dec("1"), "EUR": dec("0.92"), "NGN": dec("1550")}
	for cur, r := range rates {
		if _, err := svc.SetRate(ctx, commands.SetRate{Meta: meta(), Currency: cur, Rate: r.String()}); err != nil {
			t.Fatal(err)
		}
	}
	methods := map[string]string{"UAH": "visamaster.uah", "USD": "visamaster.usd", "NGN": "bank.ngn"}
	currencies := []string{"UAH", "USD", "EUR", "NGN"}

	// Shared pools of ids, grown by the workers.
	var mu sync.Mutex
	var invoices []struct{ id, merchant string }
	var payments []string
	var widgets []string
	pick := func(r *rand.Rand, n int) int { return r.IntN(n) }

	var done atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	const workers = 32
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 42))
			for done.Add(1) <= int64(total) {
				if r.IntN(50) == 0 {
					clock.Add(int64(r.IntN(120)))
				}
				err := randomCommand(ctx, r, svc, meta, merchants, currencies, methods, rates, &mu, &invoices, &payments, &widgets, pick)
				if err != nil && !isExpected(err) {
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
	if _, err := store.Verify(ctx); err != nil {
		t.Fatalf("log does not verify: %v", err)
	}

	// 1. Views rebuilt from the log equal the live ones.
	dst, err := bbolt.Open(filepath.Join(dir, "rebuilt.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := projections.Rebuild(ctx, store.Events(ctx, 1), dst, time.Time{}); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if err := projections.Compare(store.DB(), dst); err != nil {
		t.Fatalf("rebuilt views differ from the live ones: %v", err)
	}

	// 2-4. From the log itself: postings per currency, paid-once, balances.
	sums := map[string]decimal.Decimal{}
	balances := map[string]decimal.Decimal{} // account|currency
	paid := map[string]int{}
	events, receipts := 0, 0
	for ev, err := range store.Events(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		events++
		switch ev.Type {
		case commands.TypeInvoicePaid:
			paid[ev.Stream]++
			if paid[ev.Stream] > 1 {
				t.Fatalf("invoice %s paid twice", ev.Stream)
			}
		case commands.TypePaymentProcessed:
			var d commands.PaymentProcessed
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				t.Fatal(err)
			}
			for _, p := range d.Postings {
				sums[p.Currency] = sums[p.Currency].Add(p.Amount)
				balances[p.Account+"|"+p.Currency] = balances[p.Account+"|"+p.Currency].Add(p.Amount)
			}
		case commands.TypePaymentReceiptHeld:
			var d commands.PaymentReceiptHeld
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				t.Fatal(err)
			}
			receipts++
			for _, p := range d.Postings {
				if !strings.HasPrefix(p.Account, commands.AccountClearing) && p.Account != commands.AccountSuspense+":"+ev.Merchant {
					t.Fatalf("receipt on %s posts to %s", ev.Stream, p.Account)
				}
				sums[p.Currency] = sums[p.Currency].Add(p.Amount)
				balances[p.Account+"|"+p.Currency] = balances[p.Account+"|"+p.Currency].Add(p.Amount)
			}
		}
	}
	for cur, s := range sums {
		if !s.IsZero() {
			t.Fatalf("postings in %s sum to %s", cur, s)
		}
	}
	totals, err := views.PostingTotals()
	if err != nil {
		t.Fatal(err)
	}
	for cur, s := range totals {
		if !s.IsZero() {
			t.Fatalf("view: postings in %s sum to %s", cur, s)
		}
	}
	seen := 0
	for _, m := range append(merchants, "_") {
		bs, err := views.Balances(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			full := b.Account
			if m != "_" {
				full += ":" + m // merchant_* accounts are listed under their merchant
			}
			want := balances[full+"|"+b.Currency]
			if !b.Amount.Equal(want) && !b.Amount.Equal(want.Neg()) {
				t.Fatalf("balance %s %s = %s, postings sum to %s", full, b.Currency, b.Amount, want)
			}
			seen++
		}
	}
	if len(paid) == 0 || seen == 0 || receipts == 0 {
		t.Fatalf("the simulation paid no invoice (%d), recorded no receipt (%d) or has no balances (%d): it tested nothing", len(paid), receipts, seen)
	}
	t.Logf("%d commands, %d events, %d invoices paid, %d receipts held, %d balances checked", total, events, len(paid), receipts, seen)
}

func isExpected(err error) bool {
	for _, e := range expected {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func randomCommand(ctx context.Context, r *rand.Rand, svc *commands.Service, meta func() commands.Meta,
	merchants, currencies []string, methods map[string]string, rates map[string]decimal.Decimal,
	mu *sync.Mutex, invoices *[]struct{ id, merchant string }, payments, widgets *[]string, pick func(*rand.Rand, int) int) error {
	mu.Lock()
	nInv, nPay, nW := len(*invoices), len(*payments), len(*widgets)
	var inv struct{ id, merchant string }
	var pay, wid string
	if nInv > 0 {
		inv = (*invoices)[pick(r, nInv)]
	}
	if nPay > 0 {
		pay = (*payments)[pick(r, nPay)]
	}
	if nW > 0 {
		wid = (*widgets)[pick(r, nW)]
	}
	mu.Unlock()
	op := r.IntN(100)
	switch {
	case op < 25 || nInv == 0:
		cur := currencies[r.IntN(len(currencies))]
		amount := fmt.Sprintf("%d.%02d", 1+r.IntN(100000), r.IntN(100))
		if r.IntN(20) == 0 {
			amount = "-5" // refused
		}
		m := merchants[r.IntN(len(merchants))]
		id := ulid.Make()
		ext := fmt.Sprintf("o-%d", r.IntN(1<<30))
		created, err := svc.CreateInvoice(ctx, commands.CreateInvoice{Meta: meta(), InvoiceID: id, MerchantID: m,
			Amount: amount, Currency: cur, ExternalID: ext, CustomerID: "c", Rate: rates[cur]})
		if err == nil {
			mu.Lock()
			*invoices = append(*invoices, struct{ id, merchant string }{created.InvoiceID, m})
			mu.Unlock()
		}
		return err
	case op < 50:
		cur := "UAH"
		if c, err := svc.LoadInvoice(ctx, "", inv.id); err == nil {
			cur = c.Currency
		}
		method, ok := methods[cur]
		if !ok {
			method = "visamaster.usd" // a conversion to USD
		}
		p, _, err := svc.CreatePayment(ctx, commands.CreatePayment{Meta: meta(), PaymentID: ulid.Make(), InvoiceID: inv.id, Method: method, MethodRate: rates["USD"]})
		if err == nil {
			mu.Lock()
			*payments = append(*payments, p.PaymentID)
			mu.Unlock()
		}
		return err
	case op < 66 && nPay > 0:
		paid := ""
		switch r.IntN(10) {
		case 0:
			paid = "1.00" // usually an underpayment
		case 1:
			paid = "999999.00" // usually an overpayment
		}
		_, err := svc.ProcessPayment(ctx, commands.ProcessPayment{Meta: meta(), PaymentID: pay, PaidAmount: paid})
		return err
	case op < 70 && nPay > 0:
		// Money for a payment that may have ended CANCELLED, REJECTED,
		// ERROR or PROCESSED (else refused: ErrInvalidTransition).
		_, err := svc.HoldReceipt(ctx, commands.HoldReceipt{Meta: meta(), PaymentID: pay, PaidAmount: fmt.Sprintf("%d.%02d", 1+r.IntN(5000), r.IntN(100))})
		return err
	case op < 80 && nPay > 0:
		to := []string{commands.PaymentStatusConfirmed, commands.PaymentStatusRejected, commands.PaymentStatusCancelled, commands.PaymentStatusError}[r.IntN(4)]
		_, err := svc.TransitionPayment(ctx, commands.PaymentTransition{Meta: meta(), PaymentID: pay, Status: to})
		return err
	case op < 85:
		_, err := svc.CancelInvoice(ctx, commands.CancelInvoice{Meta: meta(), MerchantID: inv.merchant, InvoiceID: inv.id})
		return err
	case op < 90:
		_, err := svc.ExpireInvoice(ctx, commands.ExpireInvoice{Meta: meta(), InvoiceID: inv.id})
		return err
	case op < 94 || nW == 0:
		m := merchants[r.IntN(len(merchants))]
		c := commands.CreateWidget{Meta: meta(), MerchantID: m, NewID: ulid.Make(), Kind: commands.WidgetUnlimited, MerchantExternalID: "w"}
		if r.IntN(2) == 0 {
			c.Kind, c.FiatCurrency, c.FiatAmount = commands.WidgetSingle, "UAH", "250.00"
		}
		if r.IntN(3) == 0 {
			c.ExpiresAt = c.Time.Add(time.Duration(1+r.IntN(3600)) * time.Second)
		}
		w, err := svc.CreateWidget(ctx, c)
		if err == nil {
			mu.Lock()
			*widgets = append(*widgets, w.WidgetID)
			mu.Unlock()
		}
		return err
	case op < 98:
		created, err := svc.CreateWidgetInvoice(ctx, commands.CreateWidgetInvoice{Meta: meta(), InvoiceID: ulid.Make(), WidgetID: wid,
			Amount: "100.00", Method: "visamaster.uah", Rate: rates["UAH"]})
		if err == nil {
			mu.Lock()
			*invoices = append(*invoices, struct{ id, merchant string }{created.InvoiceID, created.MerchantID})
			mu.Unlock()
		}
		return err
	default:
		status := []string{commands.WidgetStatusDisabled, commands.WidgetStatusActive, commands.WidgetStatusExpired}[r.IntN(3)]
		_, err := svc.ChangeWidgetStatus(ctx, commands.ChangeWidgetStatus{Meta: meta(), WidgetID: wid, Status: status})
		return err
	}
}
