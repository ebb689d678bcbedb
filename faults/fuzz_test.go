package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/node"
)

// bodyRoute is a route that takes a JSON body. In paths, {invoice},
// {payment}, {widget} and {merchant} name resources made at setup; in
// bodies, __ACCOUNT__ becomes the merchant id and __NOW__ the time in
// milliseconds, so that the fuzzer gets past the checks seed 000 makes.
type bodyRoute struct {
	method, path string
	seeds        []string
}

var bodyRoutes = []bodyRoute{
	{"POST", "/api/v1/create-invoice", []string{
		`{"amount": "1500.00", "currency_code": "UAH", "customer_id": "user_12345", "external_id": "order-2026-0001", "purpose": "Payment for Premium subscription", "callback_url": "https://yoursite.com/webhooks/payment", "success_url": "https://yoursite.com/ok", "fail_url": "https://yoursite.com/fail"}`,
		`{"amount": "0.01", "currency_code": "UAH", "external_id": "x"}`}},
	{"POST", "/api/v1/invoices/{invoice}/cancel", []string{`{}`, ``}},
	{"POST", "/api/v1/invoices/{invoice}/payments", []string{`{"method": "visamaster.uah"}`, `{"method": "p2p.uah"}`}},
	{"POST", "/api/v1/widgets", []string{
		`{"account_id": "__ACCOUNT__", "timestamp": __NOW__, "external_id": "0b6d1b8e-62c3-4d49-9a43-1c4f6a0e2b11", "type": "single", "fiat_currency": "UAH", "fiat_amount": "250.00", "description": "Coffee", "logo_url": "https://shop.example/logo.png", "return_url": "https://shop.example/", "currencies": ["USDT"], "merchant_external_id": "shop-7"}`,
		`{"account_id": "__ACCOUNT__", "timestamp": __NOW__, "type": "unlimited", "currencies": ["USDT", "BTC"], "expires_at": "2030-01-01T00:00:00Z"}`}},
	{"POST", "/api/v1/widgets/{widget}/status", []string{`{"account_id": "__ACCOUNT__", "timestamp": __NOW__, "status": "disabled"}`}},
	{"POST", "/api/v1/widgets/{widget}/invoices", []string{`{"account_id": "__ACCOUNT__", "timestamp": __NOW__, "amount": "100.00", "method": "visamaster.uah", "customer_id": "c1"}`}},
	{"POST", "/api/einvoice/create", []string{
		`{"payment_id": 123, "currency": "visamaster.uah", "amount": 100.00, "description": "Some payment description", "sender": "4444111144441111", "success_url": "https://test.ua/success/123", "fail_url": "https://test.ua/fail/123", "status_url": "https://test.ua", "extra_fields": {"card_holder": "Ivan Ivanov"}}`}},
	{"POST", "/api/v1/webhooks/redeliver", []string{`{"since": "2026-02-25T12:00:00Z", "status": "failed"}`, `{"since": "2026-02-25T12:00:00Z"}`}},
	{"POST", "/admin/v1/merchants", []string{`{"name": "Shop", "webhook_url": "https://shop.example/hooks", "commission_percent": "2", "invoice_lifetime_seconds": 1200, "methods": ["visamaster.uah"], "invoicing_enabled": true}`}},
	{"PATCH", "/admin/v1/merchants/{merchant}", []string{`{"commission_percent": "2.5"}`, `{"disabled": false, "invoicing_enabled": true}`}},
	{"POST", "/admin/v1/merchants/{merchant}/keys", []string{`{"label": "ci"}`, `{}`}},
	{"POST", "/admin/v1/merchants/{merchant}/secret/rotate", []string{`{}`}},
	{"POST", "/admin/v1/rates", []string{`{"currency": "UAH", "rate": "41.50"}`, `{"currency": "BTC", "rate": "0.000010"}`}},
	{"POST", "/admin/v1/payments/{payment}/confirm", []string{`{}`}},
	{"POST", "/admin/v1/payments/{payment}/process", []string{`{}`}},
	{"POST", "/admin/v1/payments/{payment}/reject", []string{`{}`}},
	{"POST", "/admin/v1/payments/{payment}/fail", []string{`{}`}},
}

