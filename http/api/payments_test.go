package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/commands"
)

// TestMerchantCancelsPayment: POST /api/v1/payments/{id}/cancel moves the
// owner's PENDING payment to CANCELLED and answers seed 002's body, and
// the payment webhook carries it; another merchant gets 404; a payment no
// longer PENDING is refused 409 INVALID_STATUS_TRANSITION, appending
// nothing; and the same Idempotency-Key gets the first answer again.
// Before, only the hosted page could cancel a payment (the route was 404).
func TestMerchantCancelsPayment(t *testing.T) {
	hk := newHookReceiver(t)
	h, _ := newWebhookHarness(t, hk.rcv)
	m := h.seedSetup()
	other := h.newMerchant(`{"name": "Other"}`)
	payment := func(ext string) string { return hk.payment(t, h, m, ext) }
	id := payment("o-1")
	path := "/api/v1/payments/" + id + "/cancel"

	head := h.head()
	if r := h.api(other, "POST", path, ""); r.Status != http.StatusNotFound || r.errCode(t) != CodeNotFound || h.head() != head {
		t.Fatalf("another merchant's cancel: %d %s", r.Status, r.Body)
	}
	if r := h.api(m, "POST", "/api/v1/payments/999/cancel", ""); r.Status != http.StatusNotFound {
		t.Fatalf("unknown payment: %d %s", r.Status, r.Body)
	}

	send := func(p, key string) resp {
		return h.do(req{method: "POST", path: p, body: `{"reason": "customer changed their mind"}`,
			header: map[string]string{"X-Api-Key": m.Key, "Idempotency-Key": key}})
	}
	r := send(path, "cancel-1")
	if r.Status != http.StatusOK || h.head() != head+1 {
		t.Fatalf("cancel: %d %s (appended %d events)", r.Status, r.Body, h.head()-head)
	}
	got := h.api(m, "GET", "/api/v1/payments/"+id, "")
	if r.JSON(t)["status"] != "CANCELLED" || !bytes.Equal(r.Body, got.Body) {
		t.Fatalf("cancel answered %s, GET answers %s", r.Body, got.Body)
	}
	evs, err := h.store.ReadStream(t.Context(), "payment-"+paymentULID(t, h, id), 2)
	if err != nil || len(evs) != 1 || evs[0].Type != "payment.cancelled" || evs[0].Correlation != r.Header.Get("X-Request-Id") ||
		!strings.Contains(string(evs[0].Data), `"by":"merchant"`) || !strings.Contains(string(evs[0].Data), `"reason":"customer changed their mind"`) {
		t.Fatalf("payment.cancelled: %+v %v", evs, err)
	}

	// The same key and body: the first answer again, nothing appended.
	head = h.head()
	if again := send(path, "cancel-1"); again.Status != http.StatusOK || again.Header.Get("Idempotent-Replayed") != "true" ||
		!bytes.Equal(again.Body, r.Body) || h.head() != head {
		t.Fatalf("replayed cancel: %d %s %v", again.Status, again.Body, again.Header)
	}
	// A terminal payment (CANCELLED, PROCESSED) or a CONFIRMED one cannot
	// be cancelled: 409, nothing appended.
	processed, confirmed := payment("o-2"), payment("o-3")
	h.admin("POST", "/admin/v1/payments/"+processed+"/process", "")
	h.admin("POST", "/admin/v1/payments/"+confirmed+"/confirm", "")
	for i, p := range []string{id, processed, confirmed} {
		head = h.head()
		r := send("/api/v1/payments/"+p+"/cancel", "refused-"+p)
		if r.Status != http.StatusConflict || r.errCode(t) != CodeInvalidTransition || h.head() != head {
			t.Errorf("cancel %d (payment %s): %d %s (head %d -> %d)", i, p, r.Status, r.Body, head, h.head())
		}
	}

	// The payment webhook carries the CANCELLED body, as GET gives it.
	hk.await(t, got.Body)
}

