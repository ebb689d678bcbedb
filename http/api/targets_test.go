package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestWebhookTargets sends every URL that payledger calls (a merchant's
// webhook_url on registration and on a settings change, an invoice's
// callback_url, an e-invoice's status_url) in each kind, without and with
// --allow-private-webhooks: without it only https to a host that is not a
// loopback, private or link-local address literal (in any form a resolver
// reads as an address: "127.1", "2130706433", "0x7f000001", a trailing
// dot) nor localhost is taken; with it plain
// http and such addresses are taken too, as the dispatcher then reaches
// them. A malformed URL (an internationalised host not in its xn-- form
// among them) is refused either way. A refusal is a 400 naming
// the field (seed 001's envelope and numeric code for the e-invoice) and
// appends nothing.
func TestWebhookTargets(t *testing.T) {
	urls := []struct {
		kind, url string
		private   bool // refused without the flag, taken with it
		malformed bool // refused either way
	}{
		{"https public", "https://hooks.example.com/pay", false, false},
		{"https public address", "https://93.184.216.34/pay", false, false},
		{"http", "http://hooks.example.com/pay", true, false},
		{"https loopback literal", "https://127.0.0.1:8443/pay", true, false},
		{"https IPv6 loopback literal", "https://[::1]/pay", true, false},
		{"https IPv4-mapped loopback literal", "https://[::ffff:127.0.0.1]/pay", true, false},
		{"https private literal", "https://10.1.2.3/pay", true, false},
		{"https IPv6 private literal", "https://[fd00::1]/pay", true, false},
		{"https link-local literal", "https://169.254.169.254/latest", true, false},
		{"https public name, trailing dot", "https://hooks.example.com./pay", false, false},
		{"https public address, trailing dot", "https://93.184.216.34./pay", false, false},
		{"https loopback literal, trailing dot", "https://127.0.0.1./pay", true, false},
		{"https loopback, two parts", "https://127.1/pay", true, false},
		{"https loopback, one decimal number", "https://2130706433/pay", true, false},
		{"https loopback, hexadecimal", "https://0x7f000001/pay", true, false},
		{"https loopback, octal", "https://017700000001/pay", true, false},
		{"https unspecified, one number", "https://0/pay", true, false},
		{"https numeric host out of range", "https://1.2.3.256/pay", true, false},
		{"https localhost", "https://localhost/pay", true, false},
		{"https localhost, upper case and trailing dot", "https://LOCALHOST./pay", true, false},
		{"https name under localhost", "https://foo.localhost/pay", true, false},
		{"malformed: no scheme", "hooks.example.com/pay", false, true},
		{"malformed: ftp", "ftp://hooks.example.com/pay", false, true},
		{"malformed: user info", "https://user:pw@hooks.example.com/pay", false, true},
		{"malformed: no host", "https:///pay", false, true},
		// Sent in its xn-- form, so signed as one host and received as
		// another: the merchant writes the xn-- form, which is taken.
		{"malformed: internationalised host in Unicode", "https://bücher.example/pay", false, true},
		{"https internationalised host, xn-- form", "https://xn--bcher-kva.example/pay", false, false},
	}
	// A route that takes one of the URLs: the request, the status of a
	// success, and the field a refusal names.
	type route struct {
		field   string
		ok      int
		einv    bool // seed 001's error envelope
		request func(h *harness, m merchant, n int, u string) resp
	}
	q := func(u string) string { b, _ := json.Marshal(u); return string(b) }
	routes := []route{
		{"webhook_url", http.StatusCreated, false, func(h *harness, _ merchant, n int, u string) resp {
			return h.admin("POST", "/admin/v1/merchants", fmt.Sprintf(`{"name": "Shop %d", "webhook_url": %s}`, n, q(u)))
		}},
		{"webhook_url", http.StatusOK, false, func(h *harness, m merchant, _ int, u string) resp {
			return h.admin("PATCH", "/admin/v1/merchants/"+m.ID, `{"webhook_url": `+q(u)+`}`)
		}},
		{"callback_url", http.StatusCreated, false, func(h *harness, m merchant, n int, u string) resp {
			// A customer per request: the per-customer rate limit is not what is tested.
			body := strings.NewReplacer(`"https://yoursite.com/webhooks/payment"`, q(u), "order-2026-0001", fmt.Sprintf("order-%d", n),
				"user_12345", fmt.Sprintf("user_%d", n)).Replace(seed003Request)
			return h.api(m, "POST", "/api/v1/create-invoice", body)
		}},
		{"status_url", http.StatusOK, true, func(h *harness, m merchant, n int, u string) resp {
			body := strings.NewReplacer(`"status_url": "https://test.ua"`, `"status_url": `+q(u), `"payment_id": 123`, fmt.Sprintf(`"payment_id": %d`, n)).Replace(seed001Request)
			return h.api(m, "POST", "/api/einvoice/create", body)
		}},
	}
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow-private=%v", allow), func(t *testing.T) {
			h := newHarnessPrivate(t, allow)
			m := h.seedSetup()
			n := 0
			for ri, rt := range routes {
				for _, tc := range urls {
					n++
					t.Run(fmt.Sprintf("%d %s/%s", ri, rt.field, tc.kind), func(t *testing.T) {
						refused := tc.malformed || (tc.private && !allow)
						before := h.head()
						r := rt.request(h.on(t), m, n, tc.url)
						after := h.head()
						if !refused {
							if r.Status != rt.ok {
								t.Errorf("%s: status %d, want %d: %s", tc.url, r.Status, rt.ok, r.Body)
							}
							if after == before {
								t.Errorf("%s: taken, but nothing appended", tc.url)
							}
							return
						}
						if r.Status != http.StatusBadRequest {
							t.Errorf("%s: status %d, want 400: %s", tc.url, r.Status, r.Body)
						}
						if after != before {
							t.Errorf("%s: log head moved from %d to %d", tc.url, before, after)
						}
						var b struct {
							Error struct {
								Code    any      `json:"code"`
								Details []Detail `json:"details"`
							} `json:"error"`
						}
						if err := json.Unmarshal(r.Body, &b); err != nil {
							t.Fatalf("%v: %s", err, r.Body)
						}
						want := any(CodeValidation)
						if rt.einv {
							want = float64(EInvoiceInvalid)
						}
						if b.Error.Code != want {
							t.Errorf("%s: code %v, want %v: %s", tc.url, b.Error.Code, want, r.Body)
						}
						if len(b.Error.Details) != 1 || b.Error.Details[0].Path != rt.field || b.Error.Details[0].Message == "" {
							t.Errorf("%s: details %+v, want one naming %s", tc.url, b.Error.Details, rt.field)
						}
					})
				}
			}
		})
	}
}

