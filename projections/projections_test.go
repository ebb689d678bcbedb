package projections_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
)

func jsonKeys(t *testing.T, v any) []string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Seed 003's GET body, field for field.
var seed003Keys = []string{"amount", "callback_url", "conversion_rate", "created_at", "currency", "customer_id",
	"expires_at", "external_id", "fail_url", "invoice_id", "merchant_usdt", "paid_at", "payment_link",
	"purpose", "status", "success_url"}

// Seed 002's GET body.
var seed002Keys = []string{"createdAt", "destinationAmount", "destinationCurrency", "extra", "gatewayId", "id",
	"paymentAmount", "paymentCurrency", "status"}

func TestInvoiceViewSeed003(t *testing.T) {
	st := newLog(t)
	g := newGen()
	mustAppend(t, st, g.merchant("m1", "2"))
	in, w := g.invoice("m1", "order-2026-0001", "1500.00", "UAH", "41.50", "2")
	mustAppend(t, st, w)
	v := projections.NewViews(st.DB())

	got, err := v.Invoice("m1", in.id)
	if err != nil {
		t.Fatal(err)
	}
	// The seed's numbers: 1500.00 UAH at 41.50 with 2% is 35.42 USDT.
	for _, c := range []struct{ name, got, want string }{
		{"amount", got.Amount, "1500.00"},
		{"conversion_rate", got.ConversionRate, "41.50"},
		{"merchant_usdt", got.MerchantUSDT, "35.42"},
		{"gross_usdt", got.GrossUSDT, "36.144578"},
		{"fee_usdt", got.FeeUSDT, "0.724578"},
		{"currency", got.Currency, "UAH"},
		{"status", got.Status, "pending"},
		{"external_id", got.ExternalID, "order-2026-0001"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if got.PaidAt != nil || got.Version != 1 || got.MerchantID != "m1" {
		t.Errorf("paid_at %v, version %d, merchant %q", got.PaidAt, got.Version, got.MerchantID)
	}
	body := got.Body("https://pay.app.com/" + in.id)
	if keys := jsonKeys(t, body); !slices.Equal(keys, seed003Keys) {
		t.Errorf("body keys %v\nwant %v", keys, seed003Keys)
	}
	raw, _ := json.Marshal(body)
	for _, want := range []string{`"created_at":"2026-02-25T12:00:00Z"`, `"expires_at":"2026-02-25T12:20:00Z"`, `"paid_at":null`} {
		if !json.Valid(raw) || !contains(string(raw), want) {
			t.Errorf("body %s lacks %s", raw, want)
		}
	}
	// The view itself carries every seed field but payment_link, under the same names.
	viewKeys := jsonKeys(t, got)
	for _, k := range seed003Keys {
		if k != "payment_link" && !slices.Contains(viewKeys, k) {
			t.Errorf("view lacks %q", k)
		}
	}
	if slices.Contains(viewKeys, "payment_link") {
		t.Error("view stores payment_link")
	}
	// Lookups.
	if x, err := v.InvoiceByExternalID("m1", "order-2026-0001"); err != nil || x.InvoiceID != in.id {
		t.Errorf("by external id: %v %v", x.InvoiceID, err)
	}
	if _, err := v.InvoiceByExternalID("m2", "order-2026-0001"); !isErr(err, projections.ErrNotFound) {
		t.Errorf("another merchant's external id: %v", err)
	}
}

func contains(s, sub string) bool {
	return len(sub) <= len(s) && (s[:len(sub)] == sub || contains(s[1:], sub))
}

func TestEInvoiceIndexes(t *testing.T) {
	st := newLog(t)
	g := newGen()
	mustAppend(t, st, g.merchant("m1", "2"), g.merchant("m2", "2"))
	id, w := g.einvoice("m1")
	mustAppend(t, st, w)
	v := projections.NewViews(st.DB())
	x, err := v.InvoiceByPaymentID("m1", "tx-1")
	if err != nil || x.InvoiceID != id || x.Amount != "100" || x.ConversionRate != "600.00" || x.Method != "mtn-ci.xof" {
		t.Fatalf("by payment id: %+v %v", x, err)
	}
	if _, err := v.InvoiceByPaymentID("m2", "tx-1"); !isErr(err, projections.ErrNotFound) {
		t.Errorf("other merchant: %v", err)
	}
	if x, err := v.InvoiceByTracking("79DF-60B0-17F6"); err != nil || x.InvoiceID != id || x.ExtraFields["phone"] != "+2250000" {
		t.Errorf("by tracking: %+v %v", x, err)
	}
	if _, err := v.InvoiceByTracking("nope"); !isErr(err, projections.ErrNotFound) {
		t.Errorf("unknown tracking: %v", err)
	}
}

func TestPaymentViewSeed002(t *testing.T) {
	st := newLog(t)
	g := newGen()
	mustAppend(t, st, g.merchant("m1", "2"), g.merchant("m2", "2"))
	in, w := g.invoice("m1", "o1", "4990", "RUB", "90", "2")
	mustAppend(t, st, w)
	g.now = g.now.Add(172 * time.Millisecond)
	p, w := g.payment(in)
	evs := mustAppend(t, st, w)
	v := projections.NewViews(st.DB())

	got, err := v.Payment("m1", evs[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != strconv.FormatUint(evs[0].Seq, 10) || got.Status != "PENDING" || got.GatewayID != "12" ||
		got.PaymentCurrency != "RUB" || got.PaymentAmount != "4990.00" || got.DestinationCurrency != "USDT" ||
		got.DestinationAmount != in.conv.MerchantUSDT.StringFixed(2) || got.Extra.AccountName != "Иванов Иван Иванович" ||
		got.Stream != p.stream || got.InvoiceID != in.id {
		t.Errorf("payment view %+v", got)
	}
	body := got.Body()
	if keys := jsonKeys(t, body); !slices.Equal(keys, seed002Keys) {
		t.Errorf("body keys %v\nwant %v", keys, seed002Keys)
	}
	if body.CreatedAt != "2026-02-25T12:00:00.172Z" {
		t.Errorf("createdAt %q", body.CreatedAt)
	}
	raw, _ := json.Marshal(body.Extra)
	if string(raw) != `{"accountNumber":"2222222222222222","accountName":"Иванов Иван Иванович","bankName":"bank"}` {
		t.Errorf("extra %s", raw)
	}
	if _, err := v.Payment("m2", evs[0].Seq); !isErr(err, projections.ErrNotFound) {
		t.Errorf("another merchant's payment: %v", err)
	}
	if _, err := v.PaymentByNumber(evs[0].Seq + 100); !isErr(err, projections.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}

	// Status changes, and processing pays the invoice.
	g.tick(time.Minute)
	mustAppend(t, st, g.paymentStatus(p, commands.TypePaymentConfirmed, commands.PaymentStatusConfirmed))
	if got, _ := v.PaymentByStream(p.stream); got.Status != "CONFIRMED" || got.Version != 2 {
		t.Errorf("after confirm: %s v%d", got.Status, got.Version)
	}
	mustAppend(t, st, g.process(p, commands.AllocInvoice, true, false)...)
	got, _ = v.PaymentByStream(p.stream)
	if got.Status != "PROCESSED" || got.Allocation != commands.AllocInvoice || got.PaidAmount != "4990.00" || got.Version != 3 {
		t.Errorf("after process: %+v", got)
	}
	iv, _ := v.Invoice("m1", in.id)
	if iv.Status != "success" || iv.PaidAt == nil || !iv.PaidAt.Equal(g.now) || iv.PaidBy != p.stream || iv.Version != 2 {
		t.Errorf("invoice after payment: %+v", iv)
	}
	// The event holds the amount as given ("4990"); the view shows it at
	// the payment currency's minor units, as amount and the payment's.
	if iv.PaidAmount != "4990.00" {
		t.Errorf("invoice paid_amount %q, want 4990.00", iv.PaidAmount)
	}
	list, err := v.PaymentsForInvoice(in.id)
	if err != nil || len(list) != 1 || list[0].Stream != p.stream {
		t.Errorf("payments for invoice: %v %v", list, err)
	}
}

func TestListPagination(t *testing.T) {
	st := newLog(t)
	g := newGen()
	mustAppend(t, st, g.merchant("m1", "2"), g.merchant("m2", "2"))
	var ids []string
	for i := range 45 {
		g.tick(time.Second)
		in, w := g.invoice("m1", "o"+strconv.Itoa(i), "10", "UAH", "41.5", "2")
		ids = append(ids, in.id)
		mustAppend(t, st, w)
	}
	_, w := g.invoice("m2", "other", "10", "UAH", "41.5", "2")
	mustAppend(t, st, w)
	v := projections.NewViews(st.DB())
	for _, c := range []struct {
		page, size        int
		wantN, wantPage   int
		wantSize, wantTot int
		first             int // index into ids of the first item
	}{
		{1, 20, 20, 1, 20, 3, 44},
		{3, 20, 5, 3, 20, 3, 4},
		{4, 20, 0, 4, 20, 3, -1},
		{0, 0, 20, 1, 20, 3, 44},     // clamped to page 1, default size
		{1, 1000, 45, 1, 100, 1, 44}, // size clamped to 100
		{2, 7, 7, 2, 7, 7, 37},
		{math.MaxInt / 2, 20, 0, math.MaxInt / 2, 20, 3, -1}, // (page-1)*size overflows: still past the end
	} {
		p, err := v.ListInvoices("m1", "", c.page, c.size)
		if err != nil {
			t.Fatal(err)
		}
		d := p.Details
		if len(p.Items) != c.wantN || d.PageNumber != c.wantPage || d.PageSize != c.wantSize || d.TotalPages != c.wantTot || d.TotalObjects != 45 {
			t.Errorf("page %d size %d: %d items, details %+v", c.page, c.size, len(p.Items), d)
			continue
		}
		if c.first >= 0 && p.Items[0].InvoiceID != ids[c.first] {
			t.Errorf("page %d size %d starts with %s, want %s (newest first)", c.page, c.size, p.Items[0].InvoiceID, ids[c.first])
		}
	}
	raw, _ := json.Marshal(projections.PageDetails{})
	if string(raw) != `{"page_number":0,"page_size":0,"total_pages":0,"total_objects":0}` {
		t.Errorf("page details JSON %s", raw)
	}
	if p, _ := v.ListInvoices("m3", "", 1, 20); len(p.Items) != 0 || p.Details.TotalObjects != 0 || p.Items == nil {
		t.Errorf("empty merchant: %+v", p)
	}
}

func TestStatusIndexMoves(t *testing.T) {
	st := newLog(t)
	g := newGen()
	mustAppend(t, st, g.merchant("m1", "2"))
	var invs []*inv
	for i := range 6 {
		g.tick(time.Second)
		in, w := g.invoice("m1", "o"+strconv.Itoa(i), "100", "UAH", "41.5", "2")
		invs = append(invs, in)
		mustAppend(t, st, w)
	}
	v := projections.NewViews(st.DB())
	count := func(status string) int {
		p, err := v.ListInvoices("m1", status, 1, 100)
		if err != nil {
			t.Fatal(err)
		}
		if p.Details.TotalObjects != len(p.Items) {
			t.Errorf("%s: counter %d, index %d", status, p.Details.TotalObjects, len(p.Items))
		}
		for _, it := range p.Items {
			if status != "" && it.Status != status {
				t.Errorf("%s list holds a %s invoice", status, it.Status)
			}
		}
		return len(p.Items)
	}
	want := func(pending, success, expired, cancelled int) {
		t.Helper()
		got := [4]int{count("pending"), count("success"), count("expired"), count("cancelled")}
		if got != [4]int{pending, success, expired, cancelled} {
			t.Errorf("pending/success/expired/cancelled = %v, want %v", got, [4]int{pending, success, expired, cancelled})
		}
		if all := count(""); all != 6 {
			t.Errorf("all = %d", all)
		}
	}
	want(6, 0, 0, 0)
	mustAppend(t, st, g.invoiceEnd(invs[0], commands.TypeInvoiceCancelled, commands.InvoiceCancelled{CancelledAt: g.now, Reason: "r"}))
	want(5, 0, 0, 1)
	// A payment made while invs[1] is pending, processed after it expired
	// (below): no payment is made for an expired invoice.
	late, w := g.payment(invs[1])
	mustAppend(t, st, w)
	mustAppend(t, st, g.invoiceEnd(invs[1], commands.TypeInvoiceExpired, commands.InvoiceExpired{ExpiredAt: g.now}))
	want(4, 0, 1, 1)
	p, w := g.payment(invs[2])
	mustAppend(t, st, w)
	mustAppend(t, st, g.process(p, commands.AllocInvoice, true, false)...)
	want(3, 1, 1, 1)
	// Two invoices end in one append.
	mustAppend(t, st, g.invoiceEnd(invs[3], commands.TypeInvoiceExpired, commands.InvoiceExpired{ExpiredAt: g.now}),
		g.invoiceEnd(invs[4], commands.TypeInvoiceExpired, commands.InvoiceExpired{ExpiredAt: g.now}))
	want(1, 1, 3, 1)
	// A late payment on an expired invoice: recorded as paid late.
	mustAppend(t, st, g.process(late, commands.AllocInvoice, true, true)...)
	want(1, 2, 2, 1)
	if iv, _ := v.Invoice("m1", invs[1].id); !iv.Late || iv.Status != "success" {
		t.Errorf("late invoice: %+v", iv)
	}
	sum, err := projections.Summarize(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Invoices["pending"] != 1 || sum.Invoices["success"] != 2 || sum.Payments["PROCESSED"] != 2 {
		t.Errorf("summary %+v", sum)
	}
}

func TestDueIndex(t *testing.T) {
	st := newLog(t)
	g := newGen()
	mustAppend(t, st, g.merchant("m1", "2"))
	v := projections.NewViews(st.DB())
	if _, ok := v.NextDue(); ok {
		t.Error("next due on empty views")
	}
	a, w := g.invoice("m1", "a", "100", "UAH", "41.5", "2") // expires t0+20m
	mustAppend(t, st, w)
	g.tick(time.Minute)
	b, w := g.invoice("m1", "b", "100", "UAH", "41.5", "2") // t0+21m
	mustAppend(t, st, w)
	wd, w := g.widget("m1", 10*time.Minute) // t0+11m
	mustAppend(t, st, w)
	_, w = g.widget("m1", 0) // never expires
	mustAppend(t, st, w)

	dueIDs := func(before time.Time, limit int) []string {
		ds, err := v.Due(before, projections.Due{}, limit)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range ds {
			ids = append(ids, d.Kind+":"+d.ID)
			if d.MerchantID != "m1" {
				t.Errorf("due %v merchant", d)
			}
		}
		return ids
	}
	if at, ok := v.NextDue(); !ok || !at.Equal(t0.Add(11*time.Minute)) {
		t.Errorf("next due %v %v", at, ok)
	}
	all := []string{"widget:" + wd.id, "invoice:" + a.id, "invoice:" + b.id}
	if got := dueIDs(t0.Add(time.Hour), 0); !slices.Equal(got, all) {
		t.Errorf("due %v, want %v", got, all)
	}
	if got := dueIDs(t0.Add(20*time.Minute), 0); !slices.Equal(got, all[:2]) {
		t.Errorf("due at 20m %v (at or before)", got)
	}
	if got := dueIDs(t0.Add(time.Hour), 1); !slices.Equal(got, all[:1]) {
		t.Errorf("limit 1: %v", got)
	}
	// Disabling keeps the widget (a disabled widget expires too), re-enabling
	// keeps it, expiry removes it.
	mustAppend(t, st, g.widgetStatus(wd, commands.TypeWidgetStatusChanged, commands.WidgetStatusDisabled))
	if got := dueIDs(t0.Add(time.Hour), 0); !slices.Equal(got, all) {
		t.Errorf("after disable %v", got)
	}
	mustAppend(t, st, g.widgetStatus(wd, commands.TypeWidgetStatusChanged, commands.WidgetStatusActive))
	if got := dueIDs(t0.Add(time.Hour), 0); !slices.Equal(got, all) {
		t.Errorf("after enable %v", got)
	}
	mustAppend(t, st, g.widgetStatus(wd, commands.TypeWidgetExpired, ""))
	if got := dueIDs(t0.Add(time.Hour), 0); !slices.Equal(got, all[1:]) {
		t.Errorf("after widget expiry %v", got)
	}
	if w, _ := v.Widget("m1", wd.id); w.Status != "expired" || w.Version != 4 {
		t.Errorf("widget %+v", w)
	}
	// Invoices leave when they stop being pending.
	mustAppend(t, st, g.invoiceEnd(a, commands.TypeInvoiceExpired, commands.InvoiceExpired{ExpiredAt: g.now}))
	p, w := g.payment(b)
	mustAppend(t, st, w)
	if got := dueIDs(t0.Add(time.Hour), 0); !slices.Equal(got, all[2:]) {
		t.Errorf("after expiry %v", got)
	}
	mustAppend(t, st, g.process(p, commands.AllocInvoice, true, false)...)
	if got := dueIDs(t0.Add(time.Hour), 0); len(got) != 0 {
		t.Errorf("after payment %v", got)
	}
	if _, ok := v.NextDue(); ok {
		t.Error("next due with nothing due")
	}
}

// TestDuePages: a caller that cannot expire the first items due pages on
// past them with after: pages meet every item once, in the order At, Kind,
// ID (items due at the same time included), and a page may start after an
// item that has left the index meanwhile.
func TestDuePages(t *testing.T) {
	st := newLog(t)
	g := newGen()
	mustAppend(t, st, g.merchant("m1", "2"))
	var want []string
	var invs []*inv
	for _, ext := range []string{"a", "b", "c"} { // due together at t0+20m
		in, w := g.invoice("m1", ext, "100", "UAH", "41.5", "2")
		mustAppend(t, st, w)
		invs = append(invs, in)
		want = append(want, "invoice:"+in.id)
	}
	wd, w := g.widget("m1", 20*time.Minute) // also t0+20m: widgets after invoices
	mustAppend(t, st, w)
	want = append(want, "widget:"+wd.id)
	g.tick(time.Minute)
	d, w := g.invoice("m1", "d", "100", "UAH", "41.5", "2")
	mustAppend(t, st, w)
	want = append(want, "invoice:"+d.id)
	v := projections.NewViews(st.DB())

	before := t0.Add(time.Hour)
	var got []string
	var pages []projections.Due
	after := projections.Due{}
	for range len(want) + 1 {
		ds, err := v.Due(before, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			got = append(got, d.Kind+":"+d.ID)
		}
		pages = append(pages, ds...)
		if len(ds) < 2 {
			break
		}
		after = ds[len(ds)-1]
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged %v, want %v", got, want)
	}

	// Invoice b leaves the index; a page after it starts at c.
	mustAppend(t, st, g.invoiceEnd(invs[1], commands.TypeInvoiceExpired, commands.InvoiceExpired{ExpiredAt: g.now}))
	ds, err := v.Due(before, pages[1], 0)
	if err != nil || len(ds) != 3 || ds[0].ID != invs[2].id {
		t.Fatalf("after the expired b: %+v (%v), want c, the widget, d", ds, err)
	}
	if ds, err := v.Due(before, pages[len(pages)-1], 0); err != nil || len(ds) != 0 {
		t.Fatalf("after the last: %+v (%v)", ds, err)
	}
	if _, err := v.Due(before, projections.Due{Kind: "order", ID: "x"}, 0); !errors.Is(err, projections.ErrDueKind) {
		t.Fatalf("after an unknown kind: %v, want ErrDueKind", err)
	}
}

func TestWidgetViews(t *testing.T) {
	st := newLog(t)
	g := newGen()
	mustAppend(t, st, g.merchant("m1", "2"), g.merchant("m2", "2"))
	var ws []*wid
	for range 25 {
		g.tick(time.Second)
		w, cw := g.widget("m1", time.Hour)
		ws = append(ws, w)
		mustAppend(t, st, cw)
	}
	v := projections.NewViews(st.DB())
	got, err := v.Widget("m1", ws[0].id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Type != "single" || got.Status != "active" || got.FiatAmount != "250.00" || got.FiatCurrency != "UAH" ||
		got.ExpiresAt == nil || !slices.Equal(got.Currencies, []string{"USDT"}) || got.MerchantExternalID != "shop-7" {
		t.Errorf("widget %+v", got)
	}
	if _, err := v.Widget("m2", ws[0].id); !isErr(err, projections.ErrNotFound) {
		t.Errorf("another merchant's widget: %v", err)
	}
	if _, err := v.WidgetPublic(ws[0].id); err != nil {
		t.Error(err)
	}
	p, err := v.ListWidgets("m1", 2, 10)
	if err != nil || len(p.Items) != 10 || p.Details.TotalObjects != 25 || p.Details.TotalPages != 3 || p.Items[0].ID != ws[14].id {
		t.Errorf("widget page %+v %v", p.Details, err)
	}
}

func TestMerchantKeysRates(t *testing.T) {
	st := newLog(t)
	g := newGen()
	mustAppend(t, st, g.merchant("m1", "2"), g.rate("UAH", "41.5"))
	stream := commands.StreamID(commands.StreamMerchant, "m1")
	name, off, methods := "Renamed", false, []string{"visamaster.uah"}
	pct := dec("3.5")
	until := g.now.Add(24 * time.Hour)
	mustAppend(t, st, write(stream, ledger.Any,
		g.ev(commands.TypeMerchantSettings, "m1", commands.MerchantSettingsChanged{Name: &name, InvoicingEnabled: &off, Methods: &methods, CommissionPercent: &pct, ChangedAt: g.now}),
		g.ev(commands.TypeAPIKeyIssued, "m1", commands.APIKeyIssued{KeyID: "k2", KeyHash: "hash2", Prefix: "pl_2", IssuedAt: g.now}),
		g.ev(commands.TypeAPIKeyRevoked, "m1", commands.APIKeyRevoked{KeyID: "k1", RevokedAt: g.now}),
		g.ev(commands.TypeSigningSecretRotated, "m1", commands.SigningSecretRotated{Version: 2, SecretHash: "sh2", PreviousValidUntil: until, RotatedAt: g.now}),
	), g.rate("XOF", "600"))
	v := projections.NewViews(st.DB())
	m, err := v.Merchant("m1")
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "Renamed" || m.InvoicingEnabled || !slices.Equal(m.Methods, methods) || m.CommissionPercent != "3.5" ||
		m.SecretVersion != 2 || m.PreviousSecretVersion != 1 || m.PreviousValidUntil == nil || !m.PreviousValidUntil.Equal(until) ||
		len(m.APIKeys) != 2 || m.APIKeys[0].RevokedAt == nil || m.APIKeys[1].RevokedAt != nil || m.Version != 7 || m.InvoiceLifetimeSeconds != 1200 {
		t.Errorf("merchant %+v", m)
	}
	raw, _ := json.Marshal(m)
	if contains(string(raw), "hash") {
		t.Errorf("merchant view shows a key hash: %s", raw)
	}
	if k, err := v.APIKey("hash-m1-k1"); err != nil || !k.Revoked || k.MerchantID != "m1" || k.KeyID != "k1" {
		t.Errorf("revoked key %+v %v", k, err)
	}
	if k, err := v.APIKey("hash2"); err != nil || k.Revoked || k.KeyID != "k2" {
		t.Errorf("new key %+v %v", k, err)
	}
	if _, err := v.APIKey("nope"); !isErr(err, projections.ErrNotFound) {
		t.Errorf("unknown key %v", err)
	}
	if ms, err := v.Merchants(); err != nil || len(ms) != 1 {
		t.Errorf("merchants %v %v", ms, err)
	}
	if r, err := v.Rate("UAH"); err != nil || r.Rate != "41.50" {
		t.Errorf("rate %+v %v", r, err)
	}
	if rs, err := v.Rates(); err != nil || len(rs) != 2 || rs[1].Currency != "XOF" || rs[1].Rate != "600.00" {
		t.Errorf("rates %+v %v", rs, err)
	}
	if _, err := v.Rate("EUR"); !isErr(err, projections.ErrNotFound) {
		t.Errorf("missing rate %v", err)
	}
}

func TestBalances(t *testing.T) {
	st := newLog(t)
	g := newGen()
	mustAppend(t, st, g.merchant("m1", "2"), g.merchant("m2", "2"))
	want1 := dec("0")
	for i := range 3 {
		in, w := g.invoice("m1", "o"+strconv.Itoa(i), "1500.00", "UAH", "41.50", "2")
		mustAppend(t, st, w)
		p, w := g.payment(in)
		mustAppend(t, st, w)
		mustAppend(t, st, g.process(p, commands.AllocInvoice, true, false)...)
		want1 = want1.Add(in.conv.MerchantUSDT)
	}
	in, w := g.invoice("m2", "x", "100", "UAH", "41.50", "2")
	mustAppend(t, st, w)
	p, w := g.payment(in)
	mustAppend(t, st, w)
	mustAppend(t, st, g.process(p, commands.AllocUnderpaid, false, false)...)

	v := projections.NewViews(st.DB())
	b1, err := v.Balances("m1")
	if err != nil {
		t.Fatal(err)
	}
	if len(b1) != 1 || b1[0].Account != "merchant_available" || b1[0].Currency != "USDT" || !b1[0].Amount.Equal(want1.Neg()) {
		t.Errorf("m1 balances %+v, want merchant_available USDT %s", b1, want1.Neg())
	}
	if want1.String() != "106.26" {
		t.Errorf("three seed invoices credit %s", want1)
	}
	b2, _ := v.Balances("m2")
	if len(b2) != 1 || b2[0].Account != "merchant_suspense" {
		t.Errorf("m2 balances %+v", b2)
	}
	sys, _ := v.Balances("_")
	accounts := map[string]bool{}
	for _, b := range sys {
		accounts[b.Account+"/"+b.Currency] = true
	}
	for _, a := range []string{"gateway_clearing:12/UAH", "conversion/UAH", "conversion/USDT", "fee_income/USDT"} {
		if !accounts[a] {
			t.Errorf("system balances %+v lack %s", sys, a)
		}
	}
	// Balances sum to zero per currency across merchants; merchant totals agree.
	sums := map[string]string{}
	sum, err := projections.Summarize(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	acc := map[string]decimal.Decimal{}
	for m, bs := range sum.Balances {
		per := map[string]decimal.Decimal{}
		for _, b := range bs {
			acc[b.Currency] = acc[b.Currency].Add(b.Amount)
			per[b.Currency] = per[b.Currency].Add(b.Amount)
		}
		tot, err := v.MerchantTotals(m)
		if err != nil {
			t.Fatal(err)
		}
		if len(tot) != len(per) {
			t.Errorf("merchant %s totals %v, balances %v", m, tot, per)
		}
		for cur, d := range tot {
			if !per[cur].Equal(d) {
				t.Errorf("merchant %s %s total %s, balances sum %s", m, cur, d, per[cur])
			}
		}
	}
	for cur, s := range acc {
		sums[cur] = s.String()
		if !s.IsZero() {
			t.Errorf("%s balances sum to %s", cur, s)
		}
	}
	if len(sums) != 2 || len(sum.PostingTotals) != 2 {
		t.Errorf("currencies %v, totals %v", sums, sum.PostingTotals)
	}
}

// TestRefusedEvents: the inline projector fails the append of an event it
// cannot apply, and the log stays as it was.
func TestRefusedEvents(t *testing.T) {
	st := newLog(t)
	g := newGen()
	mustAppend(t, st, g.merchant("m1", "2"))
	in, w := g.invoice("m1", "o", "100", "UAH", "41.5", "2")
	mustAppend(t, st, w)
	p, w := g.payment(in)
	mustAppend(t, st, w)
	head := st.Head()

	unbalanced := g.process(p, commands.AllocInvoice, true, false)
	var d commands.PaymentProcessed
	_ = json.Unmarshal(unbalanced[0].Events[0].Data, &d)
	d.Postings[0].Amount = d.Postings[0].Amount.Add(dec("0.01"))
	unbalanced[0].Events[0].Data, _ = json.Marshal(d)
	p.version, in.version = p.version-1, in.version-1 // never committed
	// A payment.processed that pays its invoice and its invoice.paid are
	// one append, payment.processed first (the commands write them so):
	// an append that ends between them is refused, or the next append,
	// whatever it held, would be; so is one with another event between.
	pair := g.process(p, commands.AllocInvoice, true, false)
	p.version, in.version = p.version-1, in.version-1 // the pair goes in last
	processed := "sequence " + strconv.FormatUint(head.Seq+1, 10) + " "
	after := "sequence " + strconv.FormatUint(head.Seq+2, 10) + " "

	for _, c := range []struct {
		name string
		ws   []ledger.Write
		want error
		what []string // in the error
	}{
		{"malformed data", []ledger.Write{write(commands.StreamID(commands.StreamInvoice, "x"), ledger.NoStream,
			ledger.NewEvent{ID: g.ulid(), Type: commands.TypeInvoiceCreated, Time: g.now, Data: []byte(`[1,2]`)})}, projections.ErrMalformedEvent, nil},
		{"wrong field type", []ledger.Write{write(commands.StreamID(commands.StreamInvoice, "x"), ledger.NoStream,
			ledger.NewEvent{ID: g.ulid(), Type: commands.TypeInvoiceCreated, Time: g.now, Data: []byte(`{"invoice_id":5}`)})}, projections.ErrMalformedEvent, nil},
		{"stream mismatch", []ledger.Write{write(commands.StreamID(commands.StreamInvoice, "y"), ledger.NoStream,
			g.ev(commands.TypeInvoiceCreated, "m1", commands.InvoiceCreated{InvoiceID: "z", MerchantID: "m1"}))}, projections.ErrMalformedEvent, nil},
		{"unbalanced postings", unbalanced, projections.ErrUnbalanced, nil},
		{"paid unknown invoice", []ledger.Write{write(commands.StreamID(commands.StreamInvoice, "nope"), ledger.Any,
			g.ev(commands.TypeInvoicePaid, "m1", commands.InvoicePaid{PaymentID: p.stream, PaidAt: g.now}))}, projections.ErrInconsistent, nil},
		{"invoice created twice", []ledger.Write{write(in.stream(), ledger.Any,
			g.ev(commands.TypeInvoiceCreated, "m1", commands.InvoiceCreated{InvoiceID: in.id, MerchantID: "m1"}))}, projections.ErrInconsistent, nil},
		// The expiry is legal, the cancellation after it is not: neither
		// is written, nor is the payment's confirmation beside them.
		{"expired then cancelled", []ledger.Write{write(in.stream(), ledger.Exactly(in.version),
			g.ev(commands.TypeInvoiceExpired, "m1", commands.InvoiceExpired{ExpiredAt: g.now}),
			g.ev(commands.TypeInvoiceCancelled, "m1", commands.InvoiceCancelled{CancelledAt: g.now})),
			write(p.stream, ledger.Exactly(p.version), g.ev(commands.TypePaymentConfirmed, "m1", commands.PaymentStatusChanged{Status: commands.PaymentStatusConfirmed, At: g.now}))},
			projections.ErrIllegalTransition, nil},
		{"payment.processed alone", pair[:1], projections.ErrInconsistent, []string{processed, "it ends the append"}},
		{"payment.processed and another event", []ledger.Write{pair[0], g.rate("UAH", "41.6")},
			projections.ErrInconsistent, []string{after, "is not followed by its invoice.paid"}},
		{"payment.processed, another event, its invoice.paid", []ledger.Write{pair[0], g.rate("UAH", "41.6"), pair[1]},
			projections.ErrInconsistent, []string{after, "is not followed by its invoice.paid"}},
		{"payment.processed and an event of a type the projector skips", []ledger.Write{pair[0],
			write("future-1", ledger.Any, ledger.NewEvent{ID: g.ulid(), Type: "future.thing", Time: g.now, Data: []byte(`{}`)})},
			projections.ErrInconsistent, []string{after, "is not followed by its invoice.paid"}},
	} {
		_, err := st.AppendWrites(context.Background(), c.ws...)
		if !isErr(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
		for _, what := range c.what {
			if err != nil && !strings.Contains(err.Error(), what) {
				t.Errorf("%s: %v does not say %q", c.name, err, what)
			}
		}
		if st.Head() != head {
			t.Errorf("%s: the log moved", c.name)
		}
	}
	v := projections.NewViews(st.DB())
	if iv, err := v.InvoicePublic(in.id); err != nil || iv.Status != commands.InvoiceStatusPending || iv.Version != in.version {
		t.Errorf("invoice view after the refusals: %s version %d (%v), want pending at %d", iv.Status, iv.Version, err, in.version)
	}
	if pv, err := v.PaymentByStream(p.stream); err != nil || pv.Status != commands.PaymentStatusPending {
		t.Errorf("payment view after the refusals: %s (%v), want PENDING", pv.Status, err)
	}
	// The log and the views still work: the next append goes in, and
	// the pair.
	mustAppend(t, st, g.rate("UAH", "41.7"))
	mustAppend(t, st, pair...)
	if iv, err := v.InvoicePublic(in.id); err != nil || iv.Status != commands.InvoiceStatusSuccess {
		t.Errorf("invoice view after the pair: %s (%v), want success", iv.Status, err)
	}
}

// TestIllegalTransitionsRefused: a log holding a status change the
// commands never make (a bug, a tampered or badly imported log), a payment
// created for an invoice that takes none, or an invoice paid by a payment
// that is not one of its own, does not rebuild into views that show it:
// Rebuild, and a catch-up when the log is opened with the projector, fail
// with the case's error naming the event's sequence, and the inline
// projector refuses the append, leaving the log as it was. Each case's
// history is legal up to its last append. The cases without an error are
// the legal neighbours of the others (a late payment of an expired
// invoice, a duplicate): every projector takes them.
func TestIllegalTransitionsRefused(t *testing.T) {
	paid := func(x *world) [][]ledger.Write {
		return [][]ledger.Write{x.g.process(x.p, commands.AllocInvoice, true, false)}
	}
	two := func(a, b ledger.Write) [][]ledger.Write { return [][]ledger.Write{{a}, {b}} } // two appends, in order
	// tamperedReceipt: the payment cancelled, then a receipt of 100 whose
	// data has from replaced by to.
	tamperedReceipt := func(from, to string) func(x *world) [][]ledger.Write {
		return func(x *world) [][]ledger.Write {
			cancelled := x.g.paymentStatus(x.p, commands.TypePaymentCancelled, commands.PaymentStatusCancelled)
			w := x.g.receipt(x.p, "100")
			rewrite(&w.Events[0], from, to)
			return two(cancelled, w)
		}
	}
	newPayment := func(x *world, in *inv) []ledger.Write {
		_, w := x.g.payment(in)
		return []ledger.Write{w}
	}
	cancel := func(x *world) ledger.Write {
		return x.g.invoiceEnd(x.in, commands.TypeInvoiceCancelled, commands.InvoiceCancelled{CancelledAt: x.g.now})
	}
	expire := func(x *world) ledger.Write {
		return x.g.invoiceEnd(x.in, commands.TypeInvoiceExpired, commands.InvoiceExpired{ExpiredAt: x.g.now})
	}
	// paidBy is p's payment.processed (allocation invoice) with an
	// invoice.paid of in naming payment stream by, in one append.
	paidBy := func(x *world, p *pay, in *inv, by string) []ledger.Write {
		ws := x.g.process(p, commands.AllocInvoice, false, false)
		return append(ws, x.g.invoiceEnd(in, commands.TypeInvoicePaid, commands.InvoicePaid{PaymentID: by, PaidAt: x.g.now}))
	}
	// paidOnly is an invoice.paid of in by p, alone.
	paidOnly := func(x *world, p *pay, late bool) ledger.Write {
		return x.g.invoiceEnd(p.in, commands.TypeInvoicePaid, commands.InvoicePaid{PaymentID: p.stream, PaidAt: x.g.now, Late: late, PaidAmount: p.in.amount})
	}
	for _, tc := range []struct {
		name  string
		build func(x *world) [][]ledger.Write // the legal history after the setup, then the case's append last
		want  error                           // nil: the whole history is legal
		what  string                          // in the error
	}{
		{"invoice paid twice", func(x *world) [][]ledger.Write {
			return append(paid(x), x.g.process(x.p2, commands.AllocInvoice, true, false))
		}, projections.ErrIllegalTransition, "invoice.paid of an invoice in status success"},
		{"invoice cancelled after paid", func(x *world) [][]ledger.Write {
			return append(paid(x), []ledger.Write{cancel(x)})
		}, projections.ErrIllegalTransition, "invoice.cancelled of an invoice in status success"},
		{"invoice paid after cancelled", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{{cancel(x)}, x.g.process(x.p, commands.AllocInvoice, true, false)}
		}, projections.ErrIllegalTransition, "invoice.paid of an invoice in status cancelled"},
		{"invoice expired after expired", func(x *world) [][]ledger.Write {
			return two(expire(x), expire(x))
		}, projections.ErrIllegalTransition, "invoice.expired of an invoice in status expired"},
		{"payment back from processed to confirmed", func(x *world) [][]ledger.Write {
			return append(paid(x), []ledger.Write{x.g.paymentStatus(x.p, commands.TypePaymentConfirmed, commands.PaymentStatusConfirmed)})
		}, projections.ErrIllegalTransition, "payment.confirmed of a payment in status PROCESSED"},
		{"payment processed twice", func(x *world) [][]ledger.Write {
			return append(paid(x), x.g.process(x.p, commands.AllocDuplicate, false, false))
		}, projections.ErrIllegalTransition, "payment.processed of a payment in status PROCESSED"},
		{"payment cancelled after confirmed", func(x *world) [][]ledger.Write {
			return two(x.g.paymentStatus(x.p, commands.TypePaymentConfirmed, commands.PaymentStatusConfirmed), x.g.paymentStatus(x.p, commands.TypePaymentCancelled, commands.PaymentStatusCancelled))
		}, projections.ErrIllegalTransition, "payment.cancelled of a payment in status CONFIRMED"},
		{"payment processed after rejected", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{{x.g.paymentStatus(x.p, commands.TypePaymentRejected, commands.PaymentStatusRejected)},
				x.g.process(x.p, commands.AllocUnderpaid, false, false)}
		}, projections.ErrIllegalTransition, "payment.processed of a payment in status REJECTED"},
		{"widget active again after expired", func(x *world) [][]ledger.Write {
			return two(x.g.widgetStatus(x.w, commands.TypeWidgetExpired, commands.WidgetStatusExpired), x.g.widgetStatus(x.w, commands.TypeWidgetStatusChanged, commands.WidgetStatusActive))
		}, projections.ErrIllegalTransition, "widget.status_changed to active of a widget in status expired"},
		{"widget disabled twice", func(x *world) [][]ledger.Write {
			return two(x.g.widgetStatus(x.w, commands.TypeWidgetStatusChanged, commands.WidgetStatusDisabled), x.g.widgetStatus(x.w, commands.TypeWidgetStatusChanged, commands.WidgetStatusDisabled))
		}, projections.ErrIllegalTransition, "widget.status_changed to disabled of a widget in status disabled"},

		// A payment is created only for a pending invoice
		// (commands.PaymentCreationAllowed).
		{"payment created for a cancelled invoice", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{{cancel(x)}, newPayment(x, x.in)}
		}, projections.ErrIllegalTransition, "payment.created for an invoice in status cancelled"},
		{"payment created for an expired invoice", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{{expire(x)}, newPayment(x, x.in)}
		}, projections.ErrIllegalTransition, "payment.created for an invoice in status expired"},
		{"payment created for a paid invoice", func(x *world) [][]ledger.Write {
			return append(paid(x), newPayment(x, x.in))
		}, projections.ErrIllegalTransition, "payment.created for an invoice in status success"},
		{"payment created for an invoice never created", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{newPayment(x, &inv{id: "00000000-0000-0000-0000-000000000000", merchant: "m1", currency: "UAH", amount: dec("1")})}
		}, projections.ErrInconsistent, `invoice "00000000-0000-0000-0000-000000000000" not created`},
		{"payment created and the invoice cancelled in one append", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{{cancel(x), newPayment(x, x.in)[0]}}
		}, projections.ErrIllegalTransition, "payment.created for an invoice in status cancelled"},
		{"payment created at the expiry of an invoice still pending", func(x *world) [][]ledger.Write {
			x.g.now = x.in.expires
			return [][]ledger.Write{newPayment(x, x.in)}
		}, projections.ErrIllegalTransition, "not before the invoice's expires_at"},
		{"payment of another merchant for the invoice", func(x *world) [][]ledger.Write {
			other := *x.in
			other.merchant = "m2"
			return [][]ledger.Write{{x.g.merchant("m2", "2")}, newPayment(x, &other)}
		}, projections.ErrInconsistent, `payment of merchant "m2" for invoice `},

		// An invoice is paid by one of its own payments.
		{"invoice paid by another invoice's payment", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{paidBy(x, x.p3, x.in, x.p3.stream)}
		}, projections.ErrInconsistent, "a payment of invoice"},
		{"invoice paid by a payment never created", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{paidBy(x, x.p, x.in, commands.StreamID(commands.StreamPayment, "01ARZ3NDEKTSV4RRFFQ69G5FAV"))}
		}, projections.ErrInconsistent, `payment "payment-01ARZ3NDEKTSV4RRFFQ69G5FAV" not created`},

		// An invoice is paid by the payment whose payment.processed
		// (allocation invoice) is the event right before its invoice.paid:
		// the commands append the two together (commands.ProcessPayment).
		{"invoice paid by a payment still pending", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{{paidOnly(x, x.p, false)}}
		}, projections.ErrInconsistent, "not processed (allocation invoice) right before"},
		{"invoice paid by a payment processed into suspense", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{append(x.g.process(x.p, commands.AllocUnderpaid, false, false), paidOnly(x, x.p, false))}
		}, projections.ErrInconsistent, "not processed (allocation invoice) right before"},
		{"invoice paid by a payment other than the one processed before it", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{append(x.g.process(x.p2, commands.AllocInvoice, false, false), paidOnly(x, x.p, false))}
		}, projections.ErrInconsistent, "not processed (allocation invoice) right before"},
		// The invoice.paid repeats its payment.processed's time and amount
		// (commands.decideProcessing gives both the same).
		{"invoice.paid at another time than its payment.processed", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{paidEdited(x.g, x.p, func(d *commands.InvoicePaid) { d.PaidAt = d.PaidAt.Add(time.Second) })}
		}, projections.ErrInconsistent, "paid_at 2026-02-25T12:00:01Z, but the payment.processed at sequence"},
		{"invoice.paid of another amount than its payment.processed", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{paidEdited(x.g, x.p, func(d *commands.InvoicePaid) { d.PaidAmount = d.PaidAmount.Add(dec("0.01")) })}
		}, projections.ErrInconsistent, "paid_amount 100.01, but the payment.processed at sequence"},

		// An expired invoice is paid only late (commands.PaidLate; every
		// combination in TestPaidLateChecked).
		{"expired invoice paid, not flagged late", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{{expire(x)}, x.g.processLate(x.p, commands.AllocInvoice, true, true, false)}
		}, projections.ErrIllegalTransition, "invoice.paid not flagged late"},

		// Money held for a payment is held only once it ended CANCELLED,
		// REJECTED, ERROR or PROCESSED (commands.ReceiptHoldAllowed): a
		// PENDING or CONFIRMED payment's money is processed.
		{"receipt held for a pending payment", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{{x.g.receipt(x.p, "100")}}
		}, projections.ErrIllegalTransition, "payment.receipt_held of a payment in status PENDING"},
		{"receipt held for a confirmed payment", func(x *world) [][]ledger.Write {
			return two(x.g.paymentStatus(x.p, commands.TypePaymentConfirmed, commands.PaymentStatusConfirmed), x.g.receipt(x.p, "100"))
		}, projections.ErrIllegalTransition, "payment.receipt_held of a payment in status CONFIRMED"},
		{"receipt held, unbalanced", tamperedReceipt(`"amount":"-100"`, `"amount":"-99"`), projections.ErrUnbalanced, "UAH postings sum to 1"},
		// Balanced, but not the suspense rule's two lines for the payment
		// (commands.AppendSuspensePostings).
		{"receipt held through another gateway", tamperedReceipt(commands.AccountClearing+":12", commands.AccountClearing+":9"), projections.ErrInconsistent, "postings of payment.receipt_held posting 1 is gateway_clearing:9"},
		{"receipt held into the available balance", tamperedReceipt(commands.AccountSuspense+":", commands.AccountAvailable+":"), projections.ErrInconsistent, "posting 2 is merchant_available:"},

		// The legal neighbours.
		{"receipts held twice for a cancelled payment, once for a rejected one and one in error", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{{x.g.paymentStatus(x.p, commands.TypePaymentCancelled, commands.PaymentStatusCancelled)}, {x.g.receipt(x.p, "100")}, {x.g.receipt(x.p, "0.5")},
				{x.g.paymentStatus(x.p2, commands.TypePaymentRejected, commands.PaymentStatusRejected)}, {x.g.receipt(x.p2, "7")},
				{x.g.paymentStatus(x.p3, commands.TypePaymentFailed, commands.PaymentStatusError)}, {x.g.receipt(x.p3, "50")}}
		}, nil, ""},
		// A PROCESSED payment's first arrival is its payment.processed;
		// each further one is a receipt (the projector refused them before).
		{"receipts held twice for a processed payment that paid its invoice, once for a duplicate", func(x *world) [][]ledger.Write {
			return append(paid(x), []ledger.Write{x.g.receipt(x.p, "100")}, []ledger.Write{x.g.receipt(x.p, "0.5")},
				x.g.process(x.p2, commands.AllocDuplicate, false, false), []ledger.Write{x.g.receipt(x.p2, "7")})
		}, nil, ""},
		{"late payment of an expired invoice", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{{expire(x)}, x.g.process(x.p, commands.AllocInvoice, true, true)}
		}, nil, ""},
		{"payment processed at the expiry of an invoice still pending, paid late", func(x *world) [][]ledger.Write {
			x.g.now = x.in.expires
			return [][]ledger.Write{x.g.process(x.p, commands.AllocInvoice, true, true)}
		}, nil, ""},
		{"duplicate payment of a paid invoice", func(x *world) [][]ledger.Write {
			return append(paid(x), x.g.process(x.p2, commands.AllocDuplicate, false, false))
		}, nil, ""},
		{"payment of a cancelled invoice processed into suspense", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{{cancel(x)}, x.g.process(x.p, commands.AllocCancelled, false, false)}
		}, nil, ""},
		{"payment created after another was rejected, pays", func(x *world) [][]ledger.Write {
			ws := [][]ledger.Write{{x.g.paymentStatus(x.p, commands.TypePaymentRejected, commands.PaymentStatusRejected)}}
			p, w := x.g.payment(x.in)
			return append(ws, []ledger.Write{w}, x.g.process(p, commands.AllocInvoice, true, false))
		}, nil, ""},
		{"payment created a nanosecond before the invoice expires", func(x *world) [][]ledger.Write {
			x.g.now = x.in.expires.Add(-time.Nanosecond)
			p, w := x.g.payment(x.in)
			x.g.now = x.in.expires.Add(time.Minute)
			return [][]ledger.Write{{w}, {expire(x)}, x.g.process(p, commands.AllocInvoice, true, true)}
		}, nil, ""},
		{"invoice.paid of its payment.processed's amount, written with more decimals", func(x *world) [][]ledger.Write {
			ws := x.g.process(x.p, commands.AllocInvoice, true, false)
			rewrite(&ws[1].Events[0], `"paid_amount":"100"`, `"paid_amount":"100.00"`)
			return [][]ledger.Write{ws}
		}, nil, ""},
		{"invoice and its payment created in one append, then paid", func(x *world) [][]ledger.Write {
			in, wi := x.g.invoice("m1", "o3", "10", "UAH", "41.5", "2")
			p, wp := x.g.payment(in)
			return [][]ledger.Write{{wi, wp}, x.g.process(p, commands.AllocInvoice, true, false)}
		}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) { checkRefused(t, tc.build, tc.want, tc.what, 0) })
	}
}