// hookReceiver is a webhook endpoint that keeps every body it receives.
type hookReceiver struct {
	rcv   *httptest.Server
	mu    sync.Mutex
	hooks [][]byte
}

func newHookReceiver(t *testing.T) *hookReceiver {
	hk := &hookReceiver{}
	hk.rcv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hk.mu.Lock()
		hk.hooks = append(hk.hooks, b)
		hk.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hk.rcv.Close) // after the dispatcher stops
	return hk
}

// payment makes a seed 003 invoice of m (external id ext) whose
// callback_url is the receiver, and a payment of it; it returns the
// payment's id.
func (hk *hookReceiver) payment(t *testing.T, h *harness, m merchant, ext string) string {
	t.Helper()
	body := strings.NewReplacer("https://yoursite.com/webhooks/payment", hk.rcv.URL+"/hook", "order-2026-0001", ext).Replace(seed003Request)
	inv := h.api(m, "POST", "/api/v1/create-invoice", body).JSON(t)["invoice_id"].(string)
	p := h.api(m, "POST", "/api/v1/invoices/"+inv+"/payments", `{"method": "visamaster.uah"}`)
	if p.Status != http.StatusCreated {
		t.Fatalf("payment: %d %s", p.Status, p.Body)
	}
	return p.JSON(t)["id"].(string)
}

