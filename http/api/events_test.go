package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	dto "github.com/prometheus/client_model/go"

	"github.com/payledger/payledger/ledger"
)

type feedPage struct {
	Items     []ledger.Event `json:"items"`
	NextAfter uint64         `json:"next_after"`
	Head      uint64         `json:"head"`
}

func (h *harness) feed(t *testing.T, m merchant, query string) feedPage {
	t.Helper()
	r := h.api(m, "GET", "/api/v1/events"+query, "")
	if r.Status != http.StatusOK {
		t.Fatalf("GET /api/v1/events%s: %d %s", query, r.Status, r.Body)
	}
	var p feedPage
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEventFeed: a merchant reads exactly its own invoice, payment and widget
// events, in log order, with their hashes and without claims; paging with
// after=next_after reads each once; another merchant's events and the
// merchant's account events are not there.
func TestEventFeed(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	m2 := h.newMerchant(`{"name": "two"}`)
	id, _ := h.api(m, "POST", "/api/v1/create-invoice", seed003Request).JSON(t)["invoice_id"].(string)
	h.api(m2, "POST", "/api/v1/create-invoice", seed003Request)
	pid, _ := h.api(m, "POST", "/api/v1/invoices/"+id+"/payments", `{"method": "visamaster.uah"}`).JSON(t)["id"].(string)
	h.clock.Advance(time.Minute)
	if r := h.admin("POST", "/admin/v1/payments/"+pid+"/process", ""); r.Status != http.StatusOK {
		t.Fatalf("process: %d %s", r.Status, r.Body)
	}
	h.api(m, "POST", "/api/v1/widgets", `{"type": "single", "fiat_currency": "UAH", "fiat_amount": "10.00"}`)

	// What the feed must hold: m's resource events, from the log itself.
	var want []ledger.Event
	for e, err := range h.store.Events(context.Background(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Merchant == m.ID && ours([]byte(e.Stream)) {
			e.Claims = nil
			want = append(want, e)
		}
	}
	types := map[string]bool{}
	for _, e := range want {
		types[e.Type] = true
	}
	for _, typ := range []string{"invoice.created", "payment.created", "payment.processed", "invoice.paid", "widget.created"} {
		if !types[typ] {
			t.Fatalf("fixture has no %s: %v", typ, types)
		}
	}

	all := h.feed(t, m, "")
	head := h.head()
	if all.Head != head || all.NextAfter != head {
		t.Errorf("head %d next_after %d, log head %d", all.Head, all.NextAfter, head)
	}
	gotJSON, _ := json.Marshal(all.Items)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("feed:\n%s\nwant:\n%s", gotJSON, wantJSON)
	}
	if raw := h.api(m, "GET", "/api/v1/events", "").Body; strings.Contains(string(raw), `"claims"`) || !strings.Contains(string(raw), `"hash":"`) {
		t.Errorf("claims shown or hashes missing: %s", raw)
	}

	// One at a time: the same events, each once.
	var paged []ledger.Event
	after := uint64(0)
	for range len(want) + 2 {
		p := h.feed(t, m, fmt.Sprintf("?after=%d&limit=1", after))
		if len(p.Items) == 0 {
			break
		}
		if len(p.Items) != 1 || p.NextAfter != p.Items[0].Seq || p.NextAfter <= after {
			t.Fatalf("page after %d: %+v", after, p)
		}
		paged = append(paged, p.Items...)
		after = p.NextAfter
	}
	pagedJSON, _ := json.Marshal(paged)
	if string(pagedJSON) != string(wantJSON) {
		t.Errorf("paged feed differs:\n%s", pagedJSON)
	}

	// Another merchant sees only its own.
	for _, e := range h.feed(t, m2, "").Items {
		if e.Merchant != m2.ID {
			t.Errorf("m2 sees %s of %s", e.Type, e.Merchant)
		}
	}
	// At the head: nothing, and next_after stays. Past it: a position this
	// log never gave (a log restored from an older backup takes new events
	// at those sequences), refused naming the head rather than answered
	// empty, which would skip them.
	if p := h.feed(t, m, fmt.Sprintf("?after=%d", head)); len(p.Items) != 0 || p.NextAfter != head {
		t.Errorf("at the head: %+v", p)
	}
	r := h.api(m, "GET", fmt.Sprintf("/api/v1/events?after=%d&wait=1", head+5), "")
	if r.Status != http.StatusBadRequest || r.details(t)[0].Path != "after" || !strings.Contains(string(r.Body), fmt.Sprintf("past the log's head %d", head)) {
		t.Errorf("past the head: %d %s", r.Status, r.Body)
	}
	// Bad parameters name the field.
	for q, field := range map[string]string{"?limit=0": "limit", "?limit=501": "limit", "?after=-1": "after", "?after=x": "after", "?wait=21": "wait"} {
		r := h.api(m, "GET", "/api/v1/events"+q, "")
		if r.Status != http.StatusBadRequest || r.details(t)[0].Path != field {
			t.Errorf("%s: %d %s", q, r.Status, r.Body)
		}
	}
}

// TestEventFeedScanBound: a request reads at most feedScan records, so
// 10,005 events of no merchant's resources between two of the merchant's
// take two polls, the first empty with next_after inside the gap.
func TestEventFeedScanBound(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	h.api(m, "POST", "/api/v1/create-invoice", seed003Request)
	start := h.head()
	for i := 0; i < feedScan+5; i += 1000 {
		evs := make([]ledger.NewEvent, 0, 1000)
		for range min(1000, feedScan+5-i) {
			evs = append(evs, ledger.NewEvent{ID: ulid.Make(), Type: "test.noise", Time: seedTime, Merchant: m.ID, Data: json.RawMessage(`{}`)})
		}
		exp := ledger.Any
		if _, err := h.store.Append(context.Background(), "noise-1", exp, evs...); err != nil {
			t.Fatal(err)
		}
	}
	h.api(m, "POST", "/api/v1/create-invoice", strings.Replace(seed003Request, "order-2026-0001", "order-2", 1))
	first := h.feed(t, m, fmt.Sprintf("?after=%d", start))
	if len(first.Items) != 0 || first.NextAfter != start+feedScan {
		t.Fatalf("first poll: %d items, next_after %d, want 0 and %d", len(first.Items), first.NextAfter, start+feedScan)
	}
	second := h.feed(t, m, fmt.Sprintf("?after=%d", first.NextAfter))
	if len(second.Items) != 1 || second.Items[0].Type != "invoice.created" || second.NextAfter != h.head() {
		t.Fatalf("second poll: %+v (head %d)", second, h.head())
	}
}

// TestEventFeedWait: a long poll parked at the head answers with the next
// event of the merchant's; one parked when the server starts shutting down
// answers at once, empty. Each poll is seen parked (the feed_waiting
// gauge) before the append or the shutdown, so neither is answered by a
// poll that merely started late.
func TestEventFeedWait(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	head := h.head()
	got := make(chan feedPage, 1)
	go func() {
		r := h.api(m, "GET", fmt.Sprintf("/api/v1/events?after=%d&wait=20", head), "")
		var p feedPage
		_ = json.Unmarshal(r.Body, &p)
		got <- p
	}()
	h.waitFeedWaiting(t, 1)
	h.api(m, "POST", "/api/v1/create-invoice", seed003Request)
	select {
	case p := <-got:
		if len(p.Items) != 1 || p.Items[0].Type != "invoice.created" {
			t.Errorf("long poll: %+v", p)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the long poll did not answer the append")
	}

	h.waitFeedWaiting(t, 0)
	head = h.head()
	go func() {
		r := h.api(m, "GET", fmt.Sprintf("/api/v1/events?after=%d&wait=20", head), "")
		var p feedPage
		_ = json.Unmarshal(r.Body, &p)
		got <- p
	}()
	h.waitFeedWaiting(t, 1)
	h.srv.Stopping()
	select {
	case p := <-got:
		if len(p.Items) != 0 || p.NextAfter != head {
			t.Errorf("poll at shutdown: %+v", p)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a long poll held the shutdown")
	}
}

// TestEventFeedLogClosed: a long poll parked when the log closes under it
// answers 503 SERVICE_UNAVAILABLE ("retry"), not an empty page: the client
// must not take the closed log's head for the end of the feed.
func TestEventFeedLogClosed(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	head := h.head()
	got := make(chan resp, 1)
	go func() { got <- h.api(m, "GET", fmt.Sprintf("/api/v1/events?after=%d&wait=20", head), "") }()
	h.waitFeedWaiting(t, 1)
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.Status != http.StatusServiceUnavailable || r.errCode(t) != CodeUnavailable {
			t.Errorf("poll on a closed log: %d %s", r.Status, r.Body)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the long poll outlived the log")
	}
	if n := h.feedWaiting(t); n != 0 {
		t.Errorf("feed_waiting %v after the poll answered", n)
	}
}

// feedWaiting reads the payledger_http_feed_waiting gauge.
func (h *harness) feedWaiting(t *testing.T) float64 {
	t.Helper()
	var m dto.Metric
	if err := h.srv.metrics.feedWaiting.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// waitFeedWaiting waits until want long polls are parked.
func (h *harness) waitFeedWaiting(t *testing.T, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := h.feedWaiting(t)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v long polls parked, want %v", n, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEventFeedRateLimit: the feed has a per-merchant limit of its own (a
// request may read 10,000 records): over it, 429 with Retry-After.
func TestEventFeedRateLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.FeedRate = 1 })
	m := h.seedSetup()
	var codes []int
	for range 4 {
		r := h.api(m, "GET", "/api/v1/events", "")
		codes = append(codes, r.Status)
		if r.Status == http.StatusTooManyRequests && (r.Header.Get("Retry-After") == "" || r.errCode(t) != CodeRateLimited) {
			t.Errorf("429 without Retry-After or code: %v %s", r.Header, r.Body)
		}
	}
	if codes[0] != http.StatusOK || codes[3] != http.StatusTooManyRequests {
		t.Errorf("statuses %v: want 200 first and 429 once the burst of 2 is spent", codes)
	}
	// Other routes are not counted against it.
	if r := h.api(m, "GET", "/api/v1/balance", ""); r.Status != http.StatusOK {
		t.Errorf("balance: %d", r.Status)
	}
}