// TestPaidLateChecked: the late flag of a payment.processed (allocation
// invoice) and of its invoice.paid is commands.PaidLate's, the commands'
// rule: set when the invoice was expired, or when the money came at or
// after its expires_at; clear otherwise. Every combination of the invoice's
// status (pending, expired), the processing time (before, at, after
// expires_at) and the flag (true, false): the legal ones are taken by
// Rebuild, a catch-up and inline; a wrong flag is refused with
// ErrIllegalTransition naming the event that carries it, whether both
// events carry it (the payment.processed, first, is named) or only one.
func TestPaidLateChecked(t *testing.T) {
	for _, expired := range []bool{false, true} {
		for _, when := range []struct {
			name string
			d    time.Duration // from expires_at
		}{{"before", -time.Second}, {"at", 0}, {"after", time.Second}} {
			for _, late := range []bool{true, false} {
				status := map[bool]string{false: commands.InvoiceStatusPending, true: commands.InvoiceStatusExpired}[expired]
				rule := expired || when.d >= 0
				name := fmt.Sprintf("%s, processed %s expires_at, late %t", status, when.name, late)
				// wrong: which events carry late; the others carry rule.
				for _, wrong := range []struct {
					name      string
					processed bool
					paid      bool
				}{{"both", true, true}, {"payment.processed only", true, false}, {"invoice.paid only", false, true}} {
					if late == rule && wrong.name != "both" {
						continue // the same legal history again
					}
					build := func(x *world) [][]ledger.Write {
						var out [][]ledger.Write
						if expired {
							x.g.now = x.in.expires // the scheduler expires it then
							out = append(out, []ledger.Write{x.g.invoiceEnd(x.in, commands.TypeInvoiceExpired, commands.InvoiceExpired{ExpiredAt: x.g.now})})
						}
						x.g.now = x.in.expires.Add(when.d)
						flag := func(carries bool) bool {
							if carries {
								return late
							}
							return rule
						}
						return append(out, x.g.processLate(x.p, commands.AllocInvoice, true, flag(wrong.processed), flag(wrong.paid)))
					}
					t.Run(name+", "+wrong.name, func(t *testing.T) {
						if late == rule {
							checkRefused(t, build, nil, "", 0)
							return
						}
						typ, back := commands.TypePaymentProcessed, uint64(1)
						if !wrong.processed {
							typ, back = commands.TypeInvoicePaid, 0
						}
						what := typ + " not flagged late"
						if late {
							what = typ + " flagged late"
						}
						checkRefused(t, build, projections.ErrIllegalTransition, what, back)
					})
				}
			}
		}
	}
}