// TestPlainHTTPCallbackDelivered: with --allow-private-webhooks an
// invoice's callback_url on a plain-http receiver on loopback is taken,
// and the real dispatcher delivers the invoice's webhook to it.
func TestPlainHTTPCallbackDelivered(t *testing.T) {
	got := make(chan string, 64) // bodies of signed requests to /hook
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/hook" && r.Header.Get("webhook-signature") != "" {
			select {
			case got <- string(b):
			default:
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rcv.Close) // after the dispatcher stops
	h, _ := newWebhookHarness(t, rcv)
	m := h.seedSetup()
	if !strings.HasPrefix(rcv.URL, "http://127.0.0.1:") {
		t.Fatalf("receiver at %s, want plain http on loopback", rcv.URL)
	}
	inv := h.api(m, "POST", "/api/v1/create-invoice", strings.Replace(seed003Request, "https://yoursite.com/webhooks/payment", rcv.URL+"/hook", 1))
	if inv.Status != http.StatusCreated {
		t.Fatalf("create invoice: %d %s", inv.Status, inv.Body)
	}
	id, _ := inv.JSON(t)["invoice_id"].(string)
	timeout := time.After(10 * time.Second)
	for {
		select {
		case b := <-got:
			if strings.Contains(b, id) {
				return
			}
		case <-timeout:
			t.Fatalf("no webhook for invoice %s at %s/hook", id, rcv.URL)
		}
	}
}
