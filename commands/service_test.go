package commands_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger/boltlog"
)

var _ commands.Store = (*boltlog.Store)(nil)

var t0 = time.Date(2026, 2, 25, 12, 0, 0, 0, time.UTC)

// env is a real log and service with one merchant (2% commission) and the
// UAH rate of seed 003.
type env struct {
	t     *testing.T
	store *boltlog.Store
	svc   *commands.Service
	ctx   context.Context
	m     string
	now   time.Time
	mu    sync.Mutex
}

func newEnv(t *testing.T) *env {
	t.Helper()
	store, err := boltlog.Open(filepath.Join(t.TempDir(), "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: store, svc: commands.NewService(store, commands.Config{}), ctx: context.Background(), m: "m1", now: t0}
	t.Cleanup(func() {
		if _, err := store.Verify(context.Background()); err != nil {
			t.Errorf("log does not verify: %v", err)
		}
		store.Close()
	})
	name, comm := "Shop", "2"
	err = e.svc.RegisterMerchant(e.ctx, commands.RegisterMerchant{Meta: e.meta(), MerchantID: e.m,
		Settings: commands.MerchantSettings{Name: &name, CommissionPercent: &comm},
		Key:      commands.APIKeyIssued{KeyID: "k1", KeyHash: hex64('a'), Prefix: "pl_aaaa"},
		Secret:   commands.SecretMaterial{SecretHash: hex64('b')}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func hex64(c byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

func (e *env) meta() commands.Meta {
	e.mu.Lock()
	defer e.mu.Unlock()
	return commands.Meta{CommandID: ulid.Make(), Time: e.now, Correlation: "test"}
}

func (e *env) at(d time.Duration) commands.Meta {
	m := e.meta()
	m.Time = t0.Add(d)
	return m
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func (e *env) invoice(ext string) *commands.Invoice {
	e.t.Helper()
	inv, err := e.svc.CreateInvoice(e.ctx, commands.CreateInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
		Amount: "1500.00", Currency: "UAH", ExternalID: ext, CustomerID: "user_12345", Purpose: "Premium",
		CallbackURL: "https://shop.example/webhooks", Rate: dec("41.50")})
	if err != nil {
		e.t.Fatal(err)
	}
	return inv
}

func (e *env) payment(inv *commands.Invoice) (*commands.Payment, uint64) {
	e.t.Helper()
	p, n, err := e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(), InvoiceID: inv.InvoiceID, Method: "visamaster.uah"})
	if err != nil {
		e.t.Fatal(err)
	}
	return p, n
}

func TestCreateInvoiceSeed003(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice("order-2026-0001")
	if got := commands.FormatRate(inv.ConversionRate); got != "41.50" {
		t.Errorf("conversion_rate = %q, want 41.50", got)
	}
	if got := inv.MerchantUSDT.StringFixed(2); got != "35.42" {
		t.Errorf("merchant_usdt = %q, want 35.42", got)
	}
	if !inv.ExpiresAt.Equal(t0.Add(20 * time.Minute)) {
		t.Errorf("expires_at = %v, want created + 20 minutes", inv.ExpiresAt)
	}
	if !inv.GrossUSDT.Equal(inv.MerchantUSDT.Add(inv.FeeUSDT)) {
		t.Errorf("gross %s != merchant %s + fee %s", inv.GrossUSDT, inv.MerchantUSDT, inv.FeeUSDT)
	}
	// Same external id again: refused, and nothing appended.
	head := e.store.Head()
	_, err := e.svc.CreateInvoice(e.ctx, commands.CreateInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
		Amount: "10.00", Currency: "UAH", ExternalID: "order-2026-0001", Rate: dec("41.50")})
	if !errors.Is(err, commands.ErrDuplicateExternalID) {
		t.Fatalf("duplicate external id: %v", err)
	}
	if e.store.Head() != head {
		t.Fatal("a refused command appended events")
	}
}

func TestCreateInvoiceRefusals(t *testing.T) {
	e := newEnv(t)
	base := func() commands.CreateInvoice {
		return commands.CreateInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m, Amount: "10.00",
			Currency: "UAH", ExternalID: "x-" + ulid.Make().String(), Rate: dec("41.50")}
	}
	cases := []struct {
		name  string
		edit  func(*commands.CreateInvoice)
		want  error
		field string
	}{
		{"negative", func(c *commands.CreateInvoice) { c.Amount = "-1.00" }, commands.ErrValidation, "amount"},
		{"zero", func(c *commands.CreateInvoice) { c.Amount = "0" }, commands.ErrValidation, "amount"},
		{"over-precise", func(c *commands.CreateInvoice) { c.Amount = "1.001" }, commands.ErrValidation, "amount"},
		{"huge", func(c *commands.CreateInvoice) { c.Amount = "10000000000000000000" }, commands.ErrValidation, "amount"},
		{"missing amount", func(c *commands.CreateInvoice) { c.Amount = "" }, commands.ErrValidation, "amount"},
		{"bad currency form", func(c *commands.CreateInvoice) { c.Currency = "uah" }, commands.ErrValidation, "currency_code"},
		{"unknown currency", func(c *commands.CreateInvoice) { c.Currency = "ZZZ" }, commands.ErrCurrencyInvalid, ""},
		{"no rate", func(c *commands.CreateInvoice) { c.Rate = decimal.Zero }, commands.ErrCurrencyInvalid, ""},
		{"http callback", func(c *commands.CreateInvoice) { c.CallbackURL = "http://shop.example/hook" }, commands.ErrValidation, "callback_url"},
		{"javascript success url", func(c *commands.CreateInvoice) { c.SuccessURL = "javascript:alert(1)" }, commands.ErrValidation, "success_url"},
		{"missing external id", func(c *commands.CreateInvoice) { c.ExternalID = "" }, commands.ErrValidation, "external_id"},
		{"unknown merchant", func(c *commands.CreateInvoice) { c.MerchantID = "nobody" }, commands.ErrNotFound, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.edit(&c)
			head := e.store.Head()
			_, err := e.svc.CreateInvoice(e.ctx, c)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var ve *commands.ValidationError
			if tc.field != "" && (!errors.As(err, &ve) || ve.Fields[0].Path != tc.field) {
				t.Fatalf("err = %v, want a detail for %s", err, tc.field)
			}
			if e.store.Head() != head {
				t.Fatal("a refused command appended events")
			}
		})
	}
	off := false
	if err := e.svc.ChangeMerchantSettings(e.ctx, commands.ChangeMerchantSettings{Meta: e.meta(), MerchantID: e.m, Settings: commands.MerchantSettings{InvoicingEnabled: &off}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateInvoice(e.ctx, base()); !errors.Is(err, commands.ErrDealsDisabled) {
		t.Fatalf("invoicing off: %v", err)
	}
}

// TestInvoiceCreditingNothingRefused: an invoice whose conversion credits
// the merchant nothing (merchant_usdt 0.00, all of it fee) is refused on its
// amount by every command that prices one, naming the least amount that
// credits a cent, and appends nothing; that least amount is taken.
// Seed 003's rate with 2%: 0.42 UAH is 0.010120 USDT, 0.00 after commission.
func TestInvoiceCreditingNothingRefused(t *testing.T) {
	e := newEnv(t)
	single, err := e.svc.CreateWidget(e.ctx, commands.CreateWidget{Meta: e.meta(), MerchantID: e.m, NewID: ulid.Make(),
		Kind: commands.WidgetSingle, FiatCurrency: "UAH", FiatAmount: "0.42"})
	if err != nil {
		t.Fatal(err)
	}
	unlimited, err := e.svc.CreateWidget(e.ctx, commands.CreateWidget{Meta: e.meta(), MerchantID: e.m, NewID: ulid.Make(),
		Kind: commands.WidgetUnlimited, Currencies: []string{"UAH"}})
	if err != nil {
		t.Fatal(err)
	}
	create := map[string]func(amount string) (*commands.Invoice, error){
		"create-invoice": func(amount string) (*commands.Invoice, error) {
			return e.svc.CreateInvoice(e.ctx, commands.CreateInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
				Amount: amount, Currency: "UAH", ExternalID: "tiny-" + ulid.Make().String(), Rate: dec("41.50")})
		},
		"e-invoice": func(amount string) (*commands.Invoice, error) {
			return e.svc.CreateEInvoice(e.ctx, commands.CreateEInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
				PaymentID: "tiny-" + ulid.Make().String(), Method: "visamaster.uah", Amount: amount, Rate: dec("41.50")})
		},
		"unlimited widget": func(amount string) (*commands.Invoice, error) {
			return e.svc.CreateWidgetInvoice(e.ctx, commands.CreateWidgetInvoice{Meta: e.meta(), InvoiceID: ulid.Make(),
				WidgetID: unlimited.WidgetID, Amount: amount, Method: "visamaster.uah", Rate: dec("41.50")})
		},
		"single widget": func(string) (*commands.Invoice, error) {
			return e.svc.CreateWidgetInvoice(e.ctx, commands.CreateWidgetInvoice{Meta: e.meta(), InvoiceID: ulid.Make(),
				WidgetID: single.WidgetID, Rate: dec("41.50")})
		},
	}
	for name, f := range create {
		t.Run(name, func(t *testing.T) {
			head := e.store.Head()
			inv, err := f("0.42")
			var ve *commands.ValidationError
			if !errors.As(err, &ve) || ve.Fields[0].Path != "amount" || ve.Fields[0].Type != "too_small" {
				if err == nil {
					t.Fatalf("0.42 UAH accepted with merchant_usdt %s, gross %s, fee %s", inv.MerchantUSDT.StringFixed(2), inv.GrossUSDT, inv.FeeUSDT)
				}
				t.Fatalf("err = %v, want an amount detail of type too_small", err)
			}
			if want := "at least 0.43 UAH at the current rate"; !strings.Contains(ve.Fields[0].Message, want) {
				t.Errorf("message %q does not say %q", ve.Fields[0].Message, want)
			}
			if e.store.Head() != head {
				t.Fatal("a refused command appended events")
			}
			if name == "single widget" {
				return
			}
			inv, err = f("0.43")
			if err != nil {
				t.Fatalf("0.43 UAH: %v", err)
			}
			if !inv.MerchantUSDT.Equal(dec("0.01")) {
				t.Fatalf("0.43 UAH: merchant_usdt %s, want 0.01", inv.MerchantUSDT)
			}
		})
	}
}

// TestUSDTInvoiceTooSmallNamesNoRate: a USDT invoice converts nothing, so
// its too-small message gives the least amount without "at the current
// rate (1.00 USDT per USDT)".
func TestUSDTInvoiceTooSmallNamesNoRate(t *testing.T) {
	e := newEnv(t)
	w, err := e.svc.CreateWidget(e.ctx, commands.CreateWidget{Meta: e.meta(), MerchantID: e.m, NewID: ulid.Make(),
		Kind: commands.WidgetUnlimited, Currencies: []string{"USDT"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.CreateWidgetInvoice(e.ctx, commands.CreateWidgetInvoice{Meta: e.meta(), InvoiceID: ulid.Make(),
		WidgetID: w.WidgetID, Amount: "0.01", Method: "usdt_trc20", Rate: dec("41.50")})
	var ve *commands.ValidationError
	if !errors.As(err, &ve) || ve.Fields[0].Type != "too_small" {
		t.Fatalf("0.01 USDT: %v, want an amount detail of type too_small", err)
	}
	if msg := ve.Fields[0].Message; !strings.Contains(msg, "at least 0.0") || strings.Contains(msg, "rate") {
		t.Errorf("message %q: want the least amount and no rate", msg)
	}
}

// TestInvoiceTransitions: every allowed and refused invoice transition.
func TestInvoiceTransitions(t *testing.T) {
	type step func(e *env, inv *commands.Invoice) error
	cancel := func(e *env, inv *commands.Invoice) error {
		_, err := e.svc.CancelInvoice(e.ctx, commands.CancelInvoice{Meta: e.meta(), MerchantID: e.m, InvoiceID: inv.InvoiceID})
		return err
	}
	expireAt := func(d time.Duration) step {
		return func(e *env, inv *commands.Invoice) error {
			_, err := e.svc.ExpireInvoice(e.ctx, commands.ExpireInvoice{Meta: e.at(d), InvoiceID: inv.InvoiceID})
			return err
		}
	}
	pay := func(e *env, inv *commands.Invoice) error {
		p, _, err := e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(), InvoiceID: inv.InvoiceID, Method: "visamaster.uah"})
		if err != nil {
			return err
		}
		_, err = e.svc.ProcessPayment(e.ctx, commands.ProcessPayment{Meta: e.meta(), PaymentID: p.PaymentID})
		return err
	}
	cases := []struct {
		name   string
		steps  []step
		errs   []error
		status string
	}{
		{"pending->cancelled", []step{cancel}, []error{nil}, commands.InvoiceStatusCancelled},
		{"pending->expired", []step{expireAt(20 * time.Minute)}, []error{nil}, commands.InvoiceStatusExpired},
		{"expire before due", []step{expireAt(19 * time.Minute)}, []error{commands.ErrNotDue}, commands.InvoiceStatusPending},
		{"pending->success", []step{pay}, []error{nil}, commands.InvoiceStatusSuccess},
		{"cancelled->cancelled", []step{cancel, cancel}, []error{nil, commands.ErrInvalidTransition}, commands.InvoiceStatusCancelled},
		{"cancelled->expired", []step{cancel, expireAt(time.Hour)}, []error{nil, commands.ErrInvalidTransition}, commands.InvoiceStatusCancelled},
		{"expired->cancelled", []step{expireAt(time.Hour), cancel}, []error{nil, commands.ErrInvalidTransition}, commands.InvoiceStatusExpired},
		{"success->cancelled", []step{pay, cancel}, []error{nil, commands.ErrInvalidTransition}, commands.InvoiceStatusSuccess},
		{"success->expired", []step{pay, expireAt(time.Hour)}, []error{nil, commands.ErrInvalidTransition}, commands.InvoiceStatusSuccess},
		{"payment on cancelled", []step{cancel, pay}, []error{nil, commands.ErrInvoiceNotPayable}, commands.InvoiceStatusCancelled},
		{"payment on paid", []step{pay, pay}, []error{nil, commands.ErrInvoiceNotPayable}, commands.InvoiceStatusSuccess},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			inv := e.invoice("o-1")
			for i, s := range tc.steps {
				if err := s(e, inv); !errors.Is(err, tc.errs[i]) {
					t.Fatalf("step %d: err = %v, want %v", i, err, tc.errs[i])
				}
			}
			got, err := e.svc.LoadInvoice(e.ctx, e.m, inv.InvoiceID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.status {
				t.Fatalf("status = %s, want %s", got.Status, tc.status)
			}
		})
	}
}

// TestPaymentTransitions: every pair of (from, to) statuses, allowed or refused.
func TestPaymentTransitions(t *testing.T) {
	all := []string{commands.PaymentStatusConfirmed, commands.PaymentStatusProcessed, commands.PaymentStatusRejected, commands.PaymentStatusCancelled, commands.PaymentStatusError}
	allowed := map[string]map[string]bool{
		commands.PaymentStatusPending:   {commands.PaymentStatusConfirmed: true, commands.PaymentStatusProcessed: true, commands.PaymentStatusCancelled: true, commands.PaymentStatusRejected: true, commands.PaymentStatusError: true},
		commands.PaymentStatusConfirmed: {commands.PaymentStatusProcessed: true, commands.PaymentStatusRejected: true, commands.PaymentStatusError: true},
	}
	move := func(e *env, id, to string) error {
		if to == commands.PaymentStatusProcessed {
			_, err := e.svc.ProcessPayment(e.ctx, commands.ProcessPayment{Meta: e.meta(), PaymentID: id})
			return err
		}
		_, err := e.svc.TransitionPayment(e.ctx, commands.PaymentTransition{Meta: e.meta(), PaymentID: id, Status: to})
		return err
	}
	froms := append([]string{commands.PaymentStatusPending}, all...)
	for _, from := range froms {
		for _, to := range all {
			t.Run(from+"->"+to, func(t *testing.T) {
				e := newEnv(t)
				p, _ := e.payment(e.invoice("o-1"))
				if from != commands.PaymentStatusPending {
					// Reach "from" by an allowed path.
					if from != commands.PaymentStatusConfirmed && allowed[commands.PaymentStatusPending][from] {
						if err := move(e, p.PaymentID, from); err != nil {
							t.Fatal(err)
						}
					} else if err := move(e, p.PaymentID, from); err != nil {
						t.Fatal(err)
					}
				}
				err := move(e, p.PaymentID, to)
				if allowed[from][to] {
					if err != nil {
						t.Fatalf("allowed transition refused: %v", err)
					}
				} else if !errors.Is(err, commands.ErrInvalidTransition) {
					t.Fatalf("refused transition: err = %v, want ErrInvalidTransition", err)
				}
				got, err := e.svc.LoadPayment(e.ctx, "", p.PaymentID)
				if err != nil {
					t.Fatal(err)
				}
				want := from
				if allowed[from][to] {
					want = to
				}
				if got.Status != want {
					t.Fatalf("status = %s, want %s", got.Status, want)
				}
			})
		}
	}
}

func TestWidgetTransitions(t *testing.T) {
	type tc struct {
		name  string
		steps []string // statuses to move to; "expired@+2h" style handled by at
		errs  []error
		final string
	}
	cases := []tc{
		{"active->disabled", []string{commands.WidgetStatusDisabled}, []error{nil}, commands.WidgetStatusDisabled},
		{"disabled->active", []string{commands.WidgetStatusDisabled, commands.WidgetStatusActive}, []error{nil, nil}, commands.WidgetStatusActive},
		{"active->active", []string{commands.WidgetStatusActive}, []error{commands.ErrInvalidTransition}, commands.WidgetStatusActive},
		{"active->expired", []string{commands.WidgetStatusExpired}, []error{nil}, commands.WidgetStatusExpired},
		{"disabled->expired", []string{commands.WidgetStatusDisabled, commands.WidgetStatusExpired}, []error{nil, nil}, commands.WidgetStatusExpired},
		{"expired->active", []string{commands.WidgetStatusExpired, commands.WidgetStatusActive}, []error{nil, commands.ErrInvalidTransition}, commands.WidgetStatusExpired},
		{"expired->disabled", []string{commands.WidgetStatusExpired, commands.WidgetStatusDisabled}, []error{nil, commands.ErrInvalidTransition}, commands.WidgetStatusExpired},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			w, err := e.svc.CreateWidget(e.ctx, commands.CreateWidget{Meta: e.meta(), MerchantID: e.m, NewID: ulid.Make(),
				Kind: commands.WidgetSingle, FiatCurrency: "UAH", FiatAmount: "100.00", ExpiresAt: t0.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range c.steps {
				meta := e.meta()
				if s == commands.WidgetStatusExpired {
					meta = e.at(2 * time.Hour)
				}
				if i > 0 && c.steps[i-1] == commands.WidgetStatusExpired {
					meta = e.at(3 * time.Hour)
				}
				_, err := e.svc.ChangeWidgetStatus(e.ctx, commands.ChangeWidgetStatus{Meta: meta, MerchantID: e.m, WidgetID: w.WidgetID, Status: s})
				if !errors.Is(err, c.errs[i]) {
					t.Fatalf("step %d (%s): err = %v, want %v", i, s, err, c.errs[i])
				}
			}
			got, err := e.svc.LoadWidget(e.ctx, e.m, w.WidgetID)
			if err != nil || got.Status != c.final {
				t.Fatalf("status = %v (%v), want %s", got, err, c.final)
			}
		})
	}
	t.Run("expire before due", func(t *testing.T) {
		e := newEnv(t)
		w, _ := e.svc.CreateWidget(e.ctx, commands.CreateWidget{Meta: e.meta(), MerchantID: e.m, NewID: ulid.Make(), Kind: commands.WidgetUnlimited, ExpiresAt: t0.Add(time.Hour)})
		_, err := e.svc.ChangeWidgetStatus(e.ctx, commands.ChangeWidgetStatus{Meta: e.at(time.Minute), WidgetID: w.WidgetID, Status: commands.WidgetStatusExpired})
		if !errors.Is(err, commands.ErrNotDue) {
			t.Fatalf("err = %v, want ErrNotDue", err)
		}
	})
	t.Run("invoice from widget", func(t *testing.T) {
		e := newEnv(t)
		id := "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
		w, err := e.svc.CreateWidget(e.ctx, commands.CreateWidget{Meta: e.meta(), MerchantID: e.m, WidgetID: id, Kind: commands.WidgetUnlimited, MerchantExternalID: "shop-42"})
		if err != nil || w.WidgetID != id {
			t.Fatalf("client-supplied id: %v %v", w, err)
		}
		if _, err := e.svc.CreateWidget(e.ctx, commands.CreateWidget{Meta: e.meta(), MerchantID: e.m, WidgetID: id, Kind: commands.WidgetUnlimited}); !errors.Is(err, commands.ErrDuplicateWidget) {
			t.Fatalf("duplicate widget id: %v", err)
		}
		inv, err := e.svc.CreateWidgetInvoice(e.ctx, commands.CreateWidgetInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), WidgetID: id, Amount: "250.00", Method: "visamaster.uah", Rate: dec("41.50")})
		if err != nil {
			t.Fatal(err)
		}
		if inv.WidgetID != id || inv.MerchantExternalID != "shop-42" || inv.Currency != "UAH" || inv.Source != commands.SourceWidget {
			t.Fatalf("widget invoice = %+v", inv.InvoiceCreated)
		}
		if _, err := e.svc.ChangeWidgetStatus(e.ctx, commands.ChangeWidgetStatus{Meta: e.meta(), MerchantID: e.m, WidgetID: id, Status: commands.WidgetStatusDisabled}); err != nil {
			t.Fatal(err)
		}
		_, err = e.svc.CreateWidgetInvoice(e.ctx, commands.CreateWidgetInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), WidgetID: id, Amount: "250.00", Method: "visamaster.uah", Rate: dec("41.50")})
		if !errors.Is(err, commands.ErrWidgetNotActive) {
			t.Fatalf("disabled widget: %v", err)
		}
	})
}

