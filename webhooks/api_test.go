package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
)

// tearRecord tears k's delivery record in webhooks.db (half of it is
// left) and returns the intact one.
func tearRecord(t *testing.T, d *Dispatcher, k dkey) []byte {
	t.Helper()
	var intact []byte
	err := d.DB().Update(func(tx *bbolt.Tx) error {
		intact = bytes.Clone(tx.Bucket(bDeliveries).Get(k[:]))
		if len(intact) == 0 {
			return fmt.Errorf("no record for %x", k)
		}
		return tx.Bucket(bDeliveries).Put(k[:], intact[:len(intact)/2])
	})
	if err != nil {
		t.Fatal(err)
	}
	return intact
}

// checkSetAside checks that the records logged at Error are want, each
// naming the key of a corrupt record (and, where given, the delivery it
// kept from being redelivered), none carrying a body (its resource ids
// show it), a URL or a secret.
func checkSetAside(t *testing.T, errs []loggedRecord, want []map[string]string, secretFree ...string) {
	t.Helper()
	if len(errs) != len(want) {
		t.Fatalf("%d errors logged, want %d: %+v", len(errs), len(want), errs)
	}
	for i, rec := range errs {
		if !strings.Contains(rec.attrs["err"], ErrCorrupt.Error()) {
			t.Errorf("logged %q %v: not a corrupt record's error", rec.msg, rec.attrs)
		}
		for a, v := range want[i] {
			if rec.attrs[a] != v {
				t.Errorf("logged %q %v: %s is %q, want %q", rec.msg, rec.attrs, a, rec.attrs[a], v)
			}
		}
		for a, v := range rec.attrs {
			for _, bad := range append(secretFree, "whsec_") {
				if strings.Contains(v, bad) {
					t.Errorf("log attribute %s carries the body, the URL or a secret: %s", a, v)
				}
			}
		}
	}
}

