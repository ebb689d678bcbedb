package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/keyring"
	"github.com/payledger/payledger/projections"
)

// TestRotateSecretConcurrent: many rotations of one merchant's signing
// secret at once, against the real log. Each caller gets its own version,
// and the hash each rotation event records is the hash of the secret its
// caller was shown, so webhooks signed with a version verify with the
// secret shown for it.
func TestRotateSecretConcurrent(t *testing.T) {
	h := newHarness(t)
	m := h.newMerchant(`{"name": "rotating"}`)
	const n = 24
	rs := h.concurrently(n, func(int) resp {
		return h.admin("POST", "/admin/v1/merchants/"+m.ID+"/secret/rotate", "")
	})
	shown := map[int]string{} // version -> secret shown
	for i, r := range rs {
		var b struct {
			Version int    `json:"version"`
			Secret  string `json:"signing_secret"`
		}
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &b) != nil {
			t.Fatalf("rotation %d: %d %s", i, r.Status, r.Body)
		}
		if _, dup := shown[b.Version]; dup {
			t.Errorf("version %d shown twice", b.Version)
		}
		shown[b.Version] = b.Secret
	}
	evs, err := h.store.ReadStream(context.Background(), commands.StreamID(commands.StreamMerchant, m.ID), 1)
	if err != nil {
		t.Fatal(err)
	}
	recorded := 0
	for _, e := range evs {
		if e.Type != commands.TypeSigningSecretRotated {
			continue
		}
		var d commands.SigningSecretRotated
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		if d.Version == 1 {
			continue // the registration's
		}
		recorded++
		secret, ok := shown[d.Version]
		if !ok {
			t.Errorf("version %d recorded but shown to no caller", d.Version)
			continue
		}
		if keyring.SecretHash(secret) != d.SecretHash {
			t.Errorf("version %d: recorded hash is not the hash of the secret shown", d.Version)
		}
		if secret != h.kr.SigningSecret(m.ID, d.Version) {
			t.Errorf("version %d: shown secret is not the version's", d.Version)
		}
	}
	if recorded != n {
		t.Errorf("%d rotations recorded, want %d", recorded, n)
	}
}

// TestAdminCreationsClaimRequestKey: the operator's creations (a merchant,
// an API key, a secret rotation) claim their request key in the log, as
// the merchant API's do. Two nodes on one log, each with its own
// idempotency store, get one request with one Idempotency-Key at once:
// exactly one merchant, key or rotation is made. The loser gets the first
// answer when it can be rebuilt (a rotation: the secret is derived), else
// 409 IDEMPOTENCY_KEY_REUSED naming the merchant (an API key is shown
// once and kept nowhere).
func TestAdminCreationsClaimRequestKey(t *testing.T) {
	h := newHarness(t)
	m := h.newMerchant(`{"name": "first"}`)
	nodes := []*harness{h, h.otherNode(nil)}
	send := func(i int, path, body, key string) resp {
		return nodes[i%2].do(req{method: "POST", path: path, body: body,
			header: map[string]string{"Authorization": "Bearer " + testAdminToken, "Idempotency-Key": key}})
	}
	merchantView := func(id string) projections.MerchantView {
		t.Helper()
		v, err := h.views.Merchant(id)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// checkAnswers: every answer is a 201 naming created, or a 409
	// IDEMPOTENCY_KEY_REUSED naming merchantID.
	checkAnswers := func(rs []resp, idField, merchantID string) {
		t.Helper()
		var created string
		for i, r := range rs {
			switch r.Status {
			case http.StatusCreated:
				id, _ := r.JSON(t)[idField].(string)
				if created != "" && id != created {
					t.Errorf("answer %d made %s, another made %s", i, id, created)
				}
				created = id
			case http.StatusConflict:
				if r.errCode(t) != CodeIdempotencyReused || !strings.Contains(string(r.Body), merchantID) {
					t.Errorf("answer %d: %s", i, r.Body)
				}
			default:
				t.Errorf("answer %d: %d %s", i, r.Status, r.Body)
			}
		}
		if created == "" {
			t.Errorf("no answer shows what was made: %v", rs)
		}
	}

	const n = 8
	before, err := h.views.Merchants()
	if err != nil {
		t.Fatal(err)
	}
	rs := h.concurrently(n, func(i int) resp { return send(i, "/admin/v1/merchants", `{"name": "once"}`, "merchant-once") })
	after, err := h.views.Merchants()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before)+1 {
		t.Fatalf("%d merchants made, want 1", len(after)-len(before))
	}
	newID, _ := rs[0].JSON(t)["merchant_id"].(string)
	if newID == "" {
		newID, _ = rs[1].JSON(t)["merchant_id"].(string)
	}
	checkAnswers(rs, "merchant_id", newID)

	keysPath := "/admin/v1/merchants/" + m.ID + "/keys"
	rs = h.concurrently(n, func(i int) resp { return send(i, keysPath, `{"label": "once"}`, "key-once") })
	if k := len(merchantView(m.ID).APIKeys); k != 2 {
		t.Errorf("merchant has %d keys, want 2", k)
	}
	checkAnswers(rs, "key_id", m.ID)

	rotPath := "/admin/v1/merchants/" + m.ID + "/secret/rotate"
	rs = h.concurrently(n, func(i int) resp { return send(i, rotPath, "", "rotate-once") })
	if v := merchantView(m.ID).SecretVersion; v != 2 {
		t.Errorf("secret version %d, want 2", v)
	}
	for i, r := range rs {
		if r.Status != http.StatusOK || !bytes.Equal(r.Body, rs[0].Body) {
			t.Errorf("rotation answer %d: %d %s (first %s)", i, r.Status, r.Body, rs[0].Body)
		}
	}

	// Every rate is on one stream, which the log lets take a claim it
	// already holds: the claim alone would not stop the twin.
	rates := rateEvents(t, h)
	rs = h.concurrently(n, func(i int) resp {
		return send(i, "/admin/v1/rates", `{"currency": "UAH", "rate": "41.70"}`, "rate-once")
	})
	if k := rateEvents(t, h) - rates; k != 1 {
		t.Errorf("%d rate.set events appended, want 1", k)
	}
	for i, r := range rs {
		if r.Status != http.StatusOK || !bytes.Equal(r.Body, rs[0].Body) {
			t.Errorf("rate answer %d: %d %s (first %s)", i, r.Status, r.Body, rs[0].Body)
		}
	}
}

