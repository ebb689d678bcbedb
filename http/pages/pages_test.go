package pages_test

import (
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/http/pages"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
)

// client is a customer's browser without JavaScript: it keeps cookies and
// shows redirects instead of following them.
type client struct {
	t   *testing.T
	srv *httptest.Server
	c   *http.Client
}

func (e *env) client() *client {
	srv := httptest.NewServer(e.h)
	e.t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	return &client{t: e.t, srv: srv, c: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// response is a finished response with its body read.
type response struct {
	*http.Response
	body string
}

func (c *client) do(method, path string, form url.Values) response {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.srv.URL+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := c.c.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return response{res, string(b)}
}

func (c *client) get(path string) response { return c.do(http.MethodGet, path, nil) }

func (c *client) post(path string, form url.Values) response {
	return c.do(http.MethodPost, path, form)
}

// status reads the page's status JSON.
func (c *client) status(invoiceID string) map[string]any {
	c.t.Helper()
	res := c.get("/pay/" + invoiceID + "/status")
	if res.StatusCode != http.StatusOK {
		c.t.Fatalf("status: %d %s", res.StatusCode, res.body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(res.body), &m); err != nil {
		c.t.Fatal(err)
	}
	return m
}

func wantStatus(t *testing.T, res response, code int) {
	t.Helper()
	if res.StatusCode != code {
		t.Fatalf("%s %s: status %d, want %d\n%s", res.Request.Method, res.Request.URL.Path, res.StatusCode, code, res.body)
	}
}

func wantContains(t *testing.T, res response, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(res.body, p) {
			t.Errorf("%s %s: body lacks %q\n%s", res.Request.Method, res.Request.URL.Path, p, res.body)
		}
	}
}

func wantLacks(t *testing.T, res response, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if strings.Contains(res.body, p) {
			t.Errorf("%s %s: body has %q", res.Request.Method, res.Request.URL.Path, p)
		}
	}
}

// esc is text as html/template writes it.
func esc(s string) string {
	return strings.ReplaceAll(template.HTMLEscapeString(s), "+", "&#43;")
}

func wantRedirect(t *testing.T, res response, to string) {
	t.Helper()
	wantStatus(t, res, http.StatusSeeOther)
	if got := res.Header.Get("Location"); got != to {
		t.Fatalf("Location %q, want %q", got, to)
	}
}

// unchanged fails the test if the log grew since head.
func (e *env) unchanged(head ledger.Head) {
	e.t.Helper()
	if got := e.store.Head(); got != head {
		e.t.Errorf("log head moved from %+v to %+v: a refused request appended", head, got)
	}
}

// chooseMethod opens the payment page and posts a method; it returns the
// page's token.
func (c *client) chooseMethod(invoiceID, method string) string {
	c.t.Helper()
	page := c.get("/pay/" + invoiceID)
	wantStatus(c.t, page, http.StatusOK)
	tok := formToken(c.t, page.body)
	res := c.post("/pay/"+invoiceID+"/method", url.Values{"csrf_token": {tok}, "method": {method}})
	wantRedirect(c.t, res, "/pay/"+invoiceID+"#details")
	return tok
}

func TestNewRequiresServiceAndViews(t *testing.T) {
	if _, err := pages.New(pages.Config{}); !errors.Is(err, pages.ErrConfig) {
		t.Fatalf("New(zero Config) = %v, want ErrConfig", err)
	}
}

func TestPayPageShowsInvoiceAndMethods(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice(invoiceOpts{amount: "1500", currency: "XOF"})
	c := e.client()
	res := c.get("/pay/" + inv.InvoiceID)
	wantStatus(t, res, http.StatusOK)
	wantContains(t, res,
		`<html lang="en">`, `name="viewport"`, `<main id="main"`,
		"Demo Shop", "1500 XOF", "Payment for Premium subscription",
		`role="status" aria-live="polite"`, `role="timer"`, "20:00",
		`<legend>Choose a payment method</legend>`,
		`value="orange_money-ci.xof"`, "Orange Money, XOF CI", `value="wave-senegal.xof"`,
		`name="csrf_token"`, `/pay/static/`, `pay.js`)
	wantLacks(t, res, "visamaster.uah", "<script>") // methods of other currencies; inline script
	h := res.Header
	for k, want := range map[string]string{
		"Content-Type":    "text/html; charset=utf-8",
		"Cache-Control":   "no-store",
		"X-Frame-Options": "DENY",
		"Referrer-Policy": "no-referrer",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	csp := h.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("CSP %q lacks %q", csp, d)
		}
	}
	if strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP allows inline code: %q", csp)
	}
	var ck *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "pl_csrf" {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
		t.Errorf("anti-forgery cookie = %+v, want HttpOnly SameSite=Lax", ck)
	}
}