// TestProcessingAllocations covers late, partial, over- and duplicate payments.
func TestProcessingAllocations(t *testing.T) {
	t.Run("late after expiry is paid late", func(t *testing.T) {
		e := newEnv(t)
		inv := e.invoice("o")
		p, _ := e.payment(inv)
		if _, err := e.svc.ExpireInvoice(e.ctx, commands.ExpireInvoice{Meta: e.at(21 * time.Minute), InvoiceID: inv.InvoiceID}); err != nil {
			t.Fatal(err)
		}
		res, err := e.svc.ProcessPayment(e.ctx, commands.ProcessPayment{Meta: e.at(25 * time.Minute), PaymentID: p.PaymentID})
		if err != nil || res.Allocation != commands.AllocInvoice || !res.Late || !res.InvoicePaid {
			t.Fatalf("late payment: %+v %v", res, err)
		}
		got, _ := e.svc.LoadInvoice(e.ctx, e.m, inv.InvoiceID)
		if got.Status != commands.InvoiceStatusSuccess || !got.Late {
			t.Fatalf("invoice after late payment: %s late=%v", got.Status, got.Late)
		}
	})
	t.Run("underpaid goes to suspense", func(t *testing.T) {
		e := newEnv(t)
		inv := e.invoice("o")
		p, _ := e.payment(inv)
		res, err := e.svc.ProcessPayment(e.ctx, commands.ProcessPayment{Meta: e.meta(), PaymentID: p.PaymentID, PaidAmount: "1000.00"})
		if err != nil || res.Allocation != commands.AllocUnderpaid || res.InvoicePaid {
			t.Fatalf("underpayment: %+v %v", res, err)
		}
		got, _ := e.svc.LoadInvoice(e.ctx, e.m, inv.InvoiceID)
		if got.Status != commands.InvoiceStatusPending {
			t.Fatalf("underpaid invoice status %s", got.Status)
		}
	})
	t.Run("overpaid records the excess", func(t *testing.T) {
		e := newEnv(t)
		inv := e.invoice("o")
		p, _ := e.payment(inv)
		res, err := e.svc.ProcessPayment(e.ctx, commands.ProcessPayment{Meta: e.meta(), PaymentID: p.PaymentID, PaidAmount: "1600.00"})
		if err != nil || res.Allocation != commands.AllocInvoice || !res.InvoicePaid {
			t.Fatalf("overpayment: %+v %v", res, err)
		}
		evs, _ := e.store.ReadStream(e.ctx, commands.StreamID(commands.StreamInvoice, inv.InvoiceID), 1)
		last := evs[len(evs)-1]
		if last.Type != commands.TypeInvoicePaid || !strings.Contains(string(last.Data), `"overpaid":"100"`) {
			t.Fatalf("invoice.paid = %s", last.Data)
		}
	})
	t.Run("cancelled invoice goes to suspense", func(t *testing.T) {
		e := newEnv(t)
		inv := e.invoice("o")
		p, _ := e.payment(inv)
		if _, err := e.svc.CancelInvoice(e.ctx, commands.CancelInvoice{Meta: e.meta(), MerchantID: e.m, InvoiceID: inv.InvoiceID}); err != nil {
			t.Fatal(err)
		}
		res, err := e.svc.ProcessPayment(e.ctx, commands.ProcessPayment{Meta: e.meta(), PaymentID: p.PaymentID})
		if err != nil || res.Allocation != commands.AllocCancelled || res.InvoicePaid {
			t.Fatalf("payment on cancelled invoice: %+v %v", res, err)
		}
	})
}

