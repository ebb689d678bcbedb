package pages_test

import (
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/http/pages"
)

func unlimitedWidget() commands.CreateWidget {
	return commands.CreateWidget{
		Kind:        commands.WidgetUnlimited,
		Description: "Donations to the shelter",
		LogoURL:     "https://shop.example/logo.png",
		ReturnURL:   "https://shop.example/back",
		SupportURL:  "https://shop.example/support",
	}
}

var payLocationRE = regexp.MustCompile(`^/pay/([0-9a-f-]{36})#details$`)

// widgetInvoice follows a widget POST's redirect to its invoice id.
func widgetInvoice(t *testing.T, res response) string {
	t.Helper()
	wantStatus(t, res, http.StatusSeeOther)
	m := payLocationRE.FindStringSubmatch(res.Header.Get("Location"))
	if m == nil {
		t.Fatalf("Location %q, want /pay/{invoice_id}#details", res.Header.Get("Location"))
	}
	return m[1]
}

func TestWidgetPageUnlimited(t *testing.T) {
	e := newEnv(t)
	w := e.widget(unlimitedWidget())
	res := e.client().get("/w/" + w.WidgetID)
	wantStatus(t, res, http.StatusOK)
	wantContains(t, res,
		`<html lang="en">`, `name="viewport"`, "Demo Shop",
		`<img src="https://shop.example/logo.png" alt="Demo Shop"`,
		"<h1>Donations to the shelter</h1>",
		`<label for="method">Payment method</label>`, `<select id="method" name="method" required`,
		`<optgroup label="UAH">`, `<optgroup label="XOF">`,
		`value="visamaster.uah" data-currency="UAH"`, `value="wave-ci.xof" data-currency="XOF"`,
		`<label for="amount">Amount</label>`, `id="amount" name="amount"`, `inputmode="decimal"`,
		`href="https://shop.example/back"`, "Back to the shop",
		`href="https://shop.example/support"`, "Contact support",
		`aria-label="Shop links"`, "widget.js", `name="csrf_token"`)
	// No rate for USD, NGN, BTC...: their methods are not offered.
	wantLacks(t, res, `visamaster.usd`, `bitcoin`, `<optgroup label="NGN">`)
	if res.Header.Get("Cache-Control") != "no-store" || res.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("headers %v", res.Header)
	}
}

func TestWidgetUnlimitedCreatesInvoiceAndPayment(t *testing.T) {
	e := newEnv(t)
	w := e.widget(unlimitedWidget())
	c := e.client()
	tok := formToken(t, c.get("/w/"+w.WidgetID).body)
	res := c.post("/w/"+w.WidgetID, url.Values{"csrf_token": {tok}, "method": {"visamaster.uah"}, "amount": {" 250,50 "}})
	id := widgetInvoice(t, res)

	inv, err := e.views.InvoicePublic(id)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Amount != "250.50" || inv.Currency != "UAH" || inv.WidgetID != w.WidgetID || inv.Method != "visamaster.uah" ||
		inv.Source != commands.SourceWidget || inv.SuccessURL != "https://shop.example/back" {
		t.Errorf("invoice = %+v", inv)
	}
	ps := e.payments(id)
	if len(ps) != 1 || ps[0].Status != commands.PaymentStatusPending {
		t.Fatalf("payments = %+v, want one PENDING", ps)
	}
	page := c.get("/pay/" + id)
	wantContains(t, page, "250.50 UAH", "Donations to the shelter", "I have paid", esc(ps[0].Extra.AccountNumber))
}

// TestWidgetDecimalComma: a comma that cannot group thousands is the
// decimal separator: not followed by exactly three digits, or after a
// zero or more than three digits.
func TestWidgetDecimalComma(t *testing.T) {
	e := newEnv(t)
	w := e.widget(unlimitedWidget())
	c := e.client()
	for typed, want := range map[string]string{"0,5": "0.5", "12,5": "12.5", "1500,5": "1500.5", "1,5000": "1.5", "0,500": "0.5", "1500,000": "1500"} {
		tok := formToken(t, c.get("/w/"+w.WidgetID).body)
		id := widgetInvoice(t, c.post("/w/"+w.WidgetID, url.Values{"csrf_token": {tok}, "method": {"usdt_trc20"}, "amount": {typed}}))
		inv, err := e.views.InvoicePublic(id)
		if err != nil {
			t.Fatal(err)
		}
		if !dec(inv.Amount).Equal(dec(want)) {
			t.Errorf("%q made an invoice of %s USDT, want %s", typed, inv.Amount, want)
		}
	}
}