func TestPayPageOffersOnlyTheMerchantsMethods(t *testing.T) {
	e := newEnv(t)
	m2 := e.registerMerchant("m2", "Narrow Shop", []string{"wave-ci.xof", "visamaster.uah"})
	inv := e.invoice(invoiceOpts{merchant: m2, amount: "2500", currency: "XOF"})
	c := e.client()
	res := c.get("/pay/" + inv.InvoiceID)
	wantStatus(t, res, http.StatusOK)
	wantContains(t, res, "Narrow Shop", `value="wave-ci.xof"`)
	wantLacks(t, res, `value="orange_money-ci.xof"`, `value="visamaster.uah"`)
	// A method of the invoice's currency the merchant did not enable is refused.
	head := e.store.Head()
	tok := formToken(t, res.body)
	bad := c.post("/pay/"+inv.InvoiceID+"/method", url.Values{"csrf_token": {tok}, "method": {"orange_money-ci.xof"}})
	wantStatus(t, bad, http.StatusBadRequest)
	wantContains(t, bad, `role="alert"`, "Choose one of the payment methods listed.")
	e.unchanged(head)
}

func TestPayMethodThenDetailsThenConfirm(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice(invoiceOpts{success: "https://shop.example/ok", fail: "https://shop.example/failed"})
	c := e.client()
	tok := c.chooseMethod(inv.InvoiceID, "visamaster.uah")

	ps := e.payments(inv.InvoiceID)
	if len(ps) != 1 || ps[0].Status != commands.PaymentStatusPending || ps[0].Method != "visamaster.uah" {
		t.Fatalf("payments after choosing = %+v, want one PENDING visamaster.uah", ps)
	}
	p := ps[0]
	page := c.get("/pay/" + inv.InvoiceID)
	wantStatus(t, page, http.StatusOK)
	wantContains(t, page, `id="details"`, "Payment details", "VisaMaster, UAH", "Card number",
		p.Extra.AccountNumber, p.Extra.AccountName, p.Extra.BankName, p.PaymentAmount+" UAH",
		`id="confirm"`, "I have paid", "Choose another method", "Payment reference: "+p.ID)
	wantLacks(t, page, "<legend>")

	st := c.status(inv.InvoiceID)
	if st["phase"] != "pay" || st["payment_status"] != "PENDING" || st["payment_id"] != p.ID ||
		st["invoice_status"] != "pending" || st["final"] != false || st["redirect_url"] != nil {
		t.Errorf("status = %v", st)
	}

	// Posting the method again (a double click) keeps the one payment.
	again := c.post("/pay/"+inv.InvoiceID+"/method", url.Values{"csrf_token": {tok}, "method": {"visamaster.uah"}})
	wantRedirect(t, again, "/pay/"+inv.InvoiceID+"#details")
	if n := len(e.payments(inv.InvoiceID)); n != 1 {
		t.Fatalf("%d payments after a second post, want 1", n)
	}

	res := c.post("/pay/"+inv.InvoiceID+"/confirm", url.Values{"csrf_token": {tok}, "payment": {p.ID}})
	wantRedirect(t, res, "/pay/"+inv.InvoiceID)
	if got := e.payments(inv.InvoiceID)[0].Status; got != commands.PaymentStatusConfirmed {
		t.Fatalf("payment status %s after confirm, want CONFIRMED", got)
	}
	page = c.get("/pay/" + inv.InvoiceID)
	wantContains(t, page, "We are checking your payment", p.Extra.AccountNumber)
	// Nothing is left to do before a time: no countdown.
	wantLacks(t, page, `id="confirm"`, `role="timer"`, "Time left")
	// Confirming twice is harmless.
	res = c.post("/pay/"+inv.InvoiceID+"/confirm", url.Values{"csrf_token": {tok}, "payment": {p.ID}})
	wantRedirect(t, res, "/pay/"+inv.InvoiceID)

	// Past expires_at a confirmed payment still waits for the gateway.
	e.advance(25 * time.Minute)
	if st := c.status(inv.InvoiceID); st["phase"] != "confirmed" || st["final"] != false {
		t.Errorf("confirmed past expiry: status = %v, want phase confirmed, not final", st)
	}

	// The operator processes it: success, and the way back to the shop.
	e.process(p)
	st = c.status(inv.InvoiceID)
	if st["phase"] != "success" || st["invoice_status"] != "success" || st["payment_status"] != "PROCESSED" ||
		st["final"] != true || st["redirect_url"] != "https://shop.example/ok" {
		t.Errorf("status after processing = %v", st)
	}
	page = c.get("/pay/" + inv.InvoiceID)
	wantContains(t, page, "Payment received. Thank you!", `href="https://shop.example/ok"`, "Return to the shop")
	wantLacks(t, page, p.Extra.AccountNumber, `name="csrf_token"`)
}

