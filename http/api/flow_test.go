package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestSeed003Flow creates seed 003's invoice, pays it in the sandbox and
// reads everything back.
func TestSeed003Flow(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()

	r := h.api(m, "POST", "/api/v1/create-invoice", seed003Request)
	if r.Status != http.StatusCreated {
		t.Fatalf("create-invoice: %d %s", r.Status, r.Body)
	}
	if r.Header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id")
	}
	id, _ := r.JSON(t)["invoice_id"].(string)
	if len(id) != 36 {
		t.Fatalf("invoice_id %q is not UUID text", id)
	}
	want := `{
"amount": "1500.00",
"callback_url": "https://yoursite.com/webhooks/payment",
"conversion_rate": "41.50",
"created_at": "2026-02-25T12:00:00Z",
"currency": "UAH",
"customer_id": "user_12345",
"expires_at": "2026-02-25T12:20:00Z",
"external_id": "order-2026-0001",
"fail_url": "https://yoursite.com/payment/failed",
"invoice_id": "` + id + `",
"merchant_usdt": "35.42",
"payment_link": "https://pay.app.com/pay/` + id + `",
"purpose": "Payment for Premium subscription",
"status": "pending",
"success_url": "https://yoursite.com/payment/success",
"paid_at": null
}`
	jsonEqual(t, r.Body, want)

	g := h.api(m, "GET", "/api/v1/invoices/"+id, "")
	if g.Status != http.StatusOK {
		t.Fatalf("get invoice: %d %s", g.Status, g.Body)
	}
	jsonEqual(t, g.Body, want)

	// Pay: create a payment, the operator processes it.
	h.clock.Advance(time.Minute)
	p := h.api(m, "POST", "/api/v1/invoices/"+id+"/payments", `{"method": "visamaster.uah"}`)
	if p.Status != http.StatusCreated {
		t.Fatalf("create payment: %d %s", p.Status, p.Body)
	}
	var pay map[string]any
	if err := json.Unmarshal(p.Body, &pay); err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{"id", "gatewayId", "status", "extra", "paymentCurrency", "paymentAmount", "destinationCurrency", "destinationAmount", "createdAt"}
	if len(pay) != len(wantKeys) {
		t.Errorf("payment body has %d fields, seed 002 has %d: %s", len(pay), len(wantKeys), p.Body)
	}
	for _, k := range wantKeys {
		if _, ok := pay[k]; !ok {
			t.Errorf("payment body lacks %q", k)
		}
	}
	for k, v := range map[string]string{"gatewayId": "1", "status": "PENDING", "paymentCurrency": "UAH", "paymentAmount": "1500.00",
		"destinationCurrency": "USDT", "destinationAmount": "35.42", "createdAt": "2026-02-25T12:01:00.000Z"} {
		if pay[k] != v {
			t.Errorf("payment %s = %v, want %q", k, pay[k], v)
		}
	}
	pid, _ := pay["id"].(string)
	if pid == "" || strings.Trim(pid, "0123456789") != "" {
		t.Fatalf("payment id %q is not an integer string", pid)
	}
	extra, _ := pay["extra"].(map[string]any)
	for _, k := range []string{"accountNumber", "accountName", "bankName"} {
		if s, _ := extra[k].(string); s == "" {
			t.Errorf("extra.%s empty: %s", k, p.Body)
		}
	}
	gp := h.api(m, "GET", "/api/v1/payments/"+pid, "")
	if gp.Status != http.StatusOK {
		t.Fatalf("get payment: %d %s", gp.Status, gp.Body)
	}
	jsonEqual(t, gp.Body, string(p.Body))

	lp := h.api(m, "GET", "/api/v1/invoices/"+id+"/payments", "")
	if lp.Status != http.StatusOK || !strings.Contains(string(lp.Body), `"id":"`+pid+`"`) {
		t.Errorf("invoice payments: %d %s", lp.Status, lp.Body)
	}

	h.clock.Advance(time.Minute)
	pr := h.admin("POST", "/admin/v1/payments/"+pid+"/process", "")
	if pr.Status != http.StatusOK {
		t.Fatalf("process: %d %s", pr.Status, pr.Body)
	}
	if s := pr.JSON(t)["status"]; s != "PROCESSED" {
		t.Errorf("processed payment status %v", s)
	}

	g = h.api(m, "GET", "/api/v1/invoices/"+id, "")
	paid := strings.Replace(strings.Replace(want, `"status": "pending"`, `"status": "success"`, 1),
		`"paid_at": null`, `"paid_at": "2026-02-25T12:02:00Z"`, 1)
	jsonEqual(t, g.Body, paid)
	gp = h.api(m, "GET", "/api/v1/payments/"+pid, "")
	if s := gp.JSON(t)["status"]; s != "PROCESSED" {
		t.Errorf("payment status %v, want PROCESSED", s)
	}

	b := h.api(m, "GET", "/api/v1/balance", "")
	if b.Status != http.StatusOK {
		t.Fatalf("balance: %d %s", b.Status, b.Body)
	}
	if got := b.JSON(t)["available_usdt"]; got != "35.42" {
		t.Errorf("available_usdt = %v, want 35.42: %s", got, b.Body)
	}

	// Lists and status filter.
	l := h.api(m, "GET", "/api/v1/invoices?status=success&page=1&page_size=10", "")
	jsonEqual(t, l.Body, `{"items": [`+paid+`], "page_details": {"page_number": 1, "page_size": 10, "total_pages": 1, "total_objects": 1}}`)
	l = h.api(m, "GET", "/api/v1/invoices?status=pending", "")
	jsonEqual(t, l.Body, `{"items": [], "page_details": {"page_number": 1, "page_size": 20, "total_pages": 0, "total_objects": 0}}`)
}

