package pages_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/payledger/payledger/commands"
)

// The browser tests drive the pages in headless Chromium: the customer's
// whole journey, JavaScript included, against the real handler.

var screenshotDir = flag.String("pages.screenshots", "",
	"write phone-size (390x844) screenshots of each page to this directory (a development aid)")

const chromiumMissing = "headless Chromium not found: install it with `apt-get install chromium` (Debian) or set PAYLEDGER_CHROMIUM"

// chromium finds the browser: $PAYLEDGER_CHROMIUM, else chromium or
// chromium-browser on PATH (.ci/run installs one unless `command -v
// chromium` finds it), else Debian's /usr/bin/chromium. Without one the
// test skips, except on CI (CI=true), where a missing browser is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PAYLEDGER_CHROMIUM"); p != "" {
		exe, err := exec.LookPath(p)
		if err != nil {
			t.Fatalf("PAYLEDGER_CHROMIUM=%s: %v", p, err)
		}
		return exe
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if exe, err := exec.LookPath(name); err == nil {
			return exe
		}
	}
	if st, err := os.Stat("/usr/bin/chromium"); err == nil && !st.IsDir() {
		return "/usr/bin/chromium"
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(chromiumMissing)
	}
	t.Skip(chromiumMissing)
	return ""
}

// TestChromiumOnPath: a browser on PATH is the one the tests use, as .ci/run
// takes `command -v chromium` finding one for the browser being there.
func TestChromiumOnPath(t *testing.T) {
	for _, name := range []string{"chromium", "chromium-browser"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			exe := filepath.Join(dir, name)
			if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PAYLEDGER_CHROMIUM", "")
			t.Setenv("PATH", dir)
			if got := chromium(t); got != exe {
				t.Fatalf("chromium() = %q, want %q on PATH", got, exe)
			}
		})
	}
}

// browser starts a headless Chromium with a fresh profile at a phone's
// viewport and returns its context, bounded by a deadline for the test's
// steps. The browser stops when the test ends.
func browser(t *testing.T) context.Context {
	t.Helper()
	exe := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // tests may run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// The test server's certificate is httptest's own.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(390, 844),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		chromedp.Cancel(ctx) // closes the browser and waits for it
		cancel()
		cancelAlloc()
	})
	// The first action starts the browser: no deadline on it (see chromedp.Run).
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2))); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	tctx, tcancel := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(tcancel)
	return tctx
}