// rateEvents counts the log's rate.set events.
func rateEvents(t *testing.T, h *harness) int {
	t.Helper()
	evs, err := h.store.ReadStream(context.Background(), commands.StreamRates, 1)
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

// TestAdminLostRecordCreations is the crash window between an operator's
// creation and its idempotency record's save: with the record gone, the
// retry with the same key and body appends nothing. A rotation or a rate
// answers as the first time; a merchant or key, whose secret was shown
// once, is a 409 IDEMPOTENCY_KEY_REUSED naming the merchant. A rate's
// retry does not undo a rate set in between.
func TestAdminLostRecordCreations(t *testing.T) {
	h := newHarness(t)
	m := h.newMerchant(`{"name": "first"}`)
	for _, tc := range []struct {
		path, body, key string
		status          int // of the first answer
	}{
		{"/admin/v1/merchants", `{"name": "once"}`, "merchant-1", http.StatusCreated},
		{"/admin/v1/merchants/" + m.ID + "/keys", `{"label": "once"}`, "key-1", http.StatusCreated},
		{"/admin/v1/merchants/" + m.ID + "/secret/rotate", "", "rotate-1", http.StatusOK},
		{"/admin/v1/rates", `{"currency": "UAH", "rate": "41.70"}`, "rate-1", http.StatusOK},
	} {
		send := func() resp {
			return h.do(req{method: "POST", path: tc.path, body: tc.body,
				header: map[string]string{"Authorization": "Bearer " + testAdminToken, "Idempotency-Key": tc.key}})
		}
		first := send()
		if first.Status != tc.status {
			t.Fatalf("%s: %d %s", tc.path, first.Status, first.Body)
		}
		h.loseIdempotencyRecords(t)
		head := h.head()
		again := send()
		if h.head() != head {
			t.Errorf("%s retry appended", tc.path)
		}
		if tc.status == http.StatusOK {
			if again.Status != http.StatusOK || again.Header.Get("Idempotent-Replayed") != "true" {
				t.Errorf("%s retry: %d %v %s", tc.path, again.Status, again.Header, again.Body)
			}
			jsonEqual(t, again.Body, string(first.Body))
			continue
		}
		id, _ := first.JSON(t)["merchant_id"].(string)
		if again.Status != http.StatusConflict || again.errCode(t) != CodeIdempotencyReused || !strings.Contains(string(again.Body), id) {
			t.Errorf("%s retry: %d %s", tc.path, again.Status, again.Body)
		}
	}

	setRate := func(rate, key string) resp {
		return h.do(req{method: "POST", path: "/admin/v1/rates", body: `{"currency": "UAH", "rate": "` + rate + `"}`,
			header: map[string]string{"Authorization": "Bearer " + testAdminToken, "Idempotency-Key": key}})
	}
	if r := setRate("41.80", "rate-2"); r.Status != http.StatusOK {
		t.Fatalf("rate: %d %s", r.Status, r.Body)
	}
	if r := setRate("42.00", "rate-3"); r.Status != http.StatusOK {
		t.Fatalf("rate: %d %s", r.Status, r.Body)
	}
	h.loseIdempotencyRecords(t)
	head := h.head()
	if r := setRate("41.80", "rate-2"); r.Status != http.StatusOK || r.JSON(t)["rate"] != "41.80" {
		t.Errorf("retry of the older rate: %d %s", r.Status, r.Body)
	}
	if h.head() != head {
		t.Error("retry of the older rate appended")
	}
	rs, err := h.views.Rates()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Currency == "UAH" && r.Rate != "42.00" {
			t.Errorf("UAH rate %s after the retry, want the later 42.00", r.Rate)
		}
	}
}

