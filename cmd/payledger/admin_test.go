package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	domain "github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/http/api"
	"github.com/payledger/payledger/keyring"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
	"github.com/payledger/payledger/projections"
)

// adminServer runs the real API over a fresh log and returns its URL.
func adminServer(t *testing.T, token string) string {
	t.Helper()
	store, _ := boltlogtest.Open(t, &boltlog.Options{Projectors: []boltlog.Projector{&projections.Projector{}}})
	svc := domain.NewService(store, domain.Config{})
	var master [32]byte
	srv, err := api.New(api.Config{
		Service: svc, Views: projections.NewViews(store.DB()), Log: store, Keyring: keyring.New(master),
		AdminTokenHash: keyring.HashAPIKey(token),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

func runAdminCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runMain(context.Background(), append([]string{"admin"}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

func TestAdminCLI(t *testing.T) {
	url := adminServer(t, "tok")
	g := []string{"--server", url, "--admin-token", "tok"}

	out, errs, code := runAdminCLI(t, append(g, "merchant", "create", "--name", "Shop", "--commission", "2", "--methods", "visamaster.uah")...)
	if code != 0 {
		t.Fatalf("merchant create: %d %s", code, errs)
	}
	var m struct {
		MerchantID string `json:"merchant_id"`
		APIKey     string `json:"api_key"`
		KeyID      string `json:"key_id"`
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil || m.MerchantID == "" || !strings.HasPrefix(m.APIKey, "pl_") {
		t.Fatalf("merchant create printed %q (%v)", out, err)
	}
	// Flags after the positionals, and the token from the environment.
	t.Setenv("PAYLEDGER_ADMIN_TOKEN", "tok")
	if out, errs, code := runAdminCLI(t, "rate", "set", "UAH", "41.50", "--server", url); code != 0 || !strings.Contains(out, `"rate": "41.50"`) {
		t.Errorf("rate set: %d %s %s", code, out, errs)
	}
	if out, _, code := runAdminCLI(t, append(g, "rate", "list")...); code != 0 || !strings.Contains(out, "UAH") {
		t.Errorf("rate list: %d %s", code, out)
	}
	if out, _, code := runAdminCLI(t, append(g, "merchant", "update", m.MerchantID, "--invoicing", "false")...); code != 0 || !strings.Contains(out, `"invoicing_enabled": false`) {
		t.Errorf("merchant update: %d %s", code, out)
	}
	if out, _, code := runAdminCLI(t, append(g, "merchant", "get", m.MerchantID)...); code != 0 || !strings.Contains(out, `"name": "Shop"`) {
		t.Errorf("merchant get: %d %s", code, out)
	}
	if out, _, code := runAdminCLI(t, append(g, "merchant", "list")...); code != 0 || !strings.Contains(out, m.MerchantID) {
		t.Errorf("merchant list: %d %s", code, out)
	}
	if out, _, code := runAdminCLI(t, append(g, "key", "issue", m.MerchantID, "--label", "ci")...); code != 0 || !strings.Contains(out, `"api_key": "pl_`) {
		t.Errorf("key issue: %d %s", code, out)
	}
	if _, _, code := runAdminCLI(t, append(g, "key", "revoke", m.MerchantID, m.KeyID)...); code != 0 {
		t.Errorf("key revoke: %d", code)
	}
	if out, _, code := runAdminCLI(t, append(g, "secret", "rotate", m.MerchantID)...); code != 0 || !strings.Contains(out, `"version": 2`) {
		t.Errorf("secret rotate: %d %s", code, out)
	}
	// Refusals exit 1 with the server's code; bad usage exits 2.
	if _, errs, code := runAdminCLI(t, append(g, "rate", "set", "UAH", "-1")...); code != 1 || !strings.Contains(errs, "VALIDATION_ERROR") || !strings.Contains(errs, "rate:") {
		t.Errorf("bad rate: %d %s", code, errs)
	}
	if _, errs, code := runAdminCLI(t, append(g, "payment", "process", "42")...); code != 1 || !strings.Contains(errs, "NOT_FOUND") {
		t.Errorf("unknown payment: %d %s", code, errs)
	}
	if _, _, code := runAdminCLI(t, append(g, "rate", "set", "UAH")...); code != 2 {
		t.Errorf("missing argument: exit %d, want 2", code)
	}
	if _, _, code := runAdminCLI(t, append(g, "frobnicate")...); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
	if _, errs, code := runAdminCLI(t, "--server", url, "--admin-token", "wrong", "rate", "list"); code != 1 || !strings.Contains(errs, "ADMIN_TOKEN_INVALID") {
		t.Errorf("wrong token: %d %s", code, errs)
	}
}

// TestAdminCLIMerchantList: with more merchants than a page holds,
// "merchant list" still prints every one, once, by id, as
// {"merchants": [...]}; --page and --page-size print that one page with
// its page_details; a bad --page-size is the server's 400 naming it; and
// "merchant get" prints merchant_id. Before, the list printed only the
// first 20 (the server's default page) and the flags were unknown.
func TestAdminCLIMerchantList(t *testing.T) {
	url := adminServer(t, "tok")
	g := func(args ...string) []string {
		return append([]string{"--server", url, "--admin-token", "tok"}, args...)
	}
	const n = 105
	var ids []string
	for i := range n {
		out, errs, code := runAdminCLI(t, g("merchant", "create", "--name", fmt.Sprintf("m%d", i))...)
		var m struct {
			MerchantID string `json:"merchant_id"`
		}
		if err := json.Unmarshal([]byte(out), &m); code != 0 || err != nil {
			t.Fatalf("merchant create: %d %s %s (%v)", code, out, errs, err)
		}
		ids = append(ids, m.MerchantID)
	}
	slices.Sort(ids)
	type list struct {
		Merchants []struct {
			ID         string `json:"id"`
			MerchantID string `json:"merchant_id"`
		} `json:"merchants"`
		PageDetails *projections.PageDetails `json:"page_details"`
	}
	run := func(args ...string) list {
		t.Helper()
		out, errs, code := runAdminCLI(t, g(args...)...)
		var l list
		if err := json.Unmarshal([]byte(out), &l); code != 0 || err != nil {
			t.Fatalf("%v: %d %s %s (%v)", args, code, out, errs, err)
		}
		return l
	}
	got := func(l list) []string {
		var out []string
		for _, m := range l.Merchants {
			if m.ID != m.MerchantID {
				t.Errorf("id %s, merchant_id %s", m.ID, m.MerchantID)
			}
			out = append(out, m.MerchantID)
		}
		return out
	}
	all := run("merchant", "list")
	if fmt.Sprint(got(all)) != fmt.Sprint(ids) || all.PageDetails != nil {
		t.Errorf("merchant list: %d merchants, page_details %v; want the %d by id, no page_details", len(all.Merchants), all.PageDetails, n)
	}
	p := run("merchant", "list", "--page", "2", "--page-size", "50")
	want := projections.PageDetails{PageNumber: 2, PageSize: 50, TotalPages: 3, TotalObjects: n}
	if p.PageDetails == nil || *p.PageDetails != want || fmt.Sprint(got(p)) != fmt.Sprint(ids[50:100]) {
		t.Errorf("merchant list --page 2 --page-size 50: %v %v, want %+v %v", p.PageDetails, got(p), want, ids[50:100])
	}
	if p := run("merchant", "list", "--page", "2"); len(p.Merchants) != 20 || p.PageDetails == nil || p.PageDetails.PageSize != 20 {
		t.Errorf("merchant list --page 2: %d merchants, %v; want 20 of the default size", len(p.Merchants), p.PageDetails)
	}
	if _, errs, code := runAdminCLI(t, g("merchant", "list", "--page-size", "101")...); code != 1 || !strings.Contains(errs, "VALIDATION_ERROR") || !strings.Contains(errs, "page_size:") {
		t.Errorf("--page-size 101: %d %s", code, errs)
	}
	if out, _, code := runAdminCLI(t, g("merchant", "get", ids[0])...); code != 0 || !strings.Contains(out, `"merchant_id": "`+ids[0]+`"`) {
		t.Errorf("merchant get: %d %s", code, out)
	}
}

func TestAdminCLITokenFile(t *testing.T) {
	url := adminServer(t, "from-file")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, adminTokenFile), []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PAYLEDGER_ADMIN_TOKEN", "")
	os.Unsetenv("PAYLEDGER_ADMIN_TOKEN")
	if out, errs, code := runAdminCLI(t, "--server", url, "--data-dir", dir, "rate", "list"); code != 0 {
		t.Errorf("token from file: %d %s %s", code, out, errs)
	}
	if _, errs, code := runAdminCLI(t, "--server", url, "--data-dir", t.TempDir(), "rate", "list"); code != 2 || !strings.Contains(errs, "no admin token") {
		t.Errorf("no token anywhere: %d %s", code, errs)
	}
}

func TestAdminCLIPaymentFlow(t *testing.T) {
	url := adminServer(t, "tok")
	g := []string{"--server", url, "--admin-token", "tok"}
	out, _, _ := runAdminCLI(t, append(g, "merchant", "create", "--name", "Pay")...)
	var m struct {
		APIKey string `json:"api_key"`
	}
	_ = json.Unmarshal([]byte(out), &m)
	runAdminCLI(t, append(g, "rate", "set", "UAH", "41.50")...)
	post := func(path, body string) map[string]any {
		t.Helper()
		_, v := merchantPost(t, url, m.APIKey, path, body)
		return v
	}
	inv := post("/api/v1/create-invoice", `{"amount": "1500.00", "currency_code": "UAH", "external_id": "cli-1"}`)
	pay := post("/api/v1/invoices/"+inv["invoice_id"].(string)+"/payments", `{"method": "visamaster.uah"}`)
	id, _ := pay["id"].(string)
	if out, errs, code := runAdminCLI(t, append(g, "payment", "confirm", id)...); code != 0 || !strings.Contains(out, `"status": "CONFIRMED"`) {
		t.Fatalf("confirm: %d %s %s", code, out, errs)
	}
	if out, errs, code := runAdminCLI(t, append(g, "payment", "process", id, "--paid-amount", "1500.00")...); code != 0 || !strings.Contains(out, `"status": "PROCESSED"`) {
		t.Fatalf("process: %d %s %s", code, out, errs)
	}
	if out, _, code := runAdminCLI(t, append(g, "payment", "get", id)...); code != 0 || !strings.Contains(out, `"allocation": "invoice"`) {
		t.Errorf("get: %d %s", code, out)
	}
}

// merchantPost sends a merchant API POST with key and returns the status
// and the JSON answer.
func merchantPost(t *testing.T, base, key, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest("POST", base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Api-Key", key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var v map[string]any
	_ = json.NewDecoder(res.Body).Decode(&v)
	return res.StatusCode, v
}

// TestAdminCLIRetriesWithTheSameKey: the CLI's POST reaches the server, but
// the answer is lost (the connection drops). The CLI sends the request again
// with the same Idempotency-Key and prints the first answer: one merchant,
// not two. Before, the CLI sent no key and did not retry: the operator saw
// an error, and running the command again made a second merchant.
func TestAdminCLIRetriesWithTheSameKey(t *testing.T) {
	url := adminServer(t, "tok")
	var (
		mu      sync.Mutex
		posts   []string // Idempotency-Key of each POST the proxy saw
		dropped bool     // the first POST's answer was dropped
	)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, _ := http.NewRequest(r.Method, url+r.URL.RequestURI(), bytes.NewReader(body))
		req.Header = r.Header.Clone()
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		mu.Lock()
		first := false
		if r.Method == http.MethodPost {
			posts = append(posts, r.Header.Get("Idempotency-Key"))
			first, dropped = !dropped, true
		}
		mu.Unlock()
		if first { // the server acted; its answer never arrives
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		for k, v := range res.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(res.StatusCode)
		w.Write(raw)
	}))
	defer proxy.Close()
	g := []string{"--server", proxy.URL, "--admin-token", "tok"}

	out, errs, code := runAdminCLI(t, append(g, "merchant", "create", "--name", "Shop")...)
	if code != 0 {
		t.Fatalf("merchant create: %d %s", code, errs)
	}
	if !strings.Contains(errs, "again in") || !strings.Contains(out, `"merchant_id"`) {
		t.Errorf("merchant create printed %q, stderr %q", out, errs)
	}
	if len(posts) != 2 || posts[0] == "" || posts[0] != posts[1] {
		t.Fatalf("POSTs with Idempotency-Keys %q: want two with the same key", posts)
	}
	list, _, code := runAdminCLI(t, "--server", url, "--admin-token", "tok", "merchant", "list")
	if code != 0 || strings.Count(list, `"name": "Shop"`) != 1 {
		t.Fatalf("after one create with a lost answer the server holds: %s", list)
	}

	// A refusal is not retried; each run has its own key unless given one.
	posts = posts[:0]
	if _, _, code := runAdminCLI(t, append(g, "rate", "set", "UAH", "-1")...); code != 1 || len(posts) != 1 {
		t.Fatalf("bad rate: exit %d after %d POSTs, want 1 and 1", code, len(posts))
	}
	posts = posts[:0]
	for range 2 {
		if _, errs, code := runAdminCLI(t, append(g, "rate", "set", "UAH", "41.50")...); code != 0 || errs != "" {
			t.Fatalf("rate set: %d %s", code, errs)
		}
	}
	if len(posts) != 2 || posts[0] == posts[1] {
		t.Errorf("two runs sent keys %q: want a fresh one each", posts)
	}
	posts = posts[:0]
	for range 2 {
		if _, errs, code := runAdminCLI(t, append(g, "rate", "set", "UAH", "42.00", "--idempotency-key", "op-7")...); code != 0 {
			t.Fatalf("rate set: %d %s", code, errs)
		}
	}
	if len(posts) != 2 || posts[0] != "op-7" || posts[1] != "op-7" {
		t.Errorf("keys %q, want op-7 twice", posts)
	}
}

// TestAdminCLIRetriesTransientAnswers: 5xx and 429 are sent again, up to 4
// attempts in all, honouring Retry-After; the last answer stands.
func TestAdminCLIRetriesTransientAnswers(t *testing.T) {
	var mu sync.Mutex
	failFirst, attempts := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		attempts++
		fail := attempts <= failFirst
		mu.Unlock()
		if fail {
			w.Header().Set("Retry-After", "0")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":{"code":"UNAVAILABLE","message":"try again"}}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"currency":"UAH","rate":"41.50"}`))
	}))
	defer srv.Close()
	g := []string{"--server", srv.URL, "--admin-token", "tok"}
	for _, c := range []struct {
		failFirst, wantAttempts, wantCode int
	}{{2, 3, 0}, {10, 4, 1}} {
		failFirst, attempts = c.failFirst, 0
		out, errs, code := runAdminCLI(t, append(g, "rate", "set", "UAH", "41.50")...)
		if code != c.wantCode || attempts != c.wantAttempts {
			t.Errorf("%d failures: exit %d after %d attempts (%s %s), want %d after %d",
				c.failFirst, code, attempts, out, errs, c.wantCode, c.wantAttempts)
		}
		if c.wantCode == 1 && !strings.Contains(errs, "503 UNAVAILABLE") {
			t.Errorf("gave up with %q, want the last answer", errs)
		}
	}
}

// TestAdminCLIGateways: the operator disables the sandbox, the only
// gateway, with `payledger admin gateway disable`; a payment is then
// refused with METHOD_INVALID. The switch is an event: `payledger serve`
// restarted on the same data dir still has it disabled (a payment and a
// new UAH invoice are refused), enabling it again
// lets payments through, and `payledger replay` rebuilds views identical
// to the live ones. Before, the switch was only in memory (and no route
// or CLI command reached it).
func TestAdminCLIGateways(t *testing.T) {
	dir := t.TempDir()
	serve := func() *serveChild {
		return startServe(t, "--data-dir", dir, "--nats-port", "-1", "--admin-token", "tok", "--no-demo")
	}
	stop := func(c *serveChild) { t.Helper(); stopServe(t, c) }
	child := serve()
	g := func(args ...string) []string {
		return append([]string{"--server", child.base, "--admin-token", "tok"}, args...)
	}
	key := cliShop(t, g)
	post := func(path, body string) (int, string, map[string]any) {
		t.Helper()
		st, b := merchantPost(t, child.base, key, path, body)
		e, _ := b["error"].(map[string]any)
		c, _ := e["code"].(string)
		return st, c, b
	}
	invoice := func(ext string) string {
		t.Helper()
		st, _, inv := post("/api/v1/create-invoice", `{"amount": "1500.00", "currency_code": "UAH", "external_id": "`+ext+`"}`)
		if st != http.StatusCreated {
			t.Fatalf("create invoice: %d %v", st, inv)
		}
		return inv["invoice_id"].(string)
	}
	pay := func(invoiceID string) (int, string) {
		t.Helper()
		st, c, _ := post("/api/v1/invoices/"+invoiceID+"/payments", `{"method": "visamaster.uah"}`)
		return st, c
	}
	if st, _ := pay(invoice("g-1")); st != http.StatusCreated {
		t.Fatalf("payment with the sandbox enabled: %d", st)
	}
	// Invoices made before the switch: none can be made after it.
	g2, g3 := invoice("g-2"), invoice("g-3")
	if out, errs, code := runAdminCLI(t, g("gateways", "list")...); code != 0 ||
		!strings.Contains(out, `"name": "sandbox"`) || !strings.Contains(out, `"enabled": true`) || !strings.Contains(out, `"visamaster.uah"`) {
		t.Fatalf("gateways list: %d %s %s", code, out, errs)
	}
	if out, errs, code := runAdminCLI(t, g("gateway", "disable", "1")...); code != 0 || !strings.Contains(out, `"enabled": false`) {
		t.Fatalf("gateway disable: %d %s %s", code, out, errs)
	}
	if _, errs, code := runAdminCLI(t, g("gateway", "disable", "42")...); code != 1 || !strings.Contains(errs, "NOT_FOUND") {
		t.Fatalf("disable an unknown gateway: %d %s", code, errs)
	}
	if _, _, code := runAdminCLI(t, g("gateway", "enable")...); code != 2 {
		t.Fatalf("gateway enable without an id: exit %d, want 2", code)
	}
	if st, c := pay(g2); st != http.StatusBadRequest || c != "METHOD_INVALID" {
		t.Fatalf("payment with the sandbox disabled: %d %s, want 400 METHOD_INVALID", st, c)
	}
	stop(child)

	child = serve()
	if out, errs, code := runAdminCLI(t, g("gateway", "list")...); code != 0 || !strings.Contains(out, `"enabled": false`) {
		t.Fatalf("gateway list after a restart: %d %s %s", code, out, errs)
	}
	if st, c := pay(g3); st != http.StatusBadRequest || c != "METHOD_INVALID" {
		t.Fatalf("payment after a restart: %d %s, want 400 METHOD_INVALID", st, c)
	}
	if st, c, _ := post("/api/v1/create-invoice", `{"amount": "1500.00", "currency_code": "UAH", "external_id": "g-5"}`); st != http.StatusBadRequest || c != "CURRENCY_INVALID" {
		t.Fatalf("invoice after a restart: %d %s, want 400 CURRENCY_INVALID", st, c)
	}
	if out, errs, code := runAdminCLI(t, g("gateway", "enable", "1")...); code != 0 || !strings.Contains(out, `"enabled": true`) {
		t.Fatalf("gateway enable: %d %s %s", code, out, errs)
	}
	if st, _ := pay(invoice("g-4")); st != http.StatusCreated {
		t.Fatalf("payment with the sandbox enabled again: %d", st)
	}
	stop(child)

	if code, out, errs := runCmd(t, "replay", "--data-dir", dir); code != 0 || !strings.Contains(out, "live views: identical to the replay") {
		t.Fatalf("replay = %d\n%s%s", code, out, errs)
	}
	if code, out, errs := runCmd(t, "verify", "--data-dir", dir); code != 0 {
		t.Fatalf("verify = %d\n%s%s", code, out, errs)
	}
}

// TestAdminCLIReceipt: `payledger admin payment receipt ID --paid-amount X`
// records money that arrived for a rejected payment, and a second arrival
// for a processed one, against a real `payledger serve`: the payments stay
// REJECTED and PROCESSED and show the held receipt; without --paid-amount
// it is a usage error (exit 2), and a PENDING payment's is refused (exit
// 1, INVALID_STATUS_TRANSITION). Then `payledger replay` finds the live
// views identical and `payledger verify` passes on the log that holds the
// payment.receipt_held events. Before, the CLI had no such command (exit
// 2, "unknown admin command"), and then refused a PROCESSED payment's
// receipt (exit 1, INVALID_STATUS_TRANSITION).
func TestAdminCLIReceipt(t *testing.T) {
	dir := t.TempDir()
	child := startServe(t, "--data-dir", dir, "--nats-port", "-1", "--admin-token", "tok", "--no-demo")
	g := func(args ...string) []string {
		return append([]string{"--server", child.base, "--admin-token", "tok"}, args...)
	}
	key := cliShop(t, g)
	st, inv := merchantPost(t, child.base, key, "/api/v1/create-invoice", `{"amount": "1500.00", "currency_code": "UAH", "external_id": "r-1"}`)
	if st != http.StatusCreated {
		t.Fatalf("create invoice: %d %v", st, inv)
	}
	payment := func() string {
		t.Helper()
		st, p := merchantPost(t, child.base, key, "/api/v1/invoices/"+inv["invoice_id"].(string)+"/payments", `{"method": "visamaster.uah"}`)
		if st != http.StatusCreated {
			t.Fatalf("payment: %d %v", st, p)
		}
		return p["id"].(string)
	}
	rejected, pending := payment(), payment()
	if out, errs, code := runAdminCLI(t, g("payment", "reject", rejected, "--reason", "declined")...); code != 0 || !strings.Contains(out, `"status": "REJECTED"`) {
		t.Fatalf("reject: %d %s %s", code, out, errs)
	}
	if _, errs, code := runAdminCLI(t, g("payment", "receipt", rejected)...); code != 2 || !strings.Contains(errs, "--paid-amount is required") {
		t.Fatalf("receipt without --paid-amount: %d %s", code, errs)
	}
	if _, errs, code := runAdminCLI(t, g("payment", "receipt", pending, "--paid-amount", "1500.00")...); code != 1 || !strings.Contains(errs, "INVALID_STATUS_TRANSITION") {
		t.Fatalf("receipt of a pending payment: %d %s", code, errs)
	}
	out, errs, code := runAdminCLI(t, g("payment", "receipt", rejected, "--paid-amount", "1500.00", "--reason", "transfer 42")...)
	if code != 0 || !strings.Contains(out, `"status": "REJECTED"`) || !strings.Contains(out, `"held_receipts": 1`) || !strings.Contains(out, `"held_amount": "1500.00"`) {
		t.Fatalf("receipt: %d %s %s", code, out, errs)
	}
	if out, errs, code := runAdminCLI(t, g("payment", "process", pending)...); code != 0 || !strings.Contains(out, `"status": "PROCESSED"`) {
		t.Fatalf("process: %d %s %s", code, out, errs)
	}
	out, errs, code = runAdminCLI(t, g("payment", "receipt", pending, "--paid-amount", "1500.00", "--reason", "paid twice")...)
	if code != 0 || !strings.Contains(out, `"status": "PROCESSED"`) || !strings.Contains(out, `"held_receipts": 1`) || !strings.Contains(out, `"held_amount": "1500.00"`) {
		t.Fatalf("receipt of a processed payment: %d %s %s", code, out, errs)
	}
	stopServe(t, child)

	if code, out, errs := runCmd(t, "replay", "--data-dir", dir); code != 0 || !strings.Contains(out, "live views: identical to the replay") {
		t.Fatalf("replay = %d\n%s%s", code, out, errs)
	}
	if code, out, errs := runCmd(t, "verify", "--data-dir", dir); code != 0 {
		t.Fatalf("verify = %d\n%s%s", code, out, errs)
	}
}

// stopServe stops a `payledger serve` child gracefully and checks it exited cleanly.
func stopServe(t *testing.T, c *serveChild) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-c.exited
	if c.err != nil {
		t.Fatalf("serve exited: %v\n%s", c.err, c.out.String())
	}
}

// cliShop creates merchant "Shop" and sets the UAH rate with the admin CLI
// (g adds the server and token to its arguments); it returns the
// merchant's API key.
func cliShop(t *testing.T, g func(args ...string) []string) string {
	t.Helper()
	out, errs, code := runAdminCLI(t, g("merchant", "create", "--name", "Shop")...)
	var m struct {
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal([]byte(out), &m); code != 0 || err != nil {
		t.Fatalf("merchant create: %d %s %s", code, out, errs)
	}
	if _, errs, code := runAdminCLI(t, g("rate", "set", "UAH", "41.50")...); code != 0 {
		t.Fatalf("rate set: %d %s", code, errs)
	}
	return m.APIKey
}

// TestAdminCLIUsage: no command, or one it does not know, exits 2 saying
// which, after the usage with its flags (the flags' heading used to end
// the text with none under it, and no command read as `unknown admin
// command ""`).
func TestAdminCLIUsage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, adminTokenFile), []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"--data-dir", dir}, "payledger admin: no admin command given"},
		{[]string{"--data-dir", dir, "bogus"}, `payledger admin: unknown admin command "bogus"`},
		{[]string{"--data-dir", dir, "merchant", "bogus", "x"}, `payledger admin: unknown admin command "merchant bogus x"`},
	} {
		_, errs, code := runAdminCLI(t, tc.args...)
		if code != 2 || !strings.Contains(errs, tc.says) || !strings.Contains(errs, "Flags, before, between or after the arguments:\n  -admin-token") {
			t.Errorf("admin %q: exit %d\n%s", tc.args, code, errs)
		}
	}
}
