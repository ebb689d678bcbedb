package api

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	berrors "go.etcd.io/bbolt/errors"

	"github.com/payledger/payledger/webhooks"
)

// TestSeed003Errors answers every error of seed 003 in its envelope.
func TestSeed003Errors(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()

	check := func(name string, r resp, status int, code string) {
		t.Helper()
		if r.Status != status {
			t.Errorf("%s: status %d, want %d: %s", name, r.Status, status, r.Body)
		}
		b := r.JSON(t)
		if b["successful"] != false || b["request_id"] != r.Header.Get("X-Request-Id") {
			t.Errorf("%s: not seed 003's envelope: %s", name, r.Body)
		}
		if got := r.errCode(t); got != code {
			t.Errorf("%s: code %q, want %q: %s", name, got, code, r.Body)
		}
	}

	check("no key", h.do(req{method: "POST", path: "/api/v1/create-invoice", body: seed003Request}), 401, "API_KEY_MISSING")
	check("bad key", h.api(merchant{Key: "pl_nope"}, "POST", "/api/v1/create-invoice", seed003Request), 401, "API_KEY_INVALID")

	if r := h.api(m, "POST", "/api/v1/create-invoice", seed003Request); r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	dup := h.api(m, "POST", "/api/v1/create-invoice", seed003Request)
	check("duplicate", dup, 409, "DUPLICATE_EXTERNAL_ID")
	if d := dup.details(t); len(d) != 1 || d[0].Path != "external_id" {
		t.Errorf("duplicate details: %+v", d)
	}
	if msg := dup.JSON(t)["error"].(map[string]any)["message"]; msg != "External ID for this merchant is already exists, try to generate another External ID" {
		t.Errorf("duplicate message %q", msg)
	}

	for _, cur := range []string{"XYZ", "EUR"} { // unknown; known but no rate
		body := strings.NewReplacer(`"UAH"`, `"`+cur+`"`, "order-2026-0001", "order-"+cur).Replace(seed003Request)
		r := h.api(m, "POST", "/api/v1/create-invoice", body)
		check("currency "+cur, r, 400, "CURRENCY_INVALID")
		if d := r.details(t); len(d) != 1 || d[0].Path != "currency_code" {
			t.Errorf("currency %s details: %+v", cur, d)
		}
	}

	if r := h.admin("PATCH", "/admin/v1/merchants/"+m.ID, `{"invoicing_enabled": false}`); r.Status != http.StatusOK {
		t.Fatalf("disable invoicing: %d %s", r.Status, r.Body)
	}
	check("deals disabled", h.api(m, "POST", "/api/v1/create-invoice", strings.Replace(seed003Request, "order-2026-0001", "order-x", 1)), 403, "DEALS_SYSTEM_DISABLED")

	v := h.api(m, "POST", "/api/v1/create-invoice", `{"amount": "-1", "currency_code": "uah"}`)
	check("validation", v, 400, "VALIDATION_ERROR")
	paths := map[string]string{}
	for _, d := range v.details(t) {
		paths[d.Path] = d.Type
		if d.Message == "" || d.Type == "" {
			t.Errorf("detail without type or message: %+v", d)
		}
	}
	for _, p := range []string{"amount", "currency_code", "external_id"} {
		if _, ok := paths[p]; !ok {
			t.Errorf("validation details lack %s: %s", p, v.Body)
		}
	}
}