// world is the legal history TestIllegalTransitionsRefused and
// TestPaidLateChecked start from: merchant m1, its invoices in and in2,
// in's payments p and p2, in2's payment p3 (all pending) and a widget w.
type world struct {
	g   *gen
	in  *inv
	p   *pay
	p2  *pay
	in2 *inv // another invoice of the merchant's
	p3  *pay // in2's payment
	w   *wid
}

// checkRefused appends the world's setup, then build's appends, to a log
// without a projector, and checks that Rebuild and a catch-up take the
// history (want nil) or fail with want naming the refused event's sequence
// (back events before the last append's last) and, Rebuild, what; and
// that inline the projector takes the last append or refuses it with want
// and what, leaving the log as it was.
func checkRefused(t *testing.T, build func(x *world) [][]ledger.Write, want error, what string, back uint64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	st := openLog(t, path, nil) // no projector: nothing stops the bad event going in
	x := &world{g: newGen()}
	var w ledger.Write
	setup := []ledger.Write{x.g.merchant("m1", "2")}
	x.in, w = x.g.invoice("m1", "o", "100", "UAH", "41.5", "2")
	setup = append(setup, w)
	x.in2, w = x.g.invoice("m1", "o2", "50", "UAH", "41.5", "2")
	setup = append(setup, w)
	x.w, w = x.g.widget("m1", time.Hour)
	setup = append(setup, w)
	appends := [][]ledger.Write{setup}
	for _, p := range []struct {
		p  **pay
		in *inv
	}{{&x.p, x.in}, {&x.p2, x.in}, {&x.p3, x.in2}} {
		*p.p, w = x.g.payment(p.in)
		appends = append(appends, []ledger.Write{w})
	}
	appends = append(appends, build(x)...)
	var last []ledger.Event
	for _, ws := range appends {
		last = mustAppend(t, st, ws...)
	}
	// The case's event is the last append's last, or back events before it.
	seq := last[len(last)-1].Seq - back
	at := "sequence " + strconv.FormatUint(seq, 10) + " "

	db, err := bbolt.Open(filepath.Join(t.TempDir(), "views.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = projections.Rebuild(context.Background(), st.Events(context.Background(), 1), db, time.Time{})
	switch {
	case want == nil && err != nil:
		t.Errorf("Rebuild of a legal history: %v", err)
	case want != nil && (!isErr(err, want) || !strings.Contains(err.Error(), at) || !strings.Contains(err.Error(), what)):
		t.Errorf("Rebuild = %v, want %v at %q: %q", err, want, at, what)
	case want != nil:
		// The history before it rebuilds.
		before := func(yield func(ledger.Event, error) bool) {
			for e, err := range st.Events(context.Background(), 1) {
				if err == nil && e.Seq == seq || !yield(e, err) {
					return
				}
			}
		}
		if _, err := projections.Rebuild(context.Background(), before, db, time.Time{}); err != nil {
			t.Errorf("Rebuild of the legal history: %v", err)
		}
	}
	st.Close()
	reopened, err := boltlog.Open(path, &boltlog.Options{Projectors: []boltlog.Projector{&projections.Projector{}}})
	if err == nil {
		reopened.Close()
	}
	switch {
	case want == nil && err != nil:
		t.Errorf("open with the projector: %v", err)
	case want != nil && (!isErr(err, want) || !strings.Contains(err.Error(), at)):
		t.Errorf("open with the projector = %v, want %v at %q", err, want, at)
	}

	// Inline, the projector refuses the case's append and takes
	// everything before it.
	live := newLog(t)
	for _, ws := range appends[:len(appends)-1] {
		mustAppend(t, live, ws...)
	}
	head := live.Head()
	_, err = live.AppendWrites(context.Background(), appends[len(appends)-1]...)
	switch {
	case want == nil && err != nil:
		t.Errorf("inline append of a legal history: %v", err)
	case want != nil && (!isErr(err, want) || !strings.Contains(err.Error(), what)):
		t.Errorf("inline append = %v, want %v: %q", err, want, what)
	case want != nil && live.Head() != head:
		t.Errorf("the refused append moved the log from %v to %v", head, live.Head())
	}
}

// rewrite replaces the first old in ev's data with new; ev must hold old.
func rewrite(ev *ledger.NewEvent, old, new string) {
	if !strings.Contains(string(ev.Data), old) {
		panic("no " + old + " in " + string(ev.Data))
	}
	ev.Data = []byte(strings.Replace(string(ev.Data), old, new, 1))
}

// paidEdited is p's payment.processed (allocation invoice) and its
// invoice.paid, one append as the commands write them, the invoice.paid's
// data changed by edit.
func paidEdited(g *gen, p *pay, edit func(*commands.InvoicePaid)) []ledger.Write {
	ws := g.process(p, commands.AllocInvoice, true, false)
	var d commands.InvoicePaid
	if err := json.Unmarshal(ws[1].Events[0].Data, &d); err != nil {
		panic(err)
	}
	edit(&d)
	ws[1].Events[0].Data, _ = json.Marshal(d)
	return ws
}

// processedEdited is p's payment.processed of allocation alloc as the
// commands write it (with its invoice.paid, one append, for allocation
// invoice), its data then changed by edit: the invoice.paid follows its
// paid_amount, so that only the postings are at fault.
func processedEdited(g *gen, p *pay, alloc string, edit func(*commands.PaymentProcessed)) []ledger.Write {
	ws := g.process(p, alloc, alloc == commands.AllocInvoice, false)
	var d commands.PaymentProcessed
	if err := json.Unmarshal(ws[0].Events[0].Data, &d); err != nil {
		panic(err)
	}
	edit(&d)
	ws[0].Events[0].Data, _ = json.Marshal(d)
	if len(ws) > 1 {
		var paid commands.InvoicePaid
		if err := json.Unmarshal(ws[1].Events[0].Data, &paid); err != nil {
			panic(err)
		}
		paid.PaidAmount = d.PaidAmount
		if over := d.PaidAmount.Sub(p.in.amount); over.IsPositive() {
			paid.Overpaid = over
		}
		ws[1].Events[0].Data, _ = json.Marshal(paid)
	}
	return ws
}

// TestProcessedPostingsChecked: a payment.processed's postings are exactly
// those of the commands' allocation rule (commands.AppendProcessingPostings)
// for its allocation, paid_amount, payment and invoice; one whose postings
// balance but move the money elsewhere (a review's cases), or whose
// allocation the commands never make of that amount, is refused
// (ErrInconsistent, naming it) by Rebuild, a catch-up and inline. Each
// verified and projected before. The world's invoice is 100 UAH at 41.5
// with 2%: gross 2.409638 USDT, the merchant's 2.36, the fee 0.049638;
// its payments go through gateway 12.
func TestProcessedPostingsChecked(t *testing.T) {
	const paying = 1 // a payment.processed of allocation invoice: its invoice.paid follows
	set := func(i int, account, currency, amount string) func(*commands.PaymentProcessed) {
		return func(d *commands.PaymentProcessed) {
			p := &d.Postings[i]
			if account != "" {
				p.Account = account
			}
			if currency != "" {
				p.Currency = currency
			}
			if amount != "" {
				p.Amount = dec(amount)
			}
		}
	}
	all := func(edits ...func(*commands.PaymentProcessed)) func(*commands.PaymentProcessed) {
		return func(d *commands.PaymentProcessed) {
			for _, e := range edits {
				e(d)
			}
		}
	}
	paidAmount := func(a string) func(*commands.PaymentProcessed) {
		return func(d *commands.PaymentProcessed) { d.PaidAmount = dec(a) }
	}
	paid := func(x *world) [][]ledger.Write {
		return [][]ledger.Write{x.g.process(x.p, commands.AllocInvoice, true, false)}
	}
	for _, tc := range []struct {
		name  string
		build func(x *world) [][]ledger.Write
		back  uint64
		what  string // "": legal
	}{
		{"invoice: the merchant's share credited to fee income", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{processedEdited(x.g, x.p, commands.AllocInvoice, set(3, commands.AccountFeeIncome, "", ""))}
		}, paying, "allocation invoice posting 4 is fee_income USDT -2.36, want gateway_clearing:12 UAH 100, conversion UAH -100, conversion USDT 2.409638, merchant_available:m1 USDT -2.36, fee_income USDT -0.049638"},
		{"invoice: another merchant's available balance credited", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{processedEdited(x.g, x.p, commands.AllocInvoice, set(3, "merchant_available:m2", "", ""))}
		}, paying, "posting 4 is merchant_available:m2 USDT -2.36"},
		{"invoice: through another gateway", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{processedEdited(x.g, x.p, commands.AllocInvoice, set(0, "gateway_clearing:9", "", ""))}
		}, paying, "posting 1 is gateway_clearing:9 UAH 100"},
		{"invoice: more arrived than paid_amount says", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{processedEdited(x.g, x.p, commands.AllocInvoice, all(set(0, "", "", "101"), set(1, "", "", "-101")))}
		}, paying, "posting 1 is gateway_clearing:12 UAH 101"},
		{"invoice: an overpayment credited as the conversion", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{processedEdited(x.g, x.p, commands.AllocInvoice, all(paidAmount("120"), set(0, "", "", "120"), set(1, "", "", "-120")))}
		}, paying, "posting 2 is conversion UAH -120"},
		{"invoice: paid with less than expected", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{processedEdited(x.g, x.p, commands.AllocInvoice, all(paidAmount("90"), set(0, "", "", "90"), set(1, "", "", "-90")))}
		}, paying, `allocation "invoice" of paid_amount 90, for a payment of 100.00 UAH: the commands make no such allocation`},
		{"invoice: the USDT postings in another order", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{processedEdited(x.g, x.p, commands.AllocInvoice, func(d *commands.PaymentProcessed) {
				d.Postings[2], d.Postings[3] = d.Postings[3], d.Postings[2]
			})}
		}, paying, "posting 3 is merchant_available:m1 USDT -2.36"},
		{"invoice: the fee never converted", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{processedEdited(x.g, x.p, commands.AllocInvoice, all(set(2, "", "", "2.36"), func(d *commands.PaymentProcessed) {
				d.Postings = d.Postings[:4]
			}))}
		}, paying, "posting 3 is conversion USDT 2.36"},
		{"invoice: fee income paid to the merchant after", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{processedEdited(x.g, x.p, commands.AllocInvoice, func(d *commands.PaymentProcessed) {
				d.Postings = append(d.Postings, commands.Posting{Account: "fee_income", Currency: "USDT", Amount: dec("0.04")},
					commands.Posting{Account: "merchant_available:m1", Currency: "USDT", Amount: dec("-0.04")})
			})}
		}, paying, "allocation invoice with 7 postings, want 5"},
		{"duplicate: into the available balance instead of suspense", func(x *world) [][]ledger.Write {
			return append(paid(x), processedEdited(x.g, x.p2, commands.AllocDuplicate, set(1, "merchant_available:m1", "", "")))
		}, 0, "allocation duplicate posting 2 is merchant_available:m1 UAH -100, want gateway_clearing:12 UAH 100, merchant_suspense:m1 UAH -100"},
		{"cancelled_invoice: in another currency", func(x *world) [][]ledger.Write {
			cancel := x.g.invoiceEnd(x.in, commands.TypeInvoiceCancelled, commands.InvoiceCancelled{CancelledAt: x.g.now})
			return [][]ledger.Write{{cancel}, processedEdited(x.g, x.p, commands.AllocCancelled, all(set(0, "", "USDT", ""), set(1, "", "USDT", "")))}
		}, 0, "posting 1 is gateway_clearing:12 USDT 100"},
		{"underpaid: through another gateway", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{processedEdited(x.g, x.p, commands.AllocUnderpaid, set(0, "gateway_clearing:9", "", ""))}
		}, 0, "posting 1 is gateway_clearing:9 UAH 99"},
		{"underpaid: less held than paid_amount", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{processedEdited(x.g, x.p, commands.AllocUnderpaid, all(set(0, "", "", "50"), set(1, "", "", "-50")))}
		}, 0, "posting 1 is gateway_clearing:12 UAH 50"},
		{"underpaid: of the full amount", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{processedEdited(x.g, x.p, commands.AllocUnderpaid, all(paidAmount("100"), set(0, "", "", "100"), set(1, "", "", "-100")))}
		}, 0, `allocation "underpaid" of paid_amount 100, for a payment of 100.00 UAH: the commands make no such allocation`},
		{"an allocation the commands never make", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{processedEdited(x.g, x.p, commands.AllocUnderpaid, func(d *commands.PaymentProcessed) { d.Allocation = "gift" })}
		}, 0, `allocation "gift" of paid_amount 99`},

		// The legal neighbours.
		{"invoice overpaid, the excess held as overpayment", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{processedEdited(x.g, x.p, commands.AllocInvoice, func(d *commands.PaymentProcessed) {
				d.PaidAmount = dec("120")
				d.Postings[0].Amount = dec("120")
				d.Postings = slices.Insert(d.Postings, 2, commands.Posting{Account: "merchant_overpayment:m1", Currency: "UAH", Amount: dec("-20")})
			})}
		}, 0, ""},
		{"invoice without a fee", func(x *world) [][]ledger.Write {
			in, w := x.g.invoice("m1", "o3", "41.50", "UAH", "41.5", "0") // 1 USDT, all the merchant's
			p, wp := x.g.payment(in)
			return [][]ledger.Write{{w, wp}, processedEdited(x.g, p, commands.AllocInvoice, func(d *commands.PaymentProcessed) {
				if !d.Postings[4].Amount.IsZero() {
					panic("a fee " + d.Postings[4].Amount.String())
				}
				d.Postings = d.Postings[:4]
			})}
		}, 0, ""},
		{"invoice, amounts written with more decimals", func(x *world) [][]ledger.Write {
			ws := x.g.process(x.p, commands.AllocInvoice, true, false)
			rewrite(&ws[0].Events[0], `"amount":"-100"`, `"amount":"-100.00"`)
			return [][]ledger.Write{ws}
		}, 0, ""},
		{"expired_invoice, held in suspense by a short-lived version of the commands", func(x *world) [][]ledger.Write {
			return [][]ledger.Write{processedEdited(x.g, x.p, commands.AllocUnderpaid, func(d *commands.PaymentProcessed) { d.Allocation = "expired_invoice" })}
		}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.what == "" {
				checkRefused(t, tc.build, nil, "", 0)
				return
			}
			checkRefused(t, tc.build, projections.ErrInconsistent, tc.what, tc.back)
		})
	}
}

