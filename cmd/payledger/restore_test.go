package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"

	domain "github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/keyring"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
	"github.com/payledger/payledger/stream"
	"github.com/payledger/payledger/stream/natstest"
)

// requireSameLog checks that the log at path holds exactly src's events and
// the same rate view, and that its chain verifies.
func requireSameLog(t *testing.T, path string, src *boltlog.Store) {
	t.Helper()
	st, err := openReplicaLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := st.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	if st.Head() != src.Head() {
		t.Fatalf("copy head %v, source head %v", st.Head(), src.Head())
	}
	for e, err := range st.Events(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		want, err := src.Get(e.Seq)
		if err != nil || want.Hash != e.Hash {
			t.Fatalf("sequence %d differs (%v)", e.Seq, err)
		}
	}
	got, err := projections.NewViews(st.DB()).Rate("UAH")
	if err != nil {
		t.Fatal(err)
	}
	want, err := projections.NewViews(src.DB()).Rate("UAH")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("rate view %+v, source %+v", got, want)
	}
}

func TestRestoreRoundTrip(t *testing.T) {
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	src := sourceLog(t)
	appendTestEvents(t, src, 3000)
	publishTo(t, url, src)
	dir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	code, out, errs := run(ctx, "restore", "--nats-url", url, "--data-dir", dir)
	if code != 0 {
		t.Fatalf("restore exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "restored 3000 events") {
		t.Errorf("restore printed %q", out)
	}
	requireSameLog(t, filepath.Join(dir, "ledger.db"), src)

	// Again after the write node went on: the restored log is continued.
	appendTestEvents(t, src, 200)
	publishTo(t, url, src)
	code, out, errs = run(ctx, "restore", "--nats-url", url, "--data-dir", dir)
	if code != 0 {
		t.Fatalf("second restore exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "restored 200 events") {
		t.Errorf("second restore printed %q", out)
	}
	requireSameLog(t, filepath.Join(dir, "ledger.db"), src)
}

func TestRestoreRefusesAlteredMessage(t *testing.T) {
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	src := sourceLog(t)
	appendTestEvents(t, src, 100)

	// The stream as the relay would write it, but for one altered amount.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	publishAltered(ctx, t, openStream(ctx, t, url), src, 42, func(m *nats.Msg) {
		m.Data = []byte(strings.Replace(string(m.Data), `{"i": 42}`, `{"i": 4200}`, 1))
	})

	dir := filepath.Join(t.TempDir(), "data")
	code, _, errs := run(ctx, "restore", "--nats-url", url, "--data-dir", dir)
	if code == 0 {
		t.Fatal("restore of a broken chain succeeded")
	}
	if !strings.Contains(errs, "sequence 42") {
		t.Fatalf("restore did not name sequence 42: %s", errs)
	}
	for _, name := range []string{"ledger.db", "ledger.db.restore"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (%v)", name, err)
		}
	}
}

// TestRestoreRefusesEmptyStream: restoring a data dir without events from a
// stream without messages fails and leaves no ledger.db (an empty one would
// pass for a restored log).
func TestRestoreRefusesEmptyStream(t *testing.T) {
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	openStream(ctx, t, url)

	dir := filepath.Join(t.TempDir(), "data")
	code, out, errs := run(ctx, "restore", "--nats-url", url, "--data-dir", dir)
	if code != 1 || !strings.Contains(errs, "no events to restore (nothing restored)") {
		t.Fatalf("restore from an empty stream = %d\n%s%s", code, out, errs)
	}
	for _, name := range []string{"ledger.db", "ledger.db.restore"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (%v)", name, err)
		}
	}
}

// TestOpenReplicaLogLocked: a log another process holds (a running worker
// or server) is refused after the open timeout with boltlog.ErrLocked,
// naming the file, rather than waiting for ever.
func TestOpenReplicaLogLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	holder, err := openReplicaLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	st, err := openReplicaLog(path)
	if err == nil {
		st.Close()
		t.Fatal("a held log opened twice")
	}
	if !errors.Is(err, boltlog.ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Fatalf("second open: %v", err)
	}
}