// TestLateOnEveryPaymentAfterExpiry: docs/events.md says a payment.processed
// is flagged late when it comes after the invoice's expires_at, and the
// admin payment view shows it ("Paid after expires_at"). Only the payment
// that paid the invoice used to be: a duplicate, underpaid or
// cancelled-invoice payment processed after expiry showed late false. The
// invoice is late only when paid late.
func TestLateOnEveryPaymentAfterExpiry(t *testing.T) {
	ctx := context.Background()
	clock := &manualClock{now: t0}
	_, svc, views, meta := shopWithViews(t, clock)
	invoice := func(ext string) string { return newInvoice(t, svc, meta, ext) }
	pay := func(inv string) string {
		t.Helper()
		p, _, err := svc.CreatePayment(ctx, commands.CreatePayment{Meta: meta(), PaymentID: ulid.Make(), InvoiceID: inv, Method: "visamaster.uah"})
		if err != nil {
			t.Fatal(err)
		}
		return p.PaymentID
	}
	expired, cancelled := invoice("expired"), invoice("cancelled")
	early, under, paying, dup := pay(expired), pay(expired), pay(expired), pay(expired)
	onCancelled := pay(cancelled)
	process := func(id, amount, alloc string, late bool) {
		t.Helper()
		res, err := svc.ProcessPayment(ctx, commands.ProcessPayment{Meta: meta(), PaymentID: id, PaidAmount: amount})
		if err != nil || res.Allocation != alloc || res.Late != late {
			t.Fatalf("process %s: %+v (%v), want %s late %t", id, res, err, alloc, late)
		}
		v, err := views.PaymentByStream(commands.StreamID(commands.StreamPayment, id))
		if err != nil || v.Allocation != alloc || v.Late != late {
			t.Errorf("payment view of %s: %s late %t (%v), want %s late %t", id, v.Allocation, v.Late, err, alloc, late)
		}
	}
	clock.Advance(time.Minute)
	process(early, "5.00", commands.AllocUnderpaid, false)
	if _, err := svc.CancelInvoice(ctx, commands.CancelInvoice{Meta: meta(), MerchantID: "m1", InvoiceID: cancelled}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	if _, err := svc.ExpireInvoice(ctx, commands.ExpireInvoice{Meta: meta(), InvoiceID: expired}); err != nil {
		t.Fatal(err)
	}
	process(under, "5.00", commands.AllocUnderpaid, true)
	if v, _ := views.InvoicePublic(expired); v.Status != commands.InvoiceStatusExpired || v.Late {
		t.Errorf("invoice after a late underpayment: %s late %t, want expired, not late", v.Status, v.Late)
	}
	process(paying, "", commands.AllocInvoice, true)
	process(dup, "", commands.AllocDuplicate, true)
	process(onCancelled, "", commands.AllocCancelled, true)
	if v, _ := views.InvoicePublic(expired); v.Status != commands.InvoiceStatusSuccess || !v.Late || v.PaidBy != commands.StreamID(commands.StreamPayment, paying) {
		t.Errorf("invoice paid late: %s late %t by %s", v.Status, v.Late, v.PaidBy)
	}
	if v, _ := views.InvoicePublic(cancelled); v.Status != commands.InvoiceStatusCancelled || v.Late {
		t.Errorf("cancelled invoice: %s late %t, want cancelled, not late", v.Status, v.Late)
	}
}

// TestConcurrentProcessingPaysOnce is the conservation test: 100 goroutines
// process 100 payments of one invoice (as many as it takes,
// MaxPaymentsPerInvoice) at once; exactly one pays it, the merchant's available balance
// moves once, and the rest are held as duplicates.
func TestConcurrentProcessingPaysOnce(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice("o")
	const n = 100
	if n > commands.MaxPaymentsPerInvoice {
		t.Fatalf("an invoice takes %d payments, fewer than the %d this test processes", commands.MaxPaymentsPerInvoice, n)
	}
	ids := make([]string, n)
	for i := range ids {
		p, _ := e.payment(inv)
		ids[i] = p.PaymentID
	}
	var paid, dup atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res, err := e.svc.ProcessPayment(e.ctx, commands.ProcessPayment{Meta: e.meta(), PaymentID: id})
			if err != nil {
				errs <- err
				return
			}
			if res.InvoicePaid {
				paid.Add(1)
			} else if res.Allocation == commands.AllocDuplicate {
				dup.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("process: %v", err)
	}
	if paid.Load() != 1 || dup.Load() != n-1 {
		t.Fatalf("paid %d, duplicates %d; want 1 and %d", paid.Load(), dup.Load(), n-1)
	}
	// The available balance moved exactly once, and all postings balance.
	avail, sums := decimal.Zero, map[string]decimal.Decimal{}
	invoicePaid := 0
	for ev, err := range e.store.Events(e.ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == commands.TypeInvoicePaid {
			invoicePaid++
		}
		if ev.Type != commands.TypePaymentProcessed {
			continue
		}
		var d commands.PaymentProcessed
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		for _, p := range d.Postings {
			sums[p.Currency] = sums[p.Currency].Add(p.Amount)
			if p.Account == commands.AccountAvailable+":"+e.m {
				avail = avail.Sub(p.Amount)
			}
		}
	}
	if invoicePaid != 1 {
		t.Fatalf("invoice.paid appended %d times", invoicePaid)
	}
	if !avail.Equal(dec("35.42")) {
		t.Fatalf("available balance %s, want 35.42", avail)
	}
	for cur, s := range sums {
		if !s.IsZero() {
			t.Fatalf("postings in %s sum to %s", cur, s)
		}
	}
}

// TestConcurrentProcessingOfOnePayment: many goroutines process the same
// payment; one succeeds, the rest are refused as an invalid transition.
func TestConcurrentProcessingOfOnePayment(t *testing.T) {
	e := newEnv(t)
	p, _ := e.payment(e.invoice("o"))
	var ok, refused atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.svc.ProcessPayment(e.ctx, commands.ProcessPayment{Meta: e.meta(), PaymentID: p.PaymentID})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, commands.ErrInvalidTransition):
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || refused.Load() != 49 {
		t.Fatalf("ok %d refused %d", ok.Load(), refused.Load())
	}
}