func TestWidgetSingle(t *testing.T) {
	e := newEnv(t)
	w := e.widget(commands.CreateWidget{Kind: commands.WidgetSingle, FiatCurrency: "XOF", FiatAmount: "5000",
		Description: "Concert ticket"})
	c := e.client()
	page := c.get("/w/" + w.WidgetID)
	wantStatus(t, page, http.StatusOK)
	wantContains(t, page, "Concert ticket", `<span class="amount">5000 XOF</span>`, `value="orange_money-ci.xof"`)
	wantLacks(t, page, `id="amount"`, `<optgroup label="UAH">`, "<img", "Back to the shop")

	// A single widget ignores any amount sent.
	res := c.post("/w/"+w.WidgetID, url.Values{"csrf_token": {formToken(t, page.body)}, "method": {"wave-ci.xof"}, "amount": {"1"}})
	id := widgetInvoice(t, res)
	inv, err := e.views.InvoicePublic(id)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Amount != "5000" || inv.Currency != "XOF" || inv.Method != "wave-ci.xof" {
		t.Errorf("invoice = %+v", inv)
	}
}

func TestWidgetRefusesBadInput(t *testing.T) {
	e := newEnv(t)
	w := e.widget(unlimitedWidget())
	c := e.client()
	tok := formToken(t, c.get("/w/"+w.WidgetID).body)
	head := e.store.Head()
	for _, tc := range []struct {
		name, method, amount string
		status               int
		want                 []string
	}{
		{"no amount", "visamaster.uah", "", http.StatusBadRequest, []string{"Enter the amount you want to pay.", `aria-invalid="true"`, `id="amount-error"`}},
		{"not a number", "visamaster.uah", "ten", http.StatusBadRequest, []string{"Enter the amount as a number", `value="ten"`}},
		{"negative", "visamaster.uah", "-5", http.StatusBadRequest, []string{"Enter an amount greater than zero."}},
		{"zero", "visamaster.uah", "0", http.StatusBadRequest, []string{"Enter an amount greater than zero."}},
		{"too precise", "visamaster.uah", "10.005", http.StatusBadRequest, []string{"Amount must have at most 2 decimal places for UAH."}},
		{"too precise for XOF", "wave-ci.xof", "10.5", http.StatusBadRequest, []string{"whole number for XOF"}},
		{"huge", "visamaster.uah", "99999999999999999999", http.StatusBadRequest, []string{`id="amount-error"`}},
		// 0.42 UAH at 41.50 with 2% credits the merchant 0.00 USDT.
		{"too small to credit the merchant", "visamaster.uah", "0.42", http.StatusBadRequest,
			[]string{`id="amount-error"`, "Amount must be at least 0.43 UAH at the current rate"}},
		// A comma that may group thousands is not read as a decimal comma:
		// "1,500" was 1.5 (USDT), or "at most 2 decimal places" (UAH).
		{"thousands comma in USDT", "usdt_trc20", "1,500", http.StatusBadRequest,
			[]string{`id="amount-error"`, "1,500 could mean 1500 or 1.500: write the amount without thousands separators, with a dot before any decimals.", `value="1,500"`}},
		{"thousands comma in UAH", "visamaster.uah", "1,500", http.StatusBadRequest, []string{"1,500 could mean 1500 or 1.500"}},
		{"thousands commas", "visamaster.uah", "1,500,000", http.StatusBadRequest, []string{"Write the amount without thousands separators, with a dot before any decimals"}},
		{"thousands comma and decimal dot", "visamaster.uah", "1,500.50", http.StatusBadRequest, []string{"Write the amount without thousands separators"}},
		{"thousands dot and decimal comma", "visamaster.uah", "1.500,50", http.StatusBadRequest, []string{"Write the amount without thousands separators"}},
		{"no method", "", "10", http.StatusBadRequest, []string{"Choose one of the payment methods listed.", `id="method-error"`}},
		{"unknown method", "no-such.method", "10", http.StatusBadRequest, []string{"Choose one of the payment methods listed."}},
		{"method without a rate", "visamaster.usd", "10", http.StatusBadRequest, []string{"Choose one of the payment methods listed."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := c.post("/w/"+w.WidgetID, url.Values{"csrf_token": {tok}, "method": {tc.method}, "amount": {tc.amount}})
			wantStatus(t, res, tc.status)
			wantContains(t, res, tc.want...)
			wantContains(t, res, `name="csrf_token"`, "Donations to the shelter")
		})
	}
	// "1,500" in UAH is not called too precise: it is not 1.500.
	res := c.post("/w/"+w.WidgetID, url.Values{"csrf_token": {tok}, "method": {"visamaster.uah"}, "amount": {"1,500"}})
	wantLacks(t, res, "decimal places")
	// The customer's choice survives the error.
	res = c.post("/w/"+w.WidgetID, url.Values{"csrf_token": {tok}, "method": {"wave-ci.xof"}, "amount": {"x"}})
	wantContains(t, res, `value="wave-ci.xof" data-currency="XOF" selected`, `<span class="currency" id="amount-currency">XOF</span>`)
	e.unchanged(head)
}

