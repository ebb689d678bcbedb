package api

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
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

// FuzzDecode checks the strict decoder alone: a refusal always names a
// path, into a request with a map (e-invoice's extra_fields) too.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(seed003Request))
	f.Add([]byte(`{"amount": 1}`))
	f.Add([]byte(`{"x": 1}`))
	f.Add([]byte(seed001Request))
	f.Add([]byte(`{"extra_fields": {"phone": 12345678, "a": [1]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, req := range []any{&createInvoiceRequest{}, &einvoiceRequest{}} {
			err := decode(b, req, false)
			if err == nil {
				continue
			}
			e, internal := classify(err)
			if internal || e.Status != http.StatusBadRequest || len(e.Details) == 0 || e.Details[0].Path == "" {
				t.Fatalf("decode(%q) into %T: %v (%+v)", b, req, err, e)
			}
		}
	})
}

// FuzzSignature feeds a signed request's X-Timestamp and X-Signature
// arbitrary values: verification never panics and refuses with a signature
// code, and accepts only the signature of the request made with the
// merchant's key. A request signed within the window is accepted once (then
// SIGNATURE_REPLAYED), and one byte changed in its X-Signature (other than
// a hex digit's case), X-Timestamp or body is refused.
func FuzzSignature(f *testing.F) {
	h, m := fuzzServer(f)
	mv, err := h.views.Merchant(m.ID)
	if err != nil {
		f.Fatal(err)
	}
	key := h.kr.SigningKey(m.ID, mv.SecretVersion)
	now := h.clock.Now()
	nowMS := strconv.FormatInt(now.UnixMilli(), 10)
	body := []byte(seed003Request)
	f.Add(nowMS, Sign(key, nowMS, "POST", "/api/v1/create-invoice", body), int64(0), body, 0, byte(1))
	f.Add(nowMS, strings.ToUpper(Sign(key, nowMS, "POST", "/api/v1/create-invoice", body)), int64(-179_999), []byte{}, 63, byte(0x20))
	f.Add("+"+nowMS, "", int64(1<<62), []byte("{}"), 12, byte(0xff))
	f.Add("", "00", int64(0), []byte(nil), 0, byte(0))
	f.Add("-9223372036854775808", strings.Repeat("0", 64), int64(0), []byte("x"), 1, byte(8))
	f.Add("9223372036854775807", strings.Repeat("g", 64), int64(0), []byte("x"), 1, byte(8))
	window := h.srv.cfg.SignatureWindow
	// The server has been up for longer than the window: no timestamp in
	// the window is earlier than its start.
	h.srv.started = now.Add(-window - time.Millisecond)
	f.Fuzz(func(t *testing.T, ts, sig string, offsetMS int64, body []byte, at int, flip byte) {
		s := h.srv
		s.replays = newReplayCache(s.cfg.MaxSignaturesPerMerchant, s.cfg.MaxSignatures)
		verify := func(ts, sig string, body []byte) error {
			r := httptest.NewRequest("POST", "/api/v1/create-invoice", nil)
			if ts != "" {
				r.Header["X-Timestamp"] = []string{ts}
			}
			if sig != "" {
				r.Header["X-Signature"] = []string{sig}
			}
			err := s.verifySignature(&call{s: s, r: r, ctx: r.Context(), merchantID: m.ID, body: body})
			if err == nil {
				return nil
			}
			var ae *apiError
			if !errors.As(err, &ae) {
				t.Fatalf("X-Timestamp %q X-Signature %q: %v, want a signature error", ts, sig, err)
			}
			switch ae.Code {
			case CodeSignatureInvalid, CodeSignatureExpired, CodeSignatureReplayed:
			default:
				t.Fatalf("X-Timestamp %q X-Signature %q: code %s", ts, sig, ae.Code)
			}
			return ae
		}
		code := func(err error) string {
			var ae *apiError
			if errors.As(err, &ae) {
				return ae.Code
			}
			return ""
		}
		if verify(ts, sig, body) == nil && (ts != "" || sig != "") && !strings.EqualFold(sig, Sign(key, ts, "POST", "/api/v1/create-invoice", body)) {
			t.Fatalf("accepted X-Timestamp %q X-Signature %q, not the request's signature", ts, sig)
		}

		// A request signed now (give or take the window).
		s.replays = newReplayCache(s.cfg.MaxSignaturesPerMerchant, s.cfg.MaxSignatures)
		ts = strconv.FormatInt(now.Add(time.Duration(offsetMS%window.Milliseconds())*time.Millisecond).UnixMilli(), 10)
		sig = Sign(key, ts, "POST", "/api/v1/create-invoice", body)
		if err := verify(ts, sig, body); err != nil {
			t.Fatalf("signed at %s: %v", ts, err)
		}
		if err := verify(ts, sig, body); code(err) != CodeSignatureReplayed {
			t.Fatalf("the same signature again: %v", err)
		}
		if flip == 0 {
			return
		}
		b := []byte(sig)
		b[uint(at)%uint(len(b))] ^= flip
		if !strings.EqualFold(string(b), sig) {
			if err := verify(ts, string(b), body); code(err) != CodeSignatureInvalid {
				t.Fatalf("X-Signature %q (one byte changed): %v", b, err)
			}
		}
		b = []byte(ts)
		b[uint(at)%uint(len(b))] ^= flip
		if c := code(verify(string(b), sig, body)); c != CodeSignatureInvalid && c != CodeSignatureExpired {
			t.Fatalf("X-Timestamp %q (one byte changed): %q", b, c)
		}
		if len(body) > 0 {
			b = bytes.Clone(body)
			b[uint(at)%uint(len(b))] ^= flip
			if err := verify(ts, sig, b); code(err) != CodeSignatureInvalid {
				t.Fatalf("body byte %d changed: %v", uint(at)%uint(len(b)), err)
			}
		}
	})
}
