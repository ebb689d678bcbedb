package webhooks

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/projections"
	"go.etcd.io/bbolt"
)

// Every invoice and payment status change reaches a receiver that fails
// each webhook three times first, signed, with seed bodies, in order.
func TestDeliversEveryStatusChangeDespiteFailures(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, false, func(r *http.Request, n int) (int, http.Header) {
		if n <= 3 {
			return http.StatusInternalServerError, nil
		}
		return http.StatusOK, nil
	})
	rc.secret = func(string) string { return e.kr.SigningSecret("m1", 1) }
	e.merchant("m1", rc.URL())
	d, _ := e.dispatcher("", e.config())
	inv, pay := e.paidInvoice("m1", "")
	inv2 := e.invoice("m1", "")
	e.cancel("m1", inv2)
	// invoice created + paid, payment created + confirmed + processed, invoice 2 created + cancelled.
	checkDelivered(t, d, "m1", rc, 7)

	got, err := d.Delivery("m1", mustFind(t, d, "m1", commands.TypePaymentProcessed).ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Attempts) != 4 || got.AttemptCount != 4 {
		t.Fatalf("processed payment: %d attempts recorded (count %d), want 4", len(got.Attempts), got.AttemptCount)
	}
	for i, a := range got.Attempts {
		wantStatus := http.StatusInternalServerError
		if i == 3 {
			wantStatus = http.StatusOK
		}
		if a.N != i+1 || a.StatusCode != wantStatus || a.At.IsZero() || a.LatencyMS <= 0 {
			t.Errorf("attempt %d: %+v", i, a)
		}
		if (a.Error == "") != (wantStatus == http.StatusOK) {
			t.Errorf("attempt %d: error %q", i, a.Error)
		}
	}

	// Bodies: seed 002 exactly for the payment, seed 003 for the invoice.
	var pb map[string]any
	if err := json.Unmarshal(got.Body, &pb); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"id", "gatewayId", "status", "extra", "paymentCurrency", "paymentAmount", "destinationCurrency", "destinationAmount", "createdAt"} {
		if _, ok := pb[f]; !ok {
			t.Errorf("payment body lacks %s: %s", f, got.Body)
		}
	}
	if len(pb) != 9 || pb["status"] != commands.PaymentStatusProcessed {
		t.Errorf("payment body: %s", got.Body)
	}
	paid := mustFind(t, d, "m1", commands.TypeInvoicePaid)
	var ib map[string]any
	if err := json.Unmarshal(paid.Body, &ib); err != nil {
		t.Fatal(err)
	}
	if ib["invoice_id"] != inv || ib["status"] != commands.InvoiceStatusSuccess || ib["paid_at"] == nil ||
		ib["payment_link"] != "https://pay.example.com/pay/"+inv || ib["amount"] != "1500.00" || ib["merchant_usdt"] == nil {
		t.Errorf("invoice body: %s", paid.Body)
	}
	// As of its event: the created webhook says pending, not success.
	created := mustFindFor(t, d, "m1", commands.TypeInvoiceCreated, inv)
	if !strings.Contains(string(created.Body), `"status":"pending"`) || !strings.Contains(string(created.Body), `"paid_at":null`) {
		t.Errorf("invoice.created body is not as of its event: %s", created.Body)
	}
	if created.WebhookID == "" || created.ID != created.WebhookID {
		t.Errorf("ids: %+v", created)
	}
	_ = pay
}

func mustFind(t *testing.T, d *Dispatcher, merchant, eventType string) Delivery {
	return mustFindFor(t, d, merchant, eventType, "")
}

func mustFindFor(t *testing.T, d *Dispatcher, merchant, eventType, resourceID string) Delivery {
	t.Helper()
	del, err := findFor(d, merchant, eventType, resourceID)
	if err != nil {
		t.Fatal(err)
	}
	return del
}