// TestPaidRightAfterAcrossBatches: a payment.processed (allocation
// invoice) and its invoice.paid are consecutive events, also where a batch
// ends between the two: a catch-up's (1024 events an Apply) or a rebuild's
// transaction. The pair split at the boundary rebuilds and catches up into
// the views of the pair in one append; an invoice.paid that is not right
// after its payment.processed, or whose time or amount is not that
// event's, is refused each way, naming it. A payment.processed that no
// invoice.paid follows (an event between, or none) is what an import or a
// restore from the stream may leave: the events after it project, the
// same each way, and only an invoice.paid after them is refused. Inline,
// the log is written by appends, and an append that ends between the two
// is refused (TestRefusedEvents): the tail's first append, the
// payment.processed alone, is refused, and the whole tail in one append is
// what the legal case's views are.
func TestPaidRightAfterAcrossBatches(t *testing.T) {
	const boundary = 1024 // boltlog's catch-up batch; the rebuild's transaction below
	for _, tc := range []struct {
		name string
		// tail: the appends from sequence boundary on, the first the
		// payment.processed (allocation invoice) alone.
		tail  func(g *gen, p, p2 *pay, filler ledger.Write) [][]ledger.Write
		want  error // at sequence boundary+after
		after uint64
		what  string // in the error
		// oneAppend: the tail in one append is what the commands write
		// (then the inline views must equal the rebuilt ones too).
		oneAppend bool
	}{
		{"paid in the next append, after the boundary", func(g *gen, p, _ *pay, _ ledger.Write) [][]ledger.Write {
			ws := g.process(p, commands.AllocInvoice, true, false)
			return [][]ledger.Write{{ws[0]}, {ws[1]}}
		}, nil, 0, "", true},
		{"an event the projector skips between, after the boundary", func(g *gen, p, _ *pay, filler ledger.Write) [][]ledger.Write {
			ws := g.process(p, commands.AllocInvoice, true, false)
			return [][]ledger.Write{{ws[0]}, {filler}, {ws[1]}}
		}, projections.ErrInconsistent, 2, "not processed (allocation invoice) right before", false},
		{"a rate set between, after the boundary", func(g *gen, p, _ *pay, _ ledger.Write) [][]ledger.Write {
			ws := g.process(p, commands.AllocInvoice, true, false)
			return [][]ledger.Write{{ws[0]}, {g.rate("UAH", "41.6")}, {ws[1]}}
		}, projections.ErrInconsistent, 2, "not processed (allocation invoice) right before", false},
		{"processed at the boundary, its invoice.paid never written", func(g *gen, p, _ *pay, filler ledger.Write) [][]ledger.Write {
			ws := g.process(p, commands.AllocInvoice, true, false)
			return [][]ledger.Write{{ws[0]}, {filler}, {g.rate("UAH", "41.6")}}
		}, nil, 0, "", false},
		{"paid at another time, after the boundary", func(g *gen, p, _ *pay, _ ledger.Write) [][]ledger.Write {
			ws := paidEdited(g, p, func(d *commands.InvoicePaid) { d.PaidAt = d.PaidAt.Add(-time.Millisecond) })
			return [][]ledger.Write{{ws[0]}, {ws[1]}}
		}, projections.ErrInconsistent, 1, "but the payment.processed at sequence 1024 is at", false},
		{"paid another amount, after the boundary", func(g *gen, p, _ *pay, _ ledger.Write) [][]ledger.Write {
			ws := paidEdited(g, p, func(d *commands.InvoicePaid) { d.PaidAmount = dec("99.99") })
			return [][]ledger.Write{{ws[0]}, {ws[1]}}
		}, projections.ErrInconsistent, 1, "but the payment.processed at sequence 1024 has paid_amount 100", false},
		{"paid by another payment than the one processed, after the boundary", func(g *gen, p, p2 *pay, _ ledger.Write) [][]ledger.Write {
			ws := g.process(p2, commands.AllocInvoice, false, false)
			return [][]ledger.Write{ws, {g.invoiceEnd(p.in, commands.TypeInvoicePaid, commands.InvoicePaid{
				PaymentID: p.stream, PaidAt: g.now, PaidAmount: p.in.amount})}}
		}, projections.ErrInconsistent, 1, "not processed (allocation invoice) right before", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGen()
			appends := [][]ledger.Write{{g.merchant("m1", "2")}}
			in, w := g.invoice("m1", "o", "100", "UAH", "41.5", "2")
			appends = append(appends, []ledger.Write{w})
			p, w := g.payment(in)
			appends = append(appends, []ledger.Write{w})
			p2, w := g.payment(in)
			appends = append(appends, []ledger.Write{w})
			filler := func() ledger.Write { // an event the projector skips
				return write("future-1", ledger.Any, ledger.NewEvent{ID: g.ulid(), Type: "future.thing", Time: g.now, Data: []byte(`{}`)})
			}
			n := 0
			for _, ws := range appends {
				for _, w := range ws {
					n += len(w.Events)
				}
			}
			for ; n < boundary-1; n++ {
				appends = append(appends, []ledger.Write{filler()})
			}
			tailAt := len(appends)
			appends = append(appends, tc.tail(g, p, p2, filler())...)

			path := filepath.Join(t.TempDir(), "ledger.db")
			st := openLog(t, path, nil) // no projector: nothing refuses the split pair
			for i, ws := range appends {
				if evs := mustAppend(t, st, ws...); i == tailAt && evs[0].Seq != boundary {
					t.Fatalf("the tail starts at sequence %d, not %d", evs[0].Seq, boundary)
				}
			}
			at := "sequence " + strconv.FormatUint(boundary+tc.after, 10) + " "
			check := func(how string, err error) {
				t.Helper()
				switch {
				case tc.want == nil && err != nil:
					t.Errorf("%s: %v", how, err)
				case tc.want != nil && (!isErr(err, tc.want) || !strings.Contains(err.Error(), at) || !strings.Contains(err.Error(), tc.what)):
					t.Errorf("%s = %v, want %v at %q: %q", how, err, tc.want, at, tc.what)
				}
			}

			db, err := bbolt.Open(filepath.Join(t.TempDir(), "views.db"), 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			restore := projections.SetRebuildTxEvents(boundary)
			_, err = projections.Rebuild(context.Background(), st.Events(context.Background(), 1), db, time.Time{})
			restore()
			check("Rebuild", err)
			st.Close()

			caught, err := boltlog.Open(path, &boltlog.Options{Projectors: []boltlog.Projector{&projections.Projector{}}})
			check("open with the projector (catch-up)", err)
			if err == nil {
				defer caught.Close()
			}

			live := newLog(t)
			appendAll(t, live, appends[:tailAt])
			head := live.Head()
			if _, err := live.AppendWrites(context.Background(), appends[tailAt]...); !isErr(err, projections.ErrInconsistent) || !strings.Contains(err.Error(), "ends the append") {
				t.Errorf("inline, the payment.processed alone = %v, want %v: ends the append", err, projections.ErrInconsistent)
			}
			if live.Head() != head {
				t.Errorf("the refused append moved the log from %v to %v", head, live.Head())
			}
			if tc.want != nil || caught == nil {
				return
			}
			dbs := []struct {
				name string
				db   *bbolt.DB
			}{{"caught up", caught.DB()}}
			if tc.oneAppend {
				mustAppend(t, live, slices.Concat(appends[tailAt:]...)...)
				dbs = append(dbs, struct {
					name string
					db   *bbolt.DB
				}{"inline", live.DB()})
			}
			for _, c := range dbs {
				if err := projections.Compare(db, c.db); err != nil {
					t.Errorf("%s views against the rebuilt ones: %v", c.name, err)
				}
			}
		})
	}
}