// TestCreatePaymentRequestKey: many creations with one request key make one
// payment; every other one is a *RepeatedError naming it and appends
// nothing, and the key is the merchant's own.
func TestCreatePaymentRequestKey(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice("o")
	const n = 20
	var made atomic.Int32
	streams := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, _, err := e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(),
				InvoiceID: inv.InvoiceID, MerchantID: e.m, Method: "visamaster.uah", RequestKey: "k1"})
			var rep *commands.RepeatedError
			switch {
			case err == nil:
				made.Add(1)
				streams[i] = commands.StreamID(commands.StreamPayment, p.PaymentID)
			case errors.As(err, &rep) && errors.Is(err, commands.ErrRepeated):
				streams[i] = rep.Stream
			default:
				t.Errorf("creation %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if made.Load() != 1 {
		t.Fatalf("%d payments made with one request key, want 1", made.Load())
	}
	for i := range streams {
		if streams[i] != streams[0] {
			t.Errorf("creation %d names %s, the first %s", i, streams[i], streams[0])
		}
	}
	head := e.store.Head()
	// Another key is another request; the operator (no merchant) cannot use one.
	if _, _, err := e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(),
		InvoiceID: inv.InvoiceID, MerchantID: e.m, Method: "visamaster.uah", RequestKey: "k2"}); err != nil {
		t.Fatalf("another key: %v", err)
	}
	var ve *commands.ValidationError
	if _, _, err := e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(),
		InvoiceID: inv.InvoiceID, Method: "visamaster.uah", RequestKey: "k3"}); !errors.As(err, &ve) {
		t.Fatalf("request key without merchant: %v", err)
	}
	// payment.created and its invoice.payment_added.
	if got := e.store.Head().Seq; got != head.Seq+2 {
		t.Errorf("head %d, want %d: only the second key appends", got, head.Seq+2)
	}
}

