package pages_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/http/pages"
	"github.com/payledger/payledger/keyring"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
	"github.com/payledger/payledger/projections"
)

// env is a real log with the projector inline, a real service, one merchant
// ("m1", 2% commission) with the UAH and XOF rates set, and the pages'
// handler on a clock the test moves.
type env struct {
	t        *testing.T
	ctx      context.Context
	store    *boltlog.Store
	svc      *commands.Service
	views    *projections.Views
	h        http.Handler
	merchant string

	mu   sync.Mutex
	now  time.Time
	real bool          // the clock is time.Now (browser tests)...
	skew time.Duration // ...moved on by advance
}

// newEnv builds the env on a fake clock that moves only when the test says.
func newEnv(t *testing.T) *env { return setup(t, false) }

// newRealtimeEnv builds the env on the real clock, which a browser's
// countdown and polling compare with theirs.
func newRealtimeEnv(t *testing.T) *env { return setup(t, true) }

func setup(t *testing.T, real bool) *env {
	t.Helper()
	store, _ := boltlogtest.Open(t, &boltlog.Options{Projectors: []boltlog.Projector{&projections.Projector{}}})
	e := &env{
		t: t, ctx: context.Background(), store: store,
		svc:   commands.NewService(store, commands.Config{}),
		views: projections.NewViews(store.DB()),
		now:   time.Now().UTC().Truncate(time.Millisecond),
		real:  real,
	}
	e.merchant = e.registerMerchant("m1", "Demo Shop", nil)
	for cur, rate := range map[string]string{"UAH": "41.50", "XOF": "600"} {
		if _, err := e.svc.SetRate(e.ctx, commands.SetRate{Meta: e.meta(), Currency: cur, Rate: rate}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := pages.New(pages.Config{Service: e.svc, Views: e.views, Now: e.clock, Failed: store.Failed})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	return e
}

func (e *env) registerMerchant(id, name string, methods []string) string {
	e.t.Helper()
	key, err := keyring.NewAPIKey()
	if err != nil {
		e.t.Fatal(err)
	}
	secret := keyring.New([32]byte{7}).SigningSecret(id, 1)
	comm := "2"
	s := commands.MerchantSettings{Name: &name, CommissionPercent: &comm}
	if methods != nil {
		s.Methods = &methods
	}
	err = e.svc.RegisterMerchant(e.ctx, commands.RegisterMerchant{Meta: e.meta(), MerchantID: id, Settings: s,
		Key:    commands.APIKeyIssued{KeyID: key.ID, KeyHash: key.Hash, Prefix: key.Prefix},
		Secret: commands.SecretMaterial{SecretHash: keyring.SecretHash(secret)}})
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.real {
		return time.Now().UTC().Add(e.skew)
	}
	return e.now
}

// advance moves the clock on by d. On the real clock, the server's clock
// runs ahead of the browser's by d from then on: the page's script takes
// the server's clock from each status it reads.
func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = e.now.Add(d)
	e.skew += d
}

func (e *env) meta() commands.Meta {
	return commands.Meta{CommandID: ulid.Make(), Time: e.clock(), Correlation: "test"}
}

// invoiceOpts are the fields a test varies.
type invoiceOpts struct {
	merchant, amount, currency, purpose, success, fail string
}

func (e *env) invoice(o invoiceOpts) *commands.Invoice {
	e.t.Helper()
	if o.merchant == "" {
		o.merchant = e.merchant
	}
	if o.amount == "" {
		o.amount, o.currency = "1500.00", "UAH"
	}
	if o.purpose == "" {
		o.purpose = "Payment for Premium subscription"
	}
	rate, err := e.views.Rate(o.currency)
	if err != nil {
		e.t.Fatal(err)
	}
	inv, err := e.svc.CreateInvoice(e.ctx, commands.CreateInvoice{Meta: e.meta(), InvoiceID: ulid.Make(),
		MerchantID: o.merchant, Amount: o.amount, Currency: o.currency, CustomerID: "user_12345",
		ExternalID: ulid.Make().String(), Purpose: o.purpose, SuccessURL: o.success, FailURL: o.fail,
		Rate: dec(rate.Rate)})
	if err != nil {
		e.t.Fatal(err)
	}
	return inv
}

func (e *env) widget(c commands.CreateWidget) *commands.Widget {
	e.t.Helper()
	c.Meta, c.MerchantID, c.NewID = e.meta(), e.merchant, ulid.Make()
	w, err := e.svc.CreateWidget(e.ctx, c)
	if err != nil {
		e.t.Fatal(err)
	}
	return w
}

// payments returns an invoice's payments from the views.
func (e *env) payments(invoiceID string) []projections.PaymentView {
	e.t.Helper()
	ps, err := e.views.PaymentsForInvoice(invoiceID)
	if err != nil {
		e.t.Fatal(err)
	}
	return ps
}

func (e *env) process(p projections.PaymentView) {
	e.t.Helper()
	_, err := e.svc.ProcessPayment(e.ctx, commands.ProcessPayment{Meta: e.meta(),
		PaymentID: strings.TrimPrefix(p.Stream, "payment-")})
	if err != nil {
		e.t.Fatal(err)
	}
}

var tokenRE = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// formToken returns the first anti-forgery token of a page.
func formToken(t *testing.T, body string) string {
	t.Helper()
	m := tokenRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf_token in page:\n%s", body)
	}
	return m[1]
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// pay makes a payment on an invoice by another way than this page (the
// merchant's API, another tab) and returns it from the views.
func (e *env) pay(invoiceID, method string) projections.PaymentView {
	e.t.Helper()
	if _, _, err := e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(),
		InvoiceID: invoiceID, Method: method}); err != nil {
		e.t.Fatal(err)
	}
	ps := e.payments(invoiceID)
	return ps[len(ps)-1]
}

// transition moves a payment to status as its gateway or customer would.
func (e *env) transition(p projections.PaymentView, status string) {
	e.t.Helper()
	if _, err := e.svc.TransitionPayment(e.ctx, commands.PaymentTransition{Meta: e.meta(),
		PaymentID: strings.TrimPrefix(p.Stream, "payment-"), Status: status}); err != nil {
		e.t.Fatal(err)
	}
}