// TestBadInputAppendsNothing sends bad requests of every kind: each is
// answered 400 (413 for the body size) naming the field, and the log's head
// does not move.
func TestBadInputAppendsNothing(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxBodyBytes = 4096 })
	m := h.seedSetup()
	inv := h.api(m, "POST", "/api/v1/create-invoice", seed003Request)
	id, _ := inv.JSON(t)["invoice_id"].(string)

	with := func(field, value string) string {
		// seed 003's request with one field's JSON value replaced.
		lines := strings.Split(seed003Request, "\n")
		for i, l := range lines {
			if strings.HasPrefix(l, `"`+field+`":`) {
				comma := strings.HasSuffix(l, ",")
				lines[i] = `"` + field + `": ` + value
				if comma {
					lines[i] += ","
				}
			}
		}
		return strings.Replace(strings.Join(lines, "\n"), "order-2026-0001", "order-new", 1)
	}
	without := func(field string) string {
		var out []string
		for _, l := range strings.Split(seed003Request, "\n") {
			if !strings.HasPrefix(l, `"`+field+`":`) {
				out = append(out, l)
			}
		}
		s := strings.Join(out, "\n")
		return strings.Replace(strings.Replace(s, "\",\n}", "\"\n}", 1), "order-2026-0001", "order-new", 1)
	}
	const ci = "/api/v1/create-invoice"
	tests := []struct {
		name, path, body string
		status           int
		field            string
	}{
		{"malformed JSON", ci, `{"amount": "1500.00",`, 400, "body"},
		{"not an object", ci, `["amount"]`, 400, "body"},
		{"two values", ci, seed003Request + ` {}`, 400, "body"},
		{"empty body", ci, ``, 400, "body"},
		{"amount as number", ci, with("amount", `1500.00`), 400, "amount"},
		{"currency as number", ci, with("currency_code", `980`), 400, "currency_code"},
		{"external_id as object", ci, with("external_id", `{}`), 400, "external_id"},
		{"missing amount", ci, without("amount"), 400, "amount"},
		{"missing currency", ci, without("currency_code"), 400, "currency_code"},
		{"missing external_id", ci, without("external_id"), 400, "external_id"},
		{"negative amount", ci, with("amount", `"-1500.00"`), 400, "amount"},
		{"zero amount", ci, with("amount", `"0.00"`), 400, "amount"},
		{"over-precise amount", ci, with("amount", `"1500.001"`), 400, "amount"},
		{"huge amount", ci, with("amount", `"1`+strings.Repeat("0", 40)+`"`), 400, "amount"},
		{"amount crediting the merchant nothing", ci, with("amount", `"0.42"`), 400, "amount"},
		{"exponent amount", ci, with("amount", `"1e3"`), 400, "amount"},
		{"unknown currency", ci, with("currency_code", `"XYZ"`), 400, "currency_code"},
		{"lower-case currency", ci, with("currency_code", `"uah"`), 400, "currency_code"},
		{"http callback_url", ci, with("callback_url", `"http://yoursite.com/hook"`), 400, "callback_url"},
		{"relative success_url", ci, with("success_url", `"/ok"`), 400, "success_url"},
		{"unknown field", ci, strings.Replace(seed003Request, `"amount"`, `"email": "x@y.z", "amount"`, 1), 400, "email"},
		{"field twice", ci, strings.Replace(with("amount", `"1.00"`), `"amount"`, `"amount": "1500.00", "amount"`, 1), 400, "amount"},
		{"field in capitals", ci, strings.Replace(with("amount", `"1500.00"`), `"amount"`, `"AMOUNT"`, 1), 400, "AMOUNT"},
		{"field with a capital", ci, strings.Replace(with("amount", `"1500.00"`), `"customer_id"`, `"Customer_id"`, 1), 400, "Customer_id"},
		{"oversized body", ci, `{"purpose": "` + strings.Repeat("x", 5000) + `"}`, 413, "body"},
		{"unknown method", "/api/v1/invoices/" + id + "/payments", `{"method": "visamaster.zzz"}`, 400, "method"},
		{"missing method", "/api/v1/invoices/" + id + "/payments", `{}`, 400, "method"},
		{"method as list", "/api/v1/invoices/" + id + "/payments", `{"method": ["visamaster.uah"]}`, 400, "method"},
		{"widget bad type", "/api/v1/widgets", `{"type": "forever"}`, 400, "type"},
		{"widget stale timestamp", "/api/v1/widgets", fmt.Sprintf(`{"type": "unlimited", "timestamp": %d}`, seedTime.UnixMilli()-4*60*1000), 400, "timestamp"},
		{"widget timestamp string", "/api/v1/widgets", `{"type": "unlimited", "timestamp": "now"}`, 400, "timestamp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := h.head()
			r := h.api(m, "POST", tc.path, tc.body)
			if r.Status != tc.status {
				t.Errorf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			found := false
			for _, d := range r.details(t) {
				if d.Path == tc.field {
					found = true
				}
			}
			if !found {
				t.Errorf("details do not name %q: %s", tc.field, r.Body)
			}
			if after := h.head(); after != before {
				t.Errorf("log head moved from %d to %d", before, after)
			}
		})
	}
}