// FuzzRequestBodies sends arbitrary bodies to every route of the merchant
// and admin APIs that takes one, on a whole node in this process (log,
// projections, webhooks; no NATS). Whatever the body: no handler panics or
// answers 500, every answer carries X-Request-Id and is JSON (an error
// answer with an "error" object), and a refused request appends nothing to
// the log.
func FuzzRequestBodies(f *testing.F) {
	for i, r := range bodyRoutes {
		for _, s := range r.seeds {
			f.Add(uint8(i), []byte(s))
		}
		f.Add(uint8(i), []byte(`{}`))
		f.Add(uint8(i), []byte(`{"amount": 1e400, "x": [}`))
	}
	env := newFuzzNode(f)
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := bodyRoutes[int(route)%len(bodyRoutes)]
		body = bytes.ReplaceAll(body, []byte("__ACCOUNT__"), []byte(env.merchant))
		body = bytes.ReplaceAll(body, []byte("__NOW__"), strconv.AppendInt(nil, time.Now().UnixMilli(), 10))
		path := strings.NewReplacer("{invoice}", env.invoice, "{payment}", env.payment, "{widget}", env.widget, "{merchant}", env.merchant).Replace(r.path)
		req := httptest.NewRequest(r.method, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if strings.HasPrefix(path, "/admin/") {
			req.Header.Set("Authorization", "Bearer "+adminToken)
		} else {
			req.Header.Set("X-Api-Key", env.key)
		}
		before := env.n.Log.Head().Seq
		rec := httptest.NewRecorder()
		env.h.ServeHTTP(rec, req)
		after := env.n.Log.Head().Seq
		res := rec.Result()
		got, _ := io.ReadAll(res.Body)
		if res.StatusCode >= 500 && res.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s %s %q: %d %s", r.method, path, body, res.StatusCode, got)
		}
		if res.Header.Get("X-Request-Id") == "" {
			t.Fatalf("%s %s %q: %d without X-Request-Id", r.method, path, body, res.StatusCode)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(got, &m); err != nil {
			t.Fatalf("%s %s %q: %d, not a JSON object: %s", r.method, path, body, res.StatusCode, got)
		}
		if res.StatusCode >= 400 {
			if _, ok := m["error"]; !ok {
				t.Fatalf("%s %s %q: %d without an error object: %s", r.method, path, body, res.StatusCode, got)
			}
			if after != before {
				t.Fatalf("%s %s %q: refused with %d, and the log grew from %d to %d", r.method, path, body, res.StatusCode, before, after)
			}
		}
	})
}

type fuzzNode struct {
	n                                       *node.Node
	h                                       http.Handler
	key, merchant, invoice, payment, widget string
}

// newFuzzNode opens a node on a temporary data dir with a merchant, the
// demo rates, an invoice with a payment, and a widget.
func newFuzzNode(f *testing.F) *fuzzNode {
	f.Helper()
	ctx := context.Background()
	// No signed checkpoints: they append on their own, and the fuzz
	// function checks that refused requests append nothing.
	n, err := node.Open(ctx, node.Config{DataDir: f.TempDir(), Addr: "127.0.0.1:0", AdminToken: adminToken, NoNATS: true,
		Demo: true, Out: io.Discard, Logger: slog.New(slog.DiscardHandler), Checkpoints: node.CheckpointConfig{Disabled: true}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { n.Close() })
	m, err := n.CreateMerchant(ctx, "Fuzz shop", "2")
	if err != nil {
		f.Fatal(err)
	}
	env := &fuzzNode{n: n, h: n.Handler(), key: m.APIKey, merchant: m.MerchantID}
	call := func(method, path, body string) map[string]any {
		f.Helper()
		body = strings.ReplaceAll(strings.ReplaceAll(body, "__ACCOUNT__", env.merchant), "__NOW__", fmt.Sprint(time.Now().UnixMilli()))
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Api-Key", env.key)
		rec := httptest.NewRecorder()
		env.h.ServeHTTP(rec, req)
		if rec.Code >= 300 {
			f.Fatalf("setup %s %s: %d %s", method, path, rec.Code, rec.Body)
		}
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			f.Fatal(err)
		}
		return out
	}
	env.invoice = call("POST", "/api/v1/create-invoice", `{"amount": "1500.00", "currency_code": "UAH", "external_id": "fuzz-setup"}`)["invoice_id"].(string)
	env.payment = call("POST", "/api/v1/invoices/"+env.invoice+"/payments", `{"method": "visamaster.uah"}`)["id"].(string)
	env.widget = call("POST", "/api/v1/widgets", `{"account_id": "__ACCOUNT__", "timestamp": __NOW__, "type": "unlimited", "currencies": ["USDT"]}`)["external_id"].(string)
	return env
}