// TestPaymentsPerInvoiceCapped: an invoice takes MaxPaymentsPerInvoice
// payments (each cancelled, as a customer choosing again would); the next
// is ErrTooManyPayments and appends nothing. The count is the invoice's
// own: its stream holds an invoice.payment_added right after each
// payment.created, and folding it again gives the same count.
func TestPaymentsPerInvoiceCapped(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice("o")
	other := e.invoice("o2")
	for i := range commands.MaxPaymentsPerInvoice {
		p, seq := e.payment(inv)
		if _, err := e.svc.TransitionPayment(e.ctx, commands.PaymentTransition{Meta: e.meta(), PaymentID: p.PaymentID,
			Status: commands.PaymentStatusCancelled, By: commands.ByCustomer}); err != nil {
			t.Fatalf("payment %d: cancel: %v", i+1, err)
		}
		evs, err := e.store.ReadStream(e.ctx, commands.StreamID(commands.StreamInvoice, inv.InvoiceID), 0)
		if err != nil {
			t.Fatal(err)
		}
		last := evs[len(evs)-1]
		if last.Type != commands.TypeInvoicePaymentAdded || last.Seq != seq+1 || len(evs) != i+2 {
			t.Fatalf("payment %d (seq %d): the invoice's last event is %s at %d, %d events", i+1, seq, last.Type, last.Seq, len(evs))
		}
	}
	head := e.store.Head()
	for _, c := range []commands.CreatePayment{
		{InvoiceID: inv.InvoiceID, Method: "visamaster.uah"},
		{InvoiceID: inv.InvoiceID, MerchantID: e.m, Method: "visamaster.uah", RequestKey: "k"},
	} {
		c.Meta, c.PaymentID = e.meta(), ulid.Make()
		if _, _, err := e.svc.CreatePayment(e.ctx, c); !errors.Is(err, commands.ErrTooManyPayments) {
			t.Fatalf("payment %d: %v, want ErrTooManyPayments", commands.MaxPaymentsPerInvoice+1, err)
		}
	}
	if got := e.store.Head(); got != head {
		t.Fatalf("head %d after the refused payments, want %d: they appended", got.Seq, head.Seq)
	}
	got, err := e.svc.LoadInvoice(e.ctx, "", inv.InvoiceID)
	if err != nil || got.Payments != commands.MaxPaymentsPerInvoice || got.Status != commands.InvoiceStatusPending {
		t.Fatalf("invoice folded again: %d payments, %s, %v", got.Payments, got.Status, err)
	}
	// Another invoice is not affected.
	e.payment(other)
}

// TestCreatePaymentRequestKeyAtTheCap: concurrent creations of one request
// for the invoice's last place make one payment and answer every other
// with a *RepeatedError naming it, as below the cap: a twin that took the
// last place after this one checked its key is its first answer, not
// ErrTooManyPayments.
func TestCreatePaymentRequestKeyAtTheCap(t *testing.T) {
	e := newEnv(t)
	for round := range 5 {
		inv := e.invoice(fmt.Sprintf("o-%d", round))
		for range commands.MaxPaymentsPerInvoice - 1 {
			e.payment(inv)
		}
		const n = 16
		var made atomic.Int32
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, err := e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(),
					InvoiceID: inv.InvoiceID, MerchantID: e.m, Method: "visamaster.uah", RequestKey: fmt.Sprintf("last-%d", round)})
				switch {
				case err == nil:
					made.Add(1)
				case errors.Is(err, commands.ErrRepeated):
				default:
					t.Errorf("round %d, creation %d: %v; want the payment or ErrRepeated", round, i, err)
				}
			}()
		}
		wg.Wait()
		if made.Load() != 1 {
			t.Fatalf("round %d: %d payments made with one request key, want 1", round, made.Load())
		}
	}
}

// TestCreateInvoiceRequestKey: concurrent creations of one request (same
// request key, same external id, payment_id or widget id) make one
// invoice or widget; the others are *RepeatedError naming it, whatever the
// log reports as taken first.
func TestCreateInvoiceRequestKey(t *testing.T) {
	e := newEnv(t)
	create := map[string]func() (*commands.Invoice, error){
		"invoice": func() (*commands.Invoice, error) {
			return e.svc.CreateInvoice(e.ctx, commands.CreateInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
				Amount: "5.00", Currency: "UAH", ExternalID: "ext-1", Rate: dec("41.5"), RequestKey: "r-inv"})
		},
		"e-invoice": func() (*commands.Invoice, error) {
			return e.svc.CreateEInvoice(e.ctx, commands.CreateEInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
				PaymentID: "123", Method: "visamaster.uah", Amount: "100.00", Rate: dec("41.5"), RequestKey: "r-einv"})
		},
		// A client-supplied widget id: the log reports the taken stream
		// (a version conflict) before the taken request key.
		"widget": func() (*commands.Invoice, error) {
			w, err := e.svc.CreateWidget(e.ctx, commands.CreateWidget{Meta: e.meta(), MerchantID: e.m, NewID: ulid.Make(),
				WidgetID: "0b6d1b8e-62c3-4d49-9a43-1c4f6a0e2b11", Kind: commands.WidgetUnlimited, RequestKey: "r-wid"})
			if err != nil {
				return nil, err
			}
			// The stream is all the test compares: carry it in InvoiceID.
			return &commands.Invoice{InvoiceCreated: commands.InvoiceCreated{InvoiceID: w.WidgetID}}, nil
		},
	}
	for name, fn := range create {
		const n = 16
		streams := make([]string, n)
		var made atomic.Int32
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				inv, err := fn()
				var rep *commands.RepeatedError
				switch {
				case err == nil:
					made.Add(1)
					prefix := commands.StreamInvoice
					if name == "widget" {
						prefix = commands.StreamWidget
					}
					streams[i] = commands.StreamID(prefix, inv.InvoiceID)
				case errors.As(err, &rep):
					streams[i] = rep.Stream
				default:
					t.Errorf("%s %d: %v", name, i, err)
				}
			}()
		}
		wg.Wait()
		if made.Load() != 1 {
			t.Errorf("%s: %d made, want 1", name, made.Load())
		}
		for i := range streams {
			if streams[i] != streams[0] {
				t.Errorf("%s %d names %s, the first %s", name, i, streams[i], streams[0])
			}
		}
	}
}

func TestEInvoice(t *testing.T) {
	e := newEnv(t)
	c := commands.CreateEInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m, PaymentID: "123", Method: "visamaster.uah",
		Amount: "100.00", Description: "Some payment description", Sender: "4444111144441111",
		StatusURL: "https://test.ua", Rate: dec("41.50")}
	inv, err := e.svc.CreateEInvoice(e.ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Tracking) != 14 || inv.Tracking[4] != '-' || inv.Tracking[9] != '-' || inv.Currency != "UAH" || inv.Method != "visamaster.uah" {
		t.Fatalf("e-invoice %+v", inv.InvoiceCreated)
	}
	c.Meta, c.InvoiceID = e.meta(), ulid.Make()
	if _, err := e.svc.CreateEInvoice(e.ctx, c); !errors.Is(err, commands.ErrDuplicatePaymentID) {
		t.Fatalf("duplicate payment_id: %v", err)
	}
	c.Meta, c.InvoiceID, c.PaymentID, c.Method = e.meta(), ulid.Make(), "124", "mtn-ci.xof"
	_, err = e.svc.CreateEInvoice(e.ctx, c)
	var ve *commands.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("mobile money without phone, and XOF with decimals: %v", err)
	}
	// A payment with another method than the e-invoice's is refused.
	_, _, err = e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(), InvoiceID: inv.InvoiceID, Method: "visamaster.usd"})
	if !errors.Is(err, commands.ErrMethodInvalid) {
		t.Fatalf("other method on e-invoice: %v", err)
	}
}