// findFor is mustFindFor for a waitFor condition: a delivery the
// dispatcher has not recorded yet is an error to wait out, not a failure.
func findFor(d *Dispatcher, merchant, eventType, resourceID string) (Delivery, error) {
	p, err := d.ListDeliveries(merchant, ListQuery{PageSize: MaxPageSize})
	if err != nil {
		return Delivery{}, err
	}
	for _, del := range p.Items {
		if del.EventType == eventType && (resourceID == "" || del.ResourceID == resourceID) {
			return del, nil
		}
	}
	return Delivery{}, fmt.Errorf("no %s delivery for %q", eventType, resourceID)
}

// A receiver that hangs past the attempt timeout is retried; its answer
// once it stops hanging delivers.
func TestRetriesAfterTimeout(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, false, func(r *http.Request, n int) (int, http.Header) {
		if n == 1 {
			<-r.Context().Done() // hang until the dispatcher gives up on the attempt
			return 599, nil
		}
		return http.StatusNoContent, nil
	})
	rc.secret = func(string) string { return e.kr.SigningSecret("m1", 1) }
	e.merchant("m1", rc.URL())
	cfg := e.config()
	cfg.AttemptTimeout = 200 * time.Millisecond
	d, _ := e.dispatcher("", cfg)
	inv := e.invoice("m1", "")
	e.cancel("m1", inv)
	checkDelivered(t, d, "m1", rc, 2)
	del := mustFindFor(t, d, "m1", commands.TypeInvoiceCreated, inv)
	got, _ := d.Delivery("m1", del.ID)
	if len(got.Attempts) != 2 || !strings.Contains(got.Attempts[0].Error, "timeout") || got.Attempts[0].StatusCode != 0 {
		t.Fatalf("attempts: %+v", got.Attempts)
	}
	if got.Attempts[0].LatencyMS < 190 {
		t.Errorf("first attempt latency %.1fms, want about the 200ms timeout", got.Attempts[0].LatencyMS)
	}
}

// 410 Gone disables the target: later deliveries to it fail without a
// request, until the merchant's URL changes; a redelivery re-enables it.
func TestGoneDisablesTarget(t *testing.T) {
	e := newEnv(t)
	gone := newReceiver(t, false, func(*http.Request, int) (int, http.Header) { return http.StatusGone, nil })
	e.merchant("m1", gone.URL())
	d, _ := e.dispatcher("", e.config())
	inv := e.invoice("m1", "")
	waitFor(t, 10*time.Second, func() error {
		return statusIs(d, "m1", commands.TypeInvoiceCreated, inv, StatusFailed)
	})
	first := mustFindFor(t, d, "m1", commands.TypeInvoiceCreated, inv)
	if first.FailReason != ReasonTargetDisabled || first.AttemptCount != 1 {
		t.Fatalf("after 410: %+v", first)
	}
	e.cancel("m1", inv)
	waitFor(t, 10*time.Second, func() error {
		return statusIs(d, "m1", commands.TypeInvoiceCancelled, inv, StatusFailed)
	})
	if n := len(gone.requests()); n != 1 {
		t.Fatalf("the disabled target got %d requests, want only the first", n)
	}
	fast := mustFindFor(t, d, "m1", commands.TypeInvoiceCancelled, inv)
	if fast.FailReason != ReasonTargetDisabled || !strings.Contains(fast.LastError, "disabled") {
		t.Fatalf("fast failure: %+v", fast)
	}

	// Redelivery re-enables the target (which now accepts).
	gone.setPolicy(nil)
	if _, err := d.Redeliver("m1", fast.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error {
		return statusIs(d, "m1", commands.TypeInvoiceCancelled, inv, StatusDelivered)
	})
	if got := gone.accepted(); len(got) != 1 || got[0].ID != fast.WebhookID {
		t.Fatalf("redelivery: %+v", got)
	}

	// Disabled again, then the merchant changes its URL: delivered there.
	gone.setPolicy(func(*http.Request, int) (int, http.Header) { return http.StatusGone, nil })
	inv2 := e.invoice("m1", "")
	waitFor(t, 10*time.Second, func() error {
		return statusIs(d, "m1", commands.TypeInvoiceCreated, inv2, StatusFailed)
	})
	ok := newReceiver(t, false, nil)
	e.setWebhookURL("m1", ok.URL())
	e.cancel("m1", inv2)
	waitFor(t, 10*time.Second, func() error {
		return statusIs(d, "m1", commands.TypeInvoiceCancelled, inv2, StatusDelivered)
	})
	// The old URL is enabled again too: the URL change cleared it.
	if d.isDisabled("m1", gone.URL()) {
		t.Errorf("old target still disabled after the merchant's URL changed")
	}
}