// TestWebhooksBadInput sends bad queries and bodies to the webhook
// delivery routes: each is answered 400 VALIDATION_ERROR with one detail
// per bad field (path, type, message), the message the detail's when there
// is one, and the log's head does not move. (TestBadInputAppendsNothing's
// harness refuses plain-http targets; the webhook harness allows them.)
// Before, each answered the same message with no detail, and page_size
// over 100 was cut to 100.
func TestWebhooksBadInput(t *testing.T) {
	h, _ := newWebhookHarness(t, newHookReceiver(t).rcv)
	m := h.newMerchant(`{"name": "hooks"}`)
	const (
		list  = "GET /api/v1/webhooks/deliveries"
		since = "POST /api/v1/webhooks/redeliver"
		ok    = `"since": "2026-02-25T12:00:00Z"`
	)
	tests := []struct {
		name, route, query, body string
		fields                   []string // the details' paths, in order
	}{
		{"page 0", list, "?page=0", "", []string{"page"}},
		{"page not a number", list, "?page=x", "", []string{"page"}},
		{"page signed", list, "?page=+1", "", []string{"page"}},
		{"page_size not a number", list, "?page_size=abc", "", []string{"page_size"}},
		{"page_size 0", list, "?page_size=0", "", []string{"page_size"}},
		{"page_size 101", list, "?page_size=101", "", []string{"page_size"}},
		{"page_size 100000", list, "?page_size=100000", "", []string{"page_size"}},
		{"unknown status", list, "?status=bogus", "", []string{"status"}},
		{"three bad", list, "?page=0&page_size=abc&status=bogus", "", []string{"page", "page_size", "status"}},
		{"no since", since, "", `{}`, []string{"since"}},
		{"null since", since, "", `{"since": null}`, []string{"since"}},
		{"zero since", since, "", `{"since": "0001-01-01T00:00:00Z"}`, []string{"since"}},
		{"since not a time", since, "", `{"since": "yesterday"}`, []string{"since"}},
		{"since a number", since, "", `{"since": 1772020800}`, []string{"since"}},
		{"unknown field", since, "", `{` + ok + `, "foo": 1}`, []string{"foo"}},
		{"unknown status", since, "", `{` + ok + `, "status": "bogus"}`, []string{"status"}},
		{"no since, unknown status", since, "", `{"status": "bogus"}`, []string{"since", "status"}},
		{"bad since, unknown status", since, "", `{"since": "yesterday", "status": "bogus"}`, []string{"since", "status"}},
		{"malformed", since, "", `{bad`, []string{"body"}},
		{"cut short", since, "", `{` + ok, []string{"body"}},
		{"not an object", since, "", `[{` + ok + `}]`, []string{"body"}},
		{"two values", since, "", `{` + ok + `} {}`, []string{"body"}},
		{"empty", since, "", ``, []string{"body"}},
		{"key in another case", since, "", `{"SINCE": "2026-02-25T12:00:00Z"}`, []string{"SINCE"}},
		{"status in another case", since, "", `{` + ok + `, "Status": "failed"}`, []string{"Status"}},
		{"since twice", since, "", `{` + ok + `, "since": "2026-02-26T12:00:00Z"}`, []string{"since"}},
		{"status twice", since, "", `{` + ok + `, "status": "failed", "status": "delivered"}`, []string{"status"}},
	}
	for _, tc := range tests {
		t.Run(tc.route+" "+tc.name, func(t *testing.T) {
			before := h.head()
			method, path, _ := strings.Cut(tc.route, " ")
			r := h.api(m, method, path+tc.query, tc.body)
			if r.Status != http.StatusBadRequest || r.errCode(t) != CodeValidation {
				t.Fatalf("%d %s, want 400 %s", r.Status, r.Body, CodeValidation)
			}
			d := r.details(t)
			var paths []string
			for _, f := range d {
				paths = append(paths, f.Path)
				if f.Type == "" || f.Message == "" {
					t.Errorf("detail without type or message: %+v", f)
				}
			}
			if fmt.Sprint(paths) != fmt.Sprint(tc.fields) {
				t.Errorf("details name %v, want %v: %s", paths, tc.fields, r.Body)
			}
			if msg := r.JSON(t)["error"].(map[string]any)["message"]; len(d) == 1 && msg != d[0].Message {
				t.Errorf("message %q, not its one detail's %q", msg, d[0].Message)
			}
			if after := h.head(); after != before {
				t.Errorf("log head moved from %d to %d", before, after)
			}
		})
	}

	// The deliveries list refuses what the invoices list refuses, saying
	// the same.
	for _, q := range []string{"?page_size=100000", "?page_size=0", "?page=0", "?page=1000001"} {
		inv, del := h.api(m, "GET", "/api/v1/invoices"+q, ""), h.api(m, "GET", "/api/v1/webhooks/deliveries"+q, "")
		if inv.Status != del.Status || fmt.Sprint(inv.details(t)) != fmt.Sprint(del.details(t)) {
			t.Errorf("%s: invoices %d %s, deliveries %d %s", q, inv.Status, inv.Body, del.Status, del.Body)
		}
	}
	if r := h.api(m, "GET", "/api/v1/webhooks/deliveries?page=1000000&page_size=100", ""); r.Status != http.StatusOK {
		t.Errorf("the last page of the largest size: %d %s", r.Status, r.Body)
	}
}