func TestPayCancelThenChooseAgain(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice(invoiceOpts{amount: "1500", currency: "XOF"})
	c := e.client()
	tok := c.chooseMethod(inv.InvoiceID, "mtn-ci.xof")
	first := e.payments(inv.InvoiceID)[0]
	page := c.get("/pay/" + inv.InvoiceID)
	wantContains(t, page, "Phone number", "Operator", esc(first.Extra.AccountNumber))

	res := c.post("/pay/"+inv.InvoiceID+"/cancel", url.Values{"csrf_token": {tok}, "payment": {first.ID}})
	wantRedirect(t, res, "/pay/"+inv.InvoiceID)
	page = c.get("/pay/" + inv.InvoiceID)
	wantContains(t, page, "Choose a payment method")
	wantLacks(t, page, esc(first.Extra.AccountNumber))

	// A cancelled payment cannot be confirmed.
	head := e.store.Head()
	res = c.post("/pay/"+inv.InvoiceID+"/confirm", url.Values{"csrf_token": {tok}, "payment": {first.ID}})
	wantStatus(t, res, http.StatusConflict)
	wantContains(t, res, "This payment can no longer be confirmed.")
	// Nor can a payment of another invoice.
	res = c.post("/pay/"+inv.InvoiceID+"/confirm", url.Values{"csrf_token": {tok}, "payment": {"999999"}})
	wantStatus(t, res, http.StatusBadRequest)
	e.unchanged(head)

	c.chooseMethod(inv.InvoiceID, "wave-ci.xof")
	ps := e.payments(inv.InvoiceID)
	if len(ps) != 2 || ps[0].Status != commands.PaymentStatusCancelled || ps[1].Method != "wave-ci.xof" {
		t.Fatalf("payments = %+v, want the cancelled one and a new wave-ci.xof", ps)
	}
}

func TestPayEInvoiceHasItsFixedMethod(t *testing.T) {
	e := newEnv(t)
	rate, _ := e.views.Rate("UAH")
	inv, err := e.svc.CreateEInvoice(e.ctx, commands.CreateEInvoice{Meta: e.meta(), InvoiceID: ulid.Make(),
		MerchantID: e.merchant, PaymentID: "order-77", Method: "visamaster.uah", Amount: "990.00",
		Description: "Gift card", Rate: dec(rate.Rate)})
	if err != nil {
		t.Fatal(err)
	}
	c := e.client()
	res := c.get("/pay/" + inv.InvoiceID)
	wantStatus(t, res, http.StatusOK)
	wantContains(t, res, "<legend>Payment method</legend>", `value="visamaster.uah" required checked`, "990.00 UAH", "Gift card")
	c.chooseMethod(inv.InvoiceID, "visamaster.uah")
	page := c.get("/pay/" + inv.InvoiceID)
	wantContains(t, page, "I have paid")
	wantLacks(t, page, "Choose another method")
}

func TestPayExpiredInvoice(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice(invoiceOpts{fail: "https://shop.example/failed"})
	c := e.client()
	page := c.get("/pay/" + inv.InvoiceID)
	tok := formToken(t, page.body)

	// Past expires_at, before the scheduler has run: the page says so and
	// refuses a payment.
	e.advance(21 * time.Minute)
	head := e.store.Head()
	res := c.post("/pay/"+inv.InvoiceID+"/method", url.Values{"csrf_token": {tok}, "method": {"visamaster.uah"}})
	wantStatus(t, res, http.StatusConflict)
	wantContains(t, res, "This invoice can no longer be paid.", "Time is up")
	e.unchanged(head)
	st := c.status(inv.InvoiceID)
	if st["phase"] != "expired" || st["final"] != true || st["redirect_url"] != "https://shop.example/failed" {
		t.Errorf("status = %v", st)
	}

	// After the scheduler's command, the same.
	if _, err := e.svc.ExpireInvoice(e.ctx, commands.ExpireInvoice{Meta: e.meta(), InvoiceID: inv.InvoiceID}); err != nil {
		t.Fatal(err)
	}
	page = c.get("/pay/" + inv.InvoiceID)
	wantStatus(t, page, http.StatusOK)
	wantContains(t, page, "Time is up", `href="https://shop.example/failed"`)
	wantLacks(t, page, "Choose a payment method", `role="timer"`)
	if st := c.status(inv.InvoiceID); st["invoice_status"] != "expired" || st["phase"] != "expired" {
		t.Errorf("status = %v", st)
	}
}