// TestAdminGateways: GET /admin/v1/gateways lists the configured gateways
// with their switch and methods; POST .../disable and .../enable append
// gateway.disabled and gateway.enabled (a switch to the current state and
// an unknown gateway append nothing); a payment with no enabled gateway
// for its method is refused 400 METHOD_INVALID and appends nothing, while
// a payment made before the switch is still driven; and views rebuilt
// from the log equal the live ones.
func TestAdminGateways(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	inv := h.api(m, "POST", "/api/v1/create-invoice", seed003Request).JSON(t)["invoice_id"].(string)
	before := h.api(m, "POST", "/api/v1/invoices/"+inv+"/payments", `{"method": "visamaster.uah"}`)
	if before.Status != http.StatusCreated {
		t.Fatalf("payment: %d %s", before.Status, before.Body)
	}

	if r := h.do(req{method: "GET", path: "/admin/v1/gateways"}); r.Status != http.StatusUnauthorized {
		t.Fatalf("without the admin token: %d", r.Status)
	}
	list := h.admin("GET", "/admin/v1/gateways", "")
	var gl struct {
		Gateways []struct {
			ID        string   `json:"id"`
			Name      string   `json:"name"`
			Enabled   bool     `json:"enabled"`
			ChangedAt *string  `json:"changed_at"`
			Methods   []string `json:"methods"`
		} `json:"gateways"`
	}
	if err := json.Unmarshal(list.Body, &gl); err != nil || list.Status != http.StatusOK || len(gl.Gateways) != 1 {
		t.Fatalf("list: %d %s", list.Status, list.Body)
	}
	if g := gl.Gateways[0]; g.ID != "1" || g.Name != "sandbox" || !g.Enabled || g.ChangedAt != nil || len(g.Methods) != len(commands.Methods()) {
		t.Fatalf("sandbox = %+v", g)
	}

	// An invoice made before the switch (none can be made after it).
	inv2 := h.api(m, "POST", "/api/v1/create-invoice", strings.Replace(seed003Request, "order-2026-0001", "order-2", 1)).JSON(t)["invoice_id"].(string)
	head := h.head()
	if r := h.admin("POST", "/admin/v1/gateways/1/enable", ""); r.Status != http.StatusOK || h.head() != head {
		t.Fatalf("enabling the enabled sandbox: %d %s; head %d -> %d", r.Status, r.Body, head, h.head())
	}
	if r := h.admin("POST", "/admin/v1/gateways/9/disable", ""); r.Status != http.StatusNotFound || r.errCode(t) != CodeNotFound || h.head() != head {
		t.Fatalf("unknown gateway: %d %s", r.Status, r.Body)
	}
	r := h.admin("POST", "/admin/v1/gateways/1/disable", "")
	jsonEqual(t, r.Body, `{"id": "1", "name": "sandbox", "enabled": false, "changed_at": "2026-02-25T12:00:00Z", "methods": `+mustJSON(t, gl.Gateways[0].Methods)+`}`)
	if h.head() != head+1 {
		t.Fatalf("disable appended %d events, want 1", h.head()-head)
	}
	ev, err := h.store.ReadStream(context.Background(), commands.StreamGateways, 1)
	if err != nil || len(ev) != 1 || ev[0].Type != commands.TypeGatewayDisabled || ev[0].Correlation != r.Header.Get("X-Request-Id") {
		t.Fatalf("gateways stream: %+v %v", ev, err)
	}
	head = h.head()
	if r := h.admin("POST", "/admin/v1/gateways/1/disable", "{}"); r.Status != http.StatusOK || !bytes.Contains(r.Body, []byte(`"enabled":false`)) || h.head() != head {
		t.Fatalf("disabling again: %d %s; head %d -> %d", r.Status, r.Body, head, h.head())
	}

	// New payments are refused; the payment made before goes on.
	head = h.head()
	r = h.api(m, "POST", "/api/v1/invoices/"+inv2+"/payments", `{"method": "visamaster.uah"}`)
	if r.Status != http.StatusBadRequest || r.errCode(t) != CodeMethodInvalid || !strings.Contains(string(r.Body), "no enabled gateway") || h.head() != head {
		t.Fatalf("payment with the sandbox disabled: %d %s", r.Status, r.Body)
	}
	// The merchant's method list says so.
	if methodEnabled(t, h.api(m, "GET", "/api/v1/methods", ""), "visamaster.uah") {
		t.Fatal("GET /api/v1/methods lists visamaster.uah enabled with its only gateway disabled")
	}
	pid := before.JSON(t)["id"].(string)
	if r := h.admin("POST", "/admin/v1/payments/"+pid+"/process", ""); r.Status != http.StatusOK {
		t.Fatalf("processing a payment of the disabled gateway: %d %s", r.Status, r.Body)
	}

	if r := h.admin("POST", "/admin/v1/gateways/1/enable", ""); r.Status != http.StatusOK || !bytes.Contains(r.Body, []byte(`"enabled":true`)) {
		t.Fatalf("enable: %d %s", r.Status, r.Body)
	}
	if !methodEnabled(t, h.api(m, "GET", "/api/v1/methods", ""), "visamaster.uah") {
		t.Fatal("GET /api/v1/methods lists visamaster.uah disabled with its gateway enabled again")
	}
	if r := h.api(m, "POST", "/api/v1/invoices/"+inv2+"/payments", `{"method": "visamaster.uah"}`); r.Status != http.StatusCreated {
		t.Fatalf("payment with the sandbox enabled again: %d %s", r.Status, r.Body)
	}

	h.rebuiltEqualsLive()
}

