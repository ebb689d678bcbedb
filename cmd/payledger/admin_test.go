package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
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
		req, err := http.NewRequest("POST", url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Api-Key", m.APIKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var v map[string]any
		_ = json.NewDecoder(res.Body).Decode(&v)
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