// TestDecodingErrorsAreOneDetail pins docs/api.md's errors section: a body
// that does not decode gets one detail, for the first thing wrong with it
// (a JSON value that is not an object is model_type at path body, on
// create-invoice and on the webhooks' bulk redelivery alike; text that is
// not JSON is model_type on the first, json_invalid on the second, which
// reads null as {}), while the values of a body that decodes are all named.
func TestDecodingErrorsAreOneDetail(t *testing.T) {
	h, _ := newWebhookHarness(t, newHookReceiver(t).rcv)
	m := h.newMerchant(`{"name": "decoding"}`)
	const ci, since = "/api/v1/create-invoice", "/api/v1/webhooks/redeliver"
	tests := []struct {
		name, path, body string
		want             []string // "path type" of each detail, in order
	}{
		{"list", ci, `[1]`, []string{"body model_type"}},
		{"string", ci, `"text"`, []string{"body model_type"}},
		{"null", ci, `null`, []string{"body model_type"}},
		{"redeliver list", since, `[1]`, []string{"body model_type"}},
		{"redeliver string", since, `"text"`, []string{"body model_type"}},
		{"not JSON", ci, `xyz`, []string{"body model_type"}},
		{"redeliver not JSON", since, `xyz`, []string{"body json_invalid"}},
		{"redeliver null", since, `null`, []string{"since missing"}}, // read as {}
		{"two wrong types", ci, `{"amount": 1, "currency_code": 2, "external_id": "x"}`, []string{"amount string_type"}},
		{"two unknown fields", ci, `{"foo": 1, "bar": 2}`, []string{"foo extra_forbidden"}},
		{"a key twice, then malformed", ci, `{"amount": "1", "amount": "2", `, []string{"amount duplicate"}},
		{"redeliver two wrong types", since, `{"since": 1, "status": 2}`, []string{"since string_type"}},
		{"three bad values", ci, `{"amount": "-1", "currency_code": "uah"}`, []string{"currency_code invalid", "amount not_positive", "external_id missing"}},
		{"redeliver two bad values", since, `{"since": "yesterday", "status": "bogus"}`, []string{"since datetime_parsing", "status enum"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.api(m, "POST", tc.path, tc.body)
			if r.Status != http.StatusBadRequest || r.errCode(t) != CodeValidation {
				t.Fatalf("%d %s, want 400 %s", r.Status, r.Body, CodeValidation)
			}
			var got []string
			for _, d := range r.details(t) {
				got = append(got, d.Path+" "+d.Type)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("details %q, want %q: %s", got, tc.want, r.Body)
			}
		})
	}
}