// With no enabled gateway serving a method in its currency, an invoice
// could not be paid whatever the customer picked: create-invoice refuses it
// with 400 CURRENCY_INVALID naming currency_code, appending nothing, and
// GET /api/v1/methods lists the currency as not invoiceable. So it is for a
// merchant that accepts no method in the currency. Enabled again, both
// answer as before.
func TestInvoiceRefusedWithNoEnabledGateway(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	order := 0
	create := func(m merchant) resp {
		order++
		return h.api(m, "POST", "/api/v1/create-invoice", strings.Replace(seed003Request, "order-2026-0001", fmt.Sprintf("order-%d", order), 1))
	}
	refused := func(name string, r resp) {
		t.Helper()
		d := r.details(t)
		if r.Status != http.StatusBadRequest || r.errCode(t) != CodeCurrencyInvalid || len(d) != 1 || d[0].Path != "currency_code" ||
			!strings.Contains(d[0].Message, "enabled gateway") {
			t.Errorf("%s: %d %s, want 400 %s naming currency_code", name, r.Status, r.Body, CodeCurrencyInvalid)
		}
	}
	if r := create(m); r.Status != http.StatusCreated {
		t.Fatalf("create-invoice: %d %s", r.Status, r.Body)
	}
	if !invoiceable(t, h.api(m, "GET", "/api/v1/methods", ""), "UAH") {
		t.Error("UAH is not invoiceable with the sandbox enabled")
	}

	if r := h.admin("POST", "/admin/v1/gateways/1/disable", ""); r.Status != http.StatusOK {
		t.Fatalf("disable: %d %s", r.Status, r.Body)
	}
	head := h.head()
	refused("the only gateway disabled", create(m))
	if h.head() != head {
		t.Errorf("a refused invoice appended: head %d -> %d", head, h.head())
	}
	if invoiceable(t, h.api(m, "GET", "/api/v1/methods", ""), "UAH") {
		t.Error("GET /api/v1/methods says UAH is invoiceable with its only gateway disabled")
	}

	if r := h.admin("POST", "/admin/v1/gateways/1/enable", ""); r.Status != http.StatusOK {
		t.Fatalf("enable: %d %s", r.Status, r.Body)
	}
	if r := create(m); r.Status != http.StatusCreated {
		t.Errorf("create-invoice with the sandbox enabled again: %d %s", r.Status, r.Body)
	}
	if !invoiceable(t, h.api(m, "GET", "/api/v1/methods", ""), "UAH") {
		t.Error("UAH is not invoiceable with the sandbox enabled again")
	}

	// A merchant accepting no UAH method.
	btc := h.newMerchant(`{"name": "Coins only", "methods": ["bitcoin"]}`)
	head = h.head()
	refused("no UAH method accepted", create(btc))
	if h.head() != head {
		t.Errorf("a refused invoice appended: head %d -> %d", head, h.head())
	}
	if invoiceable(t, h.api(btc, "GET", "/api/v1/methods", ""), "UAH") {
		t.Error("GET /api/v1/methods says UAH is invoiceable for a merchant accepting no UAH method")
	}
}

