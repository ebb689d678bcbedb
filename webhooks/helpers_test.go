package webhooks

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/keyring"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
	"github.com/payledger/payledger/projections"
)

// env is a log with the domain on top, a keyring, and helpers that drive
// invoices and payments through real commands.
type env struct {
	t     *testing.T
	ctx   context.Context
	store *boltlog.Store
	svc   *commands.Service
	kr    *keyring.Keyring
	rate  decimal.Decimal
}

func newEnv(t *testing.T) *env {
	t.Helper()
	store, _ := boltlogtest.Open(t, &boltlog.Options{Projectors: []boltlog.Projector{&projections.Projector{}}})
	var master [32]byte
	copy(master[:], "webhooks test master key 32 byte")
	// The receivers are httptest servers on loopback, most over plain
	// http: the commands take such targets, as serve's
	// --allow-private-webhooks has them do. (A dispatcher without
	// AllowPrivate still meets them, as it meets the targets of events
	// recorded before it was turned off.)
	e := &env{t: t, ctx: context.Background(), store: store, svc: commands.NewService(store, commands.Config{AllowPrivateWebhooks: true}), kr: keyring.New(master)}
	r, err := e.svc.SetRate(e.ctx, commands.SetRate{Meta: e.meta(), Currency: "UAH", Rate: "41.50"})
	if err != nil {
		t.Fatalf("set rate: %v", err)
	}
	e.rate = r.Rate
	return e
}

func (e *env) meta() commands.Meta {
	return commands.Meta{CommandID: ulid.Make(), Time: time.Now()}
}

func (e *env) merchant(id, webhookURL string) {
	e.t.Helper()
	name := "merchant " + id
	err := e.svc.RegisterMerchant(e.ctx, commands.RegisterMerchant{
		Meta: e.meta(), MerchantID: id,
		Settings: commands.MerchantSettings{Name: &name, WebhookURL: &webhookURL},
		Key:      commands.APIKeyIssued{KeyID: ulid.Make().String(), KeyHash: keyring.HashAPIKey("key-" + id), Prefix: "pl_test"},
		Secret:   commands.SecretMaterial{SecretHash: keyring.SecretHash(e.kr.SigningSecret(id, 1))},
	})
	if err != nil {
		e.t.Fatalf("register merchant: %v", err)
	}
}

func (e *env) setWebhookURL(id, u string) {
	e.t.Helper()
	err := e.svc.ChangeMerchantSettings(e.ctx, commands.ChangeMerchantSettings{Meta: e.meta(), MerchantID: id, Settings: commands.MerchantSettings{WebhookURL: &u}})
	if err != nil {
		e.t.Fatalf("change settings: %v", err)
	}
}

func (e *env) invoice(merchant, callback string) string {
	e.t.Helper()
	id := ulid.Make()
	inv, err := e.svc.CreateInvoice(e.ctx, commands.CreateInvoice{
		Meta: e.meta(), InvoiceID: id, MerchantID: merchant, Amount: "1500.00", Currency: "UAH",
		CustomerID: "user_1", ExternalID: "order-" + id.String(), Purpose: "test", CallbackURL: callback, Rate: e.rate,
	})
	if err != nil {
		e.t.Fatalf("create invoice: %v", err)
	}
	return inv.InvoiceID
}

func (e *env) cancel(merchant, invoiceID string) {
	e.t.Helper()
	if _, err := e.svc.CancelInvoice(e.ctx, commands.CancelInvoice{Meta: e.meta(), MerchantID: merchant, InvoiceID: invoiceID}); err != nil {
		e.t.Fatalf("cancel invoice: %v", err)
	}
}

// payment creates a payment of the invoice and returns its id (stream suffix).
func (e *env) payment(merchant, invoiceID string) string {
	e.t.Helper()
	id := ulid.Make()
	if _, _, err := e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: id, InvoiceID: invoiceID, MerchantID: merchant, Method: "visamaster.uah"}); err != nil {
		e.t.Fatalf("create payment: %v", err)
	}
	return id.String()
}

func (e *env) transition(paymentID, status string) {
	e.t.Helper()
	if _, err := e.svc.TransitionPayment(e.ctx, commands.PaymentTransition{Meta: e.meta(), PaymentID: paymentID, Status: status}); err != nil {
		e.t.Fatalf("payment %s -> %s: %v", paymentID, status, err)
	}
}