// TestWidgetErrorTakesFocus: a form refused for a field comes back with
// that field focused (autofocus) and the title saying "Error: ", so a
// screen reader user hears that the form failed and lands where to fix it;
// a form refused as a whole has the title too. Before, nothing took the
// focus and the title was the page's own.
func TestWidgetErrorTakesFocus(t *testing.T) {
	e := newEnv(t)
	w := e.widget(unlimitedWidget())
	c := e.client()
	page := c.get("/w/" + w.WidgetID)
	wantContains(t, page, "<title>Donations to the shelter</title>")
	wantLacks(t, page, "autofocus")
	tok := formToken(t, page.body)

	res := c.post("/w/"+w.WidgetID, url.Values{"csrf_token": {tok}, "method": {"visamaster.uah"}, "amount": {"ten"}})
	wantStatus(t, res, http.StatusBadRequest)
	wantContains(t, res, "<title>Error: Donations to the shelter</title>", `aria-invalid="true" autofocus>`)
	if strings.Count(res.body, "autofocus") != 1 || !strings.Contains(res.body[strings.Index(res.body, `id="amount"`):], "autofocus") {
		t.Errorf("want autofocus on the amount alone:\n%s", res.body)
	}

	res = c.post("/w/"+w.WidgetID, url.Values{"csrf_token": {tok}, "method": {""}, "amount": {"ten"}})
	wantStatus(t, res, http.StatusBadRequest)
	wantContains(t, res, "<title>Error: Donations to the shelter</title>",
		`<select id="method" name="method" required aria-invalid="true" aria-describedby="method-error" autofocus>`)
	if n := strings.Count(res.body, "autofocus"); n != 1 {
		t.Errorf("%d fields with autofocus, want the method alone", n)
	}

	single := e.widget(commands.CreateWidget{Kind: commands.WidgetSingle, FiatCurrency: "XOF", FiatAmount: "5", Description: "Sticker"})
	page = c.get("/w/" + single.WidgetID)
	res = c.post("/w/"+single.WidgetID, url.Values{"csrf_token": {formToken(t, page.body)}, "method": {"wave-ci.xof"}})
	wantStatus(t, res, http.StatusBadRequest)
	wantContains(t, res, "<title>Error: Sticker</title>", `role="alert"`)
}

// TestWidgetSingleTooSmall: a single widget whose amount credits the
// merchant nothing at the current rate is refused with a message on the
// page (the customer has no amount field to correct), appending nothing.
func TestWidgetSingleTooSmall(t *testing.T) {
	e := newEnv(t)
	w := e.widget(commands.CreateWidget{Kind: commands.WidgetSingle, FiatCurrency: "XOF", FiatAmount: "5", Description: "Sticker"})
	c := e.client()
	page := c.get("/w/" + w.WidgetID)
	head := e.store.Head()
	res := c.post("/w/"+w.WidgetID, url.Values{"csrf_token": {formToken(t, page.body)}, "method": {"wave-ci.xof"}})
	wantStatus(t, res, http.StatusBadRequest)
	wantContains(t, res, `role="alert">This payment&#39;s amount is too small to be paid at the current exchange rate. Please contact the shop.`)
	e.unchanged(head)
}