// invoiceable reads a currency's invoiceable flag from a GET
// /api/v1/methods answer.
func invoiceable(t *testing.T, r resp, code string) bool {
	t.Helper()
	return methodsFlag(t, r, "currencies", "invoiceable", code)
}

// methodEnabled reads a method's enabled flag from a GET /api/v1/methods answer.
func methodEnabled(t *testing.T, r resp, code string) bool {
	t.Helper()
	return methodsFlag(t, r, "methods", "enabled", code)
}

// methodsFlag reads the boolean field flag of the item with this code in
// the list named list of a GET /api/v1/methods answer.
func methodsFlag(t *testing.T, r resp, list, flag, code string) bool {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("GET /api/v1/methods: %d %s", r.Status, r.Body)
	}
	var body map[string][]map[string]any
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	for _, item := range body[list] {
		if item["code"] == code {
			on, ok := item[flag].(bool)
			if !ok {
				t.Fatalf("GET /api/v1/methods: %s %s has no boolean %s", list, code, flag)
			}
			return on
		}
	}
	t.Fatalf("GET /api/v1/methods does not list %s in %s", code, list)
	return false
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAdminReceipt: POST /admin/v1/payments/{id}/receipt records money
// that arrived for a payment that ended CANCELLED, REJECTED or ERROR, or
// a further arrival for a PROCESSED one: the payment's status stays (a
// processed one's allocation and invoice too), the admin payment body
// counts the held receipts and their total, the merchant's balance shows
// the money in suspense, and the rebuilt views equal the live ones. A
// PENDING or CONFIRMED payment is refused (409 INVALID_STATUS_TRANSITION),
// as are a bad amount (400), an unknown payment (404) and a request
// without the admin token (401), and nothing is appended. Before, no route
// recorded that money (404); and a PROCESSED payment's receipt was 409,
// its second arrival recorded nowhere.
func TestAdminReceipt(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	inv := h.api(m, "POST", "/api/v1/create-invoice", seed003Request).JSON(t)["invoice_id"].(string)
	pid := func() string {
		t.Helper()
		r := h.api(m, "POST", "/api/v1/invoices/"+inv+"/payments", `{"method": "visamaster.uah"}`)
		if r.Status != http.StatusCreated {
			t.Fatalf("payment: %d %s", r.Status, r.Body)
		}
		return r.JSON(t)["id"].(string)
	}
	cancelled, pending, confirmed := pid(), pid(), pid()
	if r := h.api(m, "POST", "/api/v1/payments/"+cancelled+"/cancel", ""); r.Status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	if r := h.admin("POST", "/admin/v1/payments/"+confirmed+"/confirm", ""); r.Status != http.StatusOK {
		t.Fatalf("confirm: %d %s", r.Status, r.Body)
	}
	receipt := "/admin/v1/payments/" + cancelled + "/receipt"

	head := h.head()
	for _, c := range []struct {
		name   string
		r      resp
		status int
		code   string
	}{
		{"without the admin token", h.do(req{method: "POST", path: receipt, body: `{"paid_amount": "1500.00"}`}), http.StatusUnauthorized, ""},
		{"unknown payment", h.admin("POST", "/admin/v1/payments/999999/receipt", `{"paid_amount": "1500.00"}`), http.StatusNotFound, CodeNotFound},
		{"pending payment", h.admin("POST", "/admin/v1/payments/"+pending+"/receipt", `{"paid_amount": "1500.00"}`), http.StatusConflict, CodeInvalidTransition},
		{"confirmed payment", h.admin("POST", "/admin/v1/payments/"+confirmed+"/receipt", `{"paid_amount": "1500.00"}`), http.StatusConflict, CodeInvalidTransition},
		{"no amount", h.admin("POST", receipt, `{"reason": "x"}`), http.StatusBadRequest, CodeValidation},
		{"no body", h.admin("POST", receipt, ""), http.StatusBadRequest, CodeValidation},
		{"too precise", h.admin("POST", receipt, `{"paid_amount": "1.001"}`), http.StatusBadRequest, CodeValidation},
		{"negative", h.admin("POST", receipt, `{"paid_amount": "-1"}`), http.StatusBadRequest, CodeValidation},
		{"an unknown field", h.admin("POST", receipt, `{"paid_amount": "1", "status": "PROCESSED"}`), http.StatusBadRequest, CodeValidation},
	} {
		if c.r.Status != c.status || (c.code != "" && c.r.errCode(t) != c.code) || h.head() != head {
			t.Errorf("%s: %d %s; head %d -> %d", c.name, c.r.Status, c.r.Body, head, h.head())
		}
	}

	r := h.admin("POST", receipt, `{"paid_amount": "1500.00", "reason": "transfer seen after the cancel"}`)
	if r.Status != http.StatusOK || h.head() != head+1 {
		t.Fatalf("receipt: %d %s; head %d -> %d", r.Status, r.Body, head, h.head())
	}
	got := r.JSON(t)
	if got["status"] != "CANCELLED" || got["held_receipts"] != 1.0 || got["held_amount"] != "1500.00" || got["allocation"] != nil {
		t.Fatalf("after the receipt: %s", r.Body)
	}
	for ev, err := range h.store.Events(context.Background(), head+1) {
		if err != nil || ev.Type != commands.TypePaymentReceiptHeld || ev.Correlation != r.Header.Get("X-Request-Id") ||
			ev.Merchant != m.ID || !bytes.Contains(ev.Data, []byte(`"reason":"transfer seen after the cancel"`)) {
			t.Fatalf("appended: %+v %v", ev, err)
		}
	}
	// Money can arrive twice.
	if r := h.admin("POST", receipt, `{"paid_amount": "0.50"}`); r.Status != http.StatusOK || r.JSON(t)["held_receipts"] != 2.0 || r.JSON(t)["held_amount"] != "1500.50" {
		t.Fatalf("second receipt: %d %s", r.Status, r.Body)
	}
	if g := h.admin("GET", "/admin/v1/payments/"+cancelled, ""); g.JSON(t)["held_amount"] != "1500.50" || g.JSON(t)["status"] != "CANCELLED" {
		t.Fatalf("GET: %s", g.Body)
	}
	if g := h.api(m, "GET", "/api/v1/payments/"+cancelled, ""); g.JSON(t)["status"] != "CANCELLED" {
		t.Fatalf("merchant GET: %s", g.Body)
	}
	b := h.api(m, "GET", "/api/v1/balance", "")
	if b.Status != http.StatusOK || !bytes.Contains(b.Body, []byte(`{"account":"suspense","currency":"UAH","amount":"1500.50"}`)) {
		t.Fatalf("balance: %d %s", b.Status, b.Body)
	}

	// A processed payment's first arrival paid the invoice; a second one
	// (the customer paid twice) is a receipt, held in suspense: the
	// payment stays PROCESSED with its allocation, the invoice as it was.
	if r := h.admin("POST", "/admin/v1/payments/"+pending+"/process", ""); r.Status != http.StatusOK {
		t.Fatalf("process: %d %s", r.Status, r.Body)
	}
	invBefore := h.api(m, "GET", "/api/v1/invoices/"+inv, "")
	if invBefore.JSON(t)["status"] != "success" {
		t.Fatalf("invoice after the processing: %s", invBefore.Body)
	}
	head = h.head()
	r = h.admin("POST", "/admin/v1/payments/"+pending+"/receipt", `{"paid_amount": "1500.00", "reason": "paid twice"}`)
	if r.Status != http.StatusOK || h.head() != head+1 {
		t.Fatalf("receipt of a processed payment: %d %s; head %d -> %d", r.Status, r.Body, head, h.head())
	}
	got = r.JSON(t)
	if got["status"] != "PROCESSED" || got["allocation"] != "invoice" || got["paid_amount"] != "1500.00" ||
		got["held_receipts"] != 1.0 || got["held_amount"] != "1500.00" {
		t.Fatalf("after the receipt of a processed payment: %s", r.Body)
	}
	if g := h.api(m, "GET", "/api/v1/payments/"+pending, ""); g.JSON(t)["status"] != "PROCESSED" {
		t.Fatalf("merchant GET: %s", g.Body)
	}
	if g := h.api(m, "GET", "/api/v1/invoices/"+inv, ""); !bytes.Equal(g.Body, invBefore.Body) {
		t.Fatalf("invoice after the receipt: %s, before %s", g.Body, invBefore.Body)
	}
	b = h.api(m, "GET", "/api/v1/balance", "")
	if b.Status != http.StatusOK || !bytes.Contains(b.Body, []byte(`{"account":"suspense","currency":"UAH","amount":"3000.50"}`)) {
		t.Fatalf("balance after the receipt of a processed payment: %d %s", b.Status, b.Body)
	}

	h.rebuiltEqualsLive()
}