// TestPayingRecordOfFormat6: views an older build (format 6) left ending
// right after a payment.processed (allocation invoice), a catch-up's last
// batch having ended there, hold the "paying" record in its old layout
// (the sequence, 8 bytes, and the payment's stream), without the time and
// amount the invoice.paid is checked against. This build reads no such
// record (ErrCorrupt, were it left under this build's format) and does not need to:
// Init drops views of format 6 and the log projects again, so the
// invoice.paid appended next goes in and the views are a rebuild's.
func TestPayingRecordOfFormat6(t *testing.T) {
	for _, format := range []byte{6, projections.FormatVersion} {
		t.Run(fmt.Sprintf("format %d", format), func(t *testing.T) {
			g := newGen()
			in, wi := g.invoice("m1", "o", "100", "UAH", "41.5", "2")
			p, wp := g.payment(in)
			pair := g.process(p, commands.AllocInvoice, true, false)
			path := filepath.Join(t.TempDir(), "ledger.db")
			st := openLog(t, path, nil) // no projector: the payment.processed alone goes in
			appendAll(t, st, [][]ledger.Write{{g.merchant("m1", "2")}, {wi}, {wp}, pair[:1]})
			processed := st.Head().Seq
			st.Close()
			// The catch-up's batch ends after the payment.processed.
			openLog(t, path, &projections.Projector{}).Close()

			db, err := bbolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bbolt.Tx) error {
				meta := tx.Bucket([]byte("v_meta"))
				if meta.Get([]byte("paying")) == nil {
					return errors.New("no paying record after the catch-up")
				}
				if err := meta.Put([]byte("format"), []byte{format}); err != nil {
					return err
				}
				old := binary.BigEndian.AppendUint64(nil, processed)
				return meta.Put([]byte("paying"), append(old, p.stream...))
			})
			db.Close()
			if err != nil {
				t.Fatal(err)
			}

			st = openLog(t, path, &projections.Projector{})
			defer st.Close()
			_, err = st.AppendWrites(context.Background(), pair[1:]...)
			if format == projections.FormatVersion {
				if !isErr(err, projections.ErrCorrupt) {
					t.Errorf("the invoice.paid after an old record under format %d = %v, want %v", format, err, projections.ErrCorrupt)
				}
				return
			}
			if err != nil {
				t.Fatalf("the invoice.paid after views of format 6 were rebuilt: %v", err)
			}
			checkInvariants(t, st)
			rebuilt, _ := rebuildInto(t, st, time.Time{})
			if err := projections.Compare(rebuilt, st.DB()); err != nil {
				t.Errorf("views against the rebuilt ones: %v", err)
			}
		})
	}
}

