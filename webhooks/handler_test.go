package webhooks

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, false, func(*http.Request, int) (int, http.Header) { return http.StatusBadRequest, nil })
	e.merchant("m1", rc.URL())
	cfg := e.config()
	cfg.MaxAttempts = 1
	d, _ := e.dispatcher("", cfg)
	inv := e.invoice("m1", "")
	waitFor(t, 10*time.Second, func() error {
		p, _ := d.ListDeliveries("m1", ListQuery{Status: StatusFailed})
		if p.Details.TotalObjects != 1 {
			return errors.New("not failed yet")
		}
		return nil
	})
	h := d.Handler(HandlerConfig{Merchant: func(r *http.Request) (string, bool) {
		m := r.Header.Get("X-Test-Merchant")
		return m, m != ""
	}})
	do := func(method, path, merchant, body string) (int, map[string]any) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if merchant != "" {
			req.Header.Set("X-Test-Merchant", merchant)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		var out map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &out)
		return w.Code, out
	}
	code, list := do("GET", "/api/v1/webhooks/deliveries?status=failed&page=1&page_size=10", "m1", "")
	items, _ := list["items"].([]any)
	if code != 200 || len(items) != 1 {
		t.Fatalf("list: %d %v", code, list)
	}
	pd := list["page_details"].(map[string]any)
	if pd["page_number"] != 1.0 || pd["page_size"] != 10.0 || pd["total_pages"] != 1.0 || pd["total_objects"] != 1.0 {
		t.Fatalf("page details: %v", pd)
	}
	id := items[0].(map[string]any)["id"].(string)
	code, one := do("GET", "/api/v1/webhooks/deliveries/"+id, "m1", "")
	if code != 200 || one["resource_id"] != inv || len(one["attempts"].([]any)) != 1 {
		t.Fatalf("get: %d %v", code, one)
	}
	if code, _ := do("GET", "/api/v1/webhooks/deliveries/"+id, "m2", ""); code != 404 {
		t.Fatalf("another merchant's delivery: %d", code)
	}
	if code, body := do("GET", "/api/v1/webhooks/deliveries?status=lost", "m1", ""); code != 400 || body["successful"] != false {
		t.Fatalf("bad status: %d %v", code, body)
	}
	if code, _ := do("GET", "/api/v1/webhooks/deliveries", "", ""); code != 401 {
		t.Fatalf("unauthenticated: %d", code)
	}
	rc.setPolicy(nil)
	if code, r := do("POST", "/api/v1/webhooks/deliveries/"+id+"/redeliver", "m1", ""); code != 202 || r["status"] != StatusPending {
		t.Fatalf("redeliver: %d %v", code, r)
	}
	waitFor(t, 10*time.Second, func() error { return statusIs(d, "m1", one["event_type"].(string), inv, StatusDelivered) })
	code, n := do("POST", "/api/v1/webhooks/redeliver", "m1", `{"since":"2000-01-01T00:00:00Z","status":"delivered"}`)
	if code != 202 || n["redelivered"] != 1.0 {
		t.Fatalf("redeliver since: %d %v", code, n)
	}
	if code, _ := do("POST", "/api/v1/webhooks/redeliver", "m1", `{"since":"yesterday"}`); code != 400 {
		t.Fatalf("bad since: %d", code)
	}
}