func (e *env) process(paymentID string) {
	e.t.Helper()
	if _, err := e.svc.ProcessPayment(e.ctx, commands.ProcessPayment{Meta: e.meta(), PaymentID: paymentID}); err != nil {
		e.t.Fatalf("process payment: %v", err)
	}
}

// paidInvoice makes an invoice and a payment that is confirmed and
// processed: invoice created, paid; payment created, confirmed, processed.
func (e *env) paidInvoice(merchant, callback string) (invoiceID, paymentID string) {
	invoiceID = e.invoice(merchant, callback)
	paymentID = e.payment(merchant, invoiceID)
	e.transition(paymentID, commands.PaymentStatusConfirmed)
	e.process(paymentID)
	return invoiceID, paymentID
}

// testConfig is a dispatcher config with short timings for loopback receivers.
func (e *env) config() Config {
	return Config{
		Keys: e.kr, AllowPrivate: true, BaseURL: "https://pay.example.com",
		AttemptTimeout: 500 * time.Millisecond, BackoffBase: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		MaxAttempts: 50,
	}
}

// dispatcher opens a dispatcher at path (a new one under t.TempDir() when
// empty) and runs it on the log until the returned stop is called (or the
// test ends).
func (e *env) dispatcher(path string, cfg Config) (*Dispatcher, func()) {
	e.t.Helper()
	if path == "" {
		path = filepath.Join(e.t.TempDir(), FileName)
	}
	d, err := Open(path, cfg)
	if err != nil {
		e.t.Fatalf("open dispatcher: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, FromLog(e.store, 0, 0)) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("dispatcher run: %v", err)
			}
			if err := d.Close(); err != nil {
				e.t.Errorf("close dispatcher: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	return d, stop
}

// waitFor polls cond until it returns nil, failing the test with its last
// error after timeout.
func waitFor(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// receiver is a loopback webhook endpoint that records every request and
// answers as its policy says.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret func(merchant string) string // for verification; nil skips

	mu     sync.Mutex
	reqs   []received
	counts map[string]int // requests per webhook-id
	policy func(r *http.Request, n int) (status int, hdr http.Header)
}

type received struct {
	ID        string
	Timestamp string
	Signature string
	Method    string
	URL       string
	Body      []byte
	At        time.Time
	Status    int   // what the receiver answered
	VerifyErr error // nil: the signature verified
}

func newReceiver(t *testing.T, tlsServer bool, policy func(r *http.Request, n int) (int, http.Header)) *receiver {
	rc := &receiver{t: t, counts: make(map[string]int), policy: policy}
	h := http.HandlerFunc(rc.serve)
	if tlsServer {
		rc.srv = httptest.NewTLSServer(h)
	} else {
		rc.srv = httptest.NewServer(h)
	}
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) URL() string { return rc.srv.URL + "/hook" }

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := received{
		ID: r.Header.Get(HeaderID), Timestamp: r.Header.Get(HeaderTimestamp), Signature: r.Header.Get(HeaderSignature),
		Method: r.Method, URL: r.URL.String(), Body: body, At: time.Now(),
	}
	if rc.secret != nil {
		rec.VerifyErr = errors.New("unknown merchant")
		for _, s := range rc.secretsFor() {
			if err := Verify(s, r, body, time.Minute); err == nil {
				rec.VerifyErr = nil
				break
			} else {
				rec.VerifyErr = err
			}
		}
	}
	rc.mu.Lock()
	rc.counts[rec.ID]++
	n := rc.counts[rec.ID]
	policy := rc.policy
	rc.mu.Unlock()
	status, hdr := http.StatusOK, http.Header(nil)
	if policy != nil {
		status, hdr = policy(r, n)
	}
	for k, v := range hdr {
		w.Header()[k] = v
	}
	rec.Status = status
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, rec)
	rc.mu.Unlock()
	w.WriteHeader(status)
}

func (rc *receiver) secretsFor() []string { return []string{rc.secret("")} }

func (rc *receiver) setPolicy(p func(r *http.Request, n int) (int, http.Header)) {
	rc.mu.Lock()
	rc.policy = p
	rc.mu.Unlock()
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.reqs...)
}

// accepted are the requests answered 2xx, in arrival order.
func (rc *receiver) accepted() []received {
	var out []received
	for _, r := range rc.requests() {
		if r.Status >= 200 && r.Status <= 299 {
			out = append(out, r)
		}
	}
	return out
}