func TestWidgetRefusesBadTokens(t *testing.T) {
	e := newEnv(t)
	w := e.widget(unlimitedWidget())
	w2 := e.widget(unlimitedWidget())
	c := e.client()
	tok := formToken(t, c.get("/w/"+w.WidgetID).body)
	tok2 := formToken(t, c.get("/w/"+w2.WidgetID).body)
	head := e.store.Head()
	for name, form := range map[string]url.Values{
		"no token":               {"method": {"visamaster.uah"}, "amount": {"10"}},
		"another widget's token": {"method": {"visamaster.uah"}, "amount": {"10"}, "csrf_token": {tok2}},
		"altered token":          {"method": {"visamaster.uah"}, "amount": {"10"}, "csrf_token": {strings.ToUpper(tok)}},
	} {
		res := c.post("/w/"+w.WidgetID, form)
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", name, res.StatusCode)
		}
	}
	// The right token from another browser (no cookie).
	res := e.client().post("/w/"+w.WidgetID, url.Values{"method": {"visamaster.uah"}, "amount": {"10"}, "csrf_token": {tok}})
	wantStatus(t, res, http.StatusForbidden)
	e.unchanged(head)
}

func TestWidgetDisabledOrExpired(t *testing.T) {
	e := newEnv(t)
	disabled := e.widget(unlimitedWidget())
	exp := unlimitedWidget()
	exp.ExpiresAt = e.clock().Add(time.Hour)
	expiring := e.widget(exp)
	c := e.client()
	tok := formToken(t, c.get("/w/"+disabled.WidgetID).body)
	tokExp := formToken(t, c.get("/w/"+expiring.WidgetID).body)

	if _, err := e.svc.ChangeWidgetStatus(e.ctx, commands.ChangeWidgetStatus{Meta: e.meta(), MerchantID: e.merchant,
		WidgetID: disabled.WidgetID, Status: commands.WidgetStatusDisabled}); err != nil {
		t.Fatal(err)
	}
	e.advance(2 * time.Hour) // past the second widget's expiry; the scheduler has not run
	head := e.store.Head()
	for id, token := range map[string]string{disabled.WidgetID: tok, expiring.WidgetID: tokExp} {
		page := c.get("/w/" + id)
		wantStatus(t, page, http.StatusGone)
		wantContains(t, page, "This payment page is not available", `href="https://shop.example/back"`, `href="https://shop.example/support"`)
		wantLacks(t, page, `name="amount"`)
		res := c.post("/w/"+id, url.Values{"csrf_token": {token}, "method": {"visamaster.uah"}, "amount": {"10"}})
		wantStatus(t, res, http.StatusGone)
	}
	e.unchanged(head)
}

func TestWidgetMerchantNotInvoicing(t *testing.T) {
	e := newEnv(t)
	w := e.widget(unlimitedWidget())
	c := e.client()
	tok := formToken(t, c.get("/w/"+w.WidgetID).body)
	off := false
	if err := e.svc.ChangeMerchantSettings(e.ctx, commands.ChangeMerchantSettings{Meta: e.meta(), MerchantID: e.merchant,
		Settings: commands.MerchantSettings{InvoicingEnabled: &off}}); err != nil {
		t.Fatal(err)
	}
	head := e.store.Head()
	res := c.post("/w/"+w.WidgetID, url.Values{"csrf_token": {tok}, "method": {"visamaster.uah"}, "amount": {"10"}})
	wantStatus(t, res, http.StatusConflict)
	wantContains(t, res, "not accepting payments right now", `role="alert"`)
	e.unchanged(head)
}

// USDT needs no operator rate (the settlement currency's rate per USDT is
// 1): the widget offers its methods and makes USDT invoices with them.
func TestWidgetOffersUSDTMethods(t *testing.T) {
	e := newEnv(t)
	w := e.widget(unlimitedWidget())
	c := e.client()
	page := c.get("/w/" + w.WidgetID)
	wantContains(t, page, `<optgroup label="USDT">`, `value="usdt_trc20" data-currency="USDT"`)
	tok := formToken(t, page.body)
	id := widgetInvoice(t, c.post("/w/"+w.WidgetID, url.Values{"csrf_token": {tok}, "method": {"usdt_trc20"}, "amount": {"25"}}))
	inv, err := e.views.InvoicePublic(id)
	if err != nil {
		t.Fatal(err)
	}
	// The amount to pay is at USDT's 6 places, as every amount in a
	// currency a customer pays; what the merchant is credited at cents.
	if inv.Currency != "USDT" || inv.Amount != "25.000000" || inv.ConversionRate != "1.00" || inv.MerchantUSDT != "24.50" {
		t.Errorf("invoice = %+v, want 25.000000 USDT at 1.00, 24.50 credited", inv)
	}
}

var hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// widgetForm is what a browser submits from a widget page: the page's
// hidden fields and the customer's entries.
func widgetForm(t *testing.T, page response, method, amount string) url.Values {
	t.Helper()
	form := url.Values{"method": {method}, "amount": {amount}}
	for _, m := range hiddenRE.FindAllStringSubmatch(page.body, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	return form
}

// widgetInvoices counts the invoice.created events of a widget in the log.
func (e *env) widgetInvoices(widgetID string) int {
	e.t.Helper()
	n := 0
	for ev, err := range e.store.Events(e.ctx, 1) {
		if err != nil {
			e.t.Fatal(err)
		}
		if ev.Type == commands.TypeInvoiceCreated && strings.Contains(string(ev.Data), widgetID) {
			n++
		}
	}
	return n
}

// TestWidgetFormSubmittedTwice: a widget form sent twice (a double click,
// or the browser sending it again) makes one invoice and one payment, and
// both answers send the customer to its payment page. A form rendered anew
// makes a new invoice (an unlimited widget takes any number), as does the
// same form sent back with other entries.
func TestWidgetFormSubmittedTwice(t *testing.T) {
	e := newEnv(t)
	w := e.widget(unlimitedWidget())
	c := e.client()
	page := c.get("/w/" + w.WidgetID)
	form := widgetForm(t, page, "visamaster.uah", "250")
	first := widgetInvoice(t, c.post("/w/"+w.WidgetID, form))
	if again := widgetInvoice(t, c.post("/w/"+w.WidgetID, form)); again != first {
		t.Fatalf("the same form sent twice made invoices %s and %s", first, again)
	}
	if n := e.widgetInvoices(w.WidgetID); n != 1 {
		t.Fatalf("%d invoices in the log after the same form was sent twice, want 1", n)
	}
	if ps := e.payments(first); len(ps) != 1 {
		t.Fatalf("payments = %+v, want one", ps)
	}

	// At once, as a double click sends it.
	form = widgetForm(t, c.get("/w/"+w.WidgetID), "visamaster.uah", "300")
	var wg sync.WaitGroup
	locs := make([]string, 2)
	errs := make([]error, 2)
	for i := range locs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequest(http.MethodPost, c.srv.URL+"/w/"+w.WidgetID, strings.NewReader(form.Encode()))
			if err != nil {
				errs[i] = err
				return
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			res, err := c.c.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			res.Body.Close()
			if res.StatusCode != http.StatusSeeOther {
				errs[i] = fmt.Errorf("status %d", res.StatusCode)
			}
			locs[i] = res.Header.Get("Location")
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	m := payLocationRE.FindStringSubmatch(locs[0])
	if m == nil || locs[1] != locs[0] {
		t.Fatalf("a double click was sent to %q and %q, want one payment page", locs[0], locs[1])
	}
	if n := e.widgetInvoices(w.WidgetID); n != 2 {
		t.Fatalf("%d invoices in the log after a double click on a second form, want 2", n)
	}
	if ps := e.payments(m[1]); len(ps) != 1 {
		t.Fatalf("payments = %+v, want one", ps)
	}

	// The first form again, with another amount: the customer went back
	// and changed it.
	changed := widgetInvoice(t, c.post("/w/"+w.WidgetID, widgetForm(t, page, "visamaster.uah", "260")))
	if changed == first || e.widgetInvoices(w.WidgetID) != 3 {
		t.Fatalf("the first form with another amount went to %s (first %s), %d invoices", changed, first, e.widgetInvoices(w.WidgetID))
	}
}

// TestWidgetFormRateLimited: a widget's form starts at most
// DefaultWidgetBurst invoices at once, then DefaultWidgetRate a second
// (the form takes no credentials: without a bound anyone could fill the log
// and the merchant's invoice list through it). A refused form is shown
// again with the customer's entries, 429 and Retry-After, and appends
// nothing; once the bucket refills, the form works again.
func TestWidgetFormRateLimited(t *testing.T) {
	e := newEnv(t)
	w := e.widget(unlimitedWidget())
	c := e.client()
	send := func() response {
		return c.post("/w/"+w.WidgetID, widgetForm(t, c.get("/w/"+w.WidgetID), "visamaster.uah", "250"))
	}
	for range pages.DefaultWidgetBurst {
		widgetInvoice(t, send())
	}
	res := send()
	wantStatus(t, res, http.StatusTooManyRequests)
	wantContains(t, res, "try again in a few seconds", `value="250"`)
	if got := res.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	if n := e.widgetInvoices(w.WidgetID); n != pages.DefaultWidgetBurst {
		t.Fatalf("%d invoices in the log, want %d: the refused form appended", n, pages.DefaultWidgetBurst)
	}
	e.advance(time.Second)
	widgetInvoice(t, send())
}
