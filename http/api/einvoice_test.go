package api

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/payledger/payledger/commands"
)

var trackingRE = regexp.MustCompile(`^[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}$`)

// seed001Request is seed 001's example (extra_fields filled for the card method).
const seed001Request = `{ "payment_id": 123, "currency": "visamaster.uah", "amount": 100.00,
 "description": "Some payment description", "sender": "4444111144441111",
 "success_url": "https://test.ua/success/123", "fail_url": "https://test.ua/fail/123",
 "status_url": "https://test.ua", "extra_fields": { "card_holder": "Ivan Ivanov" } }`

func TestEInvoice(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()

	r := h.api(m, "POST", "/api/einvoice/create", seed001Request)
	if r.Status != http.StatusOK {
		t.Fatalf("number payment_id: %d %s", r.Status, r.Body)
	}
	var out struct {
		Tracking    string          `json:"tracking"`
		PaymentID   json.RawMessage `json:"payment_id"`
		InvoiceID   string          `json:"invoice_id"`
		PaymentLink string          `json:"payment_link"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatal(err)
	}
	if !trackingRE.MatchString(out.Tracking) || string(out.PaymentID) != "123" || out.PaymentLink != "https://pay.app.com/pay/"+out.InvoiceID {
		t.Errorf("response %s", r.Body)
	}
	inv := h.api(m, "GET", "/api/v1/invoices/"+out.InvoiceID, "")
	if b := inv.JSON(t); b["amount"] != "100.00" || b["currency"] != "UAH" || b["merchant_usdt"] != "2.36" {
		t.Errorf("e-invoice as invoice: %s", inv.Body)
	}

	s := h.api(m, "POST", "/api/einvoice/create", strings.NewReplacer(`"payment_id": 123`, `"payment_id": "INV-77"`, `100.00`, `"250.50"`).Replace(seed001Request))
	if s.Status != http.StatusOK || !strings.Contains(string(s.Body), `"payment_id":"INV-77"`) {
		t.Errorf("string payment_id: %d %s", s.Status, s.Body)
	}

	head := h.head()
	dup := h.api(m, "POST", "/api/einvoice/create", seed001Request)
	if dup.Status != http.StatusConflict {
		t.Errorf("duplicate status %d", dup.Status)
	}
	var e struct {
		Error struct {
			Code    *int   `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(dup.Body, &e); err != nil || e.Error.Code == nil || *e.Error.Code != EInvoiceDuplicate || e.Error.Message != "Transaction already exists" {
		t.Errorf("duplicate body %s", dup.Body)
	}
	// The number 123 and the string "123" are one payment_id.
	if r := h.api(m, "POST", "/api/einvoice/create", strings.Replace(seed001Request, `"payment_id": 123`, `"payment_id": "123"`, 1)); !strings.Contains(string(r.Body), "Transaction already exists") {
		t.Errorf("string duplicate of a number: %s", r.Body)
	}

	bad := []struct {
		name, body string
		code       int
		field      string
	}{
		{"fractional payment_id", strings.Replace(seed001Request, `"payment_id": 123`, `"payment_id": 1.5`, 1), EInvoiceInvalid, "payment_id"},
		{"boolean payment_id", strings.Replace(seed001Request, `"payment_id": 123`, `"payment_id": true`, 1), EInvoiceInvalid, "payment_id"},
		{"exponent amount", strings.Replace(seed001Request, `100.00`, `1e2`, 1), EInvoiceInvalid, "amount"},
		{"over-precise amount", strings.Replace(seed001Request, `100.00`, `100.001`, 1), EInvoiceInvalid, "amount"},
		{"negative amount", strings.Replace(seed001Request, `100.00`, `-100`, 1), EInvoiceInvalid, "amount"},
		{"amount crediting the merchant nothing", strings.Replace(seed001Request, `100.00`, `0.42`, 1), EInvoiceInvalid, "amount"},
		{"unknown method", strings.Replace(seed001Request, `visamaster.uah`, `visamaster.zzz`, 1), EInvoiceMethod, "currency"},
		{"method without rate", strings.NewReplacer(`visamaster.uah`, `visamaster.ngn`, `"card_holder": "Ivan Ivanov"`, ``).Replace(seed001Request), EInvoiceRate, "currency"},
		{"bad extra field", strings.Replace(seed001Request, `"card_holder"`, `"phone"`, 1), EInvoiceInvalid, "extra_fields.phone"},
		{"extra field a number", strings.Replace(seed001Request, `"card_holder": "Ivan Ivanov"`, `"phone": 12345678`, 1), EInvoiceInvalid, "extra_fields.phone"},
		{"unknown field", strings.Replace(seed001Request, `"sender"`, `"senderx"`, 1), EInvoiceInvalid, "senderx"},
		{"extra field twice", strings.Replace(seed001Request, `"card_holder"`, `"card_holder": "Petr Petrov", "card_holder"`, 1), EInvoiceInvalid, "extra_fields.card_holder"},
		{"malformed", `{"payment_id": `, EInvoiceInvalid, "body"},
	}
	for _, tc := range bad {
		r := h.api(m, "POST", "/api/einvoice/create", strings.Replace(tc.body, "123", "999", 1))
		var e struct {
			Error struct {
				Code    *int     `json:"code"`
				Details []Detail `json:"details"`
			} `json:"error"`
		}
		if err := json.Unmarshal(r.Body, &e); err != nil || e.Error.Code == nil || *e.Error.Code != tc.code {
			t.Errorf("%s: %d %s, want code %d", tc.name, r.Status, r.Body, tc.code)
			continue
		}
		named := false
		for _, d := range e.Error.Details {
			named = named || d.Path == tc.field
		}
		if !named {
			t.Errorf("%s: details do not name %s: %s", tc.name, tc.field, r.Body)
		}
	}
	if h.head() != head {
		t.Errorf("refused e-invoices appended: head %d -> %d", head, h.head())
	}
	if r := h.do(req{method: "POST", path: "/api/einvoice/create", body: seed001Request}); !strings.Contains(string(r.Body), `"code":2`) || r.Status != 401 {
		t.Errorf("no key on e-invoice: %d %s", r.Status, r.Body)
	}

	x := h.api(m, "GET", "/api/extrafields/list", "")
	var xl extraFieldsList
	if err := json.Unmarshal(x.Body, &xl); err != nil || len(xl.Methods) != len(commands.Methods()) {
		t.Fatalf("extra fields: %v %d methods", err, len(xl.Methods))
	}
	if xl.Methods[0].Currency != "airtel.mga" || len(xl.Methods[0].ExtraFields) == 0 || xl.Methods[0].ExtraFields[0].Name != "phone" {
		t.Errorf("first method %+v", xl.Methods[0])
	}
}

func TestMethodsAndWidgets(t *testing.T) {
	h := newHarness(t)
	m := h.newMerchant(`{"name": "w", "methods": ["visamaster.uah", "visamaster.usd"]}`)
	h.setRate("UAH", "41.50")
	h.setRate("USD", "1.00") // a method without a rate is not enabled (TestMethodsListNeedsARate)

	r := h.api(m, "GET", "/api/v1/methods", "")
	var ml methodsList
	if err := json.Unmarshal(r.Body, &ml); err != nil || len(ml.Methods) != len(commands.Methods()) {
		t.Fatalf("methods: %v %s", err, r.Body)
	}
	enabled := 0
	for _, meth := range ml.Methods {
		if meth.Enabled {
			enabled++
		}
	}
	if enabled != 2 {
		t.Errorf("%d methods enabled, want 2", enabled)
	}
	for _, c := range ml.Currencies {
		if c.Code == "UAH" && (c.Rate == nil || *c.Rate != "41.50" || !c.Invoiceable) {
			t.Errorf("UAH: %+v", c)
		}
	}

	single := h.api(m, "POST", "/api/v1/widgets", `{"account_id": "`+m.ID+`", "timestamp": `+jsonInt(h.clock.Now().UnixMilli())+`,
		"external_id": "0b6d1b8e-62c3-4d49-9a43-1c4f6a0e2b11", "type": "single", "fiat_currency": "UAH", "fiat_amount": "250.00",
		"description": "Coffee", "logo_url": "https://shop.example/logo.png", "return_url": "https://shop.example/",
		"currencies": ["USDT"], "merchant_external_id": "shop-7"}`)
	if single.Status != http.StatusCreated {
		t.Fatalf("single widget: %d %s", single.Status, single.Body)
	}
	jsonEqual(t, single.Body, `{"external_id": "0b6d1b8e-62c3-4d49-9a43-1c4f6a0e2b11", "type": "single", "status": "active",
		"currencies": ["USDT"], "description": "Coffee", "logo_url": "https://shop.example/logo.png",
		"return_url": "https://shop.example/", "support_url": "", "merchant_external_id": "shop-7",
		"fiat_currency": "UAH", "fiat_amount": "250.00",
		"widget_link": "https://pay.app.com/w/0b6d1b8e-62c3-4d49-9a43-1c4f6a0e2b11",
		"created_at": "2026-02-25T12:00:00Z", "expires_at": null}`)
	wid := "0b6d1b8e-62c3-4d49-9a43-1c4f6a0e2b11"
	if r := h.api(m, "POST", "/api/v1/widgets", `{"external_id": "`+wid+`", "type": "unlimited"}`); r.Status != http.StatusConflict || r.errCode(t) != CodeDuplicateWidget {
		t.Errorf("duplicate widget: %d %s", r.Status, r.Body)
	}
	inv := h.api(m, "POST", "/api/v1/widgets/"+wid+"/invoices", `{"customer_id": "c-1"}`)
	if inv.Status != http.StatusCreated || inv.JSON(t)["amount"] != "250.00" || inv.JSON(t)["external_id"] != "shop-7" {
		t.Errorf("widget invoice: %d %s", inv.Status, inv.Body)
	}
	if r := h.api(m, "POST", "/api/v1/widgets/"+wid+"/status", `{"status": "disabled"}`); r.Status != http.StatusOK || r.JSON(t)["status"] != "disabled" {
		t.Errorf("disable: %d %s", r.Status, r.Body)
	}
	if r := h.api(m, "POST", "/api/v1/widgets/"+wid+"/invoices", `{}`); r.Status != http.StatusConflict || r.errCode(t) != CodeWidgetNotActive {
		t.Errorf("invoice from disabled widget: %d %s", r.Status, r.Body)
	}
	if r := h.api(m, "POST", "/api/v1/widgets/"+wid+"/status", `{"status": "expired"}`); r.Status != http.StatusBadRequest {
		t.Errorf("merchant expiring a widget: %d %s", r.Status, r.Body)
	}
	unl := h.api(m, "POST", "/api/v1/widgets", `{"type": "unlimited"}`)
	uid, _ := unl.JSON(t)["external_id"].(string)
	if r := h.api(m, "POST", "/api/v1/widgets/"+uid+"/invoices", `{"amount": "99.99", "method": "visamaster.uah"}`); r.Status != http.StatusCreated || r.JSON(t)["currency"] != "UAH" {
		t.Errorf("unlimited widget invoice: %d %s", r.Status, r.Body)
	}
	if r := h.api(m, "POST", "/api/v1/widgets/"+uid+"/invoices", `{"amount": "100", "method": "mtn-ci.xof"}`); r.Status != http.StatusBadRequest || r.errCode(t) != CodeMethodInvalid {
		t.Errorf("disabled method: %d %s", r.Status, r.Body)
	}
	l := h.api(m, "GET", "/api/v1/widgets?page=1&page_size=1&account_id="+m.ID, "")
	if l.Status != http.StatusOK || !strings.Contains(string(l.Body), `"page_details":{"page_number":1,"page_size":1,"total_pages":2,"total_objects":2}`) {
		t.Errorf("widget list: %d %s", l.Status, l.Body)
	}
	if r := h.api(m, "GET", "/api/v1/widgets?page=0", ""); r.Status != http.StatusBadRequest || r.details(t)[0].Path != "page" {
		t.Errorf("page 0: %d %s", r.Status, r.Body)
	}
	for q, field := range map[string]string{"page=x": "page", "page=1000001": "page", "page_size=0": "page_size", "page_size=101": "page_size"} {
		if r := h.api(m, "GET", "/api/v1/invoices?"+q, ""); r.Status != http.StatusBadRequest || r.details(t)[0].Path != field {
			t.Errorf("%s: %d %s", q, r.Status, r.Body)
		}
	}
	if r := h.api(m, "GET", "/api/v1/widgets/"+wid+"?account_id=someone-else", ""); r.Status != http.StatusNotFound {
		t.Errorf("other account_id: %d %s", r.Status, r.Body)
	}
	if r := h.api(m, "GET", "/api/v1/invoices?status=paid", ""); r.Status != http.StatusBadRequest || r.details(t)[0].Path != "status" {
		t.Errorf("bad status filter: %d %s", r.Status, r.Body)
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestWidgetExternalIDAnyCase: seed 000's external id is "in the uuid
// format that can be generated by user"; a UUID is the same in upper or
// lower case (uuidgen on macOS prints upper case). Creation already takes
// it in either case (and stores it lower case); reading, changing and
// invoicing the widget by the id as the merchant generated it must too.
func TestWidgetExternalIDAnyCase(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	const upper = "0B6D1B8E-62C3-4D49-9A43-1C4F6A0E2B11"
	lower := strings.ToLower(upper)
	r := h.api(m, "POST", "/api/v1/widgets", `{"external_id": "`+upper+`", "type": "single", "fiat_currency": "UAH", "fiat_amount": "250.00"}`)
	if r.Status != http.StatusCreated || r.JSON(t)["external_id"] != lower {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	if g := h.api(m, "GET", "/api/v1/widgets/"+upper, ""); g.Status != http.StatusOK || g.JSON(t)["external_id"] != lower {
		t.Errorf("GET by the id as generated: %d %s", g.Status, g.Body)
	}
	if i := h.api(m, "POST", "/api/v1/widgets/"+upper+"/invoices", `{}`); i.Status != http.StatusCreated || i.JSON(t)["amount"] != "250.00" {
		t.Errorf("invoice by the id as generated: %d %s", i.Status, i.Body)
	}
	if s := h.api(m, "POST", "/api/v1/widgets/"+upper+"/status", `{"status": "disabled"}`); s.Status != http.StatusOK || s.JSON(t)["status"] != "disabled" {
		t.Errorf("status by the id as generated: %d %s", s.Status, s.Body)
	}
	if g := h.api(m, "GET", "/api/v1/widgets/"+strings.ToUpper("ffffffff-62c3-4d49-9a43-1c4f6a0e2b11"), ""); g.Status != http.StatusNotFound {
		t.Errorf("unknown id: %d %s", g.Status, g.Body)
	}
}

// With the only gateway disabled, GET /api/v1/methods says visamaster.uah
// is disabled, and an invoice fixing that method could never be paid: an
// e-invoice is refused with code 3 and a widget invoice given the method
// with METHOD_INVALID, appending nothing.
func TestFixedMethodInvoiceRefusedWithNoEnabledGateway(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	unl := h.api(m, "POST", "/api/v1/widgets", `{"type": "unlimited"}`)
	uid, _ := unl.JSON(t)["external_id"].(string)
	if r := h.admin("POST", "/admin/v1/gateways/1/disable", ""); r.Status != http.StatusOK {
		t.Fatalf("disable: %d %s", r.Status, r.Body)
	}
	if methodEnabled(t, h.api(m, "GET", "/api/v1/methods", ""), "visamaster.uah") {
		t.Fatal("the methods list says visamaster.uah is enabled")
	}

	head := h.head()
	r := h.api(m, "POST", "/api/einvoice/create", seed001Request)
	var e struct {
		Error struct {
			Code    *int   `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &e); err != nil || r.Status != http.StatusBadRequest || e.Error.Code == nil || *e.Error.Code != EInvoiceMethod {
		t.Errorf("e-invoice for a method no enabled gateway serves: %d %s, want 400 with code %d", r.Status, r.Body, EInvoiceMethod)
	}
	if r := h.api(m, "POST", "/api/v1/widgets/"+uid+"/invoices", `{"amount": "99.99", "method": "visamaster.uah"}`); r.Status != http.StatusBadRequest || r.errCode(t) != CodeMethodInvalid {
		t.Errorf("widget invoice for a method no enabled gateway serves: %d %s, want 400 %s", r.Status, r.Body, CodeMethodInvalid)
	}
	if h.head() != head {
		t.Errorf("refused invoices appended: head %d -> %d", head, h.head())
	}

	if r := h.admin("POST", "/admin/v1/gateways/1/enable", ""); r.Status != http.StatusOK {
		t.Fatalf("enable: %d %s", r.Status, r.Body)
	}
	if r := h.api(m, "POST", "/api/einvoice/create", seed001Request); r.Status != http.StatusOK {
		t.Errorf("e-invoice with the gateway enabled again: %d %s", r.Status, r.Body)
	}
}

// TestEInvoiceBodyCarriesPaymentID: an e-invoice's GET body, and so its
// invoice webhook, carries seed 001's payment_id (as a string: the log
// keeps its text, not its JSON type), tracking and account, in the body's
// alphabetical order, so a merchant matches the webhook to its payment_id.
// A seed 003 invoice's body is unchanged (TestSeed003BodyOrder).
func TestEInvoiceBodyCarriesPaymentID(t *testing.T) {
	hk := newHookReceiver(t)
	h, _ := newWebhookHarness(t, hk.rcv)
	m := h.seedSetup()
	if r := h.admin("PATCH", "/admin/v1/merchants/"+m.ID, `{"webhook_url": "`+hk.rcv.URL+`/hook"}`); r.Status != http.StatusOK {
		t.Fatalf("webhook_url: %d %s", r.Status, r.Body)
	}
	want := []string{"account", "amount", "callback_url", "conversion_rate", "created_at", "currency", "customer_id",
		"expires_at", "external_id", "fail_url", "invoice_id", "merchant_usdt", "paid_at", "payment_id", "payment_link",
		"purpose", "status", "success_url", "tracking"}
	for _, tc := range []struct{ name, body, paymentID, account string }{
		{"number payment_id, with account", strings.NewReplacer(`"description"`, `"account": "user_12345", "description"`,
			`"https://test.ua"`, `"`+hk.rcv.URL+`/status"`).Replace(seed001Request), "123", "user_12345"},
		{"string payment_id, no account", strings.NewReplacer(`"payment_id": 123`, `"payment_id": "INV-77"`,
			`"https://test.ua"`, `"`+hk.rcv.URL+`/status"`).Replace(seed001Request), "INV-77", ""},
	} {
		r := h.api(m, "POST", "/api/einvoice/create", tc.body)
		if r.Status != http.StatusOK {
			t.Fatalf("%s: create: %d %s", tc.name, r.Status, r.Body)
		}
		created := r.JSON(t)
		id, _ := created["invoice_id"].(string)
		g := h.api(m, "GET", "/api/v1/invoices/"+id, "")
		if g.Status != http.StatusOK {
			t.Fatalf("%s: GET: %d %s", tc.name, g.Status, g.Body)
		}
		if got := topKeys(t, g.Body); !slices.Equal(got, want) {
			t.Errorf("%s: GET keys\n got: %v\nwant: %v", tc.name, got, want)
		}
		b := g.JSON(t)
		if b["payment_id"] != tc.paymentID || b["tracking"] != created["tracking"] || b["account"] != tc.account {
			t.Errorf("%s: GET body %s, want payment_id %q, tracking %v, account %q", tc.name, g.Body, tc.paymentID, created["tracking"], tc.account)
		}
		// The invoice.created webhook carries the same body.
		hk.await(t, g.Body)
	}
}

// TestMethodsListNeedsARate: GET /api/v1/methods says a method is enabled
// only if an invoice with it can be priced: a method whose currency has no
// rate is refused (e-invoice code 4, CURRENCY_INVALID), so the list says
// "enabled": false for it until the operator sets one. USDT, the
// settlement currency, needs none.
func TestMethodsListNeedsARate(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup() // UAH only
	list := h.api(m, "GET", "/api/v1/methods", "")
	for code, want := range map[string]bool{"visamaster.uah": true, "visamaster.usd": false, "litecoin": false, "usdt_trc20": true} {
		if got := methodEnabled(t, list, code); got != want {
			t.Errorf("%s enabled = %v, want %v", code, got, want)
		}
	}
	// What the list says is what an e-invoice finds.
	ltc := strings.NewReplacer(`"visamaster.uah"`, `"litecoin"`, `100.00`, `"0.50"`, `"card_holder": "Ivan Ivanov"`, ``).Replace(seed001Request)
	if r := h.api(m, "POST", "/api/einvoice/create", ltc); !strings.Contains(string(r.Body), `"code":4`) {
		t.Errorf("litecoin e-invoice without a rate: %d %s, want code 4", r.Status, r.Body)
	}
	h.setRate("LTC", "0.011")
	if !methodEnabled(t, h.api(m, "GET", "/api/v1/methods", ""), "litecoin") {
		t.Error("litecoin is not enabled once LTC has a rate")
	}
	if r := h.api(m, "POST", "/api/einvoice/create", ltc); r.Status != http.StatusOK {
		t.Errorf("litecoin e-invoice with a rate: %d %s", r.Status, r.Body)
	}
}

// TestEInvoiceNumberTrailingZeros: seed 001 sends the amount as a JSON
// number ("amount": 100.00), whose trailing zeros are not precision: an
// XOF amount of 1500.00 or 1500.0 is 1500 XOF, and 100.000 is 100.00 UAH.
// A nonzero digit beyond the minor units (1500.50 XOF) is still refused,
// and a string amount is read as strictly as everywhere in the API
// ("1500.00" is too precise for XOF). Before, every number with more
// places than the currency has was refused, 1500.00 XOF too.
func TestEInvoiceNumberTrailingZeros(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	h.setRate("XOF", "600")
	xof := func(id, amount string) string {
		return `{"payment_id": "` + id + `", "currency": "mtn-ci.xof", "amount": ` + amount + `, "extra_fields": {"phone": "+2250700000000"}}`
	}
	for _, tc := range []struct{ name, body, want string }{
		{"XOF 1500.00", xof("x-1", "1500.00"), "1500"},
		{"XOF 1500.0", xof("x-2", "1500.0"), "1500"},
		{"XOF 1500", xof("x-3", "1500"), "1500"},
		{"UAH 100.000", strings.Replace(seed001Request, "100.00", "100.000", 1), "100.00"},
	} {
		r := h.api(m, "POST", "/api/einvoice/create", tc.body)
		if r.Status != http.StatusOK {
			t.Errorf("%s: %d %s", tc.name, r.Status, r.Body)
			continue
		}
		id, _ := r.JSON(t)["invoice_id"].(string)
		if got := h.api(m, "GET", "/api/v1/invoices/"+id, "").JSON(t)["amount"]; got != tc.want {
			t.Errorf("%s: invoice amount %v, want %s", tc.name, got, tc.want)
		}
	}
	head := h.head()
	for _, tc := range []struct{ name, body, message string }{
		{"XOF 1500.50", xof("x-4", "1500.50"), "amount must be a whole number for XOF (no decimal places)"},
		{"XOF 1500.001", xof("x-5", "1500.001"), "amount must be a whole number for XOF (no decimal places)"},
		{"XOF string 1500.00", xof("x-6", `"1500.00"`), "amount must be a whole number for XOF (no decimal places)"},
		{"UAH 100.001", strings.Replace(seed001Request, "100.00", "100.001", 1), "amount must have at most 2 decimal places for UAH"},
		{"XOF 1.5e3", xof("x-7", "1.5e3"), `amount must be a decimal string such as "1500.00"`},
	} {
		r := h.api(m, "POST", "/api/einvoice/create", tc.body)
		var e struct {
			Error struct {
				Code    *int     `json:"code"`
				Details []Detail `json:"details"`
			} `json:"error"`
		}
		if err := json.Unmarshal(r.Body, &e); err != nil || r.Status != http.StatusBadRequest || e.Error.Code == nil ||
			*e.Error.Code != EInvoiceInvalid || len(e.Error.Details) != 1 || e.Error.Details[0].Path != "amount" ||
			!strings.HasPrefix(e.Error.Details[0].Message, tc.message) {
			t.Errorf("%s: %d %s, want code %d with an amount detail %q", tc.name, r.Status, r.Body, EInvoiceInvalid, tc.message)
		}
	}
	if h.head() != head {
		t.Errorf("refused e-invoices appended: head %d -> %d", head, h.head())
	}
}
