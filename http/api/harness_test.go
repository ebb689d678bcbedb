package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/keyring"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
	"github.com/payledger/payledger/projections"
	"github.com/payledger/payledger/webhooks"
)

// seedTime is seed 003's created_at.
var seedTime = time.Date(2026, 2, 25, 12, 0, 0, 0, time.UTC)

const testAdminToken = "test-admin-token"

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// harness is a real log with the projections inline, a real service and
// the API behind an httptest.Server.
type harness struct {
	t     testing.TB
	store *boltlog.Store
	svc   *commands.Service
	views *projections.Views
	kr    *keyring.Keyring
	srv   *Server
	ts    *httptest.Server
	clock *clock
	logs  *bytes.Buffer
}

func newHarness(t testing.TB, configure ...func(*Config)) *harness {
	t.Helper()
	return newHarnessPrivate(t, false, configure...)
}

// newHarnessPrivate is newHarness with the commands accepting plain-http
// and private webhook targets or not (commands.Config.AllowPrivateWebhooks,
// as serve's --allow-private-webhooks sets it).
func newHarnessPrivate(t testing.TB, allowPrivate bool, configure ...func(*Config)) *harness {
	t.Helper()
	metrics := NewMetrics(nil)
	store, path := boltlogtest.Open(t, &boltlog.Options{Projectors: []boltlog.Projector{&projections.Projector{}}, OnCommit: metrics.OnCommit})
	idb, err := bbolt.Open(filepath.Join(filepath.Dir(path), "idempotency.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = idb.Close() })
	var master [32]byte
	copy(master[:], "payledger test master key 32byte")
	h := &harness{
		t: t, store: store, views: projections.NewViews(store.DB()), kr: keyring.New(master),
		clock: &clock{t: seedTime}, logs: &bytes.Buffer{},
	}
	cfg := Config{
		Views: h.views, Log: store, Keyring: h.kr,
		AdminTokenHash: keyring.HashAPIKey(testAdminToken),
		BaseURL:        "https://pay.app.com",
		IdempotencyDB:  idb,
		Metrics:        metrics,
		Now:            h.clock.Now,
		Logger:         slog.New(slog.NewTextHandler(&lockedWriter{w: h.logs}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	for _, f := range configure {
		f(&cfg)
	}
	// A test that brings a Service of its own keeps h.svc as a second one
	// on the log.
	h.svc = commands.NewService(store, commands.Config{AllowPrivateWebhooks: allowPrivate})
	if cfg.Service == nil {
		cfg.Service = h.svc
	}
	h.srv, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.ts = httptest.NewServer(h.srv.Handler())
	t.Cleanup(h.ts.Close)
	// Runs before the log closes (cleanups run last-registered first):
	// every posting balances per currency.
	t.Cleanup(func() {
		totals, err := h.views.PostingTotals()
		if errors.Is(err, berrors.ErrDatabaseNotOpen) {
			return // the test closed the log itself
		}
		if err != nil {
			t.Errorf("posting totals: %v", err)
		}
		for cur, sum := range totals {
			if !sum.IsZero() {
				t.Errorf("postings in %s sum to %s, want 0", cur, sum)
			}
		}
	})
	return h
}

// newWebhookHarness is newHarness with a real webhooks.Dispatcher mounted
// as Config.Webhooks, as node.New mounts it: its own webhooks.db under
// t.TempDir(), the harness's keyring, the server's error envelope, and Run
// following the harness's log until the test ends. Private targets are
// allowed (receivers are httptest servers; keep every callback_url,
// webhook_url and status_url on one, never a real host), the certificate
// of the TLS receiver rcv is trusted (callback_url must be https), and a
// failed attempt is retried after 10 to 100 ms.
func newWebhookHarness(t *testing.T, rcv *httptest.Server, configure ...func(*Config)) (*harness, *webhooks.Dispatcher) {
	t.Helper()
	var d *webhooks.Dispatcher
	var srv *Server // set once New returns, before any request
	mount := func(c *Config) {
		var err error
		d, err = webhooks.Open(filepath.Join(t.TempDir(), webhooks.FileName), webhooks.Config{
			Keys: c.Keyring, BaseURL: c.BaseURL, AllowPrivate: true, TLSConfig: rcv.Client().Transport.(*http.Transport).TLSClientConfig,
			AttemptTimeout: 5 * time.Second, BackoffBase: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		})
		if err != nil {
			t.Fatalf("open dispatcher: %v", err)
		}
		t.Cleanup(func() {
			if err := d.Close(); err != nil {
				t.Errorf("close dispatcher: %v", err)
			}
		})
		c.Webhooks = d.Handler(webhooks.HandlerConfig{
			Merchant:   MerchantID,
			WriteError: func(w http.ResponseWriter, r *http.Request, err error) { srv.WriteError(w, r, err) },
		})
	}
	h := newHarnessPrivate(t, true, append([]func(*Config){mount}, configure...)...)
	srv = h.srv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, webhooks.FromLog(h.store, 0, 0)) }()
	// Runs before Close (registered later) and before the log closes.
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dispatcher run: %v", err)
		}
	})
	return h, d
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// resp is a decoded response.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r resp) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v\n%s", err, r.Body)
	}
	return m
}

