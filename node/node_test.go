package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/node"
	"github.com/payledger/payledger/stream"
)

// TestNodeEndToEnd runs a whole node (log, projections, embedded JetStream,
// relay, HTTP) and walks the README's flow: the demo merchant creates an
// invoice, pays it through the sandbox, and reads it back; the stream then
// holds every event of the log.
func TestNodeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, err := node.Open(ctx, node.Config{DataDir: dir, Addr: "127.0.0.1:0", AdminToken: "admin-secret", Demo: true, Out: &out,
		NATS: stream.Config{Port: -1, StoreDir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- n.Serve(ctx) }()
	key := regexp.MustCompile(`api_key:\s+(\S+)`).FindStringSubmatch(out.String())
	if key == nil || !strings.Contains(out.String(), "curl -s -X POST "+n.BaseURL()+"/api/v1/create-invoice") {
		t.Fatalf("demo banner without key or curl line:\n%s", out.String())
	}
	base := n.BaseURL()
	call := func(method, path, auth string, body string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if strings.HasPrefix(auth, "Bearer ") {
			req.Header.Set("Authorization", auth)
		} else if auth != "" {
			req.Header.Set("X-Api-Key", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		if resp.Header.Get("X-Request-Id") == "" {
			t.Fatalf("%s %s: no X-Request-Id", method, path)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
		return m
	}
	inv := call("POST", "/api/v1/create-invoice", key[1], `{"amount": "1500.00", "currency_code": "UAH", "customer_id": "user_12345", "external_id": "order-2026-0001", "purpose": "Payment for Premium subscription", "callback_url": "https://yoursite.com/webhooks/payment"}`)
	if inv["conversion_rate"] != "41.50" || inv["merchant_usdt"] != "35.42" || inv["status"] != "pending" {
		t.Fatalf("invoice = %v", inv)
	}
	id := inv["invoice_id"].(string)
	pay := call("POST", "/api/v1/invoices/"+id+"/payments", key[1], `{"method": "visamaster.uah"}`)
	call("POST", "/admin/v1/payments/"+pay["id"].(string)+"/process", "Bearer admin-secret", `{}`)
	got := call("GET", "/api/v1/invoices/"+id, key[1], "")
	if got["status"] != "success" || got["paid_at"] == nil {
		t.Fatalf("invoice after processing = %v", got)
	}
	p := call("GET", "/api/v1/payments/"+pay["id"].(string), key[1], "")
	if p["status"] != "PROCESSED" || p["gatewayId"] != "1" || p["destinationCurrency"] != "USDT" {
		t.Fatalf("payment = %v", p)
	}

	// The relay publishes the whole log.
	head := n.Log.Head().Seq
	deadline := time.Now().Add(10 * time.Second)
	for n.NATS.Relay().Position() < head {
		if time.Now().After(deadline) {
			t.Fatalf("relay at %d, log at %d", n.NATS.Relay().Position(), head)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}
}