func TestCrossMerchant404(t *testing.T) {
	h := newHarness(t)
	a := h.seedSetup()
	b := h.newMerchant(`{"name": "Other"}`)
	inv := h.api(a, "POST", "/api/v1/create-invoice", seed003Request)
	id, _ := inv.JSON(t)["invoice_id"].(string)
	p := h.api(a, "POST", "/api/v1/invoices/"+id+"/payments", `{"method": "visamaster.uah"}`)
	pid, _ := p.JSON(t)["id"].(string)
	w := h.api(a, "POST", "/api/v1/widgets", `{"type": "unlimited"}`)
	wid, _ := w.JSON(t)["external_id"].(string)

	before := h.head()
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/api/v1/invoices/" + id, ""},
		{"POST", "/api/v1/invoices/" + id + "/cancel", ""},
		{"POST", "/api/v1/invoices/" + id + "/payments", `{"method": "visamaster.uah"}`},
		{"GET", "/api/v1/invoices/" + id + "/payments", ""},
		{"GET", "/api/v1/payments/" + pid, ""},
		{"GET", "/api/v1/widgets/" + wid, ""},
		{"POST", "/api/v1/widgets/" + wid + "/status", `{"status": "disabled"}`},
		{"POST", "/api/v1/widgets/" + wid + "/invoices", `{"amount": "10.00", "method": "visamaster.uah"}`},
		{"GET", "/api/v1/widgets?account_id=" + a.ID, ""},
	} {
		r := h.api(b, tc.method, tc.path, tc.body)
		if r.Status != http.StatusNotFound || r.errCode(t) != CodeNotFound {
			t.Errorf("%s %s as another merchant: %d %s", tc.method, tc.path, r.Status, r.Body)
		}
	}
	if h.head() != before {
		t.Error("a refused cross-merchant request appended")
	}
	l := h.api(b, "GET", "/api/v1/invoices", "")
	if !strings.Contains(string(l.Body), `"total_objects":0`) {
		t.Errorf("other merchant lists a's invoices: %s", l.Body)
	}
}

func TestAdminAuth(t *testing.T) {
	h := newHarness(t)
	for _, hdr := range []map[string]string{
		nil,
		{"Authorization": "Bearer wrong"},
		{"Authorization": "Basic " + testAdminToken},
		{"Authorization": "Bearer"},
	} {
		r := h.do(req{method: "POST", path: "/admin/v1/merchants", body: `{"name": "x"}`, header: hdr})
		if r.Status != http.StatusUnauthorized || !strings.HasPrefix(r.errCode(t), "ADMIN_TOKEN_") || r.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("admin with %v: %d %s", hdr, r.Status, r.Body)
		}
	}
	if h.head() != 0 {
		t.Errorf("unauthorised admin calls appended %d events", h.head())
	}
	// A merchant key is no admin token.
	m := h.newMerchant(`{"name": "m"}`)
	r := h.do(req{method: "GET", path: "/admin/v1/merchants", header: map[string]string{"Authorization": "Bearer " + m.Key}})
	if r.Status != http.StatusUnauthorized {
		t.Errorf("merchant key on admin API: %d", r.Status)
	}
	// No token configured: everything refused.
	h2 := newHarness(t, func(c *Config) { c.AdminTokenHash = "" })
	r = h2.admin("GET", "/admin/v1/merchants", "")
	if r.Status != http.StatusUnauthorized {
		t.Errorf("no admin token configured: %d", r.Status)
	}
}