// TestPayPendingPaymentOutlivesExpiry: past expires_at, a PENDING payment
// is not the end: the customer may have sent the money at the last minute,
// and a late payment still pays the invoice (docs/payments.md). The page
// keeps its details and "I have paid" (not final, no redirect), says the
// time is up but a payment already sent is still being checked, and shows
// no countdown and no other method; the same once the scheduler expired the
// invoice. Before, the page said the invoice could no longer be paid, hid
// the details and sent the customer to fail_url, and the invoice then ended
// success.
func TestPayPendingPaymentOutlivesExpiry(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice(invoiceOpts{success: "https://shop.example/ok", fail: "https://shop.example/failed"})
	id := inv.InvoiceID
	c := e.client()
	tok := c.chooseMethod(id, "visamaster.uah")
	p := e.payments(id)[0]

	e.advance(21 * time.Minute)
	check := func(invoiceStatus string) {
		t.Helper()
		st := c.status(id)
		msg, _ := st["message"].(string)
		if st["phase"] != "pay" || st["final"] != false || st["redirect_url"] != nil || st["invoice_status"] != invoiceStatus ||
			!strings.HasPrefix(msg, "Time is up") || !strings.Contains(msg, "still being checked") {
			t.Errorf("status = %v, want phase pay, not final, saying the time is up", st)
		}
		page := c.get("/pay/" + id)
		wantStatus(t, page, http.StatusOK)
		wantContains(t, page, esc(msg), `data-final="false"`, `id="details"`, esc(p.Extra.AccountNumber), `id="confirm"`,
			`<p id="final-actions" hidden>`)
		wantLacks(t, page, `role="timer"`, "Time left", "Choose another method", "can no longer be paid")
	}
	check(commands.InvoiceStatusPending)
	if _, err := e.svc.ExpireInvoice(e.ctx, commands.ExpireInvoice{Meta: e.meta(), InvoiceID: id}); err != nil {
		t.Fatal(err)
	}
	check(commands.InvoiceStatusExpired)

	res := c.post("/pay/"+id+"/confirm", url.Values{"csrf_token": {tok}, "payment": {p.ID}})
	wantRedirect(t, res, "/pay/"+id)
	if st := c.status(id); st["phase"] != "confirmed" || st["final"] != false {
		t.Errorf("confirmed past expiry: status = %v", st)
	}
	wantLacks(t, c.get("/pay/"+id), `role="timer"`, "Time left")

	e.process(p)
	if st := c.status(id); st["phase"] != "success" || st["final"] != true || st["redirect_url"] != "https://shop.example/ok" {
		t.Errorf("status after the late payment = %v, want success", st)
	}
}