// TestListLeavesOutUnreadableRecord: one of a merchant's seven deliveries
// has its record torn in webhooks.db. Every page of the list still reads:
// the torn one is left out of its page (logged at Error with its key),
// which holds one fewer, and the totals still count it, so the pages stay
// where they were: walking page 1 to total_pages gives every other
// delivery once, in order. The API answers the same. A list that failed
// on the one record left the merchant's page (all deliveries: the first
// page; a status: its own) unreadable, a 500 every time.
func TestListLeavesOutUnreadableRecord(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, false, nil)
	e.merchant("m1", rc.URL())
	var invs []string
	for range 7 {
		invs = append(invs, e.invoice("m1", ""))
	}
	logs := &logged{}
	cfg := e.config()
	cfg.Logger = slog.New(logs)
	d, err := Open(filepath.Join(t.TempDir(), FileName), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ingestNew(t, e, d) // not run: all stay pending

	all, err := d.ListDeliveries("m1", ListQuery{PageSize: MaxPageSize})
	if err != nil || len(all.Items) != 7 {
		t.Fatalf("list: %d items, %v", len(all.Items), err)
	}
	// The second of page 2, with three a page.
	bad := all.Items[4]
	badKey := makeKey(bad.EventSeq, kindByteWebhook)
	tearRecord(t, d, badKey)
	var want []string
	for _, del := range all.Items {
		if del.ID != bad.ID {
			want = append(want, del.ID)
		}
	}

	for _, status := range []string{"", StatusPending} {
		var got []string
		for page := 1; page <= 4; page++ {
			p, err := d.ListDeliveries("m1", ListQuery{Status: status, Page: page, PageSize: 3})
			if err != nil {
				t.Fatalf("status %q page %d: %v", status, page, err)
			}
			if p.Details.TotalObjects != 7 || p.Details.TotalPages != 3 || p.Details.PageNumber != page || p.Details.PageSize != 3 {
				t.Errorf("status %q page %d: %+v, want 7 in 3 pages of 3", status, page, p.Details)
			}
			if n := []int{3, 2, 1, 0}[page-1]; len(p.Items) != n {
				t.Errorf("status %q page %d: %d items, want %d", status, page, len(p.Items), n)
			}
			for _, del := range p.Items {
				got = append(got, del.ID)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("status %q: pages 1 to 4 list %v, want %v", status, got, want)
		}
	}
	// Each list that met it logged it: page 2, of each query.
	set := map[string]string{"key": fmt.Sprintf("%x", badKey)}
	checkSetAside(t, logs.errors(), []map[string]string{set, set}, append(invs, rc.URL())...)
	// Asked for by id, it is still an error, not an empty delivery.
	if _, err := d.Delivery("m1", bad.ID); !errors.Is(err, ErrCorrupt) {
		t.Errorf("the torn delivery by id: %v, want ErrCorrupt", err)
	}

	// The API: page 2 answers 200 with the other two.
	h := d.Handler(HandlerConfig{Merchant: func(*http.Request) (string, bool) { return "m1", true }})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/webhooks/deliveries?page=2&page_size=3", nil))
	var body struct {
		Items       []Delivery             `json:"items"`
		PageDetails projectionsPageDetails `json:"page_details"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != http.StatusOK {
		t.Fatalf("GET page 2: %d %s (%v)", w.Code, w.Body, err)
	}
	if len(body.Items) != 2 || body.Items[0].ID != want[3] || body.Items[1].ID != want[4] ||
		body.PageDetails.TotalObjects != 7 || body.PageDetails.TotalPages != 3 {
		t.Errorf("GET page 2: %s", w.Body)
	}
}

// TestRedeliverSinceSetsAsideUnreadable: a merchant redelivers everything
// since a time while two records are torn in webhooks.db: a delivered
// invoice's, and that of a payment's second delivery, pending at the head
// of its queue (torn while its request was under way). Both are set aside
// (logged at Error with their keys), and so is the payment's first
// delivery, whose redelivery would put it before the torn one and so must
// read it (logged with the torn key and its own); every other is
// redelivered, in one transaction, and counted, and sent again. With a
// status, the torn ones of that status are set aside the same way. A
// redelivery that failed on the one record redelivered none of the chunk
// and answered an error.
func TestRedeliverSinceSetsAsideUnreadable(t *testing.T) {
	h := newHeldRun(t)
	d := h.r.d
	inv, _ := h.e.paidInvoice("m1", "")
	a, b := h.e.invoice("m1", ""), h.e.invoice("m1", "")
	for range 4 { // the heads of the invoices' and the payment's queues
		recv(t, h.held, "request held")
	}
	invCreated := mustFindFor(t, d, "m1", commands.TypeInvoiceCreated, inv)
	invPaid := mustFindFor(t, d, "m1", commands.TypeInvoicePaid, inv)
	p1 := mustFindFor(t, d, "m1", commands.TypePaymentCreated, "")
	p2 := mustFindFor(t, d, "m1", commands.TypePaymentConfirmed, "")
	p3 := mustFindFor(t, d, "m1", commands.TypePaymentProcessed, "")
	da := mustFindFor(t, d, "m1", commands.TypeInvoiceCreated, a)
	db := mustFindFor(t, d, "m1", commands.TypeInvoiceCreated, b)
	all := []Delivery{invCreated, invPaid, p1, p2, p3, da, db}
	// p2 goes once p1 is recorded; its record is torn while it is held.
	h.open(invCreated, invPaid, p1, p3, da, db)
	for id := ""; id != p2.WebhookID; {
		id = recv(t, h.held, "payment.confirmed's request")
	}
	p2Key, dbKey, p1Key := makeKey(p2.EventSeq, kindByteWebhook), makeKey(db.EventSeq, kindByteWebhook), makeKey(p1.EventSeq, kindByteWebhook)
	tearRecord(t, d, p2Key)
	h.open(p2)
	for _, del := range []Delivery{invCreated, invPaid, p1, da, db} {
		waitFor(t, 10*time.Second, h.delivered(del))
	}
	h.settle(1) // p2's attempt set aside; p3 waits behind it
	tearRecord(t, d, dbKey)
	h.sent(all, map[string]int{p3.ID: 0})
	secretFree := []string{inv, a, b, h.rc.URL()} // a payment's id is a short number
	aside := func(k dkey, del *dkey) map[string]string {
		m := map[string]string{"key": fmt.Sprintf("%x", k)}
		if del != nil {
			m["delivery"] = fmt.Sprintf("%x", *del)
		}
		return m
	}
	sets := []map[string]string{aside(p2Key, nil)}

	n, err := d.RedeliverSince("m1", invCreated.CreatedAt, "")
	// invCreated, invPaid, da; p3 (pending, behind p2) for a new round.
	if err != nil || n != 4 {
		t.Fatalf("redeliver since: %d, %v; want 4", n, err)
	}
	sets = append(sets, aside(p2Key, &p1Key), aside(p2Key, nil), aside(dbKey, nil))
	h.settle(len(sets))
	checkSetAside(t, h.logs.errors(), sets, secretFree...)
	sent := map[string]int{invCreated.ID: 2, invPaid.ID: 2, da.ID: 2, p3.ID: 0}
	h.sent(all, sent)
	for _, c := range []struct {
		del          Delivery
		status       string
		redeliveries int
	}{{invCreated, StatusDelivered, 1}, {invPaid, StatusDelivered, 1}, {da, StatusDelivered, 1}, {p1, StatusDelivered, 0}, {p3, StatusPending, 1}} {
		got, err := d.Delivery("m1", c.del.ID)
		if err != nil || got.Status != c.status || got.Redeliveries != c.redeliveries {
			t.Errorf("%s (seq %d): %v, %s with %d redeliveries; want %s with %d", c.del.EventType, c.del.EventSeq, err, got.Status, got.Redeliveries, c.status, c.redeliveries)
		}
	}

	// Delivered only: invCreated, invPaid, da; p1 and db set aside.
	n, err = d.RedeliverSince("m1", invCreated.CreatedAt, StatusDelivered)
	if err != nil || n != 3 {
		t.Fatalf("redeliver the delivered since: %d, %v; want 3", n, err)
	}
	sets = append(sets, aside(p2Key, &p1Key), aside(dbKey, nil))
	h.settle(len(sets))
	checkSetAside(t, h.logs.errors(), sets, secretFree...)
	sent[invCreated.ID], sent[invPaid.ID], sent[da.ID] = 3, 3, 3
	h.sent(all, sent)
	h.verified()
}

// onLog is a log handler that calls do, once, when a record with message
// msg is logged: a test's hook into a point the code under test logs.
type onLog struct {
	msg  string
	once sync.Once
	do   func()
}

func (h *onLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *onLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *onLog) WithGroup(string) slog.Handler            { return h }
func (h *onLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(h.do)
	}
	return nil
}

// TestRedeliverSinceFailsPartWay: a bulk redelivery of one more delivery
// than a transaction takes fails in its second transaction, webhooks.db
// closed after the first committed (which held a torn record: the line
// that sets it aside, logged once the first commits, closes the file).
// The merchant route answers 500 with a detail saying how many were
// redelivered, the Go API's error is a *RedeliverError with that count,
// and the file, opened again, has exactly those redelivered.
func TestRedeliverSinceFailsPartWay(t *testing.T) {
	e := newEnv(t)
	e.merchant("m1", "https://hooks.example.com/webhooks")
	total := redeliverChunk + 1
	var wg sync.WaitGroup
	errs := make(chan error, total)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += 8 {
				id := ulid.Make()
				_, err := e.svc.CreateInvoice(e.ctx, commands.CreateInvoice{Meta: e.meta(), InvoiceID: id, MerchantID: "m1",
					Amount: "10.00", Currency: "UAH", ExternalID: "order-" + id.String(), Rate: e.rate})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	path := filepath.Join(t.TempDir(), FileName)
	var d *Dispatcher
	closed := false
	cfg := e.config()
	cfg.Logger = slog.New(&onLog{msg: "webhook delivery not redelivered: its record does not decode", do: func() {
		closed = d.DB().Close() == nil
	}})
	d, err := Open(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	var evs []ledger.Event
	for ev, err := range e.store.Events(e.ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if err := d.Ingest(evs); err != nil { // not running: no attempt starts
		t.Fatal(err)
	}
	last, err := d.ListDeliveries("m1", ListQuery{Page: total, PageSize: 1})
	if err != nil || len(last.Items) != 1 || last.Details.TotalObjects != total {
		t.Fatalf("the oldest delivery: %+v, %v", last, err)
	}
	oldest := last.Items[0]
	tearRecord(t, d, makeKey(oldest.EventSeq, kindByteWebhook))

	var got error
	h := d.Handler(HandlerConfig{
		Merchant:   func(*http.Request) (string, bool) { return "m1", true },
		WriteError: func(w http.ResponseWriter, r *http.Request, err error) { got = err; writeError(w, r, err) },
	})
	since, _ := json.Marshal(oldest.CreatedAt)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/webhooks/redeliver", strings.NewReader(`{"since": `+string(since)+`}`)))
	if !closed {
		t.Fatal("webhooks.db was not closed after the first transaction")
	}
	want := redeliverChunk - 1 // the first transaction's, but the torn one
	var re *RedeliverError
	if !errors.As(got, &re) || re.Redelivered != want || !errors.Is(got, berrors.ErrDatabaseNotOpen) {
		t.Errorf("error = %v; want a *RedeliverError of %d wrapping berrors.ErrDatabaseNotOpen", got, want)
	}
	var body struct {
		Error struct {
			Code    string              `json:"code"`
			Details []map[string]string `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusInternalServerError || body.Error.Code != "INTERNAL_ERROR" ||
		len(body.Error.Details) != 1 || body.Error.Details[0]["path"] != "redelivered" || body.Error.Details[0]["type"] != "partial" ||
		!strings.HasPrefix(body.Error.Details[0]["message"], fmt.Sprintf("%d deliveries were redelivered", want)) {
		t.Errorf("answer: %d %s; want 500 INTERNAL_ERROR with a detail redelivered saying %d", rec.Code, rec.Body, want)
	}

	// What the answer says is what the file holds.
	d2, err := Open(path, e.config())
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	redelivered := 0
	for p := 1; ; p++ {
		page, err := d2.ListDeliveries("m1", ListQuery{Page: p, PageSize: MaxPageSize})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) == 0 && p > page.Details.TotalPages {
			break
		}
		for _, del := range page.Items {
			redelivered += del.Redeliveries
		}
	}
	if redelivered != want {
		t.Errorf("webhooks.db holds %d redeliveries; the answer said %d", redelivered, want)
	}
}

// TestListTiesNewestFirst: deliveries whose events share a time (the
// events one command appends, or commands given the same time) are listed
// newest event first, like the rest of the list, with or without a status;
// paging with a small page_size gives every delivery once.
func TestListTiesNewestFirst(t *testing.T) {
	e := newEnv(t)
	e.merchant("m1", "https://hooks.example.com/m1")
	t0 := time.Now().UTC().Truncate(time.Second)
	create := func(at time.Time) {
		t.Helper()
		id := ulid.Make()
		if _, err := e.svc.CreateInvoice(e.ctx, commands.CreateInvoice{Meta: commands.Meta{CommandID: ulid.Make(), Time: at}, InvoiceID: id,
			MerchantID: "m1", Amount: "10.00", Currency: "UAH", ExternalID: "order-" + id.String(), Rate: e.rate}); err != nil {
			t.Fatal(err)
		}
	}
	create(t0)
	for range 10 {
		create(t0.Add(time.Second))
	}
	create(t0.Add(2 * time.Second))
	e.paidInvoice("m1", "") // payment.processed and invoice.paid: one command's time
	d, _ := ingested(t, e)
	defer d.Close()
	checkListOrder(t, d, 17)
}

// checkListOrder pages through m1's deliveries, all and pending, 3 a page,
// and checks that each of the total comes once, newest event first: by
// time, then by event sequence, then a status_url call after its
// event's webhook.
func checkListOrder(t *testing.T, d *Dispatcher, total int) {
	t.Helper()
	for _, status := range []string{"", StatusPending} {
		var got []Delivery
		for p := 1; ; p++ {
			page, err := d.ListDeliveries("m1", ListQuery{Status: status, Page: p, PageSize: 3})
			if err != nil {
				t.Fatal(err)
			}
			if p > page.Details.TotalPages {
				break
			}
			got = append(got, page.Items...)
		}
		seen := map[string]bool{}
		for i, del := range got {
			if seen[del.ID] {
				t.Errorf("status %q: %s listed twice", status, del.ID)
			}
			seen[del.ID] = true
			if i == 0 {
				continue
			}
			prev := got[i-1]
			if c := prev.CreatedAt.Compare(del.CreatedAt); c < 0 || c == 0 && (prev.EventSeq < del.EventSeq ||
				prev.EventSeq == del.EventSeq && prev.Kind == KindStatusURL) {
				t.Errorf("status %q: item %d (%s seq %d at %s) after item %d (%s seq %d at %s): not newest first", status,
					i+1, del.EventType, del.EventSeq, del.CreatedAt.Format(time.RFC3339Nano), i, prev.EventType, prev.EventSeq, prev.CreatedAt.Format(time.RFC3339Nano))
			}
		}
		if len(seen) != total {
			t.Errorf("status %q: %d deliveries listed, want %d", status, len(seen), total)
		}
	}
}

// TestOpenMigratesFormat1: a webhooks.db of format 1, whose time indexes
// listed deliveries of one time oldest event first, is rewritten by Open
// to format 2: the list is then newest first throughout, every delivery
// once, and a bulk redelivery finds them all.
func TestOpenMigratesFormat1(t *testing.T) {
	e := newEnv(t)
	e.merchant("m1", "https://hooks.example.com/m1")
	at := time.Now().UTC().Truncate(time.Second)
	for range 7 {
		id := ulid.Make()
		if _, err := e.svc.CreateInvoice(e.ctx, commands.CreateInvoice{Meta: commands.Meta{CommandID: ulid.Make(), Time: at}, InvoiceID: id,
			MerchantID: "m1", Amount: "10.00", Currency: "UAH", ExternalID: "order-" + id.String(), Rate: e.rate}); err != nil {
			t.Fatal(err)
		}
	}
	e.paidInvoice("m1", "")
	d, path := ingested(t, e)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Format 1: the index keys end in the delivery's key as it is.
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range []string{"w_ix_time", "w_ix_status"} {
			b := tx.Bucket([]byte(name))
			var keys [][]byte
			if err := b.ForEach(func(k, _ []byte) error { keys = append(keys, bytes.Clone(k)); return nil }); err != nil {
				return err
			}
			for _, k := range keys {
				if err := b.Delete(k); err != nil {
					return err
				}
				for i := len(k) - 9; i < len(k); i++ {
					k[i] ^= 0xff
				}
				if err := b.Put(k, nil); err != nil {
					return err
				}
			}
		}
		return tx.Bucket([]byte("w_meta")).Put([]byte("format"), []byte{1})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	d, err = Open(path, e.config())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.DB().View(func(tx *bbolt.Tx) error {
		if f := tx.Bucket([]byte("w_meta")).Get([]byte("format")); !bytes.Equal(f, []byte{2}) {
			return fmt.Errorf("format record %v, want 2", f)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	checkListOrder(t, d, 12)
	if n, err := d.RedeliverSince("m1", at.Add(-time.Hour), ""); err != nil || n != 12 {
		t.Errorf("redeliver since: %d, %v; want 12", n, err)
	}
}