func TestCancelInvoice(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	id, _ := h.api(m, "POST", "/api/v1/create-invoice", seed003Request).JSON(t)["invoice_id"].(string)
	r := h.api(m, "POST", "/api/v1/invoices/"+id+"/cancel", "")
	if r.Status != http.StatusOK || r.JSON(t)["status"] != "cancelled" {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	r = h.api(m, "POST", "/api/v1/invoices/"+id+"/cancel", `{"reason": "again"}`)
	if r.Status != http.StatusConflict || r.errCode(t) != CodeInvalidTransition {
		t.Errorf("second cancel: %d %s", r.Status, r.Body)
	}
	r = h.api(m, "POST", "/api/v1/invoices/"+id+"/payments", `{"method": "visamaster.uah"}`)
	if r.Status != http.StatusConflict || r.errCode(t) != CodeInvoiceNotPayable {
		t.Errorf("pay cancelled invoice: %d %s", r.Status, r.Body)
	}
}

func TestAdminTransitions(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	newPayment := func(ext string) string {
		t.Helper()
		body := strings.Replace(seed003Request, "order-2026-0001", ext, 1)
		id, _ := h.api(m, "POST", "/api/v1/create-invoice", body).JSON(t)["invoice_id"].(string)
		p := h.api(m, "POST", "/api/v1/invoices/"+id+"/payments", `{"method": "visamaster.uah"}`)
		if p.Status != http.StatusCreated {
			t.Fatalf("payment: %d %s", p.Status, p.Body)
		}
		pid, _ := p.JSON(t)["id"].(string)
		return pid
	}
	tests := []struct {
		steps []string
		want  []string // status after each step, or an error code
	}{
		{[]string{"confirm", "process"}, []string{"CONFIRMED", "PROCESSED"}},
		{[]string{"reject", "process"}, []string{"REJECTED", CodeInvalidTransition}},
		{[]string{"confirm", "fail"}, []string{"CONFIRMED", "ERROR"}},
		{[]string{"fail", "confirm"}, []string{"ERROR", CodeInvalidTransition}},
	}
	for i, tc := range tests {
		pid := newPayment("order-" + string(rune('a'+i)))
		for j, step := range tc.steps {
			r := h.admin("POST", "/admin/v1/payments/"+pid+"/"+step, "")
			got, _ := r.JSON(t)["status"].(string)
			if r.Status != http.StatusOK {
				got = r.errCode(t)
			}
			if got != tc.want[j] {
				t.Errorf("case %d step %s: got %s (%d %s), want %s", i, step, got, r.Status, r.Body, tc.want[j])
			}
		}
	}
	r := h.admin("POST", "/admin/v1/payments/999999/process", "")
	if r.Status != http.StatusNotFound {
		t.Errorf("unknown payment: %d %s", r.Status, r.Body)
	}
	r = h.admin("POST", "/admin/v1/payments/"+newPayment("order-partial")+"/process", `{"paid_amount": "100.00"}`)
	if r.Status != http.StatusOK || r.JSON(t)["allocation"] != "underpaid" {
		t.Errorf("partial payment: %d %s", r.Status, r.Body)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	h := newHarness(t)
	h.newMerchant(`{"name": "counted"}`)
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json"} {
		r := h.do(req{method: "GET", path: p})
		if r.Status != http.StatusOK {
			t.Errorf("%s: %d %s", p, r.Status, r.Body)
		}
	}
	r := h.do(req{method: "GET", path: "/metrics"})
	if !strings.Contains(string(r.Body), `payledger_http_request_duration_seconds_count{code="200",method="GET",route="GET /healthz"}`) {
		t.Errorf("metrics lack the request histogram:\n%.2000s", r.Body)
	}
	if !strings.Contains(string(r.Body), "payledger_log_events_appended_total 3") {
		t.Errorf("metrics lack the log's events (3 for a merchant):\n%.3000s", r.Body)
	}
	r = h.do(req{method: "GET", path: "/nope"})
	if r.Status != http.StatusNotFound || r.errCode(t) != CodeNotFound {
		t.Errorf("unknown path: %d %s", r.Status, r.Body)
	}
	r = h.do(req{method: "DELETE", path: "/api/v1/create-invoice"})
	if r.Status != http.StatusMethodNotAllowed || r.errCode(t) != CodeMethodNotAllowed || r.Header.Get("Allow") == "" {
		t.Errorf("wrong method: %d %v %s", r.Status, r.Header, r.Body)
	}
}

func TestReadyzAfterClose(t *testing.T) {
	h := newHarness(t)
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	r := h.do(req{method: "GET", path: "/readyz", header: map[string]string{"X-Request-Id": "ready-1"}})
	if r.Status != http.StatusServiceUnavailable || r.errCode(t) != CodeUnavailable {
		t.Errorf("readyz on a closed log: %d %s", r.Status, r.Body)
	}
	if r.Header.Get("Retry-After") == "" {
		t.Errorf("readyz 503 without Retry-After: %v", r.Header)
	}
	// The body names the check and a stable reason; bbolt's error is in
	// the log line, with the request id.
	jsonEqual(t, r.Body, `{"successful": false, "request_id": "ready-1", "error": {"code": "SERVICE_UNAVAILABLE",
		"message": "Not ready: log", "details": [{"path": "log", "type": "not_open", "message": "The event log is not open"}]}}`)
	if logs := h.logs.String(); !strings.Contains(logs, "msg=\"not ready\" request_id=ready-1 checks=log") || !strings.Contains(logs, "database not open") {
		t.Errorf("the log line lacks the request id or the error:\n%s", logs)
	}
	if r := h.do(req{method: "GET", path: "/healthz"}); r.Status != http.StatusOK {
		t.Errorf("healthz: %d", r.Status)
	}
}

func TestRequestID(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	r := h.do(req{method: "POST", path: "/api/v1/create-invoice", body: seed003Request,
		header: map[string]string{"X-Api-Key": m.Key, "X-Request-Id": "client-req-42"}})
	if r.Status != http.StatusCreated || r.Header.Get("X-Request-Id") != "client-req-42" {
		t.Fatalf("%d %v", r.Status, r.Header)
	}
	// The request id is the events' correlation id.
	ev, err := h.store.Get(h.head())
	if err != nil {
		t.Fatal(err)
	}
	if ev.Correlation != "client-req-42" {
		t.Errorf("correlation %q, want client-req-42", ev.Correlation)
	}
	r = h.do(req{method: "GET", path: "/healthz", header: map[string]string{"X-Request-Id": "bad id with spaces"}})
	if got := r.Header.Get("X-Request-Id"); got == "bad id with spaces" || len(got) != 26 {
		t.Errorf("malformed client id not replaced by a ULID: %q", got)
	}
	e := h.do(req{method: "GET", path: "/api/v1/invoices", header: map[string]string{"X-Request-Id": "abc"}})
	if e.JSON(t)["request_id"] != "abc" {
		t.Errorf("error envelope request_id: %s", e.Body)
	}
}

func TestHTTPServerTimeouts(t *testing.T) {
	h := newHarness(t)
	hs := h.srv.HTTPServer("127.0.0.1:0")
	if hs.ReadHeaderTimeout != ServerTimeouts.ReadHeader || hs.ReadTimeout == 0 || hs.WriteTimeout == 0 || hs.IdleTimeout == 0 || hs.Handler == nil {
		t.Errorf("server %+v", hs)
	}
}

// TestSeed003BodyOrder checks the invoice body's keys come in the order of
// seed 003's example response (which lists them alphabetically; paid_at,
// which the example leaves out, takes its alphabetical place), on create,
// GET and list.
func TestSeed003BodyOrder(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	want := []string{"amount", "callback_url", "conversion_rate", "created_at", "currency", "customer_id",
		"expires_at", "external_id", "fail_url", "invoice_id", "merchant_usdt", "paid_at", "payment_link",
		"purpose", "status", "success_url"}
	r := h.api(m, "POST", "/api/v1/create-invoice", seed003Request)
	if r.Status != http.StatusCreated {
		t.Fatalf("create-invoice: %d %s", r.Status, r.Body)
	}
	if got := topKeys(t, r.Body); !slices.Equal(got, want) {
		t.Errorf("create-invoice keys\n got: %v\nwant: %v", got, want)
	}
	id, _ := r.JSON(t)["invoice_id"].(string)
	if got := topKeys(t, h.api(m, "GET", "/api/v1/invoices/"+id, "").Body); !slices.Equal(got, want) {
		t.Errorf("GET invoice keys\n got: %v\nwant: %v", got, want)
	}
	l := h.api(m, "GET", "/api/v1/invoices", "")
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(l.Body, &list); err != nil || len(list.Items) != 1 {
		t.Fatalf("list: %v %s", err, l.Body)
	}
	if got := topKeys(t, list.Items[0]); !slices.Equal(got, want) {
		t.Errorf("listed invoice keys\n got: %v\nwant: %v", got, want)
	}
}

// topKeys returns a JSON object's keys in the order they were written.
func topKeys(t *testing.T, body []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %v %s", err, body)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("key: %v %s", err, body)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatalf("value of %v: %v", tok, err)
		}
	}
	return keys
}