func TestPayFinalStatuses(t *testing.T) {
	for _, tc := range []struct {
		name, phase, text string
		act               func(e *env, inv *commands.Invoice, paymentID string)
	}{
		{"cancelled by the merchant", "cancelled", "cancelled by the shop", func(e *env, inv *commands.Invoice, _ string) {
			if _, err := e.svc.CancelInvoice(e.ctx, commands.CancelInvoice{Meta: e.meta(), MerchantID: e.merchant, InvoiceID: inv.InvoiceID}); err != nil {
				e.t.Fatal(err)
			}
		}},
		{"rejected past expires_at", "expired", "Time is up", func(e *env, _ *commands.Invoice, pid string) {
			if _, err := e.svc.TransitionPayment(e.ctx, commands.PaymentTransition{Meta: e.meta(), PaymentID: pid, Status: commands.PaymentStatusRejected}); err != nil {
				e.t.Fatal(err)
			}
			e.advance(21 * time.Minute)
		}},
		{"underpaid", "underpaid", "less than the amount due", func(e *env, _ *commands.Invoice, pid string) {
			if _, err := e.svc.ProcessPayment(e.ctx, commands.ProcessPayment{Meta: e.meta(), PaymentID: pid, PaidAmount: "100.00"}); err != nil {
				e.t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			inv := e.invoice(invoiceOpts{success: "https://shop.example/ok", fail: "https://shop.example/failed"})
			c := e.client()
			c.chooseMethod(inv.InvoiceID, "visamaster.uah")
			p := e.payments(inv.InvoiceID)[0]
			tc.act(e, inv, strings.TrimPrefix(p.Stream, "payment-"))
			st := c.status(inv.InvoiceID)
			if st["phase"] != tc.phase || st["final"] != true || st["redirect_url"] != "https://shop.example/failed" {
				t.Errorf("status = %v, want phase %s, final, fail_url", st, tc.phase)
			}
			page := c.get("/pay/" + inv.InvoiceID)
			wantContains(t, page, tc.text, `href="https://shop.example/failed"`)
			wantLacks(t, page, "I have paid")
		})
	}
}

// TestPayFailedPaymentOffersMethods: a payment the gateway rejected or
// failed ends the payment, not the invoice: while the invoice is pending and
// before expires_at, the page says the payment did not go through and offers
// the methods again (phase failed, not final, no redirect), and a new
// payment can be made. It never says no money was taken: after a gateway
// error the customer may have paid, and is told to ask the shop before
// paying again. Before, the page ended on the first failure: fail_url, and
// 409 on a new method, though the API took a new payment.
func TestPayFailedPaymentOffersMethods(t *testing.T) {
	for _, tc := range []struct {
		status string
		text   string
	}{
		{commands.PaymentStatusRejected, "The payment was declined."},
		{commands.PaymentStatusError, "If you already sent the money, please contact the shop before paying again"},
	} {
		t.Run(tc.status, func(t *testing.T) {
			e := newEnv(t)
			inv := e.invoice(invoiceOpts{success: "https://shop.example/ok", fail: "https://shop.example/failed"})
			id := inv.InvoiceID
			c := e.client()
			c.chooseMethod(id, "visamaster.uah")
			first := e.payments(id)[0]
			e.transition(first, tc.status)

			st := c.status(id)
			if st["phase"] != "failed" || st["final"] != false || st["redirect_url"] != nil || st["payment_status"] != tc.status {
				t.Errorf("status = %v, want phase failed, not final, no redirect", st)
			}
			if msg, _ := st["message"].(string); !strings.Contains(msg, tc.text) || strings.Contains(msg, "No money was taken") {
				t.Errorf("message %q, want %q and no claim that no money was taken", msg, tc.text)
			}
			page := c.get("/pay/" + id)
			wantStatus(t, page, http.StatusOK)
			wantContains(t, page, esc(tc.text), `data-final="false"`, `<legend>Choose a payment method</legend>`,
				`value="visamaster.uah"`, `role="timer"`, `<p id="final-actions" hidden>`)
			wantLacks(t, page, "No money was taken", "I have paid", esc(first.Extra.AccountNumber))

			c.chooseMethod(id, "visamaster.uah")
			ps := e.payments(id)
			if len(ps) != 2 || ps[1].Status != commands.PaymentStatusPending {
				t.Fatalf("payments after choosing again = %+v, want a new PENDING one", ps)
			}
			wantContains(t, c.get("/pay/"+id), "I have paid", esc(ps[1].Extra.AccountNumber))
			e.process(ps[1])
			if st := c.status(id); st["phase"] != "success" || st["redirect_url"] != "https://shop.example/ok" {
				t.Errorf("status after paying = %v", st)
			}
		})
	}
}

// TestPayFinalPageSaysItWillLeave: a final page with somewhere to go says,
// in its status, that it takes the customer back to the shop, and has a
// "Stay on this page" button beside the link (WCAG 2.2.1: a time limit the
// user can turn off), both hidden until the script, which alone redirects,
// shows them. A final page with nowhere to go says nothing of leaving. Before, a page
// loaded already final left after 3 s without a word or a way to stay.
func TestPayFinalPageSaysItWillLeave(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice(invoiceOpts{success: "https://shop.example/ok"})
	c := e.client()
	c.chooseMethod(inv.InvoiceID, "visamaster.uah")
	e.process(e.payments(inv.InvoiceID)[0])
	page := c.get("/pay/" + inv.InvoiceID)
	wantContains(t, page, `<span id="redirect-note" hidden> You will be taken back to the shop in 3 seconds.</span></p>`,
		`<button type="button" class="secondary" id="stay" hidden>Stay on this page</button>`,
		`href="https://shop.example/ok">Return to the shop</a>`)

	other := e.invoice(invoiceOpts{})
	c.chooseMethod(other.InvoiceID, "visamaster.uah")
	e.process(e.payments(other.InvoiceID)[0])
	wantLacks(t, c.get("/pay/"+other.InvoiceID), `id="redirect-note"`)
}

func TestPayFinalWithoutURLSaysSo(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice(invoiceOpts{})
	c := e.client()
	c.chooseMethod(inv.InvoiceID, "visamaster.uah")
	e.process(e.payments(inv.InvoiceID)[0])
	if st := c.status(inv.InvoiceID); st["final"] != true || st["redirect_url"] != nil {
		t.Errorf("status = %v, want final with a null redirect_url", st)
	}
	page := c.get("/pay/" + inv.InvoiceID)
	wantContains(t, page, "Payment received", "You can close this page now.")
	if strings.Contains(page.body, `<span id="close-note" hidden`) {
		t.Error("the close note is hidden")
	}
}

func TestPayRefusesBadTokens(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice(invoiceOpts{})
	other := e.invoice(invoiceOpts{})
	c := e.client()
	page := c.get("/pay/" + inv.InvoiceID)
	tok := formToken(t, page.body)
	otherTok := formToken(t, c.get("/pay/"+other.InvoiceID).body)
	head := e.store.Head()
	for name, form := range map[string]url.Values{
		"no token":                {"method": {"visamaster.uah"}},
		"forged token":            {"method": {"visamaster.uah"}, "csrf_token": {"AAAA" + tok[4:]}},
		"another invoice's token": {"method": {"visamaster.uah"}, "csrf_token": {otherTok}},
	} {
		t.Run(name, func(t *testing.T) {
			for _, action := range []string{"method", "confirm", "cancel"} {
				res := c.post("/pay/"+inv.InvoiceID+"/"+action, form)
				wantStatus(t, res, http.StatusForbidden)
				wantContains(t, res, "Please try again")
			}
		})
	}
	// A token without its cookie (another browser) is refused too.
	fresh := e.client()
	res := fresh.post("/pay/"+inv.InvoiceID+"/method", url.Values{"method": {"visamaster.uah"}, "csrf_token": {tok}})
	wantStatus(t, res, http.StatusForbidden)
	e.unchanged(head)
	if n := len(e.payments(inv.InvoiceID)); n != 0 {
		t.Fatalf("%d payments after refused posts", n)
	}
}

func TestPayUnknownMethod(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice(invoiceOpts{})
	c := e.client()
	tok := formToken(t, c.get("/pay/"+inv.InvoiceID).body)
	head := e.store.Head()
	for _, m := range []string{"", "no-such-method", "wave-ci.xof" /* another currency */} {
		res := c.post("/pay/"+inv.InvoiceID+"/method", url.Values{"csrf_token": {tok}, "method": {m}})
		wantStatus(t, res, http.StatusBadRequest)
		wantContains(t, res, `role="alert"`, "Choose one of the payment methods listed.", `name="method"`,
			"<title>Error: Pay 1500.00 UAH")
	}
	e.unchanged(head)
}

func TestPayNotFound(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	for _, p := range []string{
		"/pay/00000000-0000-0000-0000-000000000000",
		"/pay/" + strings.Repeat("a", 100),
		"/pay/..%2f..%2fetc",
		"/w/00000000-0000-0000-0000-000000000000",
		"/pay/a/b/c/d",
		"/elsewhere",
	} {
		res := c.get(p)
		wantStatus(t, res, http.StatusNotFound)
		wantContains(t, res, "Page not found", `<html lang="en">`)
		if res.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("%s: 404 without CSP", p)
		}
	}
	res := c.get("/pay/00000000-0000-0000-0000-000000000000/status")
	wantStatus(t, res, http.StatusNotFound)
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("status 404 Content-Type %q", ct)
	}
}

