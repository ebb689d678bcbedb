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
)

// TestMerchantCancelsPayment: POST /api/v1/payments/{id}/cancel moves the
// owner's PENDING payment to CANCELLED and answers seed 002's body, and
// the payment webhook carries it; another merchant gets 404; a payment no
// longer PENDING is refused 409 INVALID_STATUS_TRANSITION, appending
// nothing; and the same Idempotency-Key gets the first answer again.
// Before, only the hosted page could cancel a payment (the route was 404).
func TestMerchantCancelsPayment(t *testing.T) {
	var mu sync.Mutex
	var hooks [][]byte
	rcv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		hooks = append(hooks, b)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rcv.Close) // after the dispatcher stops
	h, _ := newWebhookHarness(t, rcv)
	m := h.seedSetup()
	other := h.newMerchant(`{"name": "Other"}`)
	payment := func(ext string) string {
		t.Helper()
		body := strings.NewReplacer("https://yoursite.com/webhooks/payment", rcv.URL+"/hook", "order-2026-0001", ext).Replace(seed003Request)
		inv := h.api(m, "POST", "/api/v1/create-invoice", body).JSON(t)["invoice_id"].(string)
		p := h.api(m, "POST", "/api/v1/invoices/"+inv+"/payments", `{"method": "visamaster.uah"}`)
		if p.Status != http.StatusCreated {
			t.Fatalf("payment: %d %s", p.Status, p.Body)
		}
		return p.JSON(t)["id"].(string)
	}
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		var found bool
		for _, b := range hooks {
			found = found || sameJSON(b, got.Body)
		}
		n := len(hooks)
		mu.Unlock()
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no webhook with %s among %d received", got.Body, n)
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