// TestReadyzHidesErrors: a failing check's error (a file path, wrapped
// errors) goes to the log with the request id; the 503's body names only
// the check and a stable reason, for every check that failed.
func TestReadyzHidesErrors(t *testing.T) {
	var failing atomic.Pointer[error] // the server reads it on its goroutines
	fail := func(err error) { failing.Store(&err) }
	fail(nil)
	h := newHarness(t, func(c *Config) {
		c.Ready = func(context.Context) error { return *failing.Load() }
	})
	fail(errors.Join(
		&CheckError{Check: "relay", Reason: "stopped", Err: fmt.Errorf("relay stopped: open /srv/payledger/nats/jetstream/PAYLEDGER/msgs/1.blk: %w", os.ErrPermission)},
		fmt.Errorf("extra check: read /etc/payledger/secret.conf: %w", os.ErrNotExist),
	))
	r := h.do(req{method: "GET", path: "/readyz", header: map[string]string{"X-Request-Id": "ready-2"}})
	if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") != "5" {
		t.Errorf("failing Ready: %d %v", r.Status, r.Header)
	}
	jsonEqual(t, r.Body, `{"successful": false, "request_id": "ready-2", "error": {"code": "SERVICE_UNAVAILABLE",
		"message": "Not ready: relay, ready", "details": [
			{"path": "relay", "type": "stopped", "message": "The relay check failed: stopped"},
			{"path": "ready", "type": "failed", "message": "A readiness check of the node failed"}]}}`)
	for _, leak := range []string{"/srv/", "/etc/", "permission", "exist", "jetstream"} {
		if strings.Contains(string(r.Body), leak) {
			t.Errorf("the body carries %q: %s", leak, r.Body)
		}
	}
	logs := h.logs.String()
	for _, want := range []string{"request_id=ready-2", "checks=relay,ready", "/srv/payledger/nats/jetstream/PAYLEDGER/msgs/1.blk", "/etc/payledger/secret.conf"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
	// A failed log (the commit of unknown outcome) and a failing Ready are
	// both reported.
	h.store.Close()
	fail(&CheckError{Check: "webhooks", Reason: "stalled", Err: errors.New("webhook dispatcher: at 3, 9 events behind the log")})
	r = h.do(req{method: "GET", path: "/readyz"})
	if d := r.details(t); len(d) != 2 || d[0].Path != "log" || d[1] != (Detail{Path: "webhooks", Type: "stalled", Message: "The webhooks check failed: stalled"}) {
		t.Errorf("two failing checks: %s", r.Body)
	}
	if r := h.do(req{method: "GET", path: "/healthz"}); r.Status != http.StatusOK {
		t.Errorf("healthz: %d", r.Status)
	}
}