// errCode returns the seed 003 envelope's error code.
func (r resp) errCode(t testing.TB) string {
	t.Helper()
	m := r.JSON(t)
	e, _ := m["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// details returns the envelope's details.
func (r resp) details(t testing.TB) []Detail {
	t.Helper()
	var b struct {
		Error struct {
			Details []Detail `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &b); err != nil {
		t.Fatalf("decode error body: %v\n%s", err, r.Body)
	}
	return b.Error.Details
}

// req is a request to send.
type req struct {
	method, path string
	body         string
	header       map[string]string
	client       *http.Client // nil: the test server's client (from 127.0.0.1)
}

func (h *harness) do(r req) resp {
	h.t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr, err := http.NewRequestWithContext(context.Background(), r.method, h.ts.URL+r.path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if r.body != "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	client := r.client
	if client == nil {
		client = h.ts.Client()
	}
	res, err := client.Do(hr)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// merchant is a merchant made through the admin API.
type merchant struct {
	ID, Key, KeyID, Secret string
}

func (h *harness) admin(method, path, body string) resp {
	h.t.Helper()
	return h.do(req{method: method, path: path, body: body, header: map[string]string{"Authorization": "Bearer " + testAdminToken}})
}

func (h *harness) api(m merchant, method, path, body string) resp {
	h.t.Helper()
	return h.do(req{method: method, path: path, body: body, header: map[string]string{"X-Api-Key": m.Key}})
}

func (h *harness) newMerchant(body string) merchant {
	h.t.Helper()
	r := h.admin("POST", "/admin/v1/merchants", body)
	if r.Status != http.StatusCreated {
		h.t.Fatalf("create merchant: %d %s", r.Status, r.Body)
	}
	var m struct {
		MerchantID    string `json:"merchant_id"`
		APIKey        string `json:"api_key"`
		KeyID         string `json:"key_id"`
		SigningSecret string `json:"signing_secret"`
	}
	if err := json.Unmarshal(r.Body, &m); err != nil {
		h.t.Fatal(err)
	}
	return merchant{ID: m.MerchantID, Key: m.APIKey, KeyID: m.KeyID, Secret: m.SigningSecret}
}

func (h *harness) setRate(cur, rate string) {
	h.t.Helper()
	r := h.admin("POST", "/admin/v1/rates", `{"currency":"`+cur+`","rate":"`+rate+`"}`)
	if r.Status != http.StatusOK {
		h.t.Fatalf("set rate: %d %s", r.Status, r.Body)
	}
}

// seed003Request is seed 003's create-invoice example.
const seed003Request = `{
"amount": "1500.00",
"callback_url": "https://yoursite.com/webhooks/payment",
"currency_code": "UAH",
"customer_id": "user_12345",
"external_id": "order-2026-0001",
"fail_url": "https://yoursite.com/payment/failed",
"purpose": "Payment for Premium subscription",
"success_url": "https://yoursite.com/payment/success"
}`

// seedSetup makes seed 003's merchant (2% commission) and the UAH rate 41.50.
func (h *harness) seedSetup() merchant {
	h.t.Helper()
	m := h.newMerchant(`{"name": "Premium Inc", "commission_percent": "2"}`)
	h.setRate("UAH", "41.50")
	return m
}

// on returns the harness reporting to t (a fuzz target's own T).
func (h *harness) on(t testing.TB) *harness {
	c := *h
	c.t = t
	return &c
}

func (h *harness) head() uint64 { return h.store.Head().Seq }

// otherNode is a second node on h's log: a server of h's configuration
// with idempotency records of its own (in memory), and svc as its service
// (nil: h's). The harness it returns sends to that server.
func (h *harness) otherNode(svc *commands.Service) *harness {
	h.t.Helper()
	cfg := h.srv.cfg
	cfg.IdempotencyDB = nil
	if svc != nil {
		cfg.Service = svc
	}
	srv, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	h.t.Cleanup(ts.Close)
	other := *h
	other.srv, other.ts = srv, ts
	return &other
}

// concurrently sends n requests at once and returns their responses in
// order. send runs on its own goroutine: it must not call t.Fatal (h.do
// fails only on transport errors, which do not happen against the test
// server).
func (h *harness) concurrently(n int, send func(i int) resp) []resp {
	out := make([]resp, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = send(i)
		}()
	}
	wg.Wait()
	return out
}

func jsonEqual(t testing.TB, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got invalid JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want invalid JSON: %v\n%s", err, want)
	}
	gb, _ := json.MarshalIndent(g, "", "  ")
	wb, _ := json.MarshalIndent(w, "", "  ")
	if !bytes.Equal(gb, wb) {
		t.Errorf("body mismatch\n got: %s\nwant: %s", gb, wb)
	}
}