// TestPaymentAmountWithinDigits: a payment in another currency than its
// invoice's is converted, and a converted amount of more than 15 integer
// digits is refused on the method, appending nothing: its paid_amount
// could not be recorded (ParseAmount's limit), so the payment could never
// be processed at its own amount. One that fits is processed at it.
func TestPaymentAmountWithinDigits(t *testing.T) {
	e := newEnv(t)
	pay := func(amount string) (*commands.Payment, error) {
		t.Helper()
		inv, err := e.svc.CreateInvoice(e.ctx, commands.CreateInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
			Amount: amount, Currency: "USD", ExternalID: "big-" + amount, Rate: dec("1")})
		if err != nil {
			t.Fatal(err)
		}
		p, _, err := e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(), InvoiceID: inv.InvoiceID,
			Method: "mtn-guinea.gnf", MethodRate: dec("8600")})
		return p, err
	}
	// The invoice is appended; the 16-digit payment (8599999999999914 GNF) is not.
	head := e.store.Head().Seq + 1
	_, err := pay("999999999999.99")
	var ve *commands.ValidationError
	if !errors.As(err, &ve) || ve.Fields[0].Path != "method" || ve.Fields[0].Type != "too_large" ||
		!strings.Contains(ve.Fields[0].Message, "999999999999.99 USD is 8599999999999914 GNF") {
		t.Fatalf("err = %v, want a too_large detail on method naming both amounts", err)
	}
	if e.store.Head().Seq != head {
		t.Fatalf("the refused payment appended events: head %d, want %d", e.store.Head().Seq, head)
	}
	// 999999999999984 GNF: 15 digits.
	p, err := pay("116279069767.44")
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.ProcessPayment(e.ctx, commands.ProcessPayment{Meta: e.meta(), PaymentID: p.PaymentID, PaidAmount: p.PaymentAmount.String()})
	if err != nil || !res.InvoicePaid {
		t.Fatalf("process %s GNF: %+v %v", p.PaymentAmount, res, err)
	}
}

func TestEventIDsAreDeterministic(t *testing.T) {
	// The same command decided twice yields the same events: ids derive from
	// the command id, time from the command.
	a, b := newEnv(t), newEnv(t)
	meta := commands.Meta{CommandID: ulid.Make(), Time: t0, Correlation: "r"}
	id := ulid.Make()
	for _, e := range []*env{a, b} {
		if _, err := e.svc.CreateInvoice(e.ctx, commands.CreateInvoice{Meta: meta, InvoiceID: id, MerchantID: e.m, Amount: "5.00", Currency: "UAH", ExternalID: "same", Rate: dec("41.5")}); err != nil {
			t.Fatal(err)
		}
	}
	stream := commands.StreamID(commands.StreamInvoice, commands.UUID(id))
	ea, _ := a.store.ReadStream(a.ctx, stream, 1)
	eb, _ := b.store.ReadStream(b.ctx, stream, 1)
	if ea[0].ID != eb[0].ID || string(ea[0].Data) != string(eb[0].Data) {
		t.Fatal("same command decided different events")
	}
}

// TestUSDTMethodsNeedNoRate: USDT is the settlement currency, 1 USDT per
// USDT; the operator cannot set a rate for it (SetRate refuses), so the
// USDT methods of seed 001 must work without one.
func TestUSDTMethodsNeedNoRate(t *testing.T) {
	e := newEnv(t)
	if _, err := e.svc.SetRate(e.ctx, commands.SetRate{Meta: e.meta(), Currency: "USDT", Rate: "1"}); !errors.Is(err, commands.ErrValidation) {
		t.Fatalf("set a USDT rate: %v, want refused", err)
	}
	// An e-invoice priced in USDT.
	ei, err := e.svc.CreateEInvoice(e.ctx, commands.CreateEInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
		PaymentID: "tx-usdt", Method: "usdt_trc20", Amount: "100.00", ExtraFields: map[string]string{}})
	if err != nil {
		t.Fatalf("USDT e-invoice: %v", err)
	}
	if !ei.ConversionRate.Equal(dec("1")) || !ei.GrossUSDT.Equal(dec("100")) || !ei.MerchantUSDT.Equal(dec("98")) {
		t.Fatalf("USDT e-invoice: rate %s gross %s merchant %s", ei.ConversionRate, ei.GrossUSDT, ei.MerchantUSDT)
	}
	// A UAH invoice paid with a USDT method: 1500.00 / 41.50 rounded up to USDT's 6 places.
	inv := e.invoice("o-usdt")
	p, _, err := e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(), InvoiceID: inv.InvoiceID, Method: "usdt_erc20"})
	if err != nil {
		t.Fatalf("USDT payment of a UAH invoice: %v", err)
	}
	if p.PaymentCurrency != "USDT" || !p.PaymentAmount.Equal(dec("36.144579")) {
		t.Fatalf("payment %s %s, want 36.144579 USDT", p.PaymentAmount, p.PaymentCurrency)
	}
	res, err := e.svc.ProcessPayment(e.ctx, commands.ProcessPayment{Meta: e.meta(), PaymentID: p.PaymentID})
	if err != nil || !res.InvoicePaid {
		t.Fatalf("process: %+v %v", res, err)
	}
}

// A merchant id is part of NATS subjects and of view keys (NUL-separated):
// ids that would break either are refused before anything is appended.
func TestRegisterMerchantRefusesBadIDs(t *testing.T) {
	e := newEnv(t)
	head := e.store.Head()
	name := "Shop"
	for _, id := range []string{"", "a.b", "a*", "a>", "a b", "a\tb", "a\x00b", "a\nb", "a\x7fb", "\xff", "a/b", strings.Repeat("m", 65)} {
		err := e.svc.RegisterMerchant(e.ctx, commands.RegisterMerchant{Meta: e.meta(), MerchantID: id,
			Settings: commands.MerchantSettings{Name: &name},
			Key:      commands.APIKeyIssued{KeyID: "k-" + id, KeyHash: hex64('c'), Prefix: "pl_cccc"},
			Secret:   commands.SecretMaterial{SecretHash: hex64('d')}})
		var ve *commands.ValidationError
		if !errors.As(err, &ve) || ve.Fields[0].Path != "merchant_id" {
			t.Errorf("merchant id %q: err %v, want a ValidationError on merchant_id", id, err)
		}
	}
	if got := e.store.Head(); got != head {
		t.Errorf("head moved from %d to %d", head.Seq, got.Seq)
	}
	for _, id := range []string{"m2", "shop-42_x", "магазин", strings.Repeat("m", 64)} {
		err := e.svc.RegisterMerchant(e.ctx, commands.RegisterMerchant{Meta: e.meta(), MerchantID: id,
			Settings: commands.MerchantSettings{Name: &name},
			Key:      commands.APIKeyIssued{KeyID: "k-" + id, KeyHash: hex64('e'), Prefix: "pl_eeee"},
			Secret:   commands.SecretMaterial{SecretHash: hex64('f')}})
		if err != nil {
			t.Errorf("merchant id %q: %v", id, err)
		}
	}
}

// TestSuspendedMerchant: a suspended (disabled) merchant creates nothing
// more: no invoice, no widget, no payment on an invoice still pending. A
// payment already made (the customer may have paid) still settles, so
// money already taken is recorded and posted.
func TestSuspendedMerchant(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice("o-1")
	p, _ := e.payment(inv)
	pending := e.invoice("o-2")
	yes := true
	if err := e.svc.ChangeMerchantSettings(e.ctx, commands.ChangeMerchantSettings{Meta: e.meta(), MerchantID: e.m,
		Settings: commands.MerchantSettings{Disabled: &yes}}); err != nil {
		t.Fatal(err)
	}
	head := e.store.Head()
	if _, err := e.svc.CreateInvoice(e.ctx, commands.CreateInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
		Amount: "10.00", Currency: "UAH", ExternalID: "o-3", Rate: dec("41.50")}); !errors.Is(err, commands.ErrMerchantDisabled) {
		t.Errorf("invoice: %v", err)
	}
	if _, err := e.svc.CreateWidget(e.ctx, commands.CreateWidget{Meta: e.meta(), MerchantID: e.m,
		WidgetID: "0b6d1b8e-62c3-4d49-9a43-1c4f6a0e2b12", Kind: commands.WidgetUnlimited}); !errors.Is(err, commands.ErrMerchantDisabled) {
		t.Errorf("widget: %v", err)
	}
	for _, merchant := range []string{e.m, ""} { // the merchant's API, the hosted page
		if _, _, err := e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(),
			InvoiceID: pending.InvoiceID, MerchantID: merchant, Method: "visamaster.uah"}); !errors.Is(err, commands.ErrMerchantDisabled) {
			t.Errorf("payment (merchant %q): %v", merchant, err)
		}
	}
	if e.store.Head() != head {
		t.Fatal("a refused creation appended events")
	}
	res, err := e.svc.ProcessPayment(e.ctx, commands.ProcessPayment{Meta: e.meta(), PaymentID: p.PaymentID})
	if err != nil || !res.InvoicePaid {
		t.Errorf("processing a payment made before the suspension: %+v %v", res, err)
	}
}