// An invoice's id in upper or mixed case names it on every payment page
// route: payment_link has it in lower case, but a shop or a customer may
// have upper-cased the UUID. Before, each answered 404.
func TestPayInvoiceIDInAnyCase(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice(invoiceOpts{})
	id := inv.InvoiceID
	upper, mixed := strings.ToUpper(id), id[:18]+strings.ToUpper(id[18:])
	if upper == id {
		t.Skip("the invoice's id has no letter") // one in millions
	}
	c := e.client()
	page := c.get("/pay/" + upper)
	wantStatus(t, page, http.StatusOK)
	tok := formToken(t, page.body)
	if st := c.status(mixed); st["invoice_id"] != id {
		t.Errorf("status of %s: %v", mixed, st)
	}
	res := c.post("/pay/"+mixed+"/method", url.Values{"csrf_token": {tok}, "method": {"visamaster.uah"}})
	wantRedirect(t, res, "/pay/"+id+"#details")
	ps := e.payments(id)
	if len(ps) != 1 {
		t.Fatalf("payments after choosing through %s: %+v", mixed, ps)
	}
	res = c.post("/pay/"+upper+"/confirm", url.Values{"csrf_token": {tok}, "payment": {ps[0].ID}})
	wantRedirect(t, res, "/pay/"+id)
	if got := e.payments(id)[0].Status; got != commands.PaymentStatusConfirmed {
		t.Fatalf("payment status %s after confirming through %s, want CONFIRMED", got, upper)
	}
}

func TestPayMethodNotAllowed(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice(invoiceOpts{})
	c := e.client()
	for path, allow := range map[string]string{
		"/pay/" + inv.InvoiceID:             "GET, HEAD",
		"/pay/" + inv.InvoiceID + "/method": "POST",
		"/w/x":                              "GET, HEAD, POST",
	} {
		res := c.do(http.MethodPut, path, url.Values{})
		wantStatus(t, res, http.StatusMethodNotAllowed)
		if got := res.Header.Get("Allow"); got != allow {
			t.Errorf("PUT %s: Allow %q, want %q", path, got, allow)
		}
	}
}

