package api

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
	"github.com/payledger/payledger/projections"
)

// TestDamagedViewPage: a damaged page among the views made bbolt panic
// inside the request (answered 500 INTERNAL_ERROR with a stack trace in
// the log, or, for a damaged offset reaching past the file, a fault that
// kills the process). Now the read is guarded: 500 STORAGE_DAMAGED in the
// usual envelope, a log line naming the damage, /readyz reporting it, and
// the server goes on answering everything else.
func TestDamagedViewPage(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.KeyRate, c.CustomerRate = -1, -1 })
	m := h.seedSetup()
	for i := range 60 {
		body := strings.Replace(seed003Request, "order-2026-0001", fmt.Sprintf("order-%d", i), 1)
		if r := h.api(m, "POST", "/api/v1/create-invoice", body); r.Status != http.StatusCreated {
			t.Fatalf("create-invoice: %d %s", r.Status, r.Body)
		}
	}
	path := h.store.DB().Path()
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	pageSize, _, first := boltlogtest.BucketPages(t, path, "v_invoices")
	if len(first) < 2 {
		t.Fatalf("the invoice views fill %d leaf page(s), want 2 or more", len(first))
	}
	var damagedPage uint64
	var damagedID, goodID string
	for id, k := range first {
		if damagedID == "" {
			damagedPage, damagedID = id, string(k)
		} else if goodID == "" {
			goodID = string(k)
		}
	}
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	off := int64(damagedPage)*int64(pageSize) + 8 // the page's type
	if _, err := file.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := file.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}

	// The open reads none of the invoice views: it succeeds.
	s, err := boltlog.Open(path, &boltlog.Options{Projectors: []boltlog.Projector{&projections.Projector{}}})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { s.Close() }) // before the harness verifies the log
	cfg := h.srv.cfg
	cfg.Log, cfg.Views, cfg.Service = s, projections.NewViews(s.DB()), commands.NewService(s, commands.Config{})
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h2 := *h
	h2.store, h2.views, h2.srv = s, cfg.Views, srv
	h2.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(h2.ts.Close)

	if r := h2.do(req{method: "GET", path: "/readyz"}); r.Status != http.StatusOK {
		t.Fatalf("readyz before any damaged read: %d %s", r.Status, r.Body)
	}
	r := h2.do(req{method: "GET", path: "/api/v1/invoices/" + damagedID, header: map[string]string{"X-Api-Key": m.Key, "X-Request-Id": "damaged-1"}})
	if r.Status != http.StatusInternalServerError || r.Header.Get("Retry-After") != "" {
		t.Fatalf("invoice on the damaged page: %d %v %s", r.Status, r.Header, r.Body)
	}
	jsonEqual(t, r.Body, `{"successful": false, "request_id": "damaged-1", "error": {"code": "STORAGE_DAMAGED",
		"message": "A page of the server's data file is damaged and cannot be read; quote the request id to support", "details": []}}`)
	logs := h.logs.String()
	if !strings.Contains(logs, "request_id=damaged-1") || !strings.Contains(logs, "log file is damaged: a page cannot be read (bbolt:") || strings.Contains(logs, "goroutine") {
		t.Errorf("the log does not name the damage once, without a stack:\n%s", logs)
	}

	// The rest goes on.
	if r := h2.do(req{method: "GET", path: "/healthz"}); r.Status != http.StatusOK {
		t.Errorf("healthz: %d %s", r.Status, r.Body)
	}
	if r := h2.api(m, "GET", "/api/v1/invoices/"+goodID, ""); r.Status != http.StatusOK {
		t.Errorf("invoice on a sound page: %d %s", r.Status, r.Body)
	}
	r = h2.do(req{method: "GET", path: "/readyz"})
	if d := r.details(t); r.Status != http.StatusServiceUnavailable || len(d) != 1 || d[0].Path != "views" || d[0].Type != "damaged" {
		t.Errorf("readyz after a damaged read: %d %s", r.Status, r.Body)
	}
}
