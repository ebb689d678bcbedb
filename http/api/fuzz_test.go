package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// fuzzServer is one harness shared by a fuzz target's inputs, without the
// per-key rate limit: the harness's clock stands still, so a fuzz run
// would spend the key's burst for good and then see nothing but 429s.
func fuzzServer(f *testing.F) (*harness, merchant) {
	h := newHarness(f, func(c *Config) { c.KeyRate = -1 })
	return h, h.seedSetup()
}

// FuzzCreateInvoiceRequest sends arbitrary bodies to create-invoice: never
// a 5xx, never a panic, a refusal never appends, and a body answered 201
// keeps every documented rule (createInvoiceBreaks, written apart from the
// code it checks), so a check the command skips is a failure the fuzzer
// can find. The known-bad seeds are refused 400.
func FuzzCreateInvoiceRequest(f *testing.F) {
	bad := map[string]bool{}
	for _, s := range []string{
		`{"amount": "0.000000000000000000001", "currency_code": "UAH", "external_id": "x"}`,
		`{"amount": "1500.00", "currency_code": "UAH", "external_id": "a b"}`,
		`{"amount": "99999999999999999999", "currency_code": "UAH", "external_id": "big"}`,
		`{"amount": "1.00", "currency_code": "UAH", "external_id": "u", "callback_url": "https://user@x/"}`,
		`{"amount": "1.00", "currency_code": "XOF", "external_id": "xof"}`,
		"{\"amount\": \"1.00\", \"currency_code\": \"UAH\", \"external_id\": \"nul\", \"purpose\": \"\\u0000\"}",
		`{"amount": "-1.00", "currency_code": "UAH", "external_id": "neg"}`,
		`{"amount": "0", "currency_code": "UAH", "external_id": "zero"}`,
		`{"amount": "1.001", "currency_code": "UAH", "external_id": "places"}`,
		`{"amount": "1.00", "currency_code": "UAH", "external_id": "http", "callback_url": "http://yoursite.com/hook"}`,
		`{"amount": "1.00", "currency_code": "UAH", "external_id": "lo", "callback_url": "https://127.0.0.1/hook"}`,
		`{"amount": "1.00", "currency_code": "UAH", "external_id": "` + strings.Repeat("x", 129) + `"}`,
	} {
		bad[s] = true
		f.Add(s)
	}
	for _, s := range []string{
		seed003Request,
		`{}`, ``, `[]`, `null`, `{"amount": 1500}`, `{"amount": "1e9999"}`, `{"amount": "-0"}`,
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
		if bad[body] && (r.Status != http.StatusBadRequest || createInvoiceBreaks(body) == "") {
			t.Fatalf("known-bad seed %q: %d %s, want 400 and a rule it breaks", body, r.Status, r.Body)
		}
		switch r.Status {
		case http.StatusCreated:
			if broken := createInvoiceBreaks(body); broken != "" {
				t.Fatalf("accepted (201) a request that breaks a rule (%s): %q", broken, body)
			}
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

// FuzzEInvoiceRequest does the same for seed 001's e-invoice: a body
// answered 200 keeps every documented rule (einvoiceBreaks), and the
// known-bad seeds are refused 400.
func FuzzEInvoiceRequest(f *testing.F) {
	bad := map[string]bool{}
	for _, s := range []string{
		`{"payment_id": "x", "currency": "visamaster.uah", "amount": 1, "extra_fields": {"card_holder": 5}}`,
		`{"payment_id": -1, "currency": "visamaster.uah", "amount": "1"}`,
		`{"payment_id": "a b", "currency": "visamaster.uah", "amount": "1.00"}`,
		`{"payment_id": "neg", "currency": "visamaster.uah", "amount": "-1.00"}`,
		`{"payment_id": "zero", "currency": "visamaster.uah", "amount": 0}`,
		`{"payment_id": "places", "currency": "visamaster.uah", "amount": 1.001}`,
		`{"payment_id": "big", "currency": "visamaster.uah", "amount": 9999999999999999}`,
		`{"payment_id": "holder", "currency": "visamaster.uah", "amount": 1, "extra_fields": {"card_holder": "1"}}`,
		`{"payment_id": "field", "currency": "visamaster.uah", "amount": 1, "extra_fields": {"phone": "+380501234567"}}`,
		`{"payment_id": "sender", "currency": "visamaster.uah", "amount": 1, "sender": "4444 1111"}`,
		`{"payment_id": "status", "currency": "visamaster.uah", "amount": 1, "status_url": "https://10.0.0.5/"}`,
		`{"payment_id": "usdt", "currency": "usdt_trc20", "amount": "1.0000001"}`,
	} {
		bad[s] = true
		f.Add(s)
	}
	for _, s := range []string{
		seed001Request,
		strings.Replace(seed001Request, "123", `"abc"`, 1),
		`{"payment_id": 1e3, "currency": "bitcoin", "amount": 0.00000001}`,
		`{"payment_id": 18446744073709551616, "currency": "visamaster.uah", "amount": 1}`,
		`{"payment_id": "y", "currency": "mtn-ci.xof", "amount": 100, "extra_fields": {"phone": "+2250700000000"}}`,
		`{"payment_id": "zeros", "currency": "visamaster.uah", "amount": 100.000}`, // 100.00: a number's trailing zeros
		`{"payment_id": "u6", "currency": "usdt_trc20", "amount": "1.000001"}`,
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
		if bad[body] && (r.Status != http.StatusBadRequest || einvoiceBreaks(body) == "") {
			t.Fatalf("known-bad seed %q: %d %s, want 400 and a rule it breaks", body, r.Status, r.Body)
		}
		if r.Status == http.StatusOK {
			if broken := einvoiceBreaks(body); broken != "" {
				t.Fatalf("accepted (200) a request that breaks a rule (%s): %q", broken, body)
			}
			return
		}
		if h.head() != before {
			t.Fatalf("refused request (%d) appended: %q", r.Status, body)
		}
		if _, ok := r.JSON(t)["error"].(map[string]any)["code"].(float64); !ok {
			t.Fatalf("refusal without a numeric code: %s", r.Body)
		}
	})
}

// The fuzz oracles below restate the documented request rules (docs/api.md,
// docs/methods.md, seed 001 and 003) on their own, deliberately simply:
// each is a condition every accepted request must meet, never one that a
// valid request could fail, so they share no code with the checks they
// test. A rule they cannot state simply (the inet_aton forms of an address
// host) is left out rather than guessed.

// fuzzRated are the currencies with a rate on the fuzz server
// (seedSetup's UAH; USDT is always 1), with their minor units: an
// invoice in any other currency is refused CURRENCY_INVALID.
var fuzzRated = map[string]int{"UAH": 2, "USDT": 6}

// fuzzMethods are the methods an e-invoice on the fuzz server can be made
// in (their currency has a rate), with their currency and their extra
// fields' patterns (docs/methods.md; none of them is required).
var fuzzMethods = map[string]struct {
	currency string
	fields   map[string]string
}{
	"visamaster.uah": {"UAH", map[string]string{"card_holder": `^[\p{L}][\p{L} .'\-]{1,63}$`}},
	"usdt_erc20":     {"USDT", map[string]string{"refund_address": `^0x[0-9a-fA-F]{40}$`}},
	"usdt_trc20":     {"USDT", map[string]string{"refund_address": `^T[1-9A-HJ-NP-Za-km-z]{33}$`}},
}

// fuzzObject reads body as one JSON object whose keys are all in known.
func fuzzObject(body string, known ...string) (map[string]json.RawMessage, string) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &obj); err != nil || obj == nil {
		return nil, "body is not one JSON object"
	}
	for k := range obj {
		if !slices.Contains(known, k) {
			return nil, "unknown field " + k
		}
	}
	return obj, ""
}

