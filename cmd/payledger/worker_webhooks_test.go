package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	domain "github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/internal/syncbuf"
	"github.com/payledger/payledger/keyring"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
	"github.com/payledger/payledger/projections"
	"github.com/payledger/payledger/stream"
	"github.com/payledger/payledger/stream/natstest"
	"github.com/payledger/payledger/webhooks"
)

// childArgsEnv carries the arguments of a `payledger` run in a child
// process (the test binary re-executed), so a test can SIGKILL it.
const childArgsEnv = "PAYLEDGER_TEST_CHILD_ARGS"

// TestWebhooksWorkerChild is the child process: it runs payledger with
// the arguments in its environment and exits with its code.
func TestWebhooksWorkerChild(t *testing.T) {
	args := os.Getenv(childArgsEnv)
	if args == "" {
		t.Skip("runs only as a child process of TestWebhooksWorkerKilledMidRetry")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := runMain(ctx, strings.Split(args, "\x1f"), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// A webhook worker in its own process, fed by the NATS stream, SIGKILLed
// while it retries and started again on the same data dir: every event's
// webhook arrives, signed, and the database shows each delivered once.
func TestWebhooksWorkerKilledMidRetry(t *testing.T) {
	if os.Getenv(childArgsEnv) != "" {
		t.Skip("child process")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := natstest.RunServer(t)
	dir := t.TempDir()
	kr, err := keyring.Open(filepath.Join(dir, "master.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	store, _ := boltlogtest.Open(t, &boltlog.Options{Projectors: []boltlog.Projector{&projections.Projector{}}})
	conn, err := stream.Open(ctx, stream.Config{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	relay, err := stream.NewRelay(conn, store, stream.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(ctx) }()
	defer func() { cancel(); <-relayDone }()

	// The receiver fails everything until told otherwise.
	var (
		failing  atomic.Bool
		mu       sync.Mutex
		attempts = map[string]int{}
		accepted = map[string]bool{}
		badSig   []string
	)
	failing.Store(true)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := r.Header.Get(webhooks.HeaderID)
		mu.Lock()
		defer mu.Unlock()
		attempts[id]++
		if err := webhooks.Verify(kr.SigningSecret("m1", 1), r, body, time.Minute); err != nil {
			badSig = append(badSig, id+": "+err.Error())
		}
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		accepted[id] = true
	}))
	defer rcv.Close()

	// rcv is plain http on loopback, as the worker's --allow-private-webhooks
	// and serve's lets the commands take.
	svc := domain.NewService(store, domain.Config{AllowPrivateWebhooks: true})
	meta := func() domain.Meta { return domain.Meta{CommandID: ulid.Make(), Time: time.Now()} }
	rate, err := svc.SetRate(ctx, domain.SetRate{Meta: meta(), Currency: "UAH", Rate: "41.50"})
	if err != nil {
		t.Fatal(err)
	}
	name, hook := "shop", rcv.URL+"/hook"
	if err := svc.RegisterMerchant(ctx, domain.RegisterMerchant{Meta: meta(), MerchantID: "m1",
		Settings: domain.MerchantSettings{Name: &name, WebhookURL: &hook},
		Key:      domain.APIKeyIssued{KeyID: ulid.Make().String(), KeyHash: keyring.HashAPIKey("k"), Prefix: "pl_k"},
		Secret:   domain.SecretMaterial{SecretHash: keyring.SecretHash(kr.SigningSecret("m1", 1))},
	}); err != nil {
		t.Fatal(err)
	}
	invoice := func() {
		id := ulid.Make()
		if _, err := svc.CreateInvoice(ctx, domain.CreateInvoice{Meta: meta(), InvoiceID: id, MerchantID: "m1",
			Amount: "100.00", Currency: "UAH", ExternalID: id.String(), Rate: rate.Rate}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.CancelInvoice(ctx, domain.CancelInvoice{Meta: meta(), MerchantID: "m1", InvoiceID: domain.UUID(id)}); err != nil {
			t.Fatal(err)
		}
	}
	invoice()

	var stdout *syncbuf.Buffer // the last child's: nothing is written there
	child := func() (*exec.Cmd, *syncbuf.Buffer) {
		args := []string{"worker", "webhooks", "--nats-url", srv.ClientURL(), "--data-dir", dir, "--allow-private-webhooks",
			"--retry-base", "20ms", "--retry-max", "100ms", "--max-attempts", "1000", "--attempt-timeout", "2s"}
		cmd := exec.Command(os.Args[0], "-test.run=^TestWebhooksWorkerChild$")
		cmd.Env = append(os.Environ(), childArgsEnv+"="+strings.Join(args, "\x1f"))
		out := &syncbuf.Buffer{}
		stdout = &syncbuf.Buffer{}
		cmd.Stdout, cmd.Stderr = stdout, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, out
	}
	cmd, out := child()
	natstest.WaitFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range attempts {
			if n >= 3 {
				return nil
			}
		}
		return fmt.Errorf("no webhook retried 3 times yet (%v); worker: %s", attempts, out.String())
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	// Events while no worker runs; then the receiver recovers.
	invoice()
	failing.Store(false)
	cmd, out = child()
	want := map[string]bool{}
	for e, err := range store.Events(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(e.Type, "invoice.") {
			want[e.ID.String()] = true
		}
	}
	natstest.WaitFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		for id := range want {
			if !accepted[id] {
				return fmt.Errorf("webhook %s not accepted yet; worker: %s", id, out.String())
			}
		}
		return nil
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("worker exit: %v\n%s", err, out.String())
	}
	mu.Lock()
	if len(badSig) > 0 {
		t.Errorf("bad signatures: %v", badSig)
	}
	mu.Unlock()

	kr2 := keyring.New([32]byte{})
	d, err := webhooks.Open(filepath.Join(dir, webhooks.FileName), webhooks.Config{Keys: kr2})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	p, err := d.ListDeliveries("m1", webhooks.ListQuery{PageSize: webhooks.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	if p.Details.TotalObjects != len(want) {
		t.Fatalf("%d deliveries recorded, want %d", p.Details.TotalObjects, len(want))
	}
	for _, del := range p.Items {
		if del.Status != webhooks.StatusDelivered || !want[del.WebhookID] {
			t.Errorf("delivery %+v", del)
		}
	}
	if !strings.Contains(out.String(), `msg="worker webhooks: stopped" checkpoint=`) {
		t.Errorf("worker log: %s", out.String())
	}
	if stdout.String() != "" {
		t.Errorf("worker webhooks wrote to stdout:\n%s", stdout.String())
	}
}

func TestParseShard(t *testing.T) {
	for in, ok := range map[string]bool{"": true, "0/1": true, "2/3": true, "3/3": false, "-1/2": false, "1": false, "a/b": false} {
		if _, _, err := parseShard(in); (err == nil) != ok {
			t.Errorf("%q: %v", in, err)
		}
	}
}

// TestServeWithWebhookWorkers: serve --webhooks=false beside a webhook
// worker. The worker delivers each webhook to a real receiver once; serve
// starts no dispatcher of its own (it would send each a second time, and
// keep a webhooks.db), and its merchant delivery routes, which cannot see
// the worker's records, answer 503 WEBHOOK_DELIVERIES_ELSEWHERE rather
// than an empty list.
func TestServeWithWebhookWorkers(t *testing.T) {
	if os.Getenv(childArgsEnv) != "" {
		t.Skip("child process")
	}
	srv := natstest.RunServer(t)
	var (
		mu       sync.Mutex
		attempts = map[string]int{}
	)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		attempts[r.Header.Get(webhooks.HeaderID)]++
		mu.Unlock()
	}))
	defer rcv.Close()

	dir := t.TempDir()
	child := startServe(t, "--data-dir", dir, "--nats-url", srv.ClientURL(), "--admin-token", "t0ken", "--no-demo",
		"--allow-private-webhooks", "--webhooks=false")
	call := func(method, path, auth, body string) (int, []byte) {
		t.Helper()
		code, b, err := apiCall(method, child.base+path, auth, body)
		if err != nil {
			t.Fatal(err)
		}
		return code, b
	}
	if code, b := call(http.MethodPost, "/admin/v1/rates", "Bearer t0ken", `{"currency": "UAH", "rate": "41.50"}`); code >= 300 {
		t.Fatalf("set rate: %d %s", code, b)
	}
	code, b := call(http.MethodPost, "/admin/v1/merchants", "Bearer t0ken",
		fmt.Sprintf(`{"name": "Shop", "commission_percent": "2", "webhook_url": %q}`, rcv.URL+"/hook"))
	if code >= 300 {
		t.Fatalf("create merchant: %d %s", code, b)
	}
	var m struct {
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	workerDone := make(chan int, 1)
	var workerOut syncbuf.Buffer
	go func() {
		workerDone <- runMain(ctx, []string{"worker", "webhooks", "--nats-url", srv.ClientURL(), "--data-dir", t.TempDir(),
			"--master-key", filepath.Join(dir, "master.key"), "--allow-private-webhooks"}, &workerOut, &workerOut)
	}()
	defer func() {
		cancel()
		if code := <-workerDone; code != 0 {
			t.Errorf("worker exit %d: %s", code, workerOut.String())
		}
	}()
	for i := range 5 {
		body := fmt.Sprintf(`{"amount": "10.00", "currency_code": "UAH", "customer_id": "c%d", "external_id": "o-%d"}`, i, i)
		if code, b := call(http.MethodPost, "/api/v1/create-invoice", m.APIKey, body); code >= 300 {
			t.Fatalf("create invoice: %d %s", code, b)
		}
	}
	natstest.WaitFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(attempts) < 5 {
			return fmt.Errorf("%d webhooks received; worker: %s", len(attempts), workerOut.String())
		}
		return nil
	})

	for _, r := range []struct{ method, path, body string }{
		{http.MethodGet, "/api/v1/webhooks/deliveries", ""},
		{http.MethodGet, "/api/v1/webhooks/deliveries/" + ulid.Make().String(), ""},
		{http.MethodPost, "/api/v1/webhooks/deliveries/" + ulid.Make().String() + "/redeliver", ""},
		{http.MethodPost, "/api/v1/webhooks/redeliver", `{"since": "2025-01-01T00:00:00Z"}`},
	} {
		code, b := call(r.method, r.path, m.APIKey, r.body)
		var env struct {
			Successful *bool `json:"successful"`
			Error      struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(b, &env); err != nil || code != http.StatusServiceUnavailable ||
			env.Successful == nil || *env.Successful || env.Error.Code != "WEBHOOK_DELIVERIES_ELSEWHERE" || !strings.Contains(env.Error.Message, "worker") {
			t.Errorf("%s %s: %d %s", r.method, r.path, code, b)
		}
	}

	// Stopped gracefully, serve has run no dispatcher: no webhooks.db, and
	// each webhook came once, from the worker.
	if err := child.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-child.exited
	if child.err != nil {
		t.Fatalf("serve exit: %v\n%s", child.err, child.out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, webhooks.FileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("serve --webhooks=false made %s (%v)", webhooks.FileName, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, n := range attempts {
		if n != 1 {
			t.Errorf("webhook %s received %d times", id, n)
		}
	}
}
