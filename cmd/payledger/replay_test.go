package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"
	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
	"github.com/payledger/payledger/projections/projectionstest"
)

// replayT0 is when the crafted history starts.
var replayT0 = time.Date(2026, 2, 25, 12, 0, 0, 0, time.UTC)

// replayLog writes a closed log in a new data dir, with the projector
// inline as the server runs it: a merchant, a rate, three invoices of seed
// 003's 1500.00 UAH, one paid at +2m, one cancelled at +3m, one left
// pending, and a second merchant's invoice paid at +10m.
func replayLog(t *testing.T) string {
	t.Helper()
	return replayLogPending(t, 0)
}

// replayLogPending is replayLog with pending more of the first merchant's
// invoices at the end: enough of them fill pages of their own.
func replayLogPending(t *testing.T, pending int) string {
	t.Helper()
	dir := t.TempDir()
	s, err := boltlog.Open(filepath.Join(dir, logFileName), &boltlog.Options{Projectors: []boltlog.Projector{&projections.Projector{}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n uint64
	at := replayT0
	ev := func(typ, merchant string, data any) ledger.NewEvent {
		n++
		var id ulid.ULID
		_ = id.SetTime(ulid.Timestamp(at))
		binary.BigEndian.PutUint64(id[8:], n)
		raw, err := json.Marshal(data)
		if err != nil {
			t.Fatal(err)
		}
		return ledger.NewEvent{ID: id, Type: typ, Time: at, Merchant: merchant, Data: raw}
	}
	app := func(ws ...ledger.Write) {
		t.Helper()
		if _, err := s.AppendWrites(context.Background(), ws...); err != nil {
			t.Fatal(err)
		}
	}
	w := func(stream string, evs ...ledger.NewEvent) ledger.Write {
		return ledger.Write{Stream: stream, Expected: ledger.Any, Events: evs}
	}
	amount, rate, pct := decimal.RequireFromString("1500.00"), decimal.RequireFromString("41.50"), decimal.RequireFromString("2")
	conv := commands.Convert(amount, rate, pct)
	merchant := func(id string) {
		app(w(commands.StreamID(commands.StreamMerchant, id), ev(commands.TypeMerchantRegistered, id, commands.MerchantRegistered{
			MerchantID: id, Name: id, CommissionPercent: pct, InvoiceLifetime: 1200, InvoicingEnabled: true, RegisteredAt: at,
		})))
	}
	invoice := func(m, ext string) string {
		var u ulid.ULID
		_ = u.SetTime(ulid.Timestamp(at))
		n++
		binary.BigEndian.PutUint64(u[8:], n)
		id := commands.UUID(u)
		app(w(commands.StreamID(commands.StreamInvoice, id), ev(commands.TypeInvoiceCreated, m, commands.InvoiceCreated{
			InvoiceID: id, MerchantID: m, Source: commands.SourceAPI, ExternalID: ext, Amount: amount, Currency: "UAH",
			ConversionRate: rate, CommissionPercent: pct, GrossUSDT: conv.GrossUSDT, FeeUSDT: conv.FeeUSDT,
			MerchantUSDT: conv.MerchantUSDT, CreatedAt: at, ExpiresAt: at.Add(20 * time.Minute),
		})))
		return id
	}
	pay := func(m, inv string) {
		pid := ulid.ULID{}
		_ = pid.SetTime(ulid.Timestamp(at))
		n++
		binary.BigEndian.PutUint64(pid[8:], n)
		stream := commands.StreamID(commands.StreamPayment, pid.String())
		app(w(stream, ev(commands.TypePaymentCreated, m, commands.PaymentCreated{
			PaymentID: pid.String(), InvoiceID: inv, MerchantID: m, Method: "visamaster.uah", GatewayID: "1",
			PaymentCurrency: "UAH", PaymentAmount: amount, DestinationCurrency: "USDT", DestinationAmount: conv.MerchantUSDT, CreatedAt: at,
		})))
		app(w(stream, ev(commands.TypePaymentProcessed, m, commands.PaymentProcessed{
			At: at, PaidAmount: amount, Allocation: commands.AllocInvoice, Postings: []commands.Posting{
				{Account: "gateway_clearing:1", Currency: "UAH", Amount: amount},
				{Account: "conversion", Currency: "UAH", Amount: amount.Neg()},
				{Account: "conversion", Currency: "USDT", Amount: conv.GrossUSDT},
				{Account: "merchant_available:" + m, Currency: "USDT", Amount: conv.MerchantUSDT.Neg()},
				{Account: "fee_income", Currency: "USDT", Amount: conv.FeeUSDT.Neg()},
			},
		})), w(commands.StreamID(commands.StreamInvoice, inv), ev(commands.TypeInvoicePaid, m, commands.InvoicePaid{
			PaymentID: stream, PaidAt: at, PaidAmount: amount,
		})))
	}

	merchant("m1")
	app(w(commands.StreamRates, ev(commands.TypeRateSet, "", commands.RateSet{Currency: "UAH", Rate: rate, SetAt: at})))
	paid, cancelled := invoice("m1", "o1"), invoice("m1", "o2")
	invoice("m1", "o3")
	at = replayT0.Add(2 * time.Minute)
	pay("m1", paid)
	at = replayT0.Add(3 * time.Minute)
	app(w(commands.StreamID(commands.StreamInvoice, cancelled), ev(commands.TypeInvoiceCancelled, "m1", commands.InvoiceCancelled{CancelledAt: at})))
	at = replayT0.Add(10 * time.Minute)
	merchant("m2")
	pay("m2", invoice("m2", "x1"))
	for i := range pending {
		invoice("m1", fmt.Sprintf("p%d", i))
	}
	return dir
}

func TestReplayCommand(t *testing.T) {
	dir := replayLog(t)
	code, out, errs := runCmd(t, "replay", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("replay = %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{
		"events: 14 applied (log head 14)",
		"merchants: 2",
		"invoices: 4  pending 1  success 2  expired 0  cancelled 1",
		"payments: 2  PENDING 0  CONFIRMED 0  PROCESSED 2",
		"merchant m1:\n    merchant_available       USDT  -35.42",
		"merchant m2:\n    merchant_available       USDT  -35.42",
		"system accounts:",
		"fee_income               USDT  -1.449156",
		"gateway_clearing:1       UAH   3000",
		"posting totals: UAH 0 USDT 0 (every currency sums to zero)",
		"live views: identical to the replay",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("replay output lacks %q:\n%s", want, out)
		}
	}
}

func TestReplayUntil(t *testing.T) {
	dir := replayLog(t)
	// Up to +2m30s: the first payment, not the cancel nor merchant m2.
	code, out, errs := runCmd(t, "replay", "--data-dir", dir, "--until", replayT0.Add(150*time.Second).Format(time.RFC3339))
	if code != 0 {
		t.Fatalf("replay --until = %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{
		"events: 8 applied, up to 2026-02-25T12:02:30Z (log head 14)",
		"merchants: 1",
		"invoices: 3  pending 2  success 1  expired 0  cancelled 0",
		"merchant m1:\n    merchant_available       USDT  -35.42",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("replay --until output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "merchant m2") || strings.Contains(out, "live views") {
		t.Errorf("replay --until shows later events or compares with the live views:\n%s", out)
	}
	// Before anything happened.
	if code, out, _ := runCmd(t, "replay", "--data-dir", dir, "--until", "2000-01-01T00:00:00Z"); code != 0 ||
		!strings.Contains(out, "events: 0 applied") || !strings.Contains(out, "(no postings)") {
		t.Errorf("replay before the first event = %d:\n%s", code, out)
	}
}

func TestReplayKeepsViewsAndNoticesDivergence(t *testing.T) {
	dir := replayLog(t)
	keep := filepath.Join(t.TempDir(), "views.db")
	if code, out, errs := runCmd(t, "replay", "--data-dir", dir, "--out", keep); code != 0 || !strings.Contains(out, "views written to "+keep) {
		t.Fatalf("replay --out = %d\n%s%s", code, out, errs)
	}
	db, err := bbolt.Open(keep, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := projections.NewViews(db).InvoiceByExternalID("m1", "o1")
	db.Close()
	if err != nil || inv.Status != "success" || inv.MerchantUSDT != "35.42" || inv.ConversionRate != "41.50" {
		t.Fatalf("kept views: %+v %v", inv, err)
	}

	// Damage the live views: replay says so and fails.
	ldb, err := bbolt.Open(filepath.Join(dir, logFileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ldb.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("v_rates")).Put([]byte("UAH"), []byte(`{"currency":"UAH","rate":"1.00"}`))
	}); err != nil {
		t.Fatal(err)
	}
	ldb.Close()
	code, out, errs := runCmd(t, "replay", "--data-dir", dir)
	if code != 1 || !strings.Contains(out, "live views: DIFFER") || !strings.Contains(out, "v_rates") || !strings.Contains(errs, "live views differ") {
		t.Fatalf("replay over damaged live views = %d\n%s%s", code, out, errs)
	}
	if code, out, _ := runCmd(t, "replay", "--data-dir", dir, "--no-compare"); code != 0 || strings.Contains(out, "live views") {
		t.Fatalf("replay --no-compare = %d\n%s", code, out)
	}
}

func TestReplayCommandErrors(t *testing.T) {
	if code, _, errs := runCmd(t, "replay", "--data-dir", t.TempDir()); code != 1 || !strings.Contains(errs, "no event log at") {
		t.Fatalf("replay of an empty dir = %d: %s", code, errs)
	}
	if code, _, errs := runCmd(t, "replay", "--data-dir", t.TempDir(), "--until", "yesterday"); code != 2 || !strings.Contains(errs, "RFC 3339") {
		t.Fatalf("replay with a bad --until = %d: %s", code, errs)
	}
	if code, _, _ := runCmd(t, "replay", "--data-dir", t.TempDir(), "extra"); code != 2 {
		t.Fatalf("replay with an extra argument = %d", code)
	}
}

// TestReplayOutKeepsOldViewsOnFailure: --out names views an operator keeps.
// A replay that fails part way (here at a damaged record) must leave the
// views a previous replay wrote there as they were, and no scratch file;
// and --out must never name an event log, which a replay would replace.
func TestReplayOutKeepsOldViewsOnFailure(t *testing.T) {
	dir := replayLog(t)
	keep := filepath.Join(t.TempDir(), "views.db")
	if code, out, errs := runCmd(t, "replay", "--data-dir", dir, "--out", keep); code != 0 {
		t.Fatalf("replay --out = %d\n%s%s", code, out, errs)
	}
	tamper(t, dir, 9)
	code, out, errs := runCmd(t, "replay", "--data-dir", dir, "--out", keep)
	if code != 1 || !strings.Contains(errs, "sequence 9") || strings.Contains(out, "views written") {
		t.Fatalf("replay --out of a damaged log = %d\n%s%s", code, out, errs)
	}
	db, err := bbolt.Open(keep, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	views := projections.NewViews(db)
	inv, err := views.InvoiceByExternalID("m2", "x1")
	at := views.Checkpoint()
	db.Close()
	if err != nil || inv.Status != "success" || at != 14 {
		t.Fatalf("the views kept by the first replay after a failed one: %+v at %d, %v", inv, at, err)
	}
	if _, err := os.Stat(keep + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("the failed replay left its scratch file: %v", err)
	}

	good := replayLog(t)
	other := filepath.Join(replayLog(t), logFileName)
	before, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCmd(t, "replay", "--data-dir", good, "--out", other)
	if code != 2 || !strings.Contains(errs, other) {
		t.Fatalf("replay --out onto an event log = %d: %s", code, errs)
	}
	if after, _ := os.ReadFile(other); !bytes.Equal(before, after) {
		t.Fatal("replay --out changed the event log it was pointed at")
	}
}

// TestReplayLiveViewsOfAnOlderFormat: views an older build left are not
// compared (this build cannot read them; serve rebuilds them), and that is
// no failure.
func TestReplayLiveViewsOfAnOlderFormat(t *testing.T) {
	dir := replayLog(t)
	projectionstest.SetViewsFormat(t, filepath.Join(dir, logFileName), 4)
	code, out, errs := runCmd(t, "replay", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "live views: of format 4, an older build's: not compared") {
		t.Fatalf("replay = %d\n%s%s", code, out, errs)
	}
	code, out, errs = runCmd(t, "verify", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "format 4, an older build's") {
		t.Fatalf("verify = %d\n%s%s", code, out, errs)
	}
}