// TestSwitchGateway: the operator's switches are events on the gateways
// stream. A disabled gateway takes no new payment (with none left for the
// method, payment creation is refused with ErrNoGateway, which is an
// ErrMethodInvalid, and appends nothing), its payments carry on, a switch to
// the current state appends nothing, an unknown gateway is ErrNotFound,
// and a new service over the same log (a restart) folds the same switches.
func TestSwitchGateway(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice("o-1")
	p, _ := e.payment(inv)
	pending := e.invoice("o-2") // none can be made while no gateway serves UAH
	sw := func(on bool) (bool, error) {
		return e.svc.SwitchGateway(e.ctx, commands.SwitchGateway{Meta: e.meta(), GatewayID: commands.SandboxID, Enabled: on})
	}

	if changed, err := sw(true); err != nil || changed {
		t.Fatalf("enabling the enabled sandbox = %v, %v; want no change", changed, err)
	}
	if v, _ := e.store.StreamVersion(commands.StreamGateways); v != 0 {
		t.Fatalf("a switch that changes nothing appended: gateways stream at version %d", v)
	}
	if changed, err := sw(false); err != nil || !changed {
		t.Fatalf("disable = %v, %v", changed, err)
	}
	evs, err := e.store.ReadStream(e.ctx, commands.StreamGateways, 1)
	if err != nil || len(evs) != 1 || evs[0].Type != commands.TypeGatewayDisabled || evs[0].Merchant != "" ||
		string(evs[0].Data) != `{"gateway_id":"1","at":"2026-02-25T12:00:00Z"}` {
		t.Fatalf("gateways stream = %+v, %v", evs, err)
	}
	if changed, err := sw(false); err != nil || changed {
		t.Fatalf("disabling again = %v, %v; want no change", changed, err)
	}
	if _, err := e.svc.SwitchGateway(e.ctx, commands.SwitchGateway{Meta: e.meta(), GatewayID: "42"}); !errors.Is(err, commands.ErrNotFound) {
		t.Fatalf("unknown gateway: %v, want ErrNotFound", err)
	}

	head := e.store.Head()
	_, _, err = e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(), InvoiceID: pending.InvoiceID, Method: "visamaster.uah"})
	if !errors.Is(err, commands.ErrNoGateway) || !errors.Is(err, commands.ErrMethodInvalid) {
		t.Fatalf("payment with the only gateway disabled: %v, want ErrNoGateway", err)
	}
	if e.store.Head() != head {
		t.Fatal("a refused payment appended events")
	}
	// A payment made before the switch carries on.
	if res, err := e.svc.ProcessPayment(e.ctx, commands.ProcessPayment{Meta: e.meta(), PaymentID: p.PaymentID}); err != nil || !res.InvoicePaid {
		t.Fatalf("processing a payment of the disabled gateway: %+v %v", res, err)
	}

	// A restart: a new service folds the switches from the log.
	again := commands.NewService(e.store, commands.Config{})
	if got, err := again.GatewaySwitches(e.ctx); err != nil || got.Enabled(commands.SandboxID) || got.Version != 1 {
		t.Fatalf("switches after a restart = %+v, %v", got, err)
	}
	if changed, err := again.SwitchGateway(e.ctx, commands.SwitchGateway{Meta: e.meta(), GatewayID: commands.SandboxID, Enabled: true}); err != nil || !changed {
		t.Fatalf("enable = %v, %v", changed, err)
	}
	// The first service sees the other's switch (its cache is by version).
	if _, _, err := e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(), InvoiceID: pending.InvoiceID, Method: "visamaster.uah"}); err != nil {
		t.Fatalf("payment with the sandbox enabled again: %v", err)
	}
}

// An e-invoice, and a widget invoice given a method, fix the method: with
// no enabled gateway serving it, the invoice could never be paid, so it is
// refused with ErrNoGateway and nothing is appended.
func TestFixedMethodInvoiceNeedsAnEnabledGateway(t *testing.T) {
	e := newEnv(t)
	einvoice := func() (*commands.Invoice, error) {
		return e.svc.CreateEInvoice(e.ctx, commands.CreateEInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
			PaymentID: ulid.Make().String(), Method: "visamaster.uah", Amount: "100.00", StatusURL: "https://test.ua", Rate: dec("41.50")})
	}
	single, err := e.svc.CreateWidget(e.ctx, commands.CreateWidget{Meta: e.meta(), MerchantID: e.m, NewID: ulid.Make(),
		Kind: commands.WidgetSingle, FiatCurrency: "UAH", FiatAmount: "100.00"})
	if err != nil {
		t.Fatal(err)
	}
	unlimited, err := e.svc.CreateWidget(e.ctx, commands.CreateWidget{Meta: e.meta(), MerchantID: e.m, NewID: ulid.Make(), Kind: commands.WidgetUnlimited})
	if err != nil {
		t.Fatal(err)
	}
	widgetInvoice := func(w *commands.Widget, method, amount string) (*commands.Invoice, error) {
		return e.svc.CreateWidgetInvoice(e.ctx, commands.CreateWidgetInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), WidgetID: w.WidgetID,
			Method: method, Amount: amount, Rate: dec("41.50")})
	}
	if _, err := e.svc.SwitchGateway(e.ctx, commands.SwitchGateway{Meta: e.meta(), GatewayID: commands.SandboxID}); err != nil {
		t.Fatal(err)
	}

	head := e.store.Head()
	for name, create := range map[string]func() (*commands.Invoice, error){
		"e-invoice":                 einvoice,
		"single widget with method": func() (*commands.Invoice, error) { return widgetInvoice(single, "visamaster.uah", "") },
		"unlimited widget":          func() (*commands.Invoice, error) { return widgetInvoice(unlimited, "visamaster.uah", "100.00") },
	} {
		inv, err := create()
		if !errors.Is(err, commands.ErrNoGateway) || !errors.Is(err, commands.ErrMethodInvalid) {
			t.Errorf("%s with the only gateway disabled: %+v, %v; want ErrNoGateway", name, inv, err)
		}
		if e.store.Head() != head {
			t.Fatalf("%s: a refused invoice appended events", name)
		}
	}
	// A single widget's invoice without a method leaves the choice to the
	// customer, on the payment page, as create-invoice's does: with no
	// method in its currency that an enabled gateway serves, the page
	// could offer nothing, so it is refused too (ErrNoPayableMethod).
	if inv, err := widgetInvoice(single, "", ""); !errors.Is(err, commands.ErrNoPayableMethod) || !errors.Is(err, commands.ErrCurrencyInvalid) {
		t.Errorf("single widget without a method, the only gateway disabled: %+v, %v; want ErrNoPayableMethod", inv, err)
	}
	if e.store.Head() != head {
		t.Fatal("single widget without a method: a refused invoice appended events")
	}

	if _, err := e.svc.SwitchGateway(e.ctx, commands.SwitchGateway{Meta: e.meta(), GatewayID: commands.SandboxID, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	inv, err := einvoice()
	if err != nil {
		t.Fatalf("e-invoice with the sandbox enabled again: %v", err)
	}
	if _, _, err := e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(), InvoiceID: inv.InvoiceID, Method: "visamaster.uah"}); err != nil {
		t.Fatalf("paying the e-invoice: %v", err)
	}
	if _, err := widgetInvoice(unlimited, "visamaster.uah", "100.00"); err != nil {
		t.Fatalf("unlimited widget invoice with the sandbox enabled again: %v", err)
	}
	if _, err := widgetInvoice(single, "", ""); err != nil {
		t.Fatalf("single widget invoice without a method, the sandbox enabled again: %v", err)
	}
}

// whileSandboxToggles has the operator disable and enable the sandbox, the
// only gateway, n times each (leaving it enabled), while workers goroutines
// call create over and over until the toggling ends. create may fail only
// with ErrNoGateway.
func (e *env) whileSandboxToggles(n, workers int, create func() error) {
	e.t.Helper()
	e.whileToggling(n, workers, func(on bool) error {
		_, err := e.svc.SwitchGateway(e.ctx, commands.SwitchGateway{Meta: e.meta(), GatewayID: commands.SandboxID, Enabled: on})
		return err
	}, func(int) error { return create() }, commands.ErrNoGateway)
}

// whileToggling calls toggle(false) and toggle(true) n times each, while
// workers goroutines call create (with their number) over and over until
// the toggling ends. create may fail only with refused.
func (e *env) whileToggling(n, workers int, toggle func(on bool) error, create func(worker int) error, refused error) {
	e.t.Helper()
	errs := make(chan error, workers+1)
	start, stop := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(stop)
		<-start
		for i := 0; i < 2*n; i++ {
			if err := toggle(i%2 == 1); err != nil {
				errs <- fmt.Errorf("toggle: %w", err)
				return
			}
		}
	}()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := create(w); err != nil && !errors.Is(err, refused) {
					errs <- err
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		e.t.Error(err)
	}
}

