package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/node"
)

// TestDemoAfterFailedFirstStart: a first start that fails after opening the
// log (its HTTP address is taken) leaves an empty ledger.db behind; the next
// start still finds no events, so it still makes the demo merchant and
// prints its key, as it would have on the empty data dir.
func TestDemoAfterFailedFirstStart(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if n, err := node.Open(context.Background(), node.Config{DataDir: dir, Addr: busy.Addr().String(), NoNATS: true,
		Demo: true, Out: io.Discard}); err == nil {
		n.Close()
		t.Fatal("Open succeeded on a taken address")
	}

	var out bytes.Buffer
	n, err := node.Open(context.Background(), node.Config{DataDir: dir, Addr: "127.0.0.1:0", NoNATS: true, Demo: true, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if regexp.MustCompile(`api_key:\s+pl_\S+`).FindString(out.String()) == "" || n.Log.Head().Seq == 0 {
		t.Fatalf("second start on a data dir with an empty log made no demo merchant (head %d):\n%s", n.Log.Head().Seq, out.String())
	}
}

// TestDemoCurlLineWithBaseURLSlash: the banner's curl line works as printed
// when --base-url ends in a slash (as the API's payment links do): it must
// not post to "//api/v1/create-invoice", which the router answers with a
// redirect that curl -X POST does not follow.
func TestDemoCurlLineWithBaseURLSlash(t *testing.T) {
	var out bytes.Buffer
	n, err := node.Open(context.Background(), node.Config{DataDir: t.TempDir(), Addr: "127.0.0.1:0", NoNATS: true, Demo: true,
		Out: &out, BaseURL: "https://pay.example/"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	m := regexp.MustCompile(`curl -s -X POST (\S+) -H '([^']*)' -H '([^']*)' -d '([^']*)'`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no curl line in the banner:\n%s", out.String())
	}
	u, err := url.Parse(m[1])
	if err != nil || u.Scheme != "https" || u.Host != "pay.example" {
		t.Fatalf("curl URL %q: %v", m[1], err)
	}
	req := httptest.NewRequest(http.MethodPost, u.RequestURI(), strings.NewReader(m[4]))
	for _, h := range m[2:4] {
		name, value, _ := strings.Cut(h, ": ")
		req.Header.Set(name, value)
	}
	rec := httptest.NewRecorder()
	n.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated || !strings.Contains(rec.Body.String(), `"payment_link":"https://pay.example/pay/`) {
		t.Fatalf("POST %s as printed: %d %s", u.RequestURI(), rec.Code, rec.Body.String())
	}
}

// TestBaseURLOfUnspecifiedAddr: a node listening on every interface
// (--addr :8080, 0.0.0.0, [::]) is reached at localhost, not at
// "http://[::]:8080", which browsers and curl do not all accept: the demo
// banner's curl line and the API's payment links use localhost and the port.
// A listen address that names a host keeps it.
func TestBaseURLOfUnspecifiedAddr(t *testing.T) {
	for addr, wantHost := range map[string]string{":0": "localhost", "0.0.0.0:0": "localhost", "127.0.0.1:0": "127.0.0.1"} {
		t.Run(addr, func(t *testing.T) {
			var out bytes.Buffer
			n, err := node.Open(context.Background(), node.Config{DataDir: t.TempDir(), Addr: addr, NoNATS: true, Demo: true, Out: &out})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			_, port, err := net.SplitHostPort(n.Addr())
			if err != nil {
				t.Fatal(err)
			}
			want := "http://" + net.JoinHostPort(wantHost, port)
			if got := n.BaseURL(); got != want {
				t.Fatalf("BaseURL() = %q, want %q", got, want)
			}
			m := regexp.MustCompile(`curl -s -X POST (\S+) -H '([^']*)' -H '([^']*)' -d '([^']*)'`).FindStringSubmatch(out.String())
			if m == nil || m[1] != want+"/api/v1/create-invoice" {
				t.Fatalf("banner's curl line does not post to %s:\n%s", want, out.String())
			}
			req := httptest.NewRequest(http.MethodPost, "/api/v1/create-invoice", strings.NewReader(m[4]))
			for _, h := range m[2:4] {
				name, value, _ := strings.Cut(h, ": ")
				req.Header.Set(name, value)
			}
			rec := httptest.NewRecorder()
			n.Handler().ServeHTTP(rec, req)
			if rec.Code != http.StatusCreated || !strings.Contains(rec.Body.String(), `"payment_link":"`+want+`/pay/`) {
				t.Fatalf("create-invoice: %d %s, want a payment_link under %s", rec.Code, rec.Body.String(), want)
			}
		})
	}
}

// stoppingClock reads the system clock n times, then only the zero time: a
// command that reads it then is refused ("command without id or time"), as
// one whose append fails would be. It stops the demo setup between steps.
type stoppingClock struct {
	commands.SystemClock
	mu   sync.Mutex
	left int
}

func (c *stoppingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.left <= 0 {
		return time.Time{}
	}
	c.left--
	return time.Now()
}

// TestDemoResumesAfterFailedSetup: a first start whose demo setup fails
// halfway (after some of its steps committed) prints no key; the next start
// finishes the setup and prints a key that works, with one demo merchant
// and one rate per currency in the log; the start after that, on a finished
// setup, makes and prints nothing.
func TestDemoResumesAfterFailedSetup(t *testing.T) {
	// The setup reads the clock once per step: a rate per currency but
	// USDT, and the merchant.
	steps := len(node.DemoRates)
	for _, ok := range []int{0, 1, steps / 2, steps - 1} {
		t.Run(fmt.Sprintf("after %d steps", ok), func(t *testing.T) {
			dir := t.TempDir()
			var out bytes.Buffer
			if n, err := node.Open(context.Background(), node.Config{DataDir: dir, Addr: "127.0.0.1:0", NoNATS: true,
				Demo: true, Out: &out, Clock: &stoppingClock{left: ok}}); err == nil {
				n.Close()
				t.Fatal("Open succeeded with the demo setup failing")
			}
			if strings.Contains(out.String(), "api_key") {
				t.Fatalf("a failed setup printed a key:\n%s", out.String())
			}

			out.Reset()
			n, err := node.Open(context.Background(), node.Config{DataDir: dir, Addr: "127.0.0.1:0", NoNATS: true, Demo: true, Out: &out})
			if err != nil {
				t.Fatal(err)
			}
			key := regexp.MustCompile(`api_key:\s+(pl_\S+)`).FindStringSubmatch(out.String())
			if key == nil {
				n.Close()
				t.Fatalf("the start after a failed setup printed no key (head %d):\n%s", n.Log.Head().Seq, out.String())
			}
			req := httptest.NewRequest(http.MethodPost, "/api/v1/create-invoice", strings.NewReader(
				`{"amount": "1500.00", "currency_code": "NGN", "customer_id": "c1", "external_id": "o1"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Api-Key", key[1])
			rec := httptest.NewRecorder()
			n.Handler().ServeHTTP(rec, req)
			if rec.Code != http.StatusCreated {
				t.Errorf("create-invoice with the printed key: %d %s", rec.Code, rec.Body.String())
			}
			merchants, rates := demoEvents(t, n)
			if merchants != 1 || len(rates) != steps-1 {
				t.Errorf("%d merchants and rates %v, want 1 merchant and one rate for each of %d currencies", merchants, rates, steps-1)
			}
			for cur, k := range rates {
				if k != 1 {
					t.Errorf("%s set %d times, want once", cur, k)
				}
			}
			n.Close()

			out.Reset()
			n, err = node.Open(context.Background(), node.Config{DataDir: dir, Addr: "127.0.0.1:0", NoNATS: true, Demo: true, Out: &out})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if merchants, _ := demoEvents(t, n); strings.Contains(out.String(), "api_key") || merchants != 1 {
				t.Fatalf("a start after a finished setup made another demo merchant (%d in all):\n%s", merchants, out.String())
			}
		})
	}
}

// demoEvents counts a node's merchant registrations, and its rates set by currency.
func demoEvents(t *testing.T, n *node.Node) (merchants int, rates map[string]int) {
	t.Helper()
	rates = map[string]int{}
	for ev, err := range n.Log.Events(context.Background(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Type {
		case commands.TypeMerchantRegistered:
			merchants++
		case commands.TypeRateSet:
			var r commands.RateSet
			if err := json.Unmarshal(ev.Data, &r); err != nil {
				t.Fatal(err)
			}
			rates[r.Currency]++
		}
	}
	return merchants, rates
}

// TestDemoEveryMethodUsable: the demo setup gives every catalogue method's
// currency a rate, so the demo merchant's method list says every method is
// enabled, and an e-invoice with each method that once had no demo rate
// (BCH, LINK, LTC, XMR, TRX: code 4, "Currency not found or disabled") is
// made.
func TestDemoEveryMethodUsable(t *testing.T) {
	n, key := openDemo(t)
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Api-Key", key)
		rec := httptest.NewRecorder()
		n.Handler().ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}

	code, body := call("GET", "/api/v1/methods", "")
	var list struct {
		Methods []struct {
			Code    string `json:"code"`
			Enabled bool   `json:"enabled"`
		} `json:"methods"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil || code != http.StatusOK || len(list.Methods) != len(commands.Methods()) {
		t.Fatalf("methods: %d %v %s", code, err, body)
	}
	for _, m := range list.Methods {
		if !m.Enabled {
			t.Errorf("demo merchant: %s is not enabled", m.Code)
		}
	}

	for i, tc := range []struct{ method, amount string }{
		{"bitcoin_cash", "0.10"}, {"link", "2.00"}, {"litecoin", "0.50"}, {"monero", "0.25"}, {"tron", "100.00"},
	} {
		code, body := call("POST", "/api/einvoice/create", fmt.Sprintf(`{"payment_id": %d, "currency": %q, "amount": %q, "description": "demo"}`, i+1, tc.method, tc.amount))
		if code != http.StatusOK || !strings.Contains(body, `"tracking":"`) {
			t.Errorf("e-invoice with %s: %d %s", tc.method, code, body)
		}
	}
}

// openDemo opens a node with no NATS on a fresh data dir, closed when the
// test ends, and returns it with the demo merchant's API key.
func openDemo(t *testing.T) (*node.Node, string) {
	t.Helper()
	var out bytes.Buffer
	n, err := node.Open(context.Background(), node.Config{DataDir: t.TempDir(), Addr: "127.0.0.1:0", NoNATS: true, Demo: true, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	key := regexp.MustCompile(`api_key:\s+(pl_\S+)`).FindStringSubmatch(out.String())
	if key == nil {
		t.Fatalf("no key in the demo banner:\n%s", out.String())
	}
	return n, key[1]
}
