package api

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
)

// racingLog is the real log with a competing writer that always gets in
// first: while race is set, every append runs it before its own, so the
// version the command read is already stale. It makes deterministic the
// contention that turns into commands.ErrConflict once the service's
// retries are spent.
type racingLog struct {
	*boltlog.Store
	race atomic.Pointer[func()]
}

func (l *racingLog) AppendWrites(ctx context.Context, writes ...ledger.Write) ([]ledger.Event, error) {
	if f := l.race.Load(); f != nil {
		(*f)()
	}
	return l.Store.AppendWrites(ctx, writes...)
}

// TestIdempotencyConflictNotStored: a 409 CONFLICT says "changed
// concurrently, retry". It must not become the key's stored answer: the
// retry with the same Idempotency-Key runs the request again and creates
// what the first attempt could not.
func TestIdempotencyConflictNotStored(t *testing.T) {
	rl := &racingLog{}
	h := newHarness(t, func(c *Config) {
		rl.Store = c.Log
		c.Service = commands.NewService(rl, commands.Config{MaxRetries: 1})
	})
	m := h.seedSetup()
	w := h.api(m, "POST", "/api/v1/widgets", `{"type": "single", "fiat_currency": "UAH", "fiat_amount": "10.00"}`)
	wid, _ := w.JSON(t)["external_id"].(string)
	if w.Status != http.StatusCreated || wid == "" {
		t.Fatalf("widget: %d %s", w.Status, w.Body)
	}
	// The merchant toggles the widget off and on between every read and
	// append of the widget invoice's command (through a service of its own
	// on the same log): the widget's version moves each time.
	toggle := func() {
		for _, st := range []string{commands.WidgetStatusDisabled, commands.WidgetStatusActive} {
			if _, err := h.svc.ChangeWidgetStatus(context.Background(), commands.ChangeWidgetStatus{
				Meta:       commands.Meta{CommandID: ulid.Make(), Time: h.clock.Now()},
				MerchantID: m.ID, WidgetID: wid, Status: st,
			}); err != nil {
				t.Errorf("toggle widget %s: %v", st, err)
			}
		}
	}
	send := func() resp {
		return h.do(req{method: "POST", path: "/api/v1/widgets/" + wid + "/invoices", body: `{"customer_id": "c-1"}`,
			header: map[string]string{"X-Api-Key": m.Key, "Idempotency-Key": "winv-conflict"}})
	}

	rl.race.Store(&toggle)
	first := send()
	rl.race.Store(nil)
	if first.Status != http.StatusConflict || first.errCode(t) != CodeConflict {
		t.Fatalf("under contention: %d %s", first.Status, first.Body)
	}
	if first.Header.Get("Retry-After") == "" {
		t.Errorf("CONFLICT without Retry-After: %v", first.Header)
	}

	again := send()
	if again.Status != http.StatusCreated || again.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("retry with the same key after CONFLICT: %d %v %s", again.Status, again.Header, again.Body)
	}
	if r := send(); r.Status != http.StatusCreated || r.Header.Get("Idempotent-Replayed") != "true" || r.JSON(t)["invoice_id"] != again.JSON(t)["invoice_id"] {
		t.Errorf("replay of the created invoice: %d %v %s", r.Status, r.Header, r.Body)
	}
	l := h.api(m, "GET", "/api/v1/invoices", "")
	if n := l.JSON(t)["page_details"].(map[string]any)["total_objects"]; n != float64(1) {
		t.Errorf("%v invoices, want 1: %s", n, l.Body)
	}
}
