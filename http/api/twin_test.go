package api

import (
	"net/http"
	"testing"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
)

// TestRequestKeyTwinAcrossNodes: one request sent at once to two nodes on
// one log (each with its own idempotency store, so neither waits for the
// other) makes one thing, and both answer it. The race is forced: node A's
// command looks its request key up on a log that, within the lookup, has
// node B serve the twin (and what follows it) and then answers "free", as
// when B commits just after A's check. A then answers B's creation, 201
// with Idempotent-Replayed, whatever refused its own command, appending
// nothing. The same Idempotency-Key with another body is another request:
// its own refusal stands.
//
// Before commands.Service.repeated looked the key up on every refusal, A
// answered 409 INVOICE_NOT_PAYABLE in the first row; the others passed.
func TestRequestKeyTwinAcrossNodes(t *testing.T) {
	const key = "twin-key"
	for _, tc := range []struct {
		name string
		// prepare makes what the request needs; it returns the path and
		// id field of the request, and node A's body (B's is body).
		prepare  func(t *testing.T, h *harness, m merchant) (path, idField, bodyA string)
		body     string
		after    func(t *testing.T, h *harness, twin resp) // on node B, after the twin
		wantCode string                                    // "": A answers the twin's creation
	}{
		{
			name: "payment: the twin's payment was then processed",
			prepare: func(t *testing.T, h *harness, m merchant) (string, string, string) {
				inv := h.api(m, "POST", "/api/v1/create-invoice", seed003Request).JSON(t)["invoice_id"].(string)
				return "/api/v1/invoices/" + inv + "/payments", "id", `{"method": "visamaster.uah"}`
			},
			body: `{"method": "visamaster.uah"}`,
			after: func(t *testing.T, h *harness, twin resp) {
				if r := h.admin("POST", "/admin/v1/payments/"+twin.JSON(t)["id"].(string)+"/process", ""); r.Status != http.StatusOK {
					t.Errorf("process the twin's payment: %d %s", r.Status, r.Body)
				}
			},
		},
		{
			name: "payment: the twin took the invoice's last place",
			prepare: func(t *testing.T, h *harness, m merchant) (string, string, string) {
				return oneShort(t, h, m), "id", `{"method": "visamaster.uah"}`
			},
			body: `{"method": "visamaster.uah"}`,
		},
		{
			name: "create-invoice: the twin took the external_id",
			prepare: func(t *testing.T, h *harness, m merchant) (string, string, string) {
				return "/api/v1/create-invoice", "invoice_id", seed003Request
			},
			body: seed003Request,
		},
		{
			name: "payment with another body: the twin took the invoice's last place",
			prepare: func(t *testing.T, h *harness, m merchant) (string, string, string) {
				return oneShort(t, h, m), "id", `{"method":"visamaster.uah"}`
			},
			body:     `{"method": "visamaster.uah"}`,
			wantCode: CodeTooManyPayments,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			m := h.seedSetup()
			path, idField, bodyA := tc.prepare(t, h, m)
			// Node A: its own service on the racing log, its own records.
			race := &boltlogtest.ClaimRace{Store: h.store}
			nodeA := h.otherNode(commands.NewService(race, commands.Config{}))
			send := func(node *harness, body string) resp {
				return node.do(req{method: "POST", path: path, body: body,
					header: map[string]string{"X-Api-Key": m.Key, "Idempotency-Key": key}})
			}
			var twin resp
			var head uint64
			race.Arm("request/", func() {
				if twin = send(h, tc.body); twin.Status == http.StatusCreated && tc.after != nil {
					tc.after(t, h, twin)
				}
				head = h.head()
			})
			got := send(nodeA, bodyA)
			if twin.Status != http.StatusCreated {
				t.Fatalf("the twin on node B: %d %s", twin.Status, twin.Body)
			}
			if h.head() != head {
				t.Errorf("node A appended %d events after the twin", h.head()-head)
			}
			if tc.wantCode != "" {
				if got.Status != http.StatusConflict || got.errCode(t) != tc.wantCode {
					t.Fatalf("node A: %d %s; want 409 %s", got.Status, got.Body, tc.wantCode)
				}
				return
			}
			if got.Status != http.StatusCreated || got.Header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("node A: %d %v %s; want 201 replayed", got.Status, got.Header, got.Body)
			}
			if a, b := got.JSON(t)[idField], twin.JSON(t)[idField]; a != b {
				t.Errorf("node A answered %s %v, the twin made %v", idField, a, b)
			}
		})
	}
}

// oneShort makes an invoice of m with one payment place left and returns
// its payments path.
func oneShort(t *testing.T, h *harness, m merchant) string {
	t.Helper()
	path := "/api/v1/invoices/" + h.api(m, "POST", "/api/v1/create-invoice", seed003Request).JSON(t)["invoice_id"].(string) + "/payments"
	for i := range commands.MaxPaymentsPerInvoice - 1 {
		if r := h.api(m, "POST", path, `{"method": "visamaster.uah"}`); r.Status != http.StatusCreated {
			t.Fatalf("payment %d: %d %s", i+1, r.Status, r.Body)
		}
	}
	return path
}