func statusIs(d *Dispatcher, merchant, eventType, resourceID, status string) error {
	p, err := d.ListDeliveries(merchant, ListQuery{PageSize: MaxPageSize})
	if err != nil {
		return err
	}
	for _, del := range p.Items {
		if del.EventType == eventType && del.ResourceID == resourceID {
			if del.Status != status {
				return &statusError{del}
			}
			return nil
		}
	}
	return &statusError{}
}

type statusError struct{ d Delivery }

func (e *statusError) Error() string {
	if e.d.ID == "" {
		return "no such delivery yet"
	}
	return e.d.EventType + " is " + e.d.Status + " (" + strconv.Itoa(e.d.AttemptCount) + " attempts, " + e.d.LastError + ")"
}

// 429 and 503 with Retry-After (seconds, and an HTTP date) are not retried
// before the time they name.
func TestRetryAfterHonoured(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, false, func(r *http.Request, n int) (int, http.Header) {
		if n > 1 {
			return http.StatusOK, nil
		}
		return http.StatusTooManyRequests, http.Header{"Retry-After": {"1"}}
	})
	rc.secret = func(string) string { return e.kr.SigningSecret("m1", 1) }
	e.merchant("m1", rc.URL())
	dateRC := newReceiver(t, false, func(r *http.Request, n int) (int, http.Header) {
		if n > 1 {
			return http.StatusOK, nil
		}
		return http.StatusServiceUnavailable, http.Header{"Retry-After": {time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat)}}
	})
	dateRC.secret = func(string) string { return e.kr.SigningSecret("m2", 1) }
	e.merchant("m2", dateRC.URL())
	d, _ := e.dispatcher("", e.config())
	e.invoice("m1", "")
	e.invoice("m2", "")
	checkDelivered(t, d, "m1", rc, 1)
	checkDelivered(t, d, "m2", dateRC, 1)
	for _, c := range []struct {
		rc  *receiver
		min time.Duration
	}{{rc, time.Second}, {dateRC, time.Second}} { // an HTTP date has whole seconds: at least 1s of the 2s
		reqs := c.rc.requests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests, want 2", len(reqs))
		}
		if gap := reqs[1].At.Sub(reqs[0].At); gap < c.min {
			t.Errorf("retried after %v, Retry-After asked for %v", gap, c.min)
		}
	}
}