// rebuiltEqualsLive checks that the views rebuilt from the log equal the
// live ones (projections.Compare).
func (h *harness) rebuiltEqualsLive() {
	h.t.Helper()
	dst, err := bbolt.Open(filepath.Join(h.t.TempDir(), "rebuilt.db"), 0o600, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	defer dst.Close()
	if _, err := projections.Rebuild(context.Background(), h.store.Events(context.Background(), 1), dst, time.Time{}); err != nil {
		h.t.Fatal(err)
	}
	if err := projections.Compare(h.store.DB(), dst); err != nil {
		h.t.Fatalf("rebuilt views differ from the live ones: %v", err)
	}
}

// A single widget's invoice made without a method is refused like
// create-invoice's while no method of its currency that the merchant
// accepts is served by an enabled gateway: 400 CURRENCY_INVALID whose
// detail names method (the request has no currency field: the choice
// missing is the method's), appending nothing. Enabled again, it is made.
func TestSingleWidgetInvoiceRefusedWithNoEnabledGateway(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	w := h.api(m, "POST", "/api/v1/widgets", `{"type": "single", "fiat_currency": "UAH", "fiat_amount": "10.00"}`)
	wid, _ := w.JSON(t)["external_id"].(string)
	if w.Status != http.StatusCreated || wid == "" {
		t.Fatalf("single widget: %d %s", w.Status, w.Body)
	}
	if r := h.admin("POST", "/admin/v1/gateways/1/disable", ""); r.Status != http.StatusOK {
		t.Fatalf("disable: %d %s", r.Status, r.Body)
	}
	head := h.head()
	r := h.api(m, "POST", "/api/v1/widgets/"+wid+"/invoices", `{}`)
	if d := r.details(t); r.Status != http.StatusBadRequest || r.errCode(t) != CodeCurrencyInvalid || len(d) != 1 || d[0].Path != "method" ||
		!strings.Contains(d[0].Message, "enabled gateway") {
		t.Errorf("single widget invoice with no enabled gateway: %d %s, want 400 %s naming method", r.Status, r.Body, CodeCurrencyInvalid)
	}
	if h.head() != head {
		t.Errorf("a refused invoice appended: head %d -> %d", head, h.head())
	}
	if r := h.admin("POST", "/admin/v1/gateways/1/enable", ""); r.Status != http.StatusOK {
		t.Fatalf("enable: %d %s", r.Status, r.Body)
	}
	if r := h.api(m, "POST", "/api/v1/widgets/"+wid+"/invoices", `{}`); r.Status != http.StatusCreated {
		t.Errorf("single widget invoice with the sandbox enabled again: %d %s", r.Status, r.Body)
	}
}

// TestAdminMerchantBodies: GET, PATCH and the list answer a merchant with
// merchant_id, as POST does, and id, the same value, as before. Before,
// GET and PATCH answered only id.
func TestAdminMerchantBodies(t *testing.T) {
	h := newHarness(t)
	m := h.newMerchant(`{"name": "named"}`)
	check := func(what string, b map[string]any) {
		t.Helper()
		if b["merchant_id"] != m.ID || b["id"] != m.ID {
			t.Errorf("%s: merchant_id %v, id %v, want both %s", what, b["merchant_id"], b["id"], m.ID)
		}
	}
	r := h.admin("GET", "/admin/v1/merchants/"+m.ID, "")
	if r.Status != http.StatusOK {
		t.Fatalf("GET: %d %s", r.Status, r.Body)
	}
	check("GET", r.JSON(t))
	r = h.admin("PATCH", "/admin/v1/merchants/"+m.ID, `{"name": "renamed"}`)
	if r.Status != http.StatusOK {
		t.Fatalf("PATCH: %d %s", r.Status, r.Body)
	}
	check("PATCH", r.JSON(t))
	r = h.admin("GET", "/admin/v1/merchants", "")
	var l struct {
		Merchants []map[string]any `json:"merchants"`
	}
	if err := json.Unmarshal(r.Body, &l); err != nil || r.Status != http.StatusOK || len(l.Merchants) != 1 {
		t.Fatalf("list: %d %s (%v)", r.Status, r.Body, err)
	}
	check("list", l.Merchants[0])
}

// TestAdminMerchantListPages: GET /admin/v1/merchants pages as the
// invoices list does (page, page_size 1..100, default 20, page_details),
// by id, and refuses a bad page or page_size 400 VALIDATION_ERROR naming
// it, as the invoices list does. Before, it answered every merchant with
// no page_details and ignored both parameters.
func TestAdminMerchantListPages(t *testing.T) {
	h := newHarness(t)
	const n = 25
	var want []string
	for i := range n {
		want = append(want, h.newMerchant(fmt.Sprintf(`{"name": "m%d"}`, i)).ID)
	}
	slices.Sort(want)
	type page struct {
		Merchants []struct {
			MerchantID string `json:"merchant_id"`
		} `json:"merchants"`
		PageDetails *projections.PageDetails `json:"page_details"`
	}
	list := func(q string) page {
		t.Helper()
		r := h.admin("GET", "/admin/v1/merchants"+q, "")
		var p page
		if err := json.Unmarshal(r.Body, &p); err != nil || r.Status != http.StatusOK || p.PageDetails == nil {
			t.Fatalf("%s: %d %s (%v)", q, r.Status, r.Body, err)
		}
		return p
	}
	tests := []struct {
		q       string
		details projections.PageDetails
		ids     []string
	}{
		{"", projections.PageDetails{PageNumber: 1, PageSize: 20, TotalPages: 2, TotalObjects: n}, want[:20]},
		{"?page=2", projections.PageDetails{PageNumber: 2, PageSize: 20, TotalPages: 2, TotalObjects: n}, want[20:]},
		{"?page=3", projections.PageDetails{PageNumber: 3, PageSize: 20, TotalPages: 2, TotalObjects: n}, nil},
		{"?page=2&page_size=10", projections.PageDetails{PageNumber: 2, PageSize: 10, TotalPages: 3, TotalObjects: n}, want[10:20]},
		{"?page=3&page_size=10", projections.PageDetails{PageNumber: 3, PageSize: 10, TotalPages: 3, TotalObjects: n}, want[20:]},
		{"?page_size=100", projections.PageDetails{PageNumber: 1, PageSize: 100, TotalPages: 1, TotalObjects: n}, want},
	}
	for _, tc := range tests {
		p := list(tc.q)
		var got []string
		for _, m := range p.Merchants {
			got = append(got, m.MerchantID)
		}
		if *p.PageDetails != tc.details || fmt.Sprint(got) != fmt.Sprint(tc.ids) {
			t.Errorf("%q: %+v %v, want %+v %v", tc.q, *p.PageDetails, got, tc.details, tc.ids)
		}
	}
	m := h.newMerchant(`{"name": "invoices"}`)
	for q, field := range map[string]string{"?page_size=0": "page_size", "?page_size=101": "page_size", "?page_size=x": "page_size",
		"?page=0": "page", "?page=1000001": "page", "?page=x": "page"} {
		r := h.admin("GET", "/admin/v1/merchants"+q, "")
		d := r.details(t)
		if r.Status != http.StatusBadRequest || r.errCode(t) != CodeValidation || len(d) != 1 || d[0].Path != field {
			t.Errorf("%s: %d %s, want 400 %s naming %s", q, r.Status, r.Body, CodeValidation, field)
		}
		if inv := h.api(m, "GET", "/api/v1/invoices"+q, ""); fmt.Sprint(inv.details(t)) != fmt.Sprint(d) {
			t.Errorf("%s: invoices say %s, merchants %s", q, inv.Body, r.Body)
		}
	}
}