// fuzzString reads obj[k] as a JSON string (absent or null: "").
func fuzzString(obj map[string]json.RawMessage, k string) (string, bool) {
	raw, ok := obj[k]
	if !ok || string(raw) == "null" {
		return "", true
	}
	var s string
	return s, json.Unmarshal(raw, &s) == nil
}

// fuzzAmountBreaks: a positive decimal "1500" or "1500.00", at most 15
// integer digits without leading zeros, at most places decimal places.
func fuzzAmountBreaks(s string, places int) string {
	re := `^(0|[1-9][0-9]{0,14})(\.[0-9]{1,` + strconv.Itoa(places) + `})?$`
	if places == 0 {
		re = `^(0|[1-9][0-9]{0,14})$`
	}
	if !regexp.MustCompile(re).MatchString(s) || strings.Trim(s, "0.") == "" {
		return fmt.Sprintf("amount %q is not a positive decimal of at most %d places", s, places)
	}
	return ""
}

// fuzzTextBreaks: text of at most max characters, without NUL.
func fuzzTextBreaks(field, s string, max int) string {
	if utf8.RuneCountInString(s) > max || strings.ContainsRune(s, 0) {
		return fmt.Sprintf("%s is not text of at most %d characters", field, max)
	}
	return ""
}

// fuzzURLBreaks: "" or an absolute URL with a host and no userinfo; https
// only for a URL payledger calls, whose host is ASCII, not localhost, and
// if an address literal, a public one.
func fuzzURLBreaks(field, s string, called bool) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || (u.Scheme != "https" && (called || u.Scheme != "http")) {
		return field + " is not an absolute http(s) URL with a host"
	}
	if !called {
		return ""
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	for _, r := range u.Host {
		if r >= utf8.RuneSelf {
			return field + " host is not ASCII"
		}
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return field + " names localhost"
	}
	if ip := net.ParseIP(host); ip != nil && (ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() || !ip.IsGlobalUnicast()) {
		return field + " is not a public address"
	}
	return ""
}