// TestMetricsMethodsBounded: made-up methods, on unknown paths and known
// ones, share one method label value, so a client cannot grow /metrics
// without bound by inventing methods.
func TestMetricsMethodsBounded(t *testing.T) {
	h := newHarness(t)
	known := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
	for _, m := range known {
		h.do(req{method: m, path: "/api/v1/invoices"})
	}
	for i := range 40 {
		m := "BREW" + strconv.Itoa(i)
		if i%10 == 0 {
			m += strings.Repeat("X", 4000)
		}
		for _, p := range []string{"/nope", "/api/v1/invoices", "/pay/x"} {
			h.do(req{method: m, path: p})
		}
	}
	h.do(req{method: "get", path: "/healthz"}) // methods are case-sensitive
	h.do(req{method: "CONNECT", path: "/healthz"})

	mfs, err := h.srv.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	methods := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "payledger_http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" {
					methods[l.GetValue()] = true
				}
			}
		}
	}
	want := map[string]bool{"other": true}
	for _, m := range known {
		want[m] = true
	}
	if len(methods) != len(want) {
		t.Errorf("%d method label values, want %d", len(methods), len(want))
	}
	for m := range methods {
		if !want[m] {
			t.Errorf("method label %.40q", m)
		}
	}
}

// An invoice's or a merchant's id in upper or mixed case names it on every
// route that takes one, answering it in lower case as made, and on no other
// merchant's; seed 000's account_id may be in any case too. Before, each
// answered 404 NOT_FOUND. A payment's id (an integer) is not a UUID and is
// left as it is.
func TestUUIDInAnyCase(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	other := h.newMerchant(`{"name": "Other"}`)
	id, _ := h.api(m, "POST", "/api/v1/create-invoice", seed003Request).JSON(t)["invoice_id"].(string)
	upper, mixed := strings.ToUpper(id), id[:18]+strings.ToUpper(id[18:])
	if upper == id {
		t.Skip("the invoice's id has no letter") // one in millions
	}
	if r := h.api(m, "GET", "/api/v1/invoices/"+upper, ""); r.Status != http.StatusOK || r.JSON(t)["invoice_id"] != id {
		t.Errorf("GET %s: %d %s", upper, r.Status, r.Body)
	}
	if r := h.api(other, "GET", "/api/v1/invoices/"+upper, ""); r.Status != http.StatusNotFound {
		t.Errorf("GET %s as another merchant: %d %s", upper, r.Status, r.Body)
	}
	p := h.api(m, "POST", "/api/v1/invoices/"+mixed+"/payments", `{"method": "visamaster.uah"}`)
	if p.Status != http.StatusCreated {
		t.Fatalf("payment of %s: %d %s", mixed, p.Status, p.Body)
	}
	if r := h.api(m, "GET", "/api/v1/invoices/"+upper+"/payments", ""); r.Status != http.StatusOK || !strings.Contains(string(r.Body), p.JSON(t)["id"].(string)) {
		t.Errorf("payments of %s: %d %s", upper, r.Status, r.Body)
	}
	if r := h.api(m, "POST", "/api/v1/invoices/"+mixed+"/cancel", ""); r.Status != http.StatusOK || r.JSON(t)["invoice_id"] != id || r.JSON(t)["status"] != "cancelled" {
		t.Errorf("cancel %s: %d %s", mixed, r.Status, r.Body)
	}

	up := strings.ToUpper(m.ID)
	if r := h.admin("GET", "/admin/v1/merchants/"+up, ""); r.Status != http.StatusOK || r.JSON(t)["id"] != m.ID {
		t.Errorf("GET merchant %s: %d %s", up, r.Status, r.Body)
	}
	if r := h.admin("PATCH", "/admin/v1/merchants/"+up, `{"name": "Premium Ltd"}`); r.Status != http.StatusOK || r.JSON(t)["name"] != "Premium Ltd" {
		t.Errorf("PATCH merchant %s: %d %s", up, r.Status, r.Body)
	}
	k := h.admin("POST", "/admin/v1/merchants/"+up+"/keys", `{}`)
	if k.Status != http.StatusCreated || k.JSON(t)["merchant_id"] != m.ID {
		t.Fatalf("key for merchant %s: %d %s", up, k.Status, k.Body)
	}
	if r := h.admin("DELETE", "/admin/v1/merchants/"+up+"/keys/"+k.JSON(t)["key_id"].(string), ""); r.Status != http.StatusOK || r.JSON(t)["merchant_id"] != m.ID {
		t.Errorf("revoke a key of merchant %s: %d %s", up, r.Status, r.Body)
	}
	// The signing secret is derived from the merchant's id: a rotation
	// through the upper-case id answers the one signatures are checked with.
	rot := h.admin("POST", "/admin/v1/merchants/"+up+"/secret/rotate", "")
	if rot.Status != http.StatusOK || rot.JSON(t)["merchant_id"] != m.ID || rot.JSON(t)["signing_secret"] != h.kr.SigningSecret(m.ID, 2) {
		t.Errorf("rotate the secret of merchant %s: %d %s", up, rot.Status, rot.Body)
	}

	if r := h.api(m, "POST", "/api/v1/widgets", `{"type": "unlimited", "account_id": "`+up+`"}`); r.Status != http.StatusCreated {
		t.Errorf("widget with account_id %s: %d %s", up, r.Status, r.Body)
	}
	if r := h.api(m, "GET", "/api/v1/widgets?account_id="+up, ""); r.Status != http.StatusOK {
		t.Errorf("widgets with account_id %s: %d %s", up, r.Status, r.Body)
	}
	if r := h.api(other, "GET", "/api/v1/widgets?account_id="+up, ""); r.Status != http.StatusNotFound {
		t.Errorf("widgets of %s as another merchant: %d %s", up, r.Status, r.Body)
	}
}
