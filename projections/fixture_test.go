package projections_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"
	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
)

// t0 is seed 003's creation time.
var t0 = time.Date(2026, 2, 25, 12, 0, 0, 0, time.UTC)

// gen crafts events with the commands catalogue's structs, the way the
// command handlers emit them, with deterministic ids and a clock it owns.
type gen struct {
	now time.Time
	n   uint64
}

func newGen() *gen { return &gen{now: t0} }

func (g *gen) tick(d time.Duration) { g.now = g.now.Add(d) }

func (g *gen) ulid() ulid.ULID {
	g.n++
	var id ulid.ULID
	_ = id.SetTime(ulid.Timestamp(g.now))
	binary.BigEndian.PutUint64(id[8:], g.n)
	return id
}

func (g *gen) ev(typ, merchant string, data any) ledger.NewEvent {
	raw, err := json.Marshal(data)
	if err != nil {
		panic(err)
	}
	return ledger.NewEvent{ID: g.ulid(), Type: typ, Time: g.now, Merchant: merchant, Data: raw}
}

func write(stream string, exp ledger.Expected, evs ...ledger.NewEvent) ledger.Write {
	return ledger.Write{Stream: stream, Expected: exp, Events: evs}
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func (g *gen) merchant(id, commission string) ledger.Write {
	return write(commands.StreamID(commands.StreamMerchant, id), ledger.NoStream,
		g.ev(commands.TypeMerchantRegistered, id, commands.MerchantRegistered{
			MerchantID: id, Name: "Shop " + id, WebhookURL: "https://" + id + ".example/hook",
			CommissionPercent: dec(commission), InvoiceLifetime: 1200, InvoicingEnabled: true,
			RegisteredAt: g.now,
		}),
		g.ev(commands.TypeAPIKeyIssued, id, commands.APIKeyIssued{
			KeyID: "k1", KeyHash: "hash-" + id + "-k1", Prefix: "pl_" + id, Label: "default", IssuedAt: g.now,
		}),
		g.ev(commands.TypeSigningSecretRotated, id, commands.SigningSecretRotated{Version: 1, SecretHash: "sh1", RotatedAt: g.now}),
	)
}

func (g *gen) rate(cur, rate string) ledger.Write {
	return write(commands.StreamRates, ledger.Any,
		g.ev(commands.TypeRateSet, "", commands.RateSet{Currency: cur, Rate: dec(rate), SetAt: g.now}))
}

// inv is what the generator remembers of an invoice.
type inv struct {
	id, merchant, currency string
	amount                 decimal.Decimal
	conv                   commands.Conversion
	version                uint64
	expires                time.Time
}

func (i *inv) stream() string { return commands.StreamID(commands.StreamInvoice, i.id) }

func (g *gen) invoice(merchant, ext, amount, currency, rate, commission string) (*inv, ledger.Write) {
	id := commands.UUID(g.ulid())
	a := dec(amount)
	conv := commands.Convert(a, dec(rate), dec(commission))
	in := &inv{id: id, merchant: merchant, currency: currency, amount: a, conv: conv, version: 1, expires: g.now.Add(20 * time.Minute)}
	return in, write(in.stream(), ledger.NoStream, g.ev(commands.TypeInvoiceCreated, merchant, commands.InvoiceCreated{
		InvoiceID: id, MerchantID: merchant, Source: commands.SourceAPI, ExternalID: ext,
		Amount: a, Currency: currency, CustomerID: "user_12345", Purpose: "Payment for Premium subscription",
		CallbackURL: "https://yoursite.com/webhooks/payment", SuccessURL: "https://yoursite.com/payment/success",
		FailURL: "https://yoursite.com/payment/failed", ConversionRate: conv.Rate, CommissionPercent: dec(commission),
		GrossUSDT: conv.GrossUSDT, FeeUSDT: conv.FeeUSDT, MerchantUSDT: conv.MerchantUSDT,
		CreatedAt: g.now, ExpiresAt: in.expires,
	}))
}

func (g *gen) invoiceEnd(in *inv, typ string, data any) ledger.Write {
	in.version++
	return write(in.stream(), ledger.Exactly(in.version-1), g.ev(typ, in.merchant, data))
}

// pay is what the generator remembers of a payment.
type pay struct {
	id, stream string
	in         *inv
	version    uint64
}

// einvoice is an e-invoice of merchant's (XOF, payment_id "tx-1", tracking
// "79DF-60B0-17F6", an extra field "phone"): its id and its creation.
func (g *gen) einvoice(merchant string) (string, ledger.Write) {
	id := commands.UUID(g.ulid())
	return id, write(commands.StreamID(commands.StreamInvoice, id), ledger.NoStream,
		g.ev(commands.TypeInvoiceCreated, merchant, commands.InvoiceCreated{
			InvoiceID: id, MerchantID: merchant, Source: commands.SourceEInvoice, Amount: dec("100"),
			Currency: "XOF", ConversionRate: dec("600"), CommissionPercent: dec("2"),
			GrossUSDT: dec("0.166666"), FeeUSDT: dec("0.006666"), MerchantUSDT: dec("0.16"),
			CreatedAt: g.now, ExpiresAt: g.now.Add(time.Hour), PaymentID: "tx-1", Tracking: "79DF-60B0-17F6",
			Method: "mtn-ci.xof", Account: "acc", Sender: "snd", StatusURL: "https://s.example/status",
			ExtraFields: map[string]string{"phone": "+2250000"},
		}))
}

func (g *gen) payment(in *inv) (*pay, ledger.Write) {
	id := g.ulid().String()
	p := &pay{id: id, stream: commands.StreamID(commands.StreamPayment, id), in: in, version: 1}
	return p, write(p.stream, ledger.NoStream, g.ev(commands.TypePaymentCreated, in.merchant, commands.PaymentCreated{
		PaymentID: id, InvoiceID: in.id, MerchantID: in.merchant, Method: "visamaster." + lower(in.currency),
		GatewayID: "12", Extra: commands.PaymentExtra{AccountNumber: "2222222222222222", AccountName: "Иванов Иван Иванович", BankName: "bank"},
		PaymentCurrency: in.currency, PaymentAmount: in.amount, DestinationCurrency: "USDT",
		DestinationAmount: in.conv.MerchantUSDT, CreatedAt: g.now,
	}))
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func (g *gen) paymentStatus(p *pay, typ, status string) ledger.Write {
	p.version++
	return write(p.stream, ledger.Exactly(p.version-1), g.ev(typ, p.in.merchant, commands.PaymentStatusChanged{Status: status, At: g.now}))
}

// postings are a processed payment's balanced entries (docs/payments.md):
// paying its invoice, the fiat arrives at the gateway and is converted, the
// USDT split between the merchant and the fee; any other allocation holds
// what arrived (paid) in the merchant's suspense account.
func postings(p *pay, alloc string, paid decimal.Decimal) []commands.Posting {
	in := p.in
	m := in.merchant
	if alloc != commands.AllocInvoice {
		return []commands.Posting{
			{Account: commands.AccountClearing + ":12", Currency: in.currency, Amount: paid},
			{Account: commands.AccountSuspense + ":" + m, Currency: in.currency, Amount: paid.Neg()},
		}
	}
	return []commands.Posting{
		{Account: commands.AccountClearing + ":12", Currency: in.currency, Amount: in.amount},
		{Account: commands.AccountConversion, Currency: in.currency, Amount: in.amount.Neg()},
		{Account: commands.AccountConversion, Currency: "USDT", Amount: in.conv.GrossUSDT},
		{Account: commands.AccountAvailable + ":" + m, Currency: "USDT", Amount: in.conv.MerchantUSDT.Neg()},
		{Account: commands.AccountFeeIncome, Currency: "USDT", Amount: in.conv.FeeUSDT.Neg()},
	}
}

// process processes a payment: with paid, it also marks the invoice paid
// (both streams in one atomic append, as the command does).
func (g *gen) process(p *pay, alloc string, paid, late bool) []ledger.Write {
	return g.processLate(p, alloc, paid, late, late)
}

// processLate is process with the payment.processed's late flag and the
// invoice.paid's apart (the commands set both alike).
func (g *gen) processLate(p *pay, alloc string, paid, late, paidLate bool) []ledger.Write {
	paidAmount := p.in.amount
	if alloc == commands.AllocUnderpaid {
		paidAmount = paidAmount.Sub(dec("1")) // less than expected, as the commands allocate it
	}
	p.version++
	ws := []ledger.Write{write(p.stream, ledger.Exactly(p.version-1), g.ev(commands.TypePaymentProcessed, p.in.merchant, commands.PaymentProcessed{
		At: g.now, PaidAmount: paidAmount, Allocation: alloc, Late: late, Postings: postings(p, alloc, paidAmount),
	}))}
	if paid {
		ws = append(ws, g.invoiceEnd(p.in, commands.TypeInvoicePaid, commands.InvoicePaid{
			PaymentID: p.stream, PaidAt: g.now, Late: paidLate, PaidAmount: p.in.amount,
		}))
	}
	return ws
}

// receipt is a payment.receipt_held of amount on p, held in suspense as
// commands.HoldReceipt writes it.
func (g *gen) receipt(p *pay, amount string) ledger.Write {
	p.version++
	a := dec(amount)
	return write(p.stream, ledger.Exactly(p.version-1), g.ev(commands.TypePaymentReceiptHeld, p.in.merchant, commands.PaymentReceiptHeld{
		At: g.now, PaidAmount: a, By: commands.ByOperator, Postings: []commands.Posting{
			{Account: commands.AccountClearing + ":12", Currency: p.in.currency, Amount: a},
			{Account: commands.AccountSuspense + ":" + p.in.merchant, Currency: p.in.currency, Amount: a.Neg()},
		}}))
}

// wid is what the generator remembers of a widget.
type wid struct {
	id, merchant string
	version      uint64
}

func (w *wid) stream() string { return commands.StreamID(commands.StreamWidget, w.id) }

func (g *gen) widget(merchant string, expires time.Duration) (*wid, ledger.Write) {
	u := g.ulid()
	w := &wid{id: commands.UUID(u), merchant: merchant, version: 1}
	d := commands.WidgetCreated{
		WidgetID: w.id, MerchantID: merchant, Kind: commands.WidgetSingle, Currencies: []string{"USDT"},
		Description: "Donations", LogoURL: "https://x.example/logo.png", ReturnURL: "https://x.example/",
		SupportURL: "https://x.example/support", MerchantExternalID: "shop-7", FiatCurrency: "UAH",
		FiatAmount: dec("250"), CreatedAt: g.now,
	}
	if expires > 0 {
		d.ExpiresAt = g.now.Add(expires)
	}
	return w, write(w.stream(), ledger.NoStream, g.ev(commands.TypeWidgetCreated, merchant, d))
}

func (g *gen) widgetStatus(w *wid, typ, status string) ledger.Write {
	w.version++
	return write(w.stream(), ledger.Exactly(w.version-1), g.ev(typ, w.merchant, commands.WidgetStatusChanged{Status: status, At: g.now}))
}

// workload returns appends of a realistic mix for n invoices across the
// merchants: each append is a set of writes to distinct streams (what group
// commit makes of concurrent requests). About 4.3 events per invoice:
// created, payment, most processed and paid, some confirmed, cancelled,
// expired, duplicate and underpaid payments, a few widgets and rate changes.
func workload(g *gen, rng *rand.Rand, merchants []string, n, round int) [][]ledger.Write {
	var out [][]ledger.Write
	var setup []ledger.Write
	for _, m := range merchants {
		setup = append(setup, g.merchant(m, "2"))
	}
	out = append(out, setup, []ledger.Write{g.rate("UAH", "41.50")})
	for done := 0; done < n; done += round {
		g.tick(time.Second)
		k := min(round, n-done)
		var create, pays, ends, extra []ledger.Write
		invs := make([]*inv, k)
		for i := range k {
			m := merchants[rng.IntN(len(merchants))]
			amount := fmt.Sprintf("%d.%02d", 10+rng.IntN(5000), rng.IntN(100))
			var w ledger.Write
			invs[i], w = g.invoice(m, fmt.Sprintf("order-%d", done+i), amount, "UAH", "41.50", "2")
			create = append(create, w)
		}
		g.tick(time.Second)
		ps := make([]*pay, k)
		for i, in := range invs {
			if rng.IntN(10) < 9 {
				var w ledger.Write
				ps[i], w = g.payment(in)
				pays = append(pays, w)
			}
		}
		g.tick(time.Second)
		for i, in := range invs {
			switch r := rng.IntN(100); {
			case ps[i] == nil && r < 50:
				ends = append(ends, g.invoiceEnd(in, commands.TypeInvoiceExpired, commands.InvoiceExpired{ExpiredAt: g.now}))
			case ps[i] == nil:
				ends = append(ends, g.invoiceEnd(in, commands.TypeInvoiceCancelled, commands.InvoiceCancelled{Reason: "customer left", CancelledAt: g.now}))
			case r < 80:
				ends = append(ends, g.process(ps[i], commands.AllocInvoice, true, false)...)
			case r < 88:
				ends = append(ends, g.paymentStatus(ps[i], commands.TypePaymentConfirmed, commands.PaymentStatusConfirmed))
			case r < 92:
				ends = append(ends, g.paymentStatus(ps[i], commands.TypePaymentRejected, commands.PaymentStatusRejected))
			case r < 95:
				ends = append(ends, g.process(ps[i], commands.AllocUnderpaid, false, false)...)
			default:
				ends = append(ends, g.paymentStatus(ps[i], commands.TypePaymentCancelled, commands.PaymentStatusCancelled))
			}
		}
		if rng.IntN(4) == 0 {
			w, cw := g.widget(merchants[rng.IntN(len(merchants))], 30*time.Minute)
			extra = append(extra, cw)
			if rng.IntN(2) == 0 {
				_ = w
				extra = append(extra, g.rate("UAH", fmt.Sprintf("41.%02d", rng.IntN(100))))
			}
		}
		for _, ws := range [][]ledger.Write{create, pays, ends, extra} {
			if len(ws) > 0 {
				out = append(out, ws)
			}
		}
	}
	return out
}

// openLog opens a log under dir with the projector inline (nil: none).
// Commits are not fsynced: the tests do not crash the machine.
func openLog(t testing.TB, path string, p *projections.Projector) *boltlog.Store {
	t.Helper()
	var ps []boltlog.Projector
	if p != nil {
		ps = append(ps, p)
	}
	st, err := boltlog.Open(path, &boltlog.Options{Projectors: ps, InitialMmapSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	st.DB().NoSync = true
	return st
}

// newLog opens a fresh log with the projector and registers a cleanup that
// checks the invariants: the chain verifies, the views caught up with the
// head, and every currency's postings sum to zero.
func newLog(t *testing.T) *boltlog.Store {
	t.Helper()
	st := openLog(t, filepath.Join(t.TempDir(), "ledger.db"), &projections.Projector{})
	t.Cleanup(func() {
		checkInvariants(t, st)
		st.Close()
	})
	return st
}

func checkInvariants(t *testing.T, st *boltlog.Store) {
	t.Helper()
	h, err := st.Verify(context.Background())
	if err != nil {
		t.Errorf("verify: %v", err)
	}
	v := projections.NewViews(st.DB())
	if cp := v.Checkpoint(); cp != h.Seq {
		t.Errorf("checkpoint %d, head %d", cp, h.Seq)
	}
	totals, err := v.PostingTotals()
	if err != nil {
		t.Errorf("posting totals: %v", err)
	}
	for cur, d := range totals {
		if !d.IsZero() {
			t.Errorf("postings in %s sum to %s", cur, d)
		}
	}
}

func appendAll(t testing.TB, st *boltlog.Store, appends [][]ledger.Write) {
	t.Helper()
	for _, ws := range appends {
		if _, err := st.AppendWrites(context.Background(), ws...); err != nil {
			t.Fatal(err)
		}
	}
}

func mustAppend(t testing.TB, st *boltlog.Store, ws ...ledger.Write) []ledger.Event {
	t.Helper()
	evs, err := st.AppendWrites(context.Background(), ws...)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// rebuildInto replays st's log into a fresh file and returns it.
func rebuildInto(t testing.TB, st *boltlog.Store, until time.Time) (*bbolt.DB, projections.Summary) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "views.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	sum, err := projections.Rebuild(context.Background(), st.Events(context.Background(), 1), db, until)
	if err != nil {
		t.Fatal(err)
	}
	return db, sum
}

func isErr(err, target error) bool { return errors.Is(err, target) }
