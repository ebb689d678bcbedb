package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/payledger/payledger/http/api"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
	"github.com/payledger/payledger/node"
	"github.com/payledger/payledger/stream"
	"github.com/payledger/payledger/stream/natstest"
	"github.com/payledger/payledger/webhooks"
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
		AllowPrivateWebhooks: true, NATS: stream.Config{Port: -1, StoreDir: t.TempDir()}})
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
	// The merchant's webhook receiver.
	secret := regexp.MustCompile(`signing_secret:\s+(\S+)`).FindStringSubmatch(out.String())[1]
	merchant := regexp.MustCompile(`merchant_id:\s+(\S+)`).FindStringSubmatch(out.String())[1]
	var mu sync.Mutex
	var hooks []string // "webhook-id status"
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhooks.Verify(secret, r, body, 5*time.Minute); err != nil {
			t.Errorf("webhook signature: %v", err)
			http.Error(w, "bad signature", http.StatusBadRequest)
			return
		}
		var b struct{ Status string }
		_ = json.Unmarshal(body, &b)
		mu.Lock()
		hooks = append(hooks, r.Header.Get("webhook-id")+" "+b.Status)
		mu.Unlock()
	}))
	defer recv.Close()
	call("PATCH", "/admin/v1/merchants/"+merchant, "Bearer admin-secret", `{"webhook_url": "`+recv.URL+`"}`)

	inv := call("POST", "/api/v1/create-invoice", key[1], `{"amount": "1500.00", "currency_code": "UAH", "customer_id": "user_12345", "external_id": "order-2026-0001", "purpose": "Payment for Premium subscription"}`)
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

	// Webhooks: the invoice's pending and success, the payment's PENDING and
	// PROCESSED, each signed, the final status last for each resource.
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		got := append([]string(nil), hooks...)
		mu.Unlock()
		if len(got) >= 4 {
			last := map[bool]string{}
			for _, h := range got {
				st := strings.Fields(h)[1]
				last[st == strings.ToUpper(st)] = st
			}
			if last[false] != "success" || last[true] != "PROCESSED" {
				t.Fatalf("final statuses did not arrive last: %v", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhooks received: %v; deliveries: %v; stats %+v", got, call("GET", "/api/v1/webhooks/deliveries", key[1], ""), n.Webhooks.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}

	// The relay publishes the whole log.
	head := n.Log.Head().Seq
	deadline = time.Now().Add(10 * time.Second)
	for n.Stream().Relay().Position() < head {
		if time.Now().After(deadline) {
			t.Fatalf("relay at %d, log at %d", n.Stream().Relay().Position(), head)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}
}

// TestNodeRefusesWebhookStoreAheadOfLog: after restoring an older log backup,
// the webhook store has seen sequences the log no longer holds; the node
// refuses to start instead of skipping the new events at those sequences.
func TestNodeRefusesWebhookStoreAheadOfLog(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	open := func() (*node.Node, error) {
		return node.Open(ctx, node.Config{DataDir: dir, Addr: "127.0.0.1:0", NoNATS: true, Demo: true, Out: io.Discard})
	}
	n, err := open()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for n.Webhooks.Checkpoint() < n.Log.Head().Seq {
		if time.Now().After(deadline) {
			t.Fatal("dispatcher did not catch up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	// An "older backup": a log with nothing in it.
	if err := os.Remove(filepath.Join(dir, node.LogFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Open(ctx, node.Config{DataDir: dir, Addr: "127.0.0.1:0", NoNATS: true, Out: io.Discard}); !errors.Is(err, node.ErrAhead) {
		t.Fatalf("open with the webhook store ahead of the log: %v", err)
	}
}

// The webhook delivery routes answer errors in seed 003's envelope, like
// every other merchant route.
func TestWebhookRoutesUseTheAPIEnvelope(t *testing.T) {
	n, key := openDemo(t)
	for path, want := range map[string]int{
		"/api/v1/webhooks/deliveries/nope":           http.StatusNotFound,
		"/api/v1/webhooks/deliveries?status=unknown": http.StatusBadRequest,
	} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("X-Api-Key", key)
		rec := httptest.NewRecorder()
		n.Handler().ServeHTTP(rec, req)
		var env struct {
			Successful *bool  `json:"successful"`
			RequestID  string `json:"request_id"`
			Error      struct{ Code string }
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || rec.Code != want || env.Successful == nil || *env.Successful || env.RequestID == "" || env.Error.Code == "" {
			t.Errorf("GET %s: %d %s", path, rec.Code, rec.Body.String())
		}
	}
}

// TestNodeRateLimits: Config.KeyRate reaches the API (serve's --key-rate):
// at 1 request/s (burst 2) the third quick request is 429 with Retry-After;
// a negative rate is no limit.
func TestNodeRateLimits(t *testing.T) {
	for _, tc := range []struct {
		rate    rate.Limit
		limited bool
	}{{1, true}, {-1, false}} {
		var out bytes.Buffer
		n, err := node.Open(context.Background(), node.Config{DataDir: t.TempDir(), Addr: "127.0.0.1:0", NoNATS: true, Demo: true, Out: &out, KeyRate: tc.rate})
		if err != nil {
			t.Fatal(err)
		}
		key := regexp.MustCompile(`api_key:\s+(\S+)`).FindStringSubmatch(out.String())[1]
		limited := false
		for range 5 {
			req := httptest.NewRequest(http.MethodGet, "/api/v1/balance", nil)
			req.Header.Set("X-Api-Key", key)
			rec := httptest.NewRecorder()
			n.Handler().ServeHTTP(rec, req)
			if rec.Code == http.StatusTooManyRequests && rec.Header().Get("Retry-After") != "" {
				limited = true
			} else if rec.Code != http.StatusOK {
				t.Errorf("rate %v: %d %s", tc.rate, rec.Code, rec.Body.String())
			}
		}
		if limited != tc.limited {
			t.Errorf("rate %v: limited %v, want %v", tc.rate, limited, tc.limited)
		}
		n.Close()
	}
}

// TestNodeAuthFailRate: Config.AuthFailRate reaches the API (serve's
// --auth-fail-rate): past api.DefaultAuthFailBurst wrong keys from one
// address the next is 429 with Retry-After; a negative rate is no limit.
func TestNodeAuthFailRate(t *testing.T) {
	for _, tc := range []struct {
		rate    rate.Limit
		limited bool
	}{{0.01, true}, {-1, false}} {
		n, err := node.Open(context.Background(), node.Config{DataDir: t.TempDir(), Addr: "127.0.0.1:0", NoNATS: true, Out: io.Discard, AuthFailRate: tc.rate})
		if err != nil {
			t.Fatal(err)
		}
		for i := range api.DefaultAuthFailBurst + 1 {
			req := httptest.NewRequest(http.MethodGet, "/api/v1/balance", nil)
			req.Header.Set("X-Api-Key", "pl_wrong")
			rec := httptest.NewRecorder()
			n.Handler().ServeHTTP(rec, req)
			want := http.StatusUnauthorized
			if tc.limited && i == api.DefaultAuthFailBurst {
				want = http.StatusTooManyRequests
			}
			if rec.Code != want || (want == http.StatusTooManyRequests && rec.Header().Get("Retry-After") != "100") {
				t.Errorf("rate %v, bad key %d: %d %v %s, want %d", tc.rate, i+1, rec.Code, rec.Header(), rec.Body.String(), want)
			}
		}
		n.Close()
	}
}

// TestNodeTrustedProxies: Config.TrustedProxies reaches the API (serve's
// --trusted-proxies), through a real server: with the peer (127.0.0.1)
// trusted, a client X-Forwarded-For names that used up its failed
// authentications does not get another client behind the same peer
// refused; without the setting both have the peer's address.
func TestNodeTrustedProxies(t *testing.T) {
	for _, tc := range []struct {
		trusted []netip.Prefix
		want    int // the other client's bad key
	}{{nil, http.StatusTooManyRequests}, {[]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, http.StatusUnauthorized}} {
		n, err := node.Open(context.Background(), node.Config{DataDir: t.TempDir(), Addr: "127.0.0.1:0", NoNATS: true, Out: io.Discard,
			AuthFailRate: 0.01, TrustedProxies: tc.trusted})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(n.Handler())
		badKey := func(client string) int {
			req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, ts.URL+"/api/v1/balance", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Api-Key", "pl_wrong")
			req.Header.Set("X-Forwarded-For", client)
			res, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			return res.StatusCode
		}
		for range api.DefaultAuthFailBurst {
			badKey("203.0.113.66")
		}
		if code := badKey("203.0.113.66"); code != http.StatusTooManyRequests {
			t.Errorf("trusted %v: the guessing client's next bad key: %d, want 429", tc.trusted, code)
		}
		if code := badKey("203.0.113.10"); code != tc.want {
			t.Errorf("trusted %v: another client's bad key: %d, want %d", tc.trusted, code, tc.want)
		}
		ts.Close()
		n.Close()
	}
}

// TestOpenFailsPromptlyWhenRelayCannotPublish: Open fails after the relay
// started (its HTTP address is taken) while JetStream refuses the relay's
// writes (the stream holds one message at most). Its cleanup flushes the
// relay within ShutdownTimeout, not for ever, and Open returns its error.
func TestOpenFailsPromptlyWhenRelayCannotPublish(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	n, err := node.Open(ctx, node.Config{DataDir: dir, Addr: "127.0.0.1:0", Demo: true, Out: io.Discard, NoNATS: true})
	if err != nil {
		t.Fatal(err)
	}
	if n.Log.Head().Seq < 2 {
		t.Fatalf("the demo merchant made %d events; the test needs two", n.Log.Head().Seq)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	srv := natstest.RunServer(t)
	conn, err := stream.Open(ctx, stream.Config{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	sc := conn.StreamConfig()
	sc.MaxMsgs, sc.Discard = 1, jetstream.DiscardNew
	if _, err := conn.JetStream().CreateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	done := make(chan error, 1)
	go func() {
		n, err := node.Open(ctx, node.Config{DataDir: dir, Addr: busy.Addr().String(), Out: io.Discard,
			NATS: stream.Config{URL: srv.ClientURL()}, ShutdownTimeout: time.Second})
		if err == nil {
			n.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Open succeeded on a taken address")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Open has not returned 30 s after its address was found taken (ShutdownTimeout 1 s)")
	}
}

// TestNodeServesNothingFromAFailedLog: once a commit failed after bbolt
// made it visible, the node's API and hosted pages answer 503 (the views
// show a commit the disk may not hold), /readyz fails, /healthz and
// /metrics answer.
func TestNodeServesNothingFromAFailedLog(t *testing.T) {
	n, key := openDemo(t)
	serve := func(method, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("X-Api-Key", key)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		n.Handler().ServeHTTP(rec, req)
		return rec
	}
	rec := serve(http.MethodPost, "/api/v1/create-invoice", `{"amount": "100.00", "currency_code": "UAH", "external_id": "failed-log"}`)
	var inv struct {
		InvoiceID string `json:"invoice_id"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &inv); rec.Code != http.StatusCreated || err != nil {
		t.Fatalf("create-invoice: %d %s", rec.Code, rec.Body.String())
	}
	restore := boltlogtest.FailMetaSync(t, n.Log)
	rec = serve(http.MethodPost, "/api/v1/invoices/"+inv.InvoiceID+"/cancel", "")
	restore()
	if rec.Code != http.StatusServiceUnavailable || !errors.Is(n.Log.Failed(), ledger.ErrFailed) {
		t.Fatalf("cancel whose commit failed: %d %s (log failed: %v)", rec.Code, rec.Body.String(), n.Log.Failed())
	}
	for path, want := range map[string]int{
		"/api/v1/invoices/" + inv.InvoiceID: http.StatusServiceUnavailable,
		"/pay/" + inv.InvoiceID:             http.StatusServiceUnavailable,
		"/pay/" + inv.InvoiceID + "/status": http.StatusServiceUnavailable,
		"/readyz":                           http.StatusServiceUnavailable,
		"/healthz":                          http.StatusOK,
		"/metrics":                          http.StatusOK,
	} {
		if rec := serve(http.MethodGet, path, ""); rec.Code != want || strings.Contains(rec.Body.String(), "cancelled") {
			t.Errorf("GET %s on a failed log: %d, want %d\n%s", path, rec.Code, want, rec.Body.String())
		}
	}
}