// A receiver that goes away (its listener closed) and comes back on the
// same address gets everything.
func TestReceiverGoesAwayAndComesBack(t *testing.T) {
	e := newEnv(t)
	addr := freeAddr(t)
	rc := &receiver{t: t, counts: make(map[string]int)}
	rc.secret = func(string) string { return e.kr.SigningSecret("m1", 1) }
	e.merchant("m1", "http://"+addr+"/hook")
	d, _ := e.dispatcher("", e.config())
	// Nobody listens: the events pile up as retries.
	e.paidInvoice("m1", "")
	waitFor(t, 10*time.Second, func() error {
		p, _ := d.ListDeliveries("m1", ListQuery{Status: StatusPending})
		if p.Details.TotalObjects != 5 {
			return &statusError{}
		}
		del := mustFind(t, d, "m1", commands.TypeInvoiceCreated)
		if del.AttemptCount < 2 {
			return &statusError{del}
		}
		return nil
	})
	// Come back on the same address. Another process may have taken it
	// meanwhile (a connection's ephemeral port, say): wait for it to let
	// go rather than fail.
	var l net.Listener
	waitFor(t, 10*time.Second, func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	})
	rc.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(rc.serve)}}
	rc.srv.Start()
	t.Cleanup(rc.srv.Close)
	checkDelivered(t, d, "m1", rc, 5)
	// A page far past the end is empty, though (page-1)*size overflows.
	if p, err := d.ListDeliveries("m1", ListQuery{Page: math.MaxInt / 2, PageSize: 20}); err != nil || len(p.Items) != 0 {
		t.Errorf("page %d: %d items (%v), want none", math.MaxInt/2, len(p.Items), err)
	}
	del := mustFind(t, d, "m1", commands.TypeInvoiceCreated)
	got, _ := d.Delivery("m1", del.ID)
	if len(got.Attempts) < 3 || got.Attempts[0].StatusCode != 0 || !strings.Contains(got.Attempts[0].Error, "refused") {
		t.Errorf("attempts while away: %+v", got.Attempts[:1])
	}
}

// TestUpgradeFromFullViews: a webhooks.db written before the dispatcher's
// projector became views-only holds a full projection. Opened now, its
// views are dropped and projected again from the first event, with no
// delivery made twice, and later events are delivered with bodies built
// from the new views.
func TestUpgradeFromFullViews(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, false, func(r *http.Request, n int) (int, http.Header) { return http.StatusOK, nil })
	rc.secret = func(string) string { return e.kr.SigningSecret("m1", 1) }
	e.merchant("m1", rc.URL())
	path := filepath.Join(t.TempDir(), FileName)
	d, stop := e.dispatcher(path, e.config())
	inv, _ := e.paidInvoice("m1", "")
	checkDelivered(t, d, "m1", rc, 5)
	stop()

	// What an older build left: the same deliveries, over a full projection.
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		var views [][]byte
		if err := tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			if strings.HasPrefix(string(name), "v_") {
				views = append(views, append([]byte(nil), name...))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, name := range views {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		p := &projections.Projector{}
		if _, err := p.Init(tx); err != nil {
			return err
		}
		var evs []ledger.Event
		for ev, err := range e.store.Events(e.ctx, 1) {
			if err != nil {
				return err
			}
			evs = append(evs, ev)
		}
		return p.Apply(tx, evs)
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.View(func(tx *bbolt.Tx) error {
		if k, _ := tx.Bucket([]byte("v_ix_inv_time")).Cursor().First(); k == nil {
			t.Fatal("the full projection wrote no index")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	d, _ = e.dispatcher(path, e.config())
	inv2 := e.invoice("m1", "")
	e.cancel("m1", inv2)
	checkDelivered(t, d, "m1", rc, 7)
	if n := len(rc.accepted()); n != 7 {
		t.Errorf("receiver accepted %d webhooks, want 7: none twice", n)
	}
	for _, r := range rc.accepted() {
		if res, status, err := resourceStatus(r.Body); err != nil || res == "invoice" && strings.Contains(string(r.Body), inv2) && status != "pending" && status != "cancelled" {
			t.Errorf("webhook %s: %s %s %v", r.Body, res, status, err)
		}
	}
	if err := d.db.View(func(tx *bbolt.Tx) error {
		if k, _ := tx.Bucket([]byte("v_ix_inv_time")).Cursor().First(); k != nil {
			t.Errorf("index key %q left after the upgrade", k)
		}
		if tx.Bucket([]byte("v_invoices")).Get([]byte(inv)) == nil {
			t.Errorf("invoice %s not projected again", inv)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