// fuzzIDBreaks: 1 to 128 printable ASCII characters without spaces.
func fuzzIDBreaks(field, s string) string {
	if !regexp.MustCompile(`^[\x21-\x7e]{1,128}$`).MatchString(s) {
		return fmt.Sprintf("%s %q is not 1 to 128 printable characters without spaces", field, s)
	}
	return ""
}

// firstBroken returns the first of the rules' answers that is not "".
func firstBroken(rules ...string) string {
	for _, broken := range rules {
		if broken != "" {
			return broken
		}
	}
	return ""
}

// createInvoiceBreaks names the first rule of create-invoice (seed 003,
// docs/api.md) that body breaks, or "".
func createInvoiceBreaks(body string) string {
	obj, broken := fuzzObject(body, "amount", "currency_code", "customer_id", "external_id", "purpose", "callback_url", "success_url", "fail_url")
	if broken != "" {
		return broken
	}
	f := map[string]string{}
	for k := range obj {
		s, ok := fuzzString(obj, k)
		if !ok {
			return k + " is not a string"
		}
		f[k] = s
	}
	places, ok := fuzzRated[f["currency_code"]]
	if !ok || f["currency_code"] == "USDT" {
		return fmt.Sprintf("currency_code %q is not a fiat currency with a rate", f["currency_code"])
	}
	return firstBroken(
		fuzzAmountBreaks(f["amount"], places),
		fuzzIDBreaks("external_id", f["external_id"]),
		fuzzTextBreaks("customer_id", f["customer_id"], 128),
		fuzzTextBreaks("purpose", f["purpose"], 1024),
		fuzzURLBreaks("callback_url", f["callback_url"], true),
		fuzzURLBreaks("success_url", f["success_url"], false),
		fuzzURLBreaks("fail_url", f["fail_url"], false),
	)
}

// einvoiceBreaks names the first rule of the e-invoice (seed 001,
// docs/api.md, docs/methods.md) that body breaks, or "".
func einvoiceBreaks(body string) string {
	obj, broken := fuzzObject(body, "payment_id", "currency", "amount", "description", "account", "sender", "success_url", "fail_url", "status_url", "extra_fields")
	if broken != "" {
		return broken
	}
	// payment_id: a string or a whole JSON number, 1 to 128 printable
	// characters without spaces.
	id := string(bytes.TrimSpace(obj["payment_id"]))
	if strings.HasPrefix(id, `"`) {
		if err := json.Unmarshal([]byte(id), &id); err != nil {
			return "payment_id is not a string"
		}
	} else if !regexp.MustCompile(`^[0-9]+$`).MatchString(id) {
		return fmt.Sprintf("payment_id %s is neither a string nor a whole number", id)
	}
	if broken := fuzzIDBreaks("payment_id", id); broken != "" {
		return broken
	}
	f := map[string]string{}
	for _, k := range []string{"currency", "description", "account", "sender", "success_url", "fail_url", "status_url"} {
		s, ok := fuzzString(obj, k)
		if !ok {
			return k + " is not a string"
		}
		f[k] = s
	}
	method, ok := fuzzMethods[f["currency"]]
	if !ok {
		return fmt.Sprintf("currency %q is not a method with a rate", f["currency"])
	}
	// amount: a decimal string or JSON number, read from its text.
	amount := string(bytes.TrimSpace(obj["amount"]))
	if strings.HasPrefix(amount, `"`) {
		if err := json.Unmarshal([]byte(amount), &amount); err != nil {
			return "amount is not a string"
		}
	} else if strings.Contains(amount, ".") && !strings.ContainsAny(amount, "eE") {
		// A JSON number's trailing zeros are not precision (docs/api.md,
		// e-invoice): 1500.00 is 1500.
		amount = strings.TrimSuffix(strings.TrimRight(amount, "0"), ".")
	}
	if broken := fuzzAmountBreaks(amount, fuzzRated[method.currency]); broken != "" {
		return broken
	}
	if s := f["sender"]; s != "" && !regexp.MustCompile(`^[0-9A-Za-z]{1,64}$`).MatchString(s) {
		return fmt.Sprintf("sender %q is not a wallet number", s)
	}
	var extra map[string]*string
	if raw, ok := obj["extra_fields"]; ok && json.Unmarshal(raw, &extra) != nil {
		return "extra_fields is not an object of strings"
	}
	for name, v := range extra {
		pattern, ok := method.fields[name]
		switch {
		case !ok:
			return fmt.Sprintf("extra_fields.%s is not a field of %s", name, f["currency"])
		case v != nil && *v != "" && !regexp.MustCompile(pattern).MatchString(*v):
			return fmt.Sprintf("extra_fields.%s %q does not match %s", name, *v, pattern)
		}
	}
	return firstBroken(
		fuzzTextBreaks("description", f["description"], 1024),
		fuzzTextBreaks("account", f["account"], 128),
		fuzzURLBreaks("status_url", f["status_url"], true),
		fuzzURLBreaks("success_url", f["success_url"], false),
		fuzzURLBreaks("fail_url", f["fail_url"], false),
	)
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
