package api

import (
	"net/http"
	"strings"
	"testing"
)

// fuzzServer is one harness shared by a fuzz target's inputs.
func fuzzServer(f *testing.F) (*harness, merchant) {
	h := newHarness(f)
	return h, h.seedSetup()
}

// FuzzCreateInvoiceRequest sends arbitrary bodies to create-invoice: never
// a 5xx, never a panic, and a refusal never appends.
func FuzzCreateInvoiceRequest(f *testing.F) {
	for _, s := range []string{
		seed003Request,
		`{}`, ``, `[]`, `null`, `{"amount": 1500}`, `{"amount": "1e9999"}`, `{"amount": "-0"}`,
		`{"amount": "0.000000000000000000001", "currency_code": "UAH", "external_id": "x"}`,
		`{"amount": "1500.00", "currency_code": "UAH", "external_id": "a b"}`,
		`{"amount": "99999999999999999999", "currency_code": "UAH", "external_id": "big"}`,
		`{"amount": "1.00", "currency_code": "UAH", "external_id": "u", "callback_url": "https://user@x/"}`,
		`{"amount": "1.00", "currency_code": "XOF", "external_id": "xof"}`,
		"{\"amount\": \"1.00\", \"currency_code\": \"UAH\", \"external_id\": \"nul\", \"purpose\": \"\\u0000\"}",
		`{"amount": "1.00"}{"amount": "2.00"}`, `{"amount": "1.00",}`, `{"amount": "1.00", "amount": 2}`,
	} {
		f.Add(s)
	}
	h, m := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body string) {
		h := h.on(t)
		before := h.head()
		r := h.api(m, "POST", "/api/v1/create-invoice", body)
		if r.Status >= 500 {
			t.Fatalf("status %d for %q: %s", r.Status, body, r.Body)
		}
		switch r.Status {
		case http.StatusCreated:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusConflict, http.StatusTooManyRequests:
			if h.head() != before {
				t.Fatalf("refused request (%d) appended: %q", r.Status, body)
			}
			if r.errCode(t) == "" {
				t.Fatalf("refusal without a code: %s", r.Body)
			}
		default:
			t.Fatalf("unexpected status %d for %q: %s", r.Status, body, r.Body)
		}
	})
}

// FuzzEInvoiceRequest does the same for seed 001's e-invoice.
func FuzzEInvoiceRequest(f *testing.F) {
	for _, s := range []string{
		seed001Request,
		strings.Replace(seed001Request, "123", `"abc"`, 1),
		`{"payment_id": 1e3, "currency": "bitcoin", "amount": 0.00000001}`,
		`{"payment_id": -1, "currency": "visamaster.uah", "amount": "1"}`,
		`{"payment_id": 18446744073709551616, "currency": "visamaster.uah", "amount": 1}`,
		`{"payment_id": "x", "currency": "visamaster.uah", "amount": 1, "extra_fields": {"card_holder": 5}}`,
		`{"payment_id": "y", "currency": "mtn-ci.xof", "amount": 100, "extra_fields": {"phone": "+2250700000000"}}`,
		`{"payment_id": [], "amount": {}}`, `{"amount": 00.1}`, `{"amount": "١٢٣"}`,
	} {
		f.Add(s)
	}
	h, m := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body string) {
		h := h.on(t)
		before := h.head()
		r := h.api(m, "POST", "/api/einvoice/create", body)
		if r.Status >= 500 {
			t.Fatalf("status %d for %q: %s", r.Status, body, r.Body)
		}
		if r.Status != http.StatusOK {
			if h.head() != before {
				t.Fatalf("refused request (%d) appended: %q", r.Status, body)
			}
			if _, ok := r.JSON(t)["error"].(map[string]any)["code"].(float64); !ok {
				t.Fatalf("refusal without a numeric code: %s", r.Body)
			}
		}
	})
}

// FuzzDecode checks the strict decoder alone: a refusal always names a path.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(seed003Request))
	f.Add([]byte(`{"amount": 1}`))
	f.Add([]byte(`{"x": 1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req createInvoiceRequest
		err := decode(b, &req, false)
		if err == nil {
			return
		}
		e, internal := classify(err)
		if internal || e.Status != http.StatusBadRequest || len(e.Details) == 0 || e.Details[0].Path == "" {
			t.Fatalf("decode(%q): %v (%+v)", b, err, e)
		}
	})
}