func TestUnknownEventTypeIgnored(t *testing.T) {
	st := newLog(t)
	g := newGen()
	mustAppend(t, st, g.merchant("m1", "2"))
	before, _ := projections.Summarize(st.DB())
	evs := mustAppend(t, st, write("future-1", ledger.Any, ledger.NewEvent{ID: g.ulid(), Type: "future.thing", Time: g.now, Data: []byte(`{"x":[1]}`)}),
		write(commands.StreamID(commands.StreamInvoice, "ghost"), ledger.Any, ledger.NewEvent{ID: g.ulid(), Type: "invoice.refunded", Time: g.now, Data: []byte(`"?"`)}))
	v := projections.NewViews(st.DB())
	if cp := v.Checkpoint(); cp != evs[1].Seq {
		t.Errorf("checkpoint %d, want %d", cp, evs[1].Seq)
	}
	after, _ := projections.Summarize(st.DB())
	if after.Events != before.Events+2 || len(after.Invoices) != 0 {
		t.Errorf("summary before %+v after %+v", before, after)
	}
}

// TestApplyIdempotent: events at or below the checkpoint change nothing.
func TestApplyIdempotent(t *testing.T) {
	st := newLog(t)
	g := newGen()
	appendAll(t, st, workload(g, rand.New(rand.NewPCG(1, 2)), []string{"m1", "m2"}, 50, 10))
	ref, _ := rebuildInto(t, st, time.Time{})
	var all []ledger.Event
	for e, err := range st.Events(context.Background(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, e)
	}
	// Re-apply everything (and a tail twice) inside a write transaction of
	// the rebuilt file.
	p := &projections.Projector{}
	if err := ref.Update(func(tx *bbolt.Tx) error {
		if _, err := p.Init(tx); err != nil {
			return err
		}
		if err := p.Apply(tx, all); err != nil {
			return err
		}
		return p.Apply(tx, all[len(all)-5:])
	}); err != nil {
		t.Fatal(err)
	}
	if err := projections.Compare(st.DB(), ref); err != nil {
		t.Error(err)
	}
	// A gap is refused.
	err := ref.Update(func(tx *bbolt.Tx) error {
		e := all[0]
		e.Seq = uint64(len(all)) + 2
		return p.Apply(tx, []ledger.Event{e})
	})
	if !isErr(err, projections.ErrSequenceGap) {
		t.Errorf("gap: %v", err)
	}
}

