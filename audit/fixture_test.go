package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
)

// t0 is when the crafted histories start.
var t0 = time.Date(2026, 2, 25, 12, 0, 0, 0, time.UTC)

// testKey is a fixed checkpoint key, so failures reproduce.
var testKey = ed25519.NewKeyFromSeed([]byte("payledger audit test key 32 byte"))

// builder appends crafted events straight to a log, bypassing the domain:
// with the projector inline (the server's log) or without it (so that the
// log can hold what the projections would refuse).
type builder struct {
	t    testing.TB
	s    *boltlog.Store
	path string
	n    uint64
	at   time.Time
}

func newBuilder(t testing.TB, projected bool) *builder {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	var opts boltlog.Options
	if projected {
		opts.Projectors = []boltlog.Projector{&projections.Projector{}}
	}
	s, err := boltlog.Open(path, &opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &builder{t: t, s: s, path: path, at: t0}
}

func (b *builder) id() ulid.ULID {
	b.n++
	var id ulid.ULID
	_ = id.SetTime(ulid.Timestamp(b.at))
	binary.BigEndian.PutUint64(id[8:], b.n)
	return id
}

func (b *builder) ev(typ, merchant string, data any) ledger.NewEvent {
	raw, err := json.Marshal(data)
	if err != nil {
		b.t.Fatal(err)
	}
	return ledger.NewEvent{ID: b.id(), Type: typ, Time: b.at, Merchant: merchant, Data: raw}
}

func w(stream string, evs ...ledger.NewEvent) ledger.Write {
	return ledger.Write{Stream: stream, Expected: ledger.Any, Events: evs}
}

func (b *builder) app(ws ...ledger.Write) []ledger.Event {
	b.t.Helper()
	evs, err := b.s.AppendWrites(context.Background(), ws...)
	if err != nil {
		b.t.Fatal(err)
	}
	return evs
}

var (
	amount = decimal.RequireFromString("1500.00")
	rate   = decimal.RequireFromString("41.50")
	pct    = decimal.RequireFromString("2")
	conv   = commands.Convert(amount, rate, pct)
)

func (b *builder) merchant(id string) {
	b.app(w(commands.StreamID(commands.StreamMerchant, id), b.ev(commands.TypeMerchantRegistered, id, commands.MerchantRegistered{
		MerchantID: id, Name: id, CommissionPercent: pct, InvoiceLifetime: 1200, InvoicingEnabled: true, RegisteredAt: b.at,
	})))
}

func (b *builder) rate() {
	b.app(w(commands.StreamRates, b.ev(commands.TypeRateSet, "", commands.RateSet{Currency: "UAH", Rate: rate, SetAt: b.at})))
}

// invoice creates a 1500.00 UAH invoice and returns its id.
func (b *builder) invoice(m, ext string) string {
	id := commands.UUID(b.id())
	b.app(w(commands.StreamID(commands.StreamInvoice, id), b.ev(commands.TypeInvoiceCreated, m, commands.InvoiceCreated{
		InvoiceID: id, MerchantID: m, Source: commands.SourceAPI, ExternalID: ext, Amount: amount, Currency: "UAH",
		ConversionRate: rate, CommissionPercent: pct, GrossUSDT: conv.GrossUSDT, FeeUSDT: conv.FeeUSDT,
		MerchantUSDT: conv.MerchantUSDT, CreatedAt: b.at, ExpiresAt: b.at.Add(20 * time.Minute),
	})))
	return id
}

// payment creates a payment of an invoice and returns its stream.
func (b *builder) payment(m, inv string) string {
	stream, ev := b.createdEv(m, inv)
	b.app(w(stream, ev))
	return stream
}

// createdEv is a new payment's stream and payment.created, of an invoice.
func (b *builder) createdEv(m, inv string) (string, ledger.NewEvent) {
	pid := b.id().String()
	return commands.StreamID(commands.StreamPayment, pid), b.ev(commands.TypePaymentCreated, m, commands.PaymentCreated{
		PaymentID: pid, InvoiceID: inv, MerchantID: m, Method: "visamaster.uah", GatewayID: "1",
		PaymentCurrency: "UAH", PaymentAmount: amount, DestinationCurrency: "USDT", DestinationAmount: conv.MerchantUSDT, CreatedAt: b.at,
	})
}

// addedEv is the invoice.payment_added of the payment of stream payStream.
func (b *builder) addedEv(m, payStream string) ledger.NewEvent {
	return b.ev(commands.TypeInvoicePaymentAdded, m, commands.InvoicePaymentAdded{PaymentID: payStream, AddedAt: b.at})
}

// paymentAdded creates a payment of an invoice as the commands do now:
// its payment.created and the invoice's invoice.payment_added in one
// append, which it returns.
func (b *builder) paymentAdded(m, inv string) []ledger.Event {
	stream, ev := b.createdEv(m, inv)
	return b.app(w(stream, ev), w(commands.StreamID(commands.StreamInvoice, inv), b.addedEv(m, stream)))
}

// twoMerchantsPayment registers merchants m1 and m2 and makes an invoice
// of m1 (external id o1) and a payment of it; it returns the invoice's id
// and the payment's stream.
func (b *builder) twoMerchantsPayment() (inv, pay string) {
	b.merchant("m1")
	b.merchant("m2")
	inv = b.invoice("m1", "o1")
	return inv, b.payment("m1", inv)
}

// postings are those of seq 003's invoice paid in full (docs/payments.md).
func postings(m string) []commands.Posting {
	return []commands.Posting{
		{Account: "gateway_clearing:1", Currency: "UAH", Amount: amount},
		{Account: "conversion", Currency: "UAH", Amount: amount.Neg()},
		{Account: "conversion", Currency: "USDT", Amount: conv.GrossUSDT},
		{Account: "merchant_available:" + m, Currency: "USDT", Amount: conv.MerchantUSDT.Neg()},
		{Account: "fee_income", Currency: "USDT", Amount: conv.FeeUSDT.Neg()},
	}
}

// processedEv is a payment.processed paying its invoice with ps.
func (b *builder) processedEv(m string, ps []commands.Posting, late bool) ledger.NewEvent {
	return b.ev(commands.TypePaymentProcessed, m, commands.PaymentProcessed{At: b.at, PaidAmount: amount, Allocation: commands.AllocInvoice, Late: late, Postings: ps})
}

func (b *builder) paidEv(m, payStream string, late bool) ledger.NewEvent {
	return b.ev(commands.TypeInvoicePaid, m, commands.InvoicePaid{PaymentID: payStream, PaidAt: b.at, PaidAmount: amount, Late: late})
}

// pay processes a payment that pays its invoice: one append, as the domain does.
func (b *builder) pay(m, inv, payStream string, late bool) []ledger.Event {
	return b.payLate(m, inv, payStream, late, late)
}

// payLate is pay with the payment.processed's late flag and the
// invoice.paid's apart (the domain sets both alike).
func (b *builder) payLate(m, inv, payStream string, late, paidLate bool) []ledger.Event {
	return b.app(w(payStream, b.processedEv(m, postings(m), late)),
		w(commands.StreamID(commands.StreamInvoice, inv), b.paidEv(m, payStream, paidLate)))
}

func (b *builder) cancel(m, inv string) {
	b.app(w(commands.StreamID(commands.StreamInvoice, inv), b.ev(commands.TypeInvoiceCancelled, m, commands.InvoiceCancelled{CancelledAt: b.at})))
}

func (b *builder) expire(m, inv string) {
	b.app(w(commands.StreamID(commands.StreamInvoice, inv), b.ev(commands.TypeInvoiceExpired, m, commands.InvoiceExpired{ExpiredAt: b.at})))
}

// checkpoint signs the head with key and appends it.
func (b *builder) checkpoint(key ed25519.PrivateKey) ledger.Event {
	cp := SignCheckpoint(key, b.s.Head(), b.at)
	return b.app(w(StreamCheckpoints, b.ev(TypeCheckpointSigned, "", cp)))[0]
}

// history writes what a server's log holds: two merchants, a rate, invoices
// paid, cancelled, pending, expired then paid late, a checkpoint in the
// middle and one at the end. It returns the ids of the invoices by name.
func (b *builder) history() map[string]string {
	ids := map[string]string{}
	b.merchant("m1")
	b.rate()
	ids["paid"], ids["cancelled"], ids["pending"], ids["late"] = b.invoice("m1", "o1"), b.invoice("m1", "o2"), b.invoice("m1", "o3"), b.invoice("m1", "o4")
	b.at = t0.Add(2 * time.Minute)
	b.pay("m1", ids["paid"], b.payment("m1", ids["paid"]), false)
	lateStream := b.payment("m1", ids["late"])
	b.checkpoint(testKey)
	b.at = t0.Add(3 * time.Minute)
	b.cancel("m1", ids["cancelled"])
	b.at = t0.Add(21 * time.Minute)
	b.expire("m1", ids["late"])
	b.pay("m1", ids["late"], lateStream, true)
	b.merchant("m2")
	ids["m2"] = b.invoice("m2", "x1")
	b.pay("m2", ids["m2"], b.payment("m2", ids["m2"]), false)
	b.checkpoint(testKey)
	return ids
}

// readOnly closes the builder's store and opens the log read-only, as
// payledger verify does.
func (b *builder) readOnly() *boltlog.Store {
	b.t.Helper()
	if err := b.s.Close(); err != nil {
		b.t.Fatal(err)
	}
	s, err := boltlog.Open(b.path, &boltlog.Options{ReadOnly: true})
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { s.Close() })
	return s
}

func decimalOf(n int64) decimal.Decimal { return decimal.NewFromInt(n) }

func openReadOnly(t testing.TB, path string) *boltlog.Store {
	t.Helper()
	s, err := boltlog.Open(path, &boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