func TestPayPageEscapesMerchantText(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice(invoiceOpts{purpose: `<script>alert("x")</script><img src=x onerror=alert(1)>`})
	res := e.client().get("/pay/" + inv.InvoiceID)
	wantStatus(t, res, http.StatusOK)
	wantLacks(t, res, "<script>alert", "<img src=x")
	wantContains(t, res, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;")
}

func TestStaticFiles(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	page := c.get("/pay/" + e.invoice(invoiceOpts{}).InvoiceID)
	i := strings.Index(page.body, "/pay/static/")
	j := strings.Index(page.body[i:], "/pages.css")
	if i < 0 || j < 0 {
		t.Fatalf("no stylesheet link in the page")
	}
	prefix := page.body[i : i+j]
	for file, ct := range map[string]string{"pages.css": "text/css; charset=utf-8", "pay.js": "text/javascript; charset=utf-8", "widget.js": "text/javascript; charset=utf-8"} {
		res := c.get(prefix + "/" + file)
		wantStatus(t, res, http.StatusOK)
		if got := res.Header.Get("Content-Type"); got != ct {
			t.Errorf("%s: Content-Type %q, want %q", file, got, ct)
		}
		if got := res.Header.Get("Cache-Control"); !strings.Contains(got, "immutable") {
			t.Errorf("%s: Cache-Control %q, want immutable", file, got)
		}
	}
	if res := c.get("/pay/static/old/pages.css"); res.StatusCode != http.StatusOK || strings.Contains(res.Header.Get("Cache-Control"), "immutable") {
		t.Errorf("an old version: %d %q, want 200 briefly cached", res.StatusCode, res.Header.Get("Cache-Control"))
	}
	wantStatus(t, c.get(prefix+"/nope.js"), http.StatusNotFound)
}

func TestRequestIDBecomesCorrelation(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice(invoiceOpts{})
	c := e.client()
	tok := formToken(t, c.get("/pay/"+inv.InvoiceID).body)
	req, _ := http.NewRequest(http.MethodPost, c.srv.URL+"/pay/"+inv.InvoiceID+"/method",
		strings.NewReader(url.Values{"csrf_token": {tok}, "method": {"visamaster.uah"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Request-Id", "req-from-the-edge")
	res, err := c.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("X-Request-Id") != "req-from-the-edge" {
		t.Fatalf("status %d, X-Request-Id %q", res.StatusCode, res.Header.Get("X-Request-Id"))
	}
	evs, err := e.store.ReadStream(e.ctx, e.payments(inv.InvoiceID)[0].Stream, 1)
	if err != nil || len(evs) == 0 {
		t.Fatalf("payment stream: %v", err)
	}
	if evs[0].Correlation != "req-from-the-edge" {
		t.Errorf("payment.created correlation %q, want the request id", evs[0].Correlation)
	}
}

// TestPayPostsRateLimited: the payment page takes DefaultPayBurst POSTs on
// one invoice at once, then DefaultPayRate a second: a script looping
// "choose a method", "choose another method" (each a payment, and
// webhooks to the merchant) is answered the page with 429 and
// Retry-After, appending nothing. Once the bucket refills, the page works
// again; another invoice has a bucket of its own.
func TestPayPostsRateLimited(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice(invoiceOpts{})
	c := e.client()
	id := inv.InvoiceID
	tok := formToken(t, c.get("/pay/"+id).body)
	choose := func() response {
		return c.post("/pay/"+id+"/method", url.Values{"csrf_token": {tok}, "method": {"visamaster.uah"}})
	}
	for i := 0; i < pages.DefaultPayBurst; i += 2 {
		wantRedirect(t, choose(), "/pay/"+id+"#details")
		ps := e.payments(id)
		res := c.post("/pay/"+id+"/cancel", url.Values{"csrf_token": {tok}, "payment": {ps[len(ps)-1].ID}})
		wantRedirect(t, res, "/pay/"+id)
	}
	head := e.store.Head()
	res := choose()
	wantStatus(t, res, http.StatusTooManyRequests)
	wantContains(t, res, "Please try again in a few seconds.", `value="visamaster.uah"`)
	if got := res.Header.Get("Retry-After"); got != "5" {
		t.Errorf("Retry-After %q, want 5", got)
	}
	res = c.post("/pay/"+id+"/confirm", url.Values{"csrf_token": {tok}, "payment": {"1"}})
	wantStatus(t, res, http.StatusTooManyRequests)
	e.unchanged(head)
	if n := len(e.payments(id)); n != pages.DefaultPayBurst/2 {
		t.Fatalf("%d payments, want %d", n, pages.DefaultPayBurst/2)
	}

	c.chooseMethod(e.invoice(invoiceOpts{}).InvoiceID, "visamaster.uah")
	e.advance(5 * time.Second)
	wantRedirect(t, choose(), "/pay/"+id+"#details")
}

// cancelledPayments gives an invoice n payments, each cancelled.
func (e *env) cancelledPayments(invoiceID string, n int) {
	e.t.Helper()
	for range n {
		p, _, err := e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(),
			InvoiceID: invoiceID, Method: "visamaster.uah"})
		if err != nil {
			e.t.Fatal(err)
		}
		if _, err := e.svc.TransitionPayment(e.ctx, commands.PaymentTransition{Meta: e.meta(), PaymentID: p.PaymentID,
			Status: commands.PaymentStatusCancelled, By: commands.ByCustomer}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// TestPayTooManyPayments: an invoice with one payment fewer than
// commands.MaxPaymentsPerInvoice still offers the methods. At the cap, with
// no live payment, the page offers none (choosing could only be refused)
// but says no more attempts can be made, with the link back to the shop,
// and the status is phase "exhausted", not final: the invoice may still
// expire or be cancelled. A form posted from an older rendering is refused
// with 409, saying so, nothing appended.
func TestPayTooManyPayments(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice(invoiceOpts{fail: "https://shop.example/failed"})
	id := inv.InvoiceID
	e.cancelledPayments(id, commands.MaxPaymentsPerInvoice-1)
	c := e.client()
	page := c.get("/pay/" + id)
	wantStatus(t, page, http.StatusOK)
	wantContains(t, page, "Choose how you want to pay.", `<legend>Choose a payment method</legend>`, `value="visamaster.uah"`, `role="timer"`)
	if st := c.status(id); st["phase"] != "choose" || st["final"] != false {
		t.Errorf("status with %d payments = %v, want phase choose", commands.MaxPaymentsPerInvoice-1, st)
	}
	tok := formToken(t, page.body)

	e.cancelledPayments(id, 1)
	const exhausted = "No more payment attempts can be made for this invoice. Please ask the shop for a new invoice."
	page = c.get("/pay/" + id)
	wantStatus(t, page, http.StatusOK)
	wantContains(t, page, esc(exhausted), `status-exhausted`, `data-phase="exhausted"`, `data-final="false"`,
		`<p id="final-actions">`, `href="https://shop.example/failed"`)
	wantLacks(t, page, `name="method"`, "Choose a payment method", "Choose how you want to pay.", `role="timer"`, `action="/pay/`+id+`/method"`)
	st := c.status(id)
	if st["phase"] != "exhausted" || st["final"] != false || st["message"] != exhausted || st["redirect_url"] != nil ||
		st["invoice_status"] != "pending" || st["payment_status"] != "CANCELLED" {
		t.Errorf("status with %d payments = %v, want phase exhausted, not final", commands.MaxPaymentsPerInvoice, st)
	}

	head := e.store.Head()
	res := c.post("/pay/"+id+"/method", url.Values{"csrf_token": {tok}, "method": {"visamaster.uah"}})
	wantStatus(t, res, http.StatusConflict)
	wantContains(t, res, "Too many payment attempts were made for this invoice.", esc(exhausted))
	wantLacks(t, res, `name="method"`)
	e.unchanged(head)

	// Expiry ends it as for any invoice.
	e.advance(21 * time.Minute)
	if st := c.status(id); st["phase"] != "expired" || st["final"] != true || st["redirect_url"] != "https://shop.example/failed" {
		t.Errorf("status after expires_at = %v", st)
	}
}

// Once a commit failed after bbolt made it visible (ledger.ErrFailed), the
// views show it though the disk may not hold it: the pages serve nothing
// from them (503) until a restart, except their static files.
func TestFailedLogServesNoPage(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice(invoiceOpts{})
	c := e.client()
	if res := c.get("/pay/" + inv.InvoiceID); res.StatusCode != http.StatusOK {
		t.Fatalf("payment page before the fault: %d", res.StatusCode)
	}
	restore := boltlogtest.FailMetaSync(t, e.store)
	_, err := e.svc.CancelInvoice(e.ctx, commands.CancelInvoice{Meta: e.meta(), MerchantID: e.merchant, InvoiceID: inv.InvoiceID})
	restore()
	if !errors.Is(err, ledger.ErrFailed) {
		t.Fatalf("cancel whose commit failed: %v, want ledger.ErrFailed", err)
	}
	page := c.get("/pay/" + inv.InvoiceID)
	if page.StatusCode != http.StatusServiceUnavailable || strings.Contains(page.body, "ancel") {
		t.Errorf("payment page on a failed log: %d\n%s", page.StatusCode, page.body)
	}
	if res := c.get("/pay/" + inv.InvoiceID + "/status"); res.StatusCode != http.StatusServiceUnavailable ||
		res.Header.Get("Content-Type") != "application/json" || strings.Contains(res.body, "cancelled") {
		t.Errorf("status poll on a failed log: %d %s", res.StatusCode, res.body)
	}
	if res := c.post("/pay/"+inv.InvoiceID+"/confirm", url.Values{}); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("POST on a failed log: %d", res.StatusCode)
	}
	i := strings.Index(page.body, "/pay/static/")
	j := strings.Index(page.body[max(i, 0):], "/pages.css")
	if i < 0 || j < 0 {
		t.Fatalf("the 503 page links no stylesheet:\n%s", page.body)
	}
	if res := c.get(page.body[i : i+j+len("/pages.css")]); res.StatusCode != http.StatusOK {
		t.Errorf("stylesheet on a failed log: %d", res.StatusCode)
	}
}