// TestRebuildEqualsLive: views rebuilt from the log are byte for byte the
// views the inline projector built, append by append.
func TestRebuildEqualsLive(t *testing.T) {
	st := newLog(t)
	g := newGen()
	rng := rand.New(rand.NewPCG(7, 7))
	appends := workload(g, rng, []string{"m1", "m2", "m3"}, 1500, 37) // > parallelMin views: the rebuild encodes in parallel
	// Some appends one write at a time, some grouped: batching must not
	// matter. (A payment.processed that pays its invoice goes with its
	// invoice.paid, in one append, as the commands write them.)
	for i, ws := range appends {
		if i%2 == 0 {
			mustAppend(t, st, ws...)
			continue
		}
		for j := 0; j < len(ws); j++ {
			if j+1 < len(ws) && ws[j+1].Events[0].Type == commands.TypeInvoicePaid {
				mustAppend(t, st, ws[j:j+2]...)
				j++
				continue
			}
			mustAppend(t, st, ws[j])
		}
	}
	db, sum := rebuildInto(t, st, time.Time{})
	if err := projections.Compare(st.DB(), db); err != nil {
		t.Fatal(err)
	}
	// The same over many transactions: views carried from one to the next.
	restore := projections.SetRebuildTxEvents(500)
	small, _ := rebuildInto(t, st, time.Time{})
	restore()
	if err := projections.Compare(st.DB(), small); err != nil {
		t.Fatalf("rebuilt 500 events a transaction: %v", err)
	}
	if sum.Events != st.Head().Seq || sum.Checkpoint != st.Head().Seq || sum.Merchants != 3 {
		t.Errorf("summary %+v, head %d", sum, st.Head().Seq)
	}
	var n uint64
	for _, c := range sum.Invoices {
		n += c
	}
	if n != 1500 {
		t.Errorf("invoices by status %v sum to %d", sum.Invoices, n)
	}
	for cur, d := range sum.PostingTotals {
		if !d.IsZero() {
			t.Errorf("%s totals %s", cur, d)
		}
	}
	live, err := projections.Summarize(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(live)
	b, _ := json.Marshal(sum)
	if string(a) != string(b) {
		t.Errorf("live summary %s\nrebuilt %s", a, b)
	}

	// Compare notices a difference, and names it.
	if err := db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("v_rates")).Put([]byte("UAH"), []byte(`{}`))
	}); err != nil {
		t.Fatal(err)
	}
	err = projections.Compare(st.DB(), db)
	var de *projections.DiffError
	if !isErr(err, projections.ErrMismatch) || !asDiff(err, &de) || de.Bucket != "v_rates" || string(de.Key) != "UAH" {
		t.Errorf("compare after tampering: %v", err)
	}
}