// await waits, up to 10 seconds, for a webhook whose body is the JSON want.
func (hk *hookReceiver) await(t *testing.T, want []byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		hk.mu.Lock()
		var found bool
		for _, b := range hk.hooks {
			found = found || sameJSON(b, want)
		}
		n := len(hk.hooks)
		hk.mu.Unlock()
		if found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no webhook with %s among %d received", want, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// paymentULID returns the stream id of the payment with public id id.
func paymentULID(t *testing.T, h *harness, id string) string {
	t.Helper()
	n, _ := paymentNumber(id)
	p, err := h.views.PaymentByNumber(n)
	if err != nil {
		t.Fatal(err)
	}
	s, err := paymentStream(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// TestReceiptSendsNoWebhook: a receipt held for a cancelled payment, or
// for a processed one (payment.receipt_held), changes no status, so the
// webhook dispatcher, which projects it like every event, sends nothing
// for it: once the webhook of a later event (another payment's cancel) is
// delivered, the merchant's deliveries hold none for the receipts, and the
// cancelled and processed payments' webhooks were sent once.
func TestReceiptSendsNoWebhook(t *testing.T) {
	hk := newHookReceiver(t)
	h, _ := newWebhookHarness(t, hk.rcv)
	m := h.seedSetup()
	first, second, third := hk.payment(t, h, m, "o-1"), hk.payment(t, h, m, "o-2"), hk.payment(t, h, m, "o-3")
	if r := h.api(m, "POST", "/api/v1/payments/"+first+"/cancel", ""); r.Status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	if r := h.admin("POST", "/admin/v1/payments/"+third+"/process", ""); r.Status != http.StatusOK {
		t.Fatalf("process: %d %s", r.Status, r.Body)
	}
	for _, p := range []string{first, third} {
		if r := h.admin("POST", "/admin/v1/payments/"+p+"/receipt", `{"paid_amount": "1500.00"}`); r.Status != http.StatusOK {
			t.Fatalf("receipt: %d %s", r.Status, r.Body)
		}
	}
	marker := h.api(m, "POST", "/api/v1/payments/"+second+"/cancel", "")
	if marker.Status != http.StatusOK {
		t.Fatalf("cancel: %d %s", marker.Status, marker.Body)
	}
	hk.await(t, marker.Body)
	d := h.api(m, "GET", "/api/v1/webhooks/deliveries?page_size=100", "")
	if d.Status != http.StatusOK || bytes.Contains(d.Body, []byte(`"event_type":"payment.receipt_held"`)) ||
		bytes.Count(d.Body, []byte(`"event_type":"payment.cancelled"`)) != 2 || bytes.Count(d.Body, []byte(`"event_type":"payment.processed"`)) != 1 {
		t.Fatalf("deliveries: %d %s", d.Status, d.Body)
	}
}

// TestPaymentsPerInvoiceCapped: the merchant API's create-payment route
// obeys the commands' cap: an invoice takes commands.MaxPaymentsPerInvoice
// payments, and the next is 409 TOO_MANY_PAYMENTS (not 429: waiting does
// not help), appending nothing.
func TestPaymentsPerInvoiceCapped(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	inv := h.api(m, "POST", "/api/v1/create-invoice", seed003Request).JSON(t)["invoice_id"].(string)
	path := "/api/v1/invoices/" + inv + "/payments"
	for i := range commands.MaxPaymentsPerInvoice {
		if r := h.api(m, "POST", path, `{"method": "visamaster.uah"}`); r.Status != http.StatusCreated {
			t.Fatalf("payment %d: %d %s", i+1, r.Status, r.Body)
		}
	}
	head := h.head()
	r := h.api(m, "POST", path, `{"method": "visamaster.uah"}`)
	if r.Status != http.StatusConflict || r.errCode(t) != CodeTooManyPayments || r.Header.Get("Retry-After") != "" {
		t.Fatalf("payment %d: %d %v %s", commands.MaxPaymentsPerInvoice+1, r.Status, r.Header, r.Body)
	}
	if h.head() != head {
		t.Fatal("the refused payment appended")
	}
}

// TestPaymentCurrencyAmountsAtMinorUnits: every amount in the currency a
// customer pays is shown at exactly its minor units, crypto as fiat: a
// bitcoin e-invoice's amount, its payment's paymentAmount, paid_amount and
// held_amount, and the merchant's BTC balance lines, at BTC's 8 places; a
// USDT payment's at USDT's 6. The USDT the merchant is credited keeps its
// significant places with at least two (merchant_usdt, destinationAmount,
// available_usdt and the USDT balance lines), as seed 003 shows
// merchant_usdt. Before, crypto amounts had their significant places:
// "paymentAmount":"0.001", "paid_amount":"0.0003615".
func TestPaymentCurrencyAmountsAtMinorUnits(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	h.setRate("BTC", "0.00001")
	einvoice := func(id, method, amount string) string {
		t.Helper()
		r := h.api(m, "POST", "/api/einvoice/create", `{"payment_id": "`+id+`", "currency": "`+method+`", "amount": "`+amount+`"}`)
		if r.Status != http.StatusOK {
			t.Fatalf("e-invoice %s %s: %d %s", amount, method, r.Status, r.Body)
		}
		inv, _ := r.JSON(t)["invoice_id"].(string)
		return inv
	}
	pay := func(inv, method string) map[string]any {
		t.Helper()
		r := h.api(m, "POST", "/api/v1/invoices/"+inv+"/payments", `{"method": "`+method+`"}`)
		if r.Status != http.StatusCreated {
			t.Fatalf("payment %s: %d %s", method, r.Status, r.Body)
		}
		return r.JSON(t)
	}
	admin := func(path, body string, want map[string]string) {
		t.Helper()
		r := h.admin("POST", path, body)
		if r.Status != http.StatusOK {
			t.Fatalf("%s: %d %s", path, r.Status, r.Body)
		}
		got := r.JSON(t)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %q: %s", path, k, got[k], v, r.Body)
			}
		}
	}
	wantFields := func(what string, got map[string]any, want map[string]string) {
		t.Helper()
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %q", what, k, got[k], v)
			}
		}
	}

	// 0.001 BTC at 0.00001 BTC per USDT: 100 USDT, 98.00 after 2%.
	under := einvoice("btc-1", "bitcoin", "0.001")
	wantFields("bitcoin e-invoice", h.api(m, "GET", "/api/v1/invoices/"+under, "").JSON(t),
		map[string]string{"amount": "0.00100000", "currency": "BTC", "merchant_usdt": "98.00"})
	p := pay(under, "bitcoin")
	wantFields("bitcoin payment", p, map[string]string{"paymentCurrency": "BTC", "paymentAmount": "0.00100000",
		"destinationCurrency": "USDT", "destinationAmount": "98.00"})
	id, _ := p["id"].(string)
	admin("/admin/v1/payments/"+id+"/process", `{"paid_amount": "0.0003615"}`,
		map[string]string{"allocation": "underpaid", "paid_amount": "0.00036150", "paymentAmount": "0.00100000"})
	admin("/admin/v1/payments/"+id+"/receipt", `{"paid_amount": "0.0001"}`, map[string]string{"held_amount": "0.00010000"})

	over := einvoice("btc-2", "bitcoin", "0.001")
	id, _ = pay(over, "bitcoin")["id"].(string)
	admin("/admin/v1/payments/"+id+"/process", `{"paid_amount": "0.0012"}`,
		map[string]string{"allocation": "invoice", "paid_amount": "0.00120000"})
	if v, err := h.views.Invoice(m.ID, over); err != nil || v.PaidAmount != "0.00120000" || v.Overpaid != "0.00020000" {
		t.Errorf("overpaid invoice view: paid_amount %q, overpaid %q (%v), want 0.00120000 and 0.00020000", v.PaidAmount, v.Overpaid, err)
	}

	// A UAH invoice paid in USDT: 1500.00 / 41.50 rounded up to 6 places;
	// a USDT e-invoice's amount at 6 places, its credit at cents.
	r := h.api(m, "POST", "/api/v1/create-invoice", seed003Request)
	uah, _ := r.JSON(t)["invoice_id"].(string)
	wantFields("USDT payment of a UAH invoice", pay(uah, "usdt_trc20"),
		map[string]string{"paymentCurrency": "USDT", "paymentAmount": "36.144579", "destinationAmount": "35.42"})
	usdt := einvoice("usdt-1", "usdt_trc20", "100")
	wantFields("USDT e-invoice", h.api(m, "GET", "/api/v1/invoices/"+usdt, "").JSON(t),
		map[string]string{"amount": "100.000000", "currency": "USDT", "merchant_usdt": "98.00"})
	p = pay(usdt, "usdt_trc20")
	wantFields("USDT payment", p, map[string]string{"paymentAmount": "100.000000", "destinationAmount": "98.00"})
	id, _ = p["id"].(string)
	admin("/admin/v1/payments/"+id+"/process", `{"paid_amount": "100.5"}`, map[string]string{"paid_amount": "100.500000"})

	var b struct {
		AvailableUSDT string        `json:"available_usdt"`
		Balances      []balanceLine `json:"balances"`
	}
	if err := json.Unmarshal(h.api(m, "GET", "/api/v1/balance", "").Body, &b); err != nil {
		t.Fatal(err)
	}
	// Credited: 98.00 (the overpaid BTC invoice) + 98.00 (USDT).
	want := []balanceLine{
		{Account: "available", Currency: "USDT", Amount: "196.00"},
		{Account: "overpayment", Currency: "BTC", Amount: "0.00020000"},
		{Account: "overpayment", Currency: "USDT", Amount: "0.50"},
		{Account: "suspense", Currency: "BTC", Amount: "0.00046150"},
	}
	got := map[balanceLine]bool{}
	for _, l := range b.Balances {
		got[l] = true
	}
	for _, l := range want {
		if !got[l] {
			t.Errorf("balance lacks %+v: %+v", l, b.Balances)
		}
	}
	if b.AvailableUSDT != "196.00" {
		t.Errorf("available_usdt = %q, want 196.00", b.AvailableUSDT)
	}
}