func TestKeysRevokeAndRotate(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	k := h.admin("POST", "/admin/v1/merchants/"+m.ID+"/keys", `{"label": "ci"}`)
	if k.Status != http.StatusCreated {
		t.Fatalf("issue key: %d %s", k.Status, k.Body)
	}
	second := merchant{ID: m.ID, Key: k.JSON(t)["api_key"].(string)}
	if r := h.api(second, "GET", "/api/v1/invoices", ""); r.Status != http.StatusOK {
		t.Errorf("second key: %d %s", r.Status, r.Body)
	}
	if r := h.admin("DELETE", "/admin/v1/merchants/"+m.ID+"/keys/"+m.KeyID, ""); r.Status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	if r := h.api(m, "GET", "/api/v1/invoices", ""); r.Status != http.StatusUnauthorized || r.errCode(t) != CodeAPIKeyInvalid {
		t.Errorf("revoked key: %d %s", r.Status, r.Body)
	}
	if r := h.api(second, "GET", "/api/v1/invoices", ""); r.Status != http.StatusOK {
		t.Errorf("other key after revoke: %d", r.Status)
	}
	if r := h.admin("DELETE", "/admin/v1/merchants/"+m.ID+"/keys/"+m.KeyID, ""); r.Status != http.StatusNotFound || r.errCode(t) != CodeKeyNotFound {
		t.Errorf("revoke twice: %d %s", r.Status, r.Body)
	}
	rot := h.admin("POST", "/admin/v1/merchants/"+m.ID+"/secret/rotate", "")
	if rot.Status != http.StatusOK || rot.JSON(t)["version"] != float64(2) {
		t.Fatalf("rotate: %d %s", rot.Status, rot.Body)
	}
	if s := rot.JSON(t)["signing_secret"]; s == m.Secret || s != h.kr.SigningSecret(m.ID, 2) {
		t.Errorf("rotated secret %v", s)
	}
	mv := h.admin("GET", "/admin/v1/merchants/"+m.ID, "")
	if mv.Status != http.StatusOK || strings.Contains(string(mv.Body), second.Key) || strings.Contains(string(mv.Body), "key_hash") {
		t.Errorf("merchant view: %d %s", mv.Status, mv.Body)
	}
	if r := h.admin("GET", "/admin/v1/merchants", ""); r.Status != http.StatusOK || !strings.Contains(string(r.Body), m.ID) {
		t.Errorf("merchant list: %d %s", r.Status, r.Body)
	}
	if r := h.admin("GET", "/admin/v1/merchants/nope", ""); r.Status != http.StatusNotFound {
		t.Errorf("unknown merchant: %d", r.Status)
	}
	if r := h.admin("PATCH", "/admin/v1/merchants/"+m.ID, `{}`); r.Status != http.StatusBadRequest {
		t.Errorf("empty patch: %d", r.Status)
	}
	if r := h.admin("PATCH", "/admin/v1/merchants/"+m.ID, `{"commission_percent": "150"}`); r.Status != http.StatusBadRequest || r.details(t)[0].Path != "commission_percent" {
		t.Errorf("bad commission: %d %s", r.Status, r.Body)
	}
	if r := h.admin("GET", "/admin/v1/rates", ""); !strings.Contains(string(r.Body), `"rate":"41.50"`) {
		t.Errorf("rates: %s", r.Body)
	}
	if r := h.admin("POST", "/admin/v1/rates", `{"currency": "UAH", "rate": "-1"}`); r.Status != http.StatusBadRequest || r.details(t)[0].Path != "rate" {
		t.Errorf("bad rate: %d %s", r.Status, r.Body)
	}
}

// A bulk webhook redelivery that fails part way (webhooks'
// TestRedeliverSinceFailsPartWay makes one, closing webhooks.db between
// its transactions) is answered by the API's error writer, which the node
// mounts on the webhook routes, as its failure (500 INTERNAL_ERROR,
// logged once) with a detail saying how many were redelivered first.
func TestRedeliverErrorSaysHowManyWereDone(t *testing.T) {
	h := newHarness(t)
	err := fmt.Errorf("redeliver since: %w", &webhooks.RedeliverError{Redelivered: 999, Err: fmt.Errorf("update: %w", berrors.ErrDatabaseNotOpen)})
	rec := httptest.NewRecorder()
	h.srv.WriteError(rec, httptest.NewRequest("POST", "/api/v1/webhooks/redeliver", nil), err)
	r := resp{Status: rec.Code, Body: rec.Body.Bytes()}
	d := r.details(t)
	if r.Status != http.StatusInternalServerError || r.errCode(t) != CodeInternal || len(d) != 1 ||
		d[0] != (Detail{Path: "redelivered", Type: "partial", Message: "999 deliveries were redelivered before the failure; they stay redelivered"}) {
		t.Errorf("answer: %d %s", r.Status, r.Body)
	}
	if strings.Contains(string(r.Body), "database not open") {
		t.Errorf("the cause is in the body: %s", r.Body)
	}
}