// TestRebuildUntil: a rebuild up to a time holds the log's prefix.
func TestRebuildUntil(t *testing.T) {
	st := newLog(t)
	g := newGen()
	mustAppend(t, st, g.merchant("m1", "2"))
	a, w := g.invoice("m1", "a", "100", "UAH", "41.5", "2")
	mustAppend(t, st, w)
	g.tick(time.Hour)
	cut := g.now
	mustAppend(t, st, g.invoiceEnd(a, commands.TypeInvoiceCancelled, commands.InvoiceCancelled{CancelledAt: g.now}))
	g.tick(time.Second)
	_, w = g.invoice("m1", "b", "100", "UAH", "41.5", "2")
	mustAppend(t, st, w)

	db, sum := rebuildInto(t, st, cut)
	if sum.Events != 5 || sum.Invoices["cancelled"] != 1 || sum.Invoices["pending"] != 0 {
		t.Errorf("until cut: %+v", sum)
	}
	_, sum = rebuildInto(t, st, cut.Add(-time.Nanosecond))
	if sum.Events != 4 || sum.Invoices["pending"] != 1 {
		t.Errorf("until before cut: %+v", sum)
	}
	if got, _ := projections.NewViews(db).InvoiceByExternalID("m1", "b"); got.InvoiceID != "" {
		t.Error("rebuild until holds a later invoice")
	}
}

// TestCatchUp: views dropped, or of an older format, are rebuilt from the
// log when the store reopens, and equal the originals.
func TestCatchUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	st := openLog(t, path, &projections.Projector{})
	g := newGen()
	appendAll(t, st, workload(g, rand.New(rand.NewPCG(3, 4)), []string{"m1", "m2"}, 200, 25))
	ref, _ := rebuildInto(t, st, time.Time{})
	if err := projections.Compare(st.DB(), ref); err != nil {
		t.Fatal(err)
	}
	st.Close()

	for _, damage := range []struct {
		name string
		fn   func(tx *bbolt.Tx) error
	}{
		{"dropped", func(tx *bbolt.Tx) error {
			return tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
				if string(name[:2]) == "v_" {
					return tx.DeleteBucket(name)
				}
				return nil
			})
		}},
		{"partly dropped", func(tx *bbolt.Tx) error { return tx.DeleteBucket([]byte("v_meta")) }},
		{"old format", func(tx *bbolt.Tx) error {
			if err := tx.Bucket([]byte("v_meta")).Put([]byte("format"), []byte{0}); err != nil {
				return err
			}
			return tx.Bucket([]byte("v_invoices")).Put([]byte("stale"), []byte("{}"))
		}},
		{"behind", func(tx *bbolt.Tx) error {
			// A checkpoint of 0 over stale views would double count: only
			// whole-view resets are safe, so here the views are emptied too.
			return tx.Bucket([]byte("v_meta")).Put([]byte("format"), []byte{0})
		}},
	} {
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(damage.fn); err != nil {
			t.Fatal(err)
		}
		db.Close()
		st = openLog(t, path, &projections.Projector{})
		if err := projections.Compare(st.DB(), ref); err != nil {
			t.Errorf("%s: %v", damage.name, err)
		}
		checkInvariants(t, st)
		st.Close()
	}

	// A newer format is refused.
	db, _ := bbolt.Open(path, 0o600, nil)
	_ = db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("v_meta")).Put([]byte("format"), []byte{99}) })
	db.Close()
	if st, err := boltlog.Open(path, &boltlog.Options{Projectors: []boltlog.Projector{&projections.Projector{}}}); !isErr(err, projections.ErrUnsupportedVersion) {
		if st != nil {
			st.Close()
		}
		t.Errorf("newer format: %v", err)
	}
}

func asDiff(err error, de **projections.DiffError) bool { return errors.As(err, de) }

// TestRebuildFailures: Rebuild's pipeline (read-ahead, bounded decoding,
// the writer) ends with the first error wherever it arises, and never
// hangs: an iterator error, a malformed event's data, a cancelled context,
// each well past the chunks the decoders may run ahead.
func TestRebuildFailures(t *testing.T) {
	st := newLog(t)
	g := newGen()
	for _, ws := range workload(g, rand.New(rand.NewPCG(9, 9)), []string{"m1", "m2"}, 7000, 500) {
		mustAppend(t, st, ws...)
	}
	var all []ledger.Event
	for e, err := range st.Events(context.Background(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, e)
	}
	// More than one transaction: a commit after a failed background sync
	// must fail the rebuild, not wait forever for the sync slot it holds.
	if len(all) < 25_000 || len(all) <= projections.RebuildTxEvents() {
		t.Fatalf("only %d events", len(all))
	}
	const at = 20_000
	errBoom := errors.New("boom")
	feed := func(ctx context.Context, cancel func(), mutate func(i int, e *ledger.Event) error) iter.Seq2[ledger.Event, error] {
		return func(yield func(ledger.Event, error) bool) {
			for i, e := range all {
				if err := mutate(i, &e); err != nil {
					yield(ledger.Event{}, err)
					return
				}
				if i == at && cancel != nil {
					cancel()
				}
				if !yield(e, nil) {
					return
				}
			}
		}
	}
	none := func(int, *ledger.Event) error { return nil }
	for _, tc := range []struct {
		name     string
		cancel   bool
		failSync bool // the first fsync of the views file fails with errBoom
		mutate   func(i int, e *ledger.Event) error
		want     error
	}{
		{"iterator error", false, false, func(i int, e *ledger.Event) error {
			if i == at {
				return errBoom
			}
			return nil
		}, errBoom},
		{"malformed data", false, false, func(i int, e *ledger.Event) error {
			if i == at {
				e.Type, e.Data = "invoice.created", json.RawMessage(`{"invoice_id": 7}`)
			}
			return nil
		}, projections.ErrMalformedEvent},
		{"cancelled", true, false, none, context.Canceled},
		// The background sync after the first commit fails: the rebuild
		// fails with it, though every later commit and sync succeed (a later
		// fsync may not report the lost pages again).
		{"sync fails", false, true, none, errBoom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := bbolt.Open(filepath.Join(t.TempDir(), "views.db"), 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var c func()
			if tc.cancel {
				c = cancel
			}
			if tc.failSync {
				defer projections.FailFirstViewSync(errBoom)()
			}
			if _, err := projections.Rebuild(ctx, feed(ctx, c, tc.mutate), db, time.Time{}); !errors.Is(err, tc.want) {
				t.Fatalf("Rebuild = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestDueFarFutureWidget: a widget may expire after 2262, past what Unix
// nanoseconds hold. Its due entry must still sort after everything due now,
// not wrap around into the past where the scheduler would meet it first on
// every pass and never be able to expire it.
func TestDueFarFutureWidget(t *testing.T) {
	st := newLog(t)
	g := newGen()
	mustAppend(t, st, g.merchant("m1", "2"))
	far, w := g.widget("m1", 280*365*24*time.Hour) // about 2306
	mustAppend(t, st, w)
	a, w := g.invoice("m1", "a", "100", "UAH", "41.5", "2") // t0+20m
	mustAppend(t, st, w)
	v := projections.NewViews(st.DB())

	ds, err := v.Due(t0.Add(time.Hour), projections.Due{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].ID != a.id {
		t.Fatalf("due an hour in: %+v, want only invoice %s", ds, a.id)
	}
	if at, ok := v.NextDue(); !ok || !at.Equal(t0.Add(20*time.Minute)) {
		t.Fatalf("next due %v %v, want the invoice's expires_at", at, ok)
	}
	ds, err = v.Due(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), projections.Due{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0].ID != a.id || ds[1].ID != far.id {
		t.Fatalf("due by 9999: %+v, want the invoice then the widget", ds)
	}
}

// TestLoneProcessedDoesNotBlockAppends: a log may end with a
// payment.processed (allocation invoice) whose invoice.paid it does not
// hold: restored from the stream, which carries each event as its own
// message, up to one whose append's next event was not yet published (or
// imported from such an export). The appends after it go in, and the
// views equal a rebuild of the log: refusing whatever follows the lone
// payment.processed would refuse every later append for good.
func TestLoneProcessedDoesNotBlockAppends(t *testing.T) {
	g := newGen()
	in, wi := g.invoice("m1", "o", "100", "UAH", "41.5", "2")
	p, wp := g.payment(in)
	pair := g.process(p, commands.AllocInvoice, true, false)
	src := openLog(t, filepath.Join(t.TempDir(), "ledger.db"), nil) // no projector: the payment.processed alone goes in
	defer src.Close()
	appendAll(t, src, [][]ledger.Write{{g.merchant("m1", "2")}, {wi}, {wp}, pair[:1]})
	var events []ledger.Event
	for e, err := range src.Events(context.Background(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}

	st := newLog(t)
	if err := st.Import(context.Background(), events); err != nil {
		t.Fatalf("import of a log ending with a lone payment.processed: %v", err)
	}
	in2, wi2 := g.invoice("m1", "o2", "50", "UAH", "41.5", "2")
	for _, ws := range [][]ledger.Write{{g.rate("UAH", "41.6")}, {wi2}} {
		if _, err := st.AppendWrites(context.Background(), ws...); err != nil {
			t.Fatalf("an append after the lone payment.processed: %v", err)
		}
	}
	v := projections.NewViews(st.DB())
	if iv, err := v.InvoicePublic(in2.id); err != nil || iv.Status != commands.InvoiceStatusPending {
		t.Errorf("the invoice appended after it: %+v, %v", iv, err)
	}
	checkInvariants(t, st)
	rebuilt, _ := rebuildInto(t, st, time.Time{})
	if err := projections.Compare(rebuilt, st.DB()); err != nil {
		t.Errorf("views against the rebuilt ones: %v", err)
	}
}
