package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
)

// A commit that failed for lack of space is a 503 with Retry-After, not a
// 500: the client should try again later, and nothing was recorded.
func TestStorageFullIs503(t *testing.T) {
	err := fmt.Errorf("create invoice: %w", fmt.Errorf("%w: commit append: %w", ledger.ErrStorageFull, syscall.ENOSPC))
	e, internal := classify(err)
	if internal || e.Status != http.StatusServiceUnavailable || e.Code != CodeStorageFull || e.RetryAfter <= 0 {
		t.Fatalf("classify(storage full) = %+v (internal %v)", e, internal)
	}
}

// A commit whose outcome is unknown (ledger.ErrFailed) is a 503 that says
// so, even when the disk was full: "nothing was recorded" would not be true.
func TestFailedLogIs503(t *testing.T) {
	err := fmt.Errorf("create invoice: %w", fmt.Errorf("%w: commit failed after it became visible (%w)", ledger.ErrFailed, syscall.ENOSPC))
	e, internal := classify(err)
	if internal || e.Status != http.StatusServiceUnavailable || e.Code != CodeUnavailable || !strings.Contains(e.Message, "could not confirm") {
		t.Fatalf("classify(failed log) = %+v (internal %v)", e, internal)
	}
}

// Once a commit failed after bbolt made it visible (ledger.ErrFailed), the
// views already show it though the disk may not hold it: the API must not
// serve it, or a client that reads the resource after the 503 takes the
// unconfirmed write for a done one, and a restart that drops it loses the
// request. Every merchant and admin route answers the 503 for reads too;
// /healthz and /metrics go on, /readyz says the log failed.
func TestFailedLogServesNothing(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	id, _ := h.api(m, "POST", "/api/v1/create-invoice", seed003Request).JSON(t)["invoice_id"].(string)
	if id == "" {
		t.Fatal("create-invoice made no invoice")
	}

	restore := boltlogtest.FailMetaSync(t, h.store)
	r := h.api(m, "POST", "/api/v1/invoices/"+id+"/cancel", "")
	restore() // the disk works again; the store stays failed
	if r.Status != http.StatusServiceUnavailable || r.errCode(t) != CodeUnavailable {
		t.Fatalf("cancel whose commit failed: %d %s", r.Status, r.Body)
	}
	msg, _ := r.JSON(t)["error"].(map[string]any)["message"].(string)
	if !strings.Contains(msg, "must be restarted") || !strings.Contains(msg, "after the restart") {
		t.Errorf("the 503's message does not say to restart and read after it: %q", msg)
	}
	if inv, err := h.views.Invoice(m.ID, id); err != nil || inv.Status != "cancelled" {
		t.Fatalf("the views should show the unconfirmed cancel (the premise of this test): %+v, %v", inv, err)
	}

	for _, rq := range []struct{ method, path string }{
		{"GET", "/api/v1/invoices/" + id},
		{"GET", "/api/v1/invoices"},
		{"GET", "/api/v1/balance"},
		{"GET", "/api/v1/events"},
		{"POST", "/api/v1/create-invoice"},
	} {
		r := h.api(m, rq.method, rq.path, "")
		if r.Status != http.StatusServiceUnavailable || r.errCode(t) != CodeUnavailable || r.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s on a failed log: %d %s", rq.method, rq.path, r.Status, r.Body)
		}
	}
	if r := h.admin("GET", "/admin/v1/merchants/"+m.ID, ""); r.Status != http.StatusServiceUnavailable || r.errCode(t) != CodeUnavailable {
		t.Errorf("admin read on a failed log: %d %s", r.Status, r.Body)
	}
	if r := h.api(m, "GET", "/api/extrafields/list", ""); r.Status != http.StatusServiceUnavailable {
		t.Errorf("e-invoice read on a failed log: %d %s", r.Status, r.Body)
	}
	// Without credentials too: nothing is looked up.
	if r := h.do(req{method: "GET", path: "/api/v1/invoices/" + id}); r.Status != http.StatusServiceUnavailable {
		t.Errorf("unauthenticated read on a failed log: %d %s", r.Status, r.Body)
	}

	if r := h.do(req{method: "GET", path: "/healthz"}); r.Status != http.StatusOK {
		t.Errorf("/healthz on a failed log: %d %s", r.Status, r.Body)
	}
	if r := h.do(req{method: "GET", path: "/metrics"}); r.Status != http.StatusOK {
		t.Errorf("/metrics on a failed log: %d", r.Status)
	}
	r = h.do(req{method: "GET", path: "/readyz"})
	if d := r.details(t); r.Status != http.StatusServiceUnavailable || len(d) == 0 || d[0].Path != "log" || d[0].Type != "failed" {
		t.Errorf("/readyz on a failed log: %d %s", r.Status, r.Body)
	}
}

// A handler that runs while the log fails answers the failure, whatever it
// decided: a refusal read off the unconfirmed commit (the invoice not
// payable because the views show a cancel a restart may drop) is no more
// final than a success would be.
func TestLogFailingDuringHandlerAnswersTheFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer error
	}{{"success", nil}, {"refusal", fmt.Errorf("create payment: %w", commands.ErrInvoiceNotPayable)}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.seedSetup()
			handler := func(c *call) (int, any, error) {
				restore := boltlogtest.FailMetaSync(t, h.store)
				_, err := h.store.Append(context.Background(), "test-failing", ledger.NoStream,
					ledger.NewEvent{ID: ulid.Make(), Type: "test.event", Time: seedTime, Data: []byte(`{}`)})
				restore()
				if !errors.Is(err, ledger.ErrFailed) {
					t.Fatalf("append with a failing meta sync: %v, want ErrFailed", err)
				}
				return http.StatusOK, map[string]string{"ok": "yes"}, tc.answer
			}
			rec := httptest.NewRecorder()
			r := httptest.NewRequest("GET", "/api/v1/test", nil)
			h.srv.run(rec, &call{s: h.srv, r: r, ctx: r.Context()}, handler)
			if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), CodeUnavailable) {
				t.Fatalf("%s decided while the log failed: %d %s, want 503 %s", tc.name, rec.Code, rec.Body, CodeUnavailable)
			}
		})
	}
}