// tlsConfig trusts the receiver's test certificate.
func (rc *receiver) tlsConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(rc.srv.Certificate())
	return &tls.Config{RootCAs: pool}
}

// resourceStatus parses a webhook body: the resource and its status.
func resourceStatus(body []byte) (resource, status string, err error) {
	var b struct {
		InvoiceID string `json:"invoice_id"`
		ID        string `json:"id"`
		Status    string `json:"status"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return "", "", err
	}
	if b.InvoiceID != "" {
		return "invoice:" + b.InvoiceID, b.Status, nil
	}
	return "payment:" + b.ID, b.Status, nil
}

// checkDelivered checks what a receiver accepted against what the
// dispatcher recorded for merchant: every delivery delivered, every one
// seen with a valid signature, and, per resource, the first acceptance of
// each delivery in event order, so the final status is accepted last.
func checkDelivered(t *testing.T, d *Dispatcher, merchant string, rc *receiver, want int) {
	t.Helper()
	var all []Delivery
	waitFor(t, 20*time.Second, func() error {
		p, err := d.ListDeliveries(merchant, ListQuery{PageSize: MaxPageSize})
		if err != nil {
			return err
		}
		if p.Details.TotalObjects != want {
			return fmt.Errorf("%d deliveries, want %d", p.Details.TotalObjects, want)
		}
		for _, del := range p.Items {
			if del.Status != StatusDelivered {
				return fmt.Errorf("delivery %s (%s) is %s after %d attempts: %s", del.ID, del.EventType, del.Status, del.AttemptCount, del.LastError)
			}
		}
		all = p.Items
		return nil
	})
	first := make(map[string]int) // webhook id -> index of first acceptance
	acc := rc.accepted()
	for i, r := range acc {
		if r.VerifyErr != nil {
			t.Errorf("webhook %s: signature: %v", r.ID, r.VerifyErr)
		}
		if _, ok := first[r.ID]; !ok {
			first[r.ID] = i
		}
	}
	byResource := make(map[string][]Delivery)
	for _, del := range all {
		if _, ok := first[del.WebhookID]; !ok {
			t.Errorf("delivery %s (%s) never accepted by the receiver", del.ID, del.EventType)
			continue
		}
		k := del.Resource + ":" + del.ResourceID
		byResource[k] = append(byResource[k], del)
	}
	for res, dels := range byResource {
		// Event order is sequence order; the list is newest first.
		for i := 0; i+1 < len(dels); i++ {
			later, earlier := dels[i], dels[i+1]
			if first[later.WebhookID] < first[earlier.WebhookID] {
				t.Errorf("%s: %s (seq %d) accepted before %s (seq %d)", res, later.EventType, later.EventSeq, earlier.EventType, earlier.EventSeq)
			}
		}
		// The last accepted body of the resource carries its final status.
		var last received
		for _, r := range acc {
			if rs, _, err := resourceStatus(r.Body); err == nil && rs == res {
				last = r
			}
		}
		_, status, _ := resourceStatus(last.Body)
		_, want, _ := resourceStatus(dels[0].Body)
		if status != want {
			t.Errorf("%s: last accepted status %q, final is %q", res, status, want)
		}
	}
}

// freeAddr returns a loopback address nothing listened on a moment ago.
// Another process may take it at any time: a test that listens on it later
// waits until it can.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

type (
	ledgerEvent            = ledger.Event
	projectionsPageDetails = projections.PageDetails
	io_ReadCloser          = io.ReadCloser
)

var io_NopCloser = io.NopCloser

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// posted is a webhook as its receiver's server has it: a POST with
// headers h (its body is passed to Verify on its own).
func posted(h http.Header) *http.Request {
	return &http.Request{Method: http.MethodPost, URL: &url.URL{Path: "/hook"}, RequestURI: "/hook", Header: h}
}

// hdr builds canonical webhook headers, as a server sees them.
func hdr(id, ts, sig string) http.Header {
	h := http.Header{}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, ts)
	if sig != "" {
		h.Set(HeaderSignature, sig)
	}
	return h
}

type commandsDecimal = decimal.Decimal

// fixedSecret is a rotation's secret material: one hash whatever the
// version (webhooks sign with the keyring's derivation; the hash is only
// recorded).
func fixedSecret(hash string) func(int) commands.SecretMaterial {
	return func(int) commands.SecretMaterial { return commands.SecretMaterial{SecretHash: hash} }
}