// screenshot saves the page when -pages.screenshots is set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if *screenshotDir == "" {
		return
	}
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(*screenshotDir, name+".png"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// shopServer serves the pages and a pretend shop (success and fail pages,
// a logo) on one TLS server, as payledger and a merchant would be. Each
// wrap, if any, wraps the pages' handler (to watch or answer requests as a
// proxy in front of them would).
func shopServer(t *testing.T, e *env, wrap ...func(http.Handler) http.Handler) *httptest.Server {
	mux := http.NewServeMux()
	pages := e.h
	for _, w := range wrap {
		pages = w(pages)
	}
	mux.Handle("/pay/", pages)
	mux.Handle("/w/", pages)
	shopPage := func(id, text string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, `<!doctype html><html lang="en"><title>Shop</title><h1 id=%q>%s</h1></html>`, id, text)
		}
	}
	mux.Handle("/shop/success", shopPage("shop-success", "Thank you for your order"))
	mux.Handle("/shop/fail", shopPage("shop-fail", "Payment failed"))
	mux.Handle("/shop/back", shopPage("shop-back", "The shop"))
	logo := logoPNG(t)
	mux.HandleFunc("/shop/logo.png", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(logo)
	})
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// logoPNG is a 100x24 logo, the size seed 000 recommends.
func logoPNG(t *testing.T) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 100, 24))
	for x := 0; x < 100; x++ {
		for y := 0; y < 24; y++ {
			c := color.RGBA{0x17, 0x46, 0xc0, 0xff}
			if (x/12+y/12)%2 == 1 {
				c = color.RGBA{0xf5, 0x9e, 0x0b, 0xff}
			}
			img.Set(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func text(t *testing.T, ctx context.Context, css string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css)))
	if err != nil {
		t.Fatalf("text of %s: %v", css, err)
	}
	return strings.TrimSpace(s)
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval runs a JavaScript expression in the page and returns its value.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// waitJS waits until the JavaScript expression is true, across the page's
// navigations (chromedp.Poll runs in one document), for at most timeout.
func waitJS(t *testing.T, ctx context.Context, what, expr string, timeout time.Duration) {
	t.Helper()
	var last error
	if eventually(timeout, func() bool {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		last = err
		return err == nil && ok
	}) {
		return
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	t.Fatalf("%s: not within %s (at %s; %v)", what, timeout, loc, last)
}

// eventually checks cond until it holds, for at most timeout, and says
// whether it did.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// payingCustomer starts the pages, the pretend shop and a browser, makes
// an invoice that returns to the shop, and picks visamaster.uah on its
// page: the browser shows the payment's details.
func payingCustomer(t *testing.T) (*env, *httptest.Server, context.Context, *commands.Invoice) {
	t.Helper()
	e := newRealtimeEnv(t)
	srv := shopServer(t, e)
	ctx := browser(t)
	inv := e.invoice(invoiceOpts{success: srv.URL + "/shop/success", fail: srv.URL + "/shop/fail"})
	choose(t, ctx, srv, inv.InvoiceID, "visamaster.uah")
	return e, srv, ctx, inv
}

// choose opens an invoice's payment page and picks the method: the page
// shows the payment's details.
func choose(t *testing.T, ctx context.Context, srv *httptest.Server, invoiceID, method string) {
	t.Helper()
	do(t, ctx, "open the payment link and pick "+method,
		chromedp.Navigate(srv.URL+"/pay/"+invoiceID),
		chromedp.WaitVisible(chromedp.CSS(`input[value="`+method+`"]`)),
		chromedp.Click(chromedp.CSS(`input[value="`+method+`"]`)),
		chromedp.Click(chromedp.CSS(`#pay form button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`#details`)))
}

// TestBrowserPaymentFlow: open the payment link, pick a method, see the
// details, say "I have paid"; the operator processes the payment; the page
// shows success without a reload and sends the customer to success_url.
func TestBrowserPaymentFlow(t *testing.T) {
	e := newRealtimeEnv(t)
	srv := shopServer(t, e)
	ctx := browser(t)
	inv := e.invoice(invoiceOpts{amount: "15000", currency: "XOF",
		success: srv.URL + "/shop/success", fail: srv.URL + "/shop/fail"})

	do(t, ctx, "open the payment link",
		chromedp.Navigate(srv.URL+"/pay/"+inv.InvoiceID),
		chromedp.WaitVisible(chromedp.CSS(`input[value="orange_money-ci.xof"]`)))
	if got := text(t, ctx, "h1 .amount"); got != "15000 XOF" {
		t.Errorf("amount %q", got)
	}
	// The countdown runs: 20 minutes, minus the seconds the test took.
	if got := text(t, ctx, "#countdown"); !regexp.MustCompile(`^(20:00|19:[0-5]\d)$`).MatchString(got) {
		t.Errorf("countdown %q", got)
	}
	screenshot(t, ctx, "pay-choose")

	do(t, ctx, "pick a method",
		chromedp.Click(chromedp.CSS(`input[value="orange_money-ci.xof"]`)),
		chromedp.Click(chromedp.CSS(`#pay form button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`#details`)))
	ps := e.payments(inv.InvoiceID)
	if len(ps) != 1 {
		t.Fatalf("%d payments, want 1", len(ps))
	}
	p := ps[0]
	if got := text(t, ctx, "#account-number"); got != p.Extra.AccountNumber {
		t.Errorf("account number on the page %q, want %q", got, p.Extra.AccountNumber)
	}
	if got := text(t, ctx, "#account-name"); got != p.Extra.AccountName {
		t.Errorf("account name %q, want %q", got, p.Extra.AccountName)
	}
	if got := text(t, ctx, "#pay-amount"); got != "15000 XOF" {
		t.Errorf("amount to pay %q", got)
	}
	screenshot(t, ctx, "pay-details")

	do(t, ctx, "say I have paid",
		chromedp.Click(chromedp.CSS(`#confirm`)),
		chromedp.WaitVisible(chromedp.CSS(`#status.status-confirmed`)))
	// A mark on this document: it survives only if the page never reloads.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.sameDocument = true`)); err != nil {
		t.Fatal(err)
	}

	e.process(p) // the operator: the sandbox gateway received the money

	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](
		`window.sameDocument === true && document.querySelector("#status.status-success") !== null`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("success without a reload: %v", err)
	}
	if got := text(t, ctx, "#status"); !strings.HasPrefix(got, "Payment received. Thank you!") {
		t.Errorf("status %q", got)
	}
	screenshot(t, ctx, "pay-success")

	do(t, ctx, "land on success_url", chromedp.WaitVisible(chromedp.CSS(`#shop-success`)))
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || loc != srv.URL+"/shop/success" {
		t.Errorf("location %q (%v), want success_url", loc, err)
	}
}

// TestBrowserPaymentsExhausted: an invoice at commands.MaxPaymentsPerInvoice
// payments shows no methods but the link back to the shop, and its script
// keeps the page live without leaving it: when the merchant cancels the
// invoice, the page says so without a reload and sends the customer to
// fail_url.
func TestBrowserPaymentsExhausted(t *testing.T) {
	e := newRealtimeEnv(t)
	srv := shopServer(t, e)
	ctx := browser(t)
	inv := e.invoice(invoiceOpts{fail: srv.URL + "/shop/fail"})
	e.cancelledPayments(inv.InvoiceID, commands.MaxPaymentsPerInvoice)

	do(t, ctx, "open the payment link",
		chromedp.Navigate(srv.URL+"/pay/"+inv.InvoiceID),
		chromedp.WaitVisible(chromedp.CSS(`#status.status-exhausted`)),
		chromedp.WaitVisible(chromedp.CSS(`#return-link`)))
	if got := text(t, ctx, "#status"); !strings.HasPrefix(got, "No more payment attempts can be made") {
		t.Errorf("status %q", got)
	}
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('input[name="method"], #countdown').length`))
	if err != nil || n != 0 {
		t.Errorf("%d method inputs or countdowns (%v), want none", n, err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.sameDocument = true`)); err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "pay-exhausted")

	if _, err := e.svc.CancelInvoice(e.ctx, commands.CancelInvoice{Meta: e.meta(), MerchantID: e.merchant, InvoiceID: inv.InvoiceID}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](
		`window.sameDocument === true && document.querySelector("#status.status-cancelled") !== null`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("cancelled without a reload: %v", err)
	}
	do(t, ctx, "land on fail_url", chromedp.WaitVisible(chromedp.CSS(`#shop-fail`)))
}

// TestBrowserWidgetFlow: open the widget page, pick a method, enter an
// amount, land on the payment page with the details.
func TestBrowserWidgetFlow(t *testing.T) {
	e := newRealtimeEnv(t)
	srv := shopServer(t, e)
	ctx := browser(t)
	w := e.widget(commands.CreateWidget{Kind: commands.WidgetUnlimited, Description: "Donations to the shelter",
		LogoURL: srv.URL + "/shop/logo.png", ReturnURL: srv.URL + "/shop/back", SupportURL: srv.URL + "/shop/back"})

	do(t, ctx, "open the widget",
		chromedp.Navigate(srv.URL+"/w/"+w.WidgetID),
		chromedp.WaitVisible(chromedp.CSS(`#method`)))
	// The merchant's logo loads (CSP allows https images).
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector(".logo img").naturalWidth === 100`,
		chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Errorf("logo not loaded: %v", err)
	}
	screenshot(t, ctx, "widget")

	do(t, ctx, "pick a method",
		chromedp.SetValue(chromedp.CSS(`#method`), "visamaster.uah"),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`document.getElementById("method").dispatchEvent(new Event("change"))`)(ctx, tg)
			return err
		}))
	if got := text(t, ctx, "#amount-currency"); got != "UAH" {
		t.Errorf("currency beside the amount %q, want UAH", got)
	}
	do(t, ctx, "enter an amount and continue",
		chromedp.SendKeys(chromedp.CSS(`#amount`), "250.50"),
		chromedp.Click(chromedp.CSS(`#widget button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`#details`)))
	loc, err := chromedp.Run(ctx, chromedp.Location())
	m := regexp.MustCompile(`/pay/([0-9a-f-]{36})#details$`).FindStringSubmatch(loc)
	if err != nil || m == nil {
		t.Fatalf("location %q (%v), want the payment page", loc, err)
	}
	if got := text(t, ctx, "h1 .amount"); got != "250.50 UAH" {
		t.Errorf("amount %q", got)
	}
	p := e.payments(m[1])
	if len(p) != 1 || text(t, ctx, "#account-number") != p[0].Extra.AccountNumber {
		t.Errorf("payments %+v, page shows %q", p, text(t, ctx, "#account-number"))
	}

	if *screenshotDir != "" {
		do(t, ctx, "open a wrong link", chromedp.Navigate(srv.URL+"/pay/no-such-invoice"), chromedp.WaitVisible(chromedp.CSS("h1")))
		screenshot(t, ctx, "not-found")
	}
}

// TestBrowserPaymentReplaced: while the page shows a payment's details,
// another tab (or the merchant) cancels it and a new payment is made: the
// page shows the new payment's details by itself. Before, the phase stayed
// "pay", so the script changed nothing and the page kept showing the
// cancelled payment's details: the customer could send money to them.
func TestBrowserPaymentReplaced(t *testing.T) {
	e, _, ctx, inv := payingCustomer(t)
	first := e.payments(inv.InvoiceID)[0]
	if got := text(t, ctx, "#details"); !strings.Contains(got, "Payment reference: "+first.ID) {
		t.Fatalf("details %q, want payment %s", got, first.ID)
	}

	e.transition(first, commands.PaymentStatusCancelled)
	second := e.pay(inv.InvoiceID, "visamaster.uah")
	waitJS(t, ctx, "the new payment's details",
		`document.getElementById("details") !== null && document.getElementById("details").textContent.includes("Payment reference: `+second.ID+`")`,
		15*time.Second)
	if got := text(t, ctx, "#account-number"); got != second.Extra.AccountNumber {
		t.Errorf("account number %q, want the new payment's %q", got, second.Extra.AccountNumber)
	}
}

// TestBrowserNoResendAfterRefusedForm: a refused form is answered with the
// page at the form's URL (/pay/{id}/method, 400); when the state changes
// (another tab makes a payment), the script opens the page's own URL
// instead of reloading, which would send the form again. Before, it called
// location.reload(): the browser POSTed the form a second time.
func TestBrowserNoResendAfterRefusedForm(t *testing.T) {
	e := newRealtimeEnv(t)
	var posts atomic.Int32
	srv := shopServer(t, e, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				posts.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	ctx := browser(t)
	inv := e.invoice(invoiceOpts{})
	id := inv.InvoiceID
	do(t, ctx, "open the payment link",
		chromedp.Navigate(srv.URL+"/pay/"+id),
		chromedp.WaitVisible(chromedp.CSS(`input[value="visamaster.uah"]`)),
		chromedp.Click(chromedp.CSS(`input[value="visamaster.uah"]`)))
	// A method the page no longer offers, as a stale page would send.
	eval[string](t, ctx, `document.querySelector('input[value="visamaster.uah"]').value = "no-such-method"`)
	do(t, ctx, "send the form",
		chromedp.Click(chromedp.CSS(`#pay form button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`.alert`)))
	if loc := eval[string](t, ctx, `location.pathname`); loc != "/pay/"+id+"/method" {
		t.Fatalf("the refused form's page is at %s, want the form's URL", loc)
	}
	if n := posts.Load(); n != 1 {
		t.Fatalf("%d POSTs, want 1", n)
	}

	p := e.pay(id, "visamaster.uah")
	waitJS(t, ctx, "the page's own URL with the new payment",
		`location.pathname === "/pay/`+id+`" && document.getElementById("details") !== null && document.getElementById("details").textContent.includes("`+p.ID+`")`,
		15*time.Second)
	if n := posts.Load(); n != 1 {
		t.Errorf("%d POSTs, want 1: the form was sent again", n)
	}
}

// TestBrowserRejectedPaymentChooseAgain: the gateway rejects the payment
// the page shows; the page says so and offers the methods again, staying
// on the page, and the customer pays with a new payment. Before, a
// rejected payment was final: the page sent the customer to fail_url,
// though the invoice still took a payment.
func TestBrowserRejectedPaymentChooseAgain(t *testing.T) {
	e, srv, ctx, inv := payingCustomer(t)
	e.transition(e.payments(inv.InvoiceID)[0], commands.PaymentStatusRejected)

	waitJS(t, ctx, "the methods offered again",
		`document.querySelector("#status.status-failed") !== null && document.querySelector('input[value="visamaster.uah"]') !== null`,
		15*time.Second)
	if got := text(t, ctx, "#status"); !strings.HasPrefix(got, "The payment was declined.") {
		t.Errorf("status %q", got)
	}
	screenshot(t, ctx, "pay-failed")
	choose(t, ctx, srv, inv.InvoiceID, "visamaster.uah")
	ps := e.payments(inv.InvoiceID)
	if len(ps) != 2 || !strings.Contains(text(t, ctx, "#details"), "Payment reference: "+ps[1].ID) {
		t.Fatalf("payments %+v; details %q", ps, text(t, ctx, "#details"))
	}
	e.process(ps[1])
	do(t, ctx, "land on success_url", chromedp.WaitVisible(chromedp.CSS(`#shop-success`)))
}

// countdownShown is true when the page shows its countdown line.
const countdownShown = `(function () { var c = document.getElementById("countdown"); return c !== null && c.closest("p").offsetParent !== null; })()`

// TestBrowserPendingPaymentOutlivesExpiry: the customer has the payment's
// details when the time runs out: the page stays, with the details and
// "I have paid", says the time is up, and hides the countdown and the
// other methods; the customer says they paid, and the late payment lands
// them on success_url. Before, the page said the invoice could no longer be
// paid and sent the customer to fail_url, though the invoice ended paid.
func TestBrowserPendingPaymentOutlivesExpiry(t *testing.T) {
	e, _, ctx, inv := payingCustomer(t)
	eval[bool](t, ctx, `window.sameDocument = true`)

	e.advance(20*time.Minute + time.Second)
	waitJS(t, ctx, "the time is up, the details still shown",
		`window.sameDocument === true && document.getElementById("status").textContent.startsWith("Time is up") && `+
			`document.getElementById("details").offsetParent !== null && document.getElementById("confirm").offsetParent !== null && !`+countdownShown,
		15*time.Second)
	if n := eval[int](t, ctx, `Array.from(document.querySelectorAll("#details button.secondary")).filter(function (b) { return b.offsetParent !== null; }).length`); n != 0 {
		t.Errorf("%d buttons to choose another method past expiry, want none", n)
	}
	screenshot(t, ctx, "pay-late")

	do(t, ctx, "say I have paid",
		chromedp.Click(chromedp.CSS(`#confirm`)),
		chromedp.WaitVisible(chromedp.CSS(`#status.status-confirmed`)))
	if eval[bool](t, ctx, countdownShown) {
		t.Errorf("a countdown while checking: %q", text(t, ctx, "#countdown"))
	}
	e.process(e.payments(inv.InvoiceID)[0])
	do(t, ctx, "land on success_url", chromedp.WaitVisible(chromedp.CSS(`#shop-success`)))
}

// TestBrowserLatePagePollsSlowly: a page whose payment outlives expires_at
// keeps asking for its status, but not every 2 s for ever: every 10 s past
// the time. Before, an abandoned page (a method picked, never paid) polled
// every 2 s as long as it stayed open.
func TestBrowserLatePagePollsSlowly(t *testing.T) {
	e := newRealtimeEnv(t)
	o := &statusOutage{} // up: it only records the status requests
	srv := shopServer(t, e, o.wrap)
	ctx := browser(t)
	inv := e.invoice(invoiceOpts{})
	choose(t, ctx, srv, inv.InvoiceID, "visamaster.uah")
	e.advance(20*time.Minute + time.Second)
	waitJS(t, ctx, "the time is up", `document.getElementById("status").textContent.startsWith("Time is up")`, 15*time.Second)
	before := len(o.requests())
	if !eventually(20*time.Second, func() bool { return len(o.requests()) >= before+2 }) {
		t.Fatalf("%d status requests in 20 s past the time, want polling to go on", len(o.requests())-before)
	}
	rs := o.requests()
	if gap := rs[before+1].Sub(rs[before]); gap < 8*time.Second {
		t.Errorf("status requests %s apart past expires_at, want about 10 s", gap)
	}
}

// TestBrowserConfirmedElsewhereHidesCountdown: the payment is confirmed
// while the page shows it (the operator, another tab): the page says it is
// being checked without a reload, and hides the countdown, which has
// nothing left to count. Before, it went on counting down to 0:00.
func TestBrowserConfirmedElsewhereHidesCountdown(t *testing.T) {
	e, _, ctx, inv := payingCustomer(t)
	if !eval[bool](t, ctx, countdownShown) {
		t.Fatal("no countdown beside the details")
	}
	eval[bool](t, ctx, `window.sameDocument = true`)
	e.transition(e.payments(inv.InvoiceID)[0], commands.PaymentStatusConfirmed)
	waitJS(t, ctx, "checking, without a reload",
		`window.sameDocument === true && document.querySelector("#status.status-confirmed") !== null`, 15*time.Second)
	if eval[bool](t, ctx, countdownShown) {
		t.Errorf("a countdown while checking: %q", text(t, ctx, "#countdown"))
	}
}

// statusOutage answers the pages' status route 503, as a node whose log
// failed or a proxy in front of it would, while down is true, and records
// when each status request came.
type statusOutage struct {
	down  atomic.Bool
	mu    sync.Mutex
	times []time.Time
}

func (o *statusOutage) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/status") {
			o.mu.Lock()
			o.times = append(o.times, time.Now())
			o.mu.Unlock()
			if o.down.Load() {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				w.Write([]byte(`{"error":"unavailable"}` + "\n"))
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// outage starts the pages behind a statusOutage that is down, a browser,
// and an invoice; the clock is moved on by ahead before the page opens.
func outage(t *testing.T, ahead time.Duration) (*statusOutage, context.Context) {
	t.Helper()
	e := newRealtimeEnv(t)
	o := &statusOutage{}
	o.down.Store(true)
	srv := shopServer(t, e, o.wrap)
	ctx := browser(t)
	inv := e.invoice(invoiceOpts{})
	e.advance(ahead)
	do(t, ctx, "open the payment link",
		chromedp.Navigate(srv.URL+"/pay/"+inv.InvoiceID),
		chromedp.WaitVisible(chromedp.CSS(`input[value="visamaster.uah"]`)))
	return o, ctx
}

func (o *statusOutage) requests() []time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]time.Time(nil), o.times...)
}

// TestBrowserStatusUnreachable: while the status route keeps failing, the
// page says it cannot reach the server (in its live status region) after a
// few failures, and polls less and less often; once the server answers
// again, the page shows the status again. Before, every failure was
// swallowed and retried every 2 s, forever, without a word.
func TestBrowserStatusUnreachable(t *testing.T) {
	o, ctx := outage(t, 0)
	waitJS(t, ctx, "the page says the server cannot be reached",
		`document.getElementById("status").textContent.startsWith("Can\u2019t reach the server")`, 15*time.Second)
	// Three failures 2 s apart, then a longer wait.
	if !eventually(15*time.Second, func() bool { return len(o.requests()) >= 4 }) {
		t.Fatalf("%d status requests, want 4", len(o.requests()))
	}
	rs := o.requests()
	if gap := rs[3].Sub(rs[2]); gap < 3500*time.Millisecond {
		t.Errorf("the fourth request %s after the third, want a longer wait after three failures", gap)
	}
	if got := eval[string](t, ctx, `document.getElementById("status").getAttribute("aria-live")`); got != "polite" {
		t.Errorf("status region aria-live %q", got)
	}

	o.down.Store(false)
	waitJS(t, ctx, "the status again", `document.getElementById("status").textContent === "Choose how you want to pay."`, 20*time.Second)
}

// TestBrowserTimeUpWhileUnreachable: the countdown reaches 0 with no live
// payment while the status route fails: the page disables the method form
// itself rather than let the customer send a choice that can only be
// refused. Before, the form stayed usable.
func TestBrowserTimeUpWhileUnreachable(t *testing.T) {
	_, ctx := outage(t, 20*time.Minute-4*time.Second) // seconds left
	if eval[bool](t, ctx, `document.querySelector("#pay form button.primary").disabled`) {
		t.Fatal("the form is disabled before the time is up")
	}
	waitJS(t, ctx, "the method form disabled at 0:00",
		`document.querySelector("#pay form button.primary").disabled && document.querySelector('input[value="visamaster.uah"]').disabled`,
		15*time.Second)
}

// TestBrowserStayOnFinalPage: the page that is about to send the customer
// back to the shop says so and offers "Stay on this page", which cancels
// the redirect and leaves the link to the shop: when the payment succeeds
// while the page is open, and on a page opened already final, where the
// button works from the keyboard. Before, the redirect could not be
// stopped, and a page opened final did not say it would leave.
func TestBrowserStayOnFinalPage(t *testing.T) {
	e, srv, ctx, inv := payingCustomer(t)
	eval[bool](t, ctx, `window.sameDocument = true`)
	e.process(e.payments(inv.InvoiceID)[0])
	waitJS(t, ctx, "success, saying the page will leave",
		`window.sameDocument === true && document.querySelector("#status.status-success") !== null && `+
			`document.getElementById("status").textContent.includes("You will be taken back to the shop in 3 seconds.") && `+
			`document.getElementById("stay").offsetParent !== null`, 15*time.Second)
	do(t, ctx, "stay", chromedp.Click(chromedp.CSS(`#stay`)))
	stays := func(what string) {
		t.Helper()
		since := eval[float64](t, ctx, `performance.now()`)
		// Past the redirect's delay, and then some: the page is still here.
		waitJS(t, ctx, what, fmt.Sprintf(`performance.now() > %f + 4500`, since), 10*time.Second)
		if loc := eval[string](t, ctx, `location.pathname`); loc != "/pay/"+inv.InvoiceID {
			t.Fatalf("%s: the page left for %s", what, loc)
		}
		if !eval[bool](t, ctx, `document.getElementById("return-link").offsetParent !== null && document.getElementById("stay").offsetParent === null`) {
			t.Errorf("%s: want the link to the shop, and no stay button", what)
		}
		if got := text(t, ctx, "#status"); strings.Contains(got, "You will be taken back") {
			t.Errorf("%s: status %q still says the page will leave", what, got)
		}
	}
	stays("stayed on the page that turned final")

	do(t, ctx, "open the final page",
		chromedp.Navigate(srv.URL+"/pay/"+inv.InvoiceID),
		chromedp.WaitVisible(chromedp.CSS(`#redirect-note`)),
		chromedp.WaitVisible(chromedp.CSS(`#stay`)))
	if got := text(t, ctx, "#status"); got != "Payment received. Thank you! You will be taken back to the shop in 3 seconds." {
		t.Errorf("status %q", got)
	}
	// The script puts the focus on the button as the time starts: Enter
	// alone stays, with no tabbing to it while the time runs.
	if got := eval[string](t, ctx, `document.activeElement.id`); got != "stay" {
		t.Errorf("focus on %q while the page counts down to leaving, want the stay button", got)
	}
	do(t, ctx, "stay, from the keyboard", chromedp.KeyEvent("\r"))
	stays("stayed on the page opened final")
	if got := eval[string](t, ctx, `document.activeElement.id`); got != "return-link" {
		t.Errorf("focus on %q after staying, want the link to the shop", got)
	}
}

// TestBrowserCopyIsAnnounced: a copy button copies its value and says so
// in a live region, which screen readers announce: the button's own
// "Copied" is hidden from them by its aria-label ("Copy the amount").
// Before, nothing was announced.
func TestBrowserCopyIsAnnounced(t *testing.T) {
	e, srv, ctx, inv := payingCustomer(t)
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
			Permission: &cdpbrowser.PermissionDescriptor{Name: name}, Setting: cdpbrowser.PermissionSettingGranted, Origin: srv.URL,
		}); err != nil {
			t.Fatalf("grant %s: %v", name, err)
		}
	}
	p := e.payments(inv.InvoiceID)[0]
	do(t, ctx, "copy the amount", chromedp.Click(chromedp.CSS(`button[aria-label="Copy the amount"]`)))
	waitJS(t, ctx, "the copy announced",
		`document.getElementById("copy-status") !== null && document.getElementById("copy-status").textContent === "Amount copied."`, 5*time.Second)
	if got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise)); err != nil || got != p.PaymentAmount {
		t.Errorf("clipboard %q (%v), want %q", got, err, p.PaymentAmount)
	}
	if got := eval[string](t, ctx, `document.getElementById("copy-status").getAttribute("aria-live")`); got != "polite" {
		t.Errorf("copy status aria-live %q", got)
	}
	do(t, ctx, "copy the card number", chromedp.Click(chromedp.CSS(`button[aria-label="Copy Card number"]`)))
	waitJS(t, ctx, "the second copy announced",
		`document.getElementById("copy-status").textContent === "Card number copied."`, 5*time.Second)
}