// appendedWhileDisabled walks the log and returns the sequence numbers of
// the events of type typ appended while the sandbox was disabled.
func (e *env) appendedWhileDisabled(typ string) []uint64 {
	e.t.Helper()
	var seqs []uint64
	enabled := true
	for ev, err := range e.store.Events(e.ctx, 1) {
		if err != nil {
			e.t.Fatal(err)
		}
		switch ev.Type {
		case commands.TypeGatewayDisabled:
			enabled = false
		case commands.TypeGatewayEnabled:
			enabled = true
		case typ:
			if !enabled {
				seqs = append(seqs, ev.Seq)
			}
		}
	}
	return seqs
}

// An e-invoice, or a widget invoice given a method, created while the
// operator toggles the only gateway is appended only while the gateway is
// enabled: the append is conditional on the gateway switches as read.
func TestFixedMethodInvoiceNeverCreatedWhileGatewayDisabled(t *testing.T) {
	for name, create := range map[string]func(e *env) func() error{
		"e-invoice": func(e *env) func() error {
			return func() error {
				_, err := e.svc.CreateEInvoice(e.ctx, commands.CreateEInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
					PaymentID: ulid.Make().String(), Method: "visamaster.uah", Amount: "100.00", StatusURL: "https://test.ua", Rate: dec("41.50")})
				return err
			}
		},
		"widget invoice": func(e *env) func() error {
			w, err := e.svc.CreateWidget(e.ctx, commands.CreateWidget{Meta: e.meta(), MerchantID: e.m, NewID: ulid.Make(), Kind: commands.WidgetUnlimited})
			if err != nil {
				e.t.Fatal(err)
			}
			return func() error {
				_, err := e.svc.CreateWidgetInvoice(e.ctx, commands.CreateWidgetInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), WidgetID: w.WidgetID,
					Method: "visamaster.uah", Amount: "100.00", Rate: dec("41.50")})
				if errors.Is(err, commands.ErrConflict) {
					return nil // the widget's version moved under a concurrent invoice's retries
				}
				return err
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.whileSandboxToggles(100, 8, create(e))
			if seqs := e.appendedWhileDisabled(commands.TypeInvoiceCreated); len(seqs) > 0 {
				t.Errorf("invoices created while the sandbox was disabled, at %v", seqs)
			}
		})
	}
}

// Payments created while the operator toggles the only gateway are given it
// only while it is enabled: CreatePayment's append is conditional on the
// gateway switches as read, and a payment refused meanwhile fails only with
// ErrNoGateway, never ErrConflict. (An invoice refused meanwhile, with
// ErrNoPayableMethod, makes no payment.)
func TestPaymentNeverRoutedToDisabledGateway(t *testing.T) {
	e := newEnv(t)
	e.whileSandboxToggles(100, 8, func() error {
		inv, err := e.svc.CreateInvoice(e.ctx, commands.CreateInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
			Amount: "1500.00", Currency: "UAH", ExternalID: ulid.Make().String(), CallbackURL: "https://shop.example/webhooks", Rate: dec("41.50")})
		if errors.Is(err, commands.ErrNoPayableMethod) {
			return nil
		}
		if err != nil {
			return err
		}
		_, _, err = e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(), InvoiceID: inv.InvoiceID, Method: "visamaster.uah"})
		return err
	})
	if seqs := e.appendedWhileDisabled(commands.TypePaymentCreated); len(seqs) > 0 {
		t.Errorf("payment.created while the sandbox was disabled, at %v", seqs)
	}
}

// An invoice without a fixed method leaves the choice to the customer, on
// the payment page: it is refused with ErrNoPayableMethod (which wraps
// ErrCurrencyInvalid), appending nothing, when no method in its currency
// is one the merchant accepts and an enabled gateway serves. The switches
// are read as the log has them, whichever Service appended them.
func TestInvoiceNeedsAPayableMethod(t *testing.T) {
	e := newEnv(t)
	create := func(svc *commands.Service, cur string) error {
		_, err := svc.CreateInvoice(e.ctx, commands.CreateInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
			Amount: "100.00", Currency: cur, ExternalID: "x-" + ulid.Make().String(), Rate: dec("41.50")})
		return err
	}
	switchSandbox := func(svc *commands.Service, on bool) {
		t.Helper()
		if _, err := svc.SwitchGateway(e.ctx, commands.SwitchGateway{Meta: e.meta(), GatewayID: commands.SandboxID, Enabled: on}); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(name string, err error) {
		t.Helper()
		if !errors.Is(err, commands.ErrNoPayableMethod) || !errors.Is(err, commands.ErrCurrencyInvalid) {
			t.Errorf("%s: %v; want ErrNoPayableMethod", name, err)
		}
	}
	if err := create(e.svc, "UAH"); err != nil {
		t.Fatal(err)
	}

	switchSandbox(e.svc, false)
	head := e.store.Head()
	refused("the only gateway disabled", create(e.svc, "UAH"))
	if e.store.Head() != head {
		t.Fatal("a refused invoice appended events")
	}
	switchSandbox(e.svc, true)
	if err := create(e.svc, "UAH"); err != nil {
		t.Fatalf("the sandbox enabled again: %v", err)
	}

	// Another Service over the same log switches the sandbox off and on:
	// this one's view of the switches follows.
	other := commands.NewService(e.store, commands.Config{})
	switchSandbox(other, false)
	refused("disabled by another service", create(e.svc, "UAH"))
	switchSandbox(other, true)
	if err := create(e.svc, "UAH"); err != nil {
		t.Fatalf("enabled again by another service: %v", err)
	}

	// The merchant accepts no method in the currency.
	only := []string{"bitcoin", "visamaster.ngn"}
	if err := e.svc.ChangeMerchantSettings(e.ctx, commands.ChangeMerchantSettings{Meta: e.meta(), MerchantID: e.m,
		Settings: commands.MerchantSettings{Methods: &only}}); err != nil {
		t.Fatal(err)
	}
	head = e.store.Head()
	refused("UAH, no UAH method accepted", create(e.svc, "UAH"))
	if e.store.Head() != head {
		t.Fatal("a refused invoice appended events")
	}
	if err := create(e.svc, "NGN"); err != nil {
		t.Fatalf("NGN with visamaster.ngn accepted: %v", err)
	}
}

// An invoice created while the operator toggles the only gateway is
// appended only while the gateway is enabled, though the command decides
// on its cached switches: the append is conditional on their version.
func TestInvoiceNeverCreatedWhileGatewayDisabled(t *testing.T) {
	e := newEnv(t)
	e.whileSandboxToggles(100, 8, func() error {
		_, err := e.svc.CreateInvoice(e.ctx, commands.CreateInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
			Amount: "100.00", Currency: "UAH", ExternalID: "x-" + ulid.Make().String(), Rate: dec("41.50")})
		if errors.Is(err, commands.ErrNoPayableMethod) {
			return nil
		}
		return err
	})
	if seqs := e.appendedWhileDisabled(commands.TypeInvoiceCreated); len(seqs) > 0 {
		t.Errorf("invoices created while the sandbox was disabled, at %v", seqs)
	}
}

// CanonicalUUID lowers UUID text in any case, as UUID writes it, and leaves
// anything else alone: a payment's integer id, a ULID, a near-UUID.
func TestCanonicalUUID(t *testing.T) {
	id := commands.UUID(ulid.Make())
	for in, want := range map[string]string{
		strings.ToUpper(id):                    id,
		"0191FB39-0B2E-7F1A-9C3D-ab12CD34ef56": "0191fb39-0b2e-7f1a-9c3d-ab12cd34ef56",
	} {
		if got := commands.CanonicalUUID(in); got != want {
			t.Errorf("CanonicalUUID(%q) = %q, want %q", in, got, want)
		}
	}
	for _, same := range []string{
		id, "", "123", "01J5ZK1R2Q3W4E5R6T7Y8U9X0P", "ORDER-2026-0001",
		"0191FB39-0B2E-7F1A-9C3D-AB12CD34EF5G", "0191FB390B2E-7F1A-9C3D-AB12CD34EF56X",
		"{0191FB39-0B2E-7F1A-9C3D-AB12CD34EF56}", "0191FB39-0B2E-7F1A-9C3D-AB12CD34EF5",
	} {
		if got := commands.CanonicalUUID(same); got != same {
			t.Errorf("CanonicalUUID(%q) = %q, want it unchanged", same, got)
		}
	}
}