// paidInvoiceLog appends to st a merchant, a rate, an invoice and a payment
// of it that pays it: its last append is payment.processed (allocation
// invoice) and invoice.paid, at sequences head-1 and head. It returns the
// payment's stream and the invoice's id.
func paidInvoiceLog(t *testing.T, st *boltlog.Store) (payment, invoice string) {
	t.Helper()
	ctx := context.Background()
	svc := domain.NewService(st, domain.Config{})
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	meta := func() domain.Meta {
		at = at.Add(time.Second)
		return domain.Meta{CommandID: ulid.Make(), Time: at}
	}
	rate, err := svc.SetRate(ctx, domain.SetRate{Meta: meta(), Currency: "UAH", Rate: "41.50"})
	if err != nil {
		t.Fatal(err)
	}
	name := "shop"
	if err := svc.RegisterMerchant(ctx, domain.RegisterMerchant{Meta: meta(), MerchantID: "m1",
		Settings: domain.MerchantSettings{Name: &name},
		Key:      domain.APIKeyIssued{KeyID: ulid.Make().String(), KeyHash: keyring.HashAPIKey("k"), Prefix: "pl_k"},
		Secret:   domain.SecretMaterial{SecretHash: keyring.SecretHash("secret")},
	}); err != nil {
		t.Fatal(err)
	}
	inv, err := svc.CreateInvoice(ctx, domain.CreateInvoice{Meta: meta(), InvoiceID: ulid.Make(), MerchantID: "m1",
		Amount: "100.00", Currency: "UAH", ExternalID: "order-1", Rate: rate.Rate})
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := svc.CreatePayment(ctx, domain.CreatePayment{Meta: meta(), PaymentID: ulid.Make(), InvoiceID: inv.InvoiceID, Method: "visamaster.uah"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := svc.ProcessPayment(ctx, domain.ProcessPayment{Meta: meta(), PaymentID: p.PaymentID})
	if err != nil || !res.InvoicePaid {
		t.Fatalf("process payment: %+v, %v", res, err)
	}
	head := st.Head().Seq
	for seq, typ := range map[uint64]string{head - 1: domain.TypePaymentProcessed, head: domain.TypeInvoicePaid} {
		if e, err := st.Get(seq); err != nil || e.Type != typ {
			t.Fatalf("sequence %d: %s (%v), want %s", seq, e.Type, err, typ)
		}
	}
	return domain.StreamID(domain.StreamPayment, p.PaymentID), inv.InvoiceID
}

// publishRange publishes st's events from sequence from up to last to
// conn's stream, each as its own message, as the relay does: a primary
// that died while publishing an append leaves the stream part way through
// it.
func publishRange(ctx context.Context, t *testing.T, conn *stream.Conn, st *boltlog.Store, from, last uint64) {
	t.Helper()
	for e, err := range st.Events(ctx, from) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Seq > last {
			break
		}
		m := stream.Message(stream.DefaultSubjectPrefix, &e)
		if _, err := conn.JetStream().PublishMsg(ctx, m, jetstream.WithExpectLastSequence(e.Seq-1)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRestoreWarnsOfCutAppend: a stream whose last message is the first
// event of a two-event append (a payment.processed that paid its invoice,
// without the invoice.paid appended with it: the primary died while
// publishing) restores, exit 0, but restore says on stderr and in its
// summary that the log ends part way through an append, naming the
// payment.processed's sequence and the last complete one, and what to do;
// verify reports the same cut. A stream that holds whole appends, restored
// fresh or continued up to the invoice.paid, gets no warning.
func TestRestoreWarnsOfCutAppend(t *testing.T) {
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	src := sourceLog(t)
	payment, invoice := paidInvoiceLog(t, src)
	paid := src.Head().Seq
	processed := paid - 1
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := openStream(ctx, t, url)
	dir, out, errs := restoreCut(ctx, t, conn, url, src, processed)
	requireWarning(t, errs, []string{
		"ends part way through an append",
		fmt.Sprintf("sequence %d, the payment.processed of %s", processed, payment),
		"invoice " + invoice,
		fmt.Sprintf("the last complete append ends at sequence %d", processed-1),
		"payledger verify", "docs/operations.md",
	})
	t.Logf("restore printed:\n%s%s", out, errs)
	if !strings.Contains(out, fmt.Sprintf("restored %d events", processed)) ||
		!strings.Contains(out, fmt.Sprintf("the last complete append ends at sequence %d", processed-1)) {
		t.Errorf("restore's summary does not name the cut:\n%s", out)
	}

	// verify's invoices check reports the same event.
	code, _, verrs := runCmd(t, "verify", "--data-dir", dir, "--skip-rebuild")
	if code != 1 || !strings.Contains(verrs, fmt.Sprintf("invoices at sequence %d (stream %s)", processed, payment)) {
		t.Errorf("verify of the restored log: exit %d\n%s", code, verrs)
	}

	// The invoice.paid reaches the stream after all: the continued
	// restore completes the append, and warns of nothing.
	publishRange(ctx, t, conn, src, paid, paid)
	code, out, errs = run(ctx, "restore", "--nats-url", url, "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "restored 1 events") || strings.Contains(out+errs, "warning") || strings.Contains(out, "complete append") {
		t.Fatalf("continued restore up to the invoice.paid: exit %d\n%s%s", code, out, errs)
	}
	requireSameLog(t, filepath.Join(dir, "ledger.db"), src)

	// A fresh restore of the whole stream: no warning either.
	dir2 := filepath.Join(t.TempDir(), "data")
	code, out, errs = run(ctx, "restore", "--nats-url", url, "--data-dir", dir2)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("restored %d events", paid)) || strings.Contains(out+errs, "warning") || strings.Contains(out, "complete append") {
		t.Fatalf("restore of whole appends: exit %d\n%s%s", code, out, errs)
	}
	requireSameLog(t, filepath.Join(dir2, "ledger.db"), src)
}

// TestEndsInAppendUndecodableLastEvent: a last event whose data do not
// decode cannot be checked for a cut append, which endsInAppend reports as
// unchecked rather than as an error that would fail the restore (and throw
// a fresh data dir's restore away). The inline projector refuses such an
// event before a restore gets here, so the log is written without one.
func TestEndsInAppendUndecodableLastEvent(t *testing.T) {
	st, err := boltlog.Open(filepath.Join(t.TempDir(), "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stream := domain.StreamID(domain.StreamPayment, ulid.Make().String())
	evs, err := st.AppendWrites(context.Background(), ledger.Write{Stream: stream, Expected: ledger.NoStream,
		Events: []ledger.NewEvent{{ID: ulid.Make(), Type: domain.TypePaymentProcessed, Time: time.Now(), Data: []byte(`{"at": 5}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	cut, err := endsInAppend(st, st.Head())
	if err != nil || cut == nil || cut.unchecked == nil || cut.seq != evs[0].Seq || cut.payment != stream {
		t.Fatalf("endsInAppend = %+v, %v; want the event unchecked, no error", cut, err)
	}
}

// TestRestoreWarnsOfCutPaymentCreation: a stream whose last message is a
// payment.created without the invoice.payment_added appended with it (the
// primary died while publishing) restores, exit 0, with a warning naming
// the payment, its invoice and the last complete append, and the summary
// naming that append; verify finds nothing wrong (a payment.created alone
// is how logs written before invoice.payment_added read). The stream
// completed, the continued restore warns of nothing.
func TestRestoreWarnsOfCutPaymentCreation(t *testing.T) {
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	src := sourceLog(t)
	paidInvoiceLog(t, src) // an earlier payment.created, with its invoice.payment_added
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	svc := domain.NewService(src, domain.Config{})
	meta := domain.Meta{CommandID: ulid.Make(), Time: time.Date(2025, 3, 1, 13, 0, 0, 0, time.UTC)}
	inv, err := svc.CreateInvoice(ctx, domain.CreateInvoice{Meta: meta, InvoiceID: ulid.Make(), MerchantID: "m1",
		Amount: "100.00", Currency: "UAH", ExternalID: "order-2", Rate: decimal.RequireFromString("41.50")})
	if err != nil {
		t.Fatal(err)
	}
	meta.CommandID = ulid.Make()
	p, _, err := svc.CreatePayment(ctx, domain.CreatePayment{Meta: meta, PaymentID: ulid.Make(), InvoiceID: inv.InvoiceID, Method: "visamaster.uah"})
	if err != nil {
		t.Fatal(err)
	}
	added := src.Head().Seq
	created := added - 1
	if e, err := src.Get(created); err != nil || e.Type != domain.TypePaymentCreated {
		t.Fatalf("sequence %d: %s (%v), want payment.created", created, e.Type, err)
	}
	conn := openStream(ctx, t, url)
	dir, out, errs := restoreCut(ctx, t, conn, url, src, created)
	t.Logf("restore printed:\n%s%s", out, errs)
	requireWarning(t, errs, []string{
		"ends part way through an append",
		fmt.Sprintf("sequence %d, the payment.created of %s for invoice %s", created, domain.StreamID(domain.StreamPayment, p.PaymentID), inv.InvoiceID),
		"invoice.payment_added",
		fmt.Sprintf("the last complete append ends at sequence %d", created-1),
		"docs/operations.md",
	})
	if !strings.Contains(out, fmt.Sprintf("the last complete append ends at sequence %d", created-1)) {
		t.Errorf("restore's summary does not name the cut:\n%s", out)
	}
	if code, vout, verrs := runCmd(t, "verify", "--data-dir", dir, "--skip-rebuild"); code != 0 {
		t.Errorf("verify of the restored log: exit %d\n%s%s", code, vout, verrs)
	}

	publishRange(ctx, t, conn, src, added, added)
	code, out, errs := run(ctx, "restore", "--nats-url", url, "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "restored 1 events") || strings.Contains(out+errs, "warning") || strings.Contains(out, "complete append") {
		t.Fatalf("continued restore up to the invoice.payment_added: exit %d\n%s%s", code, out, errs)
	}
	requireSameLog(t, filepath.Join(dir, "ledger.db"), src)
}

// TestEndsInAppendPaymentCreated: a log ending in a payment.created is cut
// when its writer appends invoice.payment_added after each (the earlier
// payment.created is followed by one), or when it holds no earlier
// payment; not when the earlier one stands alone, as in a log written
// before invoice.payment_added existed. Data that do not decode leave it
// unchecked.
func TestEndsInAppendPaymentCreated(t *testing.T) {
	created := func(invoice string) ledger.Write {
		id := ulid.Make().String()
		return ledger.Write{Stream: domain.StreamID(domain.StreamPayment, id), Expected: ledger.NoStream,
			Events: []ledger.NewEvent{{ID: ulid.Make(), Type: domain.TypePaymentCreated, Time: time.Now(),
				Data: []byte(fmt.Sprintf(`{"payment_id": %q, "invoice_id": %q}`, id, invoice))}}}
	}
	added := func(invoice string) ledger.Write {
		return ledger.Write{Stream: domain.StreamID(domain.StreamInvoice, invoice), Expected: ledger.Any,
			Events: []ledger.NewEvent{{ID: ulid.Make(), Type: domain.TypeInvoicePaymentAdded, Time: time.Now(), Data: []byte(`{}`)}}}
	}
	other := ledger.Write{Stream: "test-1", Expected: ledger.Any,
		Events: []ledger.NewEvent{{ID: ulid.Make(), Type: "test.noted", Time: time.Now(), Data: []byte(`{}`)}}}
	for _, tc := range []struct {
		name      string
		appends   [][]ledger.Write
		cut       bool
		unchecked bool
	}{
		{"after a payment.created with its invoice.payment_added", [][]ledger.Write{{created("i-1"), added("i-1")}, {other}, {created("i-2")}}, true, false},
		{"the log's one payment", [][]ledger.Write{{other}, {created("i-2")}}, true, false},
		{"after a payment.created alone (an older log)", [][]ledger.Write{{created("i-1")}, {other}, {created("i-2")}}, false, false},
		{"undecodable", [][]ledger.Write{{{Stream: "payment-x", Expected: ledger.NoStream,
			Events: []ledger.NewEvent{{ID: ulid.Make(), Type: domain.TypePaymentCreated, Time: time.Now(), Data: []byte(`{"invoice_id": 5}`)}}}}}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := boltlog.Open(filepath.Join(t.TempDir(), "ledger.db"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			for _, ws := range tc.appends {
				if _, err := st.AppendWrites(context.Background(), ws...); err != nil {
					t.Fatal(err)
				}
			}
			cut, err := endsInAppend(st, st.Head())
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case !tc.cut && cut != nil:
				t.Fatalf("endsInAppend = %+v, want no cut", cut)
			case !tc.cut:
			case cut == nil || !cut.created || cut.seq != st.Head().Seq || (cut.unchecked != nil) != tc.unchecked:
				t.Fatalf("endsInAppend = %+v, want the payment.created at %d, unchecked %v", cut, st.Head().Seq, tc.unchecked)
			case !tc.unchecked && cut.invoice != "i-2":
				t.Fatalf("endsInAppend names invoice %q, want i-2", cut.invoice)
			}
		})
	}
}

// requireWarning checks that restore's last warning line on stderr (errs)
// says each of want.
func requireWarning(t *testing.T, errs string, want []string) {
	t.Helper()
	var warning string
	for line := range strings.Lines(errs) {
		if strings.HasPrefix(line, "payledger restore: warning: ") {
			warning = line
		}
	}
	for _, w := range want {
		if !strings.Contains(warning, w) {
			t.Errorf("restore's warning does not say %q:\n%s", w, errs)
		}
	}
}

// restoreCut publishes src's events up to last to the stream, restores
// them into a new data dir, which it returns with restore's output, and
// requires exit 0.
func restoreCut(ctx context.Context, t *testing.T, conn *stream.Conn, url string, src *boltlog.Store, last uint64) (dir, out, errs string) {
	t.Helper()
	publishRange(ctx, t, conn, src, 1, last)
	dir = filepath.Join(t.TempDir(), "data")
	code, out, errs := run(ctx, "restore", "--nats-url", url, "--data-dir", dir)
	if code != 0 {
		t.Fatalf("restore of a cut append: exit %d\n%s%s", code, out, errs)
	}
	return dir, out, errs
}
