package webhooks

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/commands"
)

// statusReceiver is a merchant's status_url endpoint: it verifies every
// call with Verify, answers 401 to one that does not verify, and keeps
// what it got; the paths of redirects are redirected instead.
type statusReceiver struct {
	srv       *httptest.Server
	secret    string
	redirects map[string]string // path -> where it redirects (302), the query kept

	mu    sync.Mutex
	calls []statusCall
}

type statusCall struct {
	URL    string // as the receiver saw it: path and query
	Header http.Header
	Err    error // Verify's
}

func newStatusReceiver(t *testing.T, secret string) *statusReceiver {
	sr := &statusReceiver{secret: secret, redirects: make(map[string]string)}
	sr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if to, ok := sr.redirects[r.URL.Path]; ok {
			http.Redirect(w, r, to+"?"+r.URL.RawQuery, http.StatusFound)
			return
		}
		body, _ := io.ReadAll(r.Body)
		err := Verify(sr.secret, r, body, time.Minute)
		sr.mu.Lock()
		sr.calls = append(sr.calls, statusCall{URL: r.URL.String(), Header: r.Header.Clone(), Err: err})
		sr.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
		}
	}))
	t.Cleanup(sr.srv.Close)
	return sr
}

func (sr *statusReceiver) got() []statusCall {
	sr.mu.Lock()
	defer sr.mu.Unlock()
	return append([]statusCall(nil), sr.calls...)
}

// eInvoice creates an e-invoice with a status_url and returns it.
func (e *env) eInvoice(merchant, statusURL string) *commands.Invoice {
	e.t.Helper()
	inv, err := e.svc.CreateEInvoice(e.ctx, commands.CreateEInvoice{
		Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: merchant, PaymentID: "order-" + ulid.Make().String(), Method: "bitcoin",
		Amount: "100.00", Description: "e-invoice", StatusURL: statusURL, Rate: e.rate,
	})
	if err != nil {
		e.t.Fatalf("e-invoice: %v", err)
	}
	return inv
}

// cancelledEInvoice creates an e-invoice with a status_url and cancels it:
// a final status, so the status_url gets its call.
func (e *env) cancelledEInvoice(merchant, statusURL string) *commands.Invoice {
	e.t.Helper()
	inv := e.eInvoice(merchant, statusURL)
	e.cancel(merchant, inv.InvoiceID)
	return inv
}

// waitStatusCall waits until the status_url call of m1's cancelled
// invoice is delivered.
func waitStatusCall(t *testing.T, d *Dispatcher, invoiceID string) {
	t.Helper()
	waitFor(t, 10*time.Second, func() error {
		return statusIs(d, "m1", commands.TypeInvoiceCancelled, invoiceID, StatusDelivered)
	})
}

// A status_url call is signed over its method and URL, query included:
// the real call verifies at a real receiver, and its headers replayed
// with another status or other ids in the query are refused.
func TestStatusURLSignatureCoversQuery(t *testing.T) {
	e := newEnv(t)
	e.merchant("m1", "")
	sr := newStatusReceiver(t, e.kr.SigningSecret("m1", 1))
	d, _ := e.dispatcher("", e.config())
	inv := e.cancelledEInvoice("m1", sr.srv.URL+"/status?shop=1")
	waitStatusCall(t, d, inv.InvoiceID)
	calls := sr.got()
	if len(calls) != 1 || calls[0].Err != nil {
		t.Fatalf("status_url calls: %+v", calls)
	}
	real := calls[0]
	if q, _ := url.ParseQuery(strings.SplitN(real.URL, "?", 2)[1]); q.Get("status") != "cancelled" || q.Get("invoice_id") != inv.InvoiceID || q.Get("shop") != "1" {
		t.Fatalf("status_url call's query: %s", real.URL)
	}

	// The captured headers, replayed within the tolerance: with the URL as
	// sent they verify (the control: the refusals below are the forged
	// URLs', not the replay's), with a forged one they do not.
	replay := func(target string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, sr.srv.URL+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range []string{HeaderID, HeaderTimestamp, HeaderSignature} {
			req.Header.Set(h, real.Header.Get(h))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := replay(real.URL); got != http.StatusOK {
		t.Fatalf("the real call's URL and headers, replayed: answered %d, want 200", got)
	}
	for _, forged := range []string{
		strings.Replace(real.URL, "status=cancelled", "status=success", 1),
		strings.Replace(real.URL, inv.InvoiceID, ulid.Make().String(), 1),
		strings.Replace(real.URL, "tracking=", "tracking=X", 1),
		strings.Replace(real.URL, "/status?", "/other?", 1),
		real.URL + "&status=success",
	} {
		if got := replay(forged); got != http.StatusUnauthorized {
			t.Errorf("forged %s with the real call's headers: answered %d, want 401", forged, got)
		}
	}
	calls = sr.got()
	for _, c := range calls[2:] {
		if !errors.Is(c.Err, ErrSignature) {
			t.Errorf("forged %s: Verify said %v, want ErrSignature", c.URL, c.Err)
		}
	}
}

// A status_url call follows a redirect within its host, signed anew for
// the URL it lands on (the signature covers the URL), and tells the next
// hop nothing of the last (no Referer). It does not follow one to another
// host: that host gets nothing, neither the status nor headers that carry
// a signature, and the attempt fails saying why.
func TestStatusURLRedirects(t *testing.T) {
	e := newEnv(t)
	e.merchant("m1", "")
	secret := e.kr.SigningSecret("m1", 1)
	sr := newStatusReceiver(t, secret)
	other := newStatusReceiver(t, secret)
	sr.redirects["/moved"] = "/status"
	sr.redirects["/away"] = other.srv.URL + "/status"
	d, _ := e.dispatcher("", e.config())

	moved := e.cancelledEInvoice("m1", sr.srv.URL+"/moved?shop=1")
	waitStatusCall(t, d, moved.InvoiceID)
	calls := sr.got()
	if len(calls) != 1 || calls[0].Err != nil || !strings.HasPrefix(calls[0].URL, "/status?") || !strings.Contains(calls[0].URL, "status=cancelled") {
		t.Fatalf("redirected status_url call: %+v", calls)
	}
	if ref := calls[0].Header.Get("Referer"); ref != "" {
		t.Errorf("the redirected call carried Referer %q", ref)
	}

	away := e.cancelledEInvoice("m1", sr.srv.URL+"/away")
	var del Delivery
	waitFor(t, 10*time.Second, func() error {
		p, err := d.ListDeliveries("m1", ListQuery{PageSize: MaxPageSize})
		if err != nil {
			return err
		}
		for _, x := range p.Items {
			if x.Kind == KindStatusURL && x.ResourceID == away.InvoiceID && x.AttemptCount >= 2 {
				del = x
				return nil
			}
		}
		return errors.New("no second attempt of the cross-host status_url call yet")
	})
	if del.Status != StatusPending || !strings.Contains(del.LastError, "another host") {
		t.Errorf("status_url call redirected to another host: %+v", del)
	}
	if n := len(other.got()); n != 0 {
		t.Fatalf("the other host got %d requests", n)
	}
}

// Verify reads a GET as a status_url call, signed over its URL as its
// server got it; behind a proxy the receiver gives the public scheme and
// host in r.URL.
func TestVerifyStatusCall(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	secret := "whsec_" + base64Std(key)
	now := time.Now()
	const id, at = "01J00000000000000000000000", "/status?invoice_id=inv-1&status=cancelled"
	sig := Sign([][]byte{key}, id, now.Unix(), statusContent("https://shop.example"+at))
	get := func(target string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.Header = hdr(id, strconv.FormatInt(now.Unix(), 10), sig)
		return r
	}
	if err := Verify(secret, get("https://shop.example"+at), nil, time.Minute); err != nil {
		t.Fatalf("genuine: %v", err)
	}
	behind := get("http://10.0.0.7:8080" + at)
	if err := Verify(secret, behind, nil, time.Minute); !errors.Is(err, ErrSignature) {
		t.Errorf("behind a proxy, the internal URL: %v", err)
	}
	behind.URL.Scheme, behind.URL.Host = "https", "shop.example"
	if err := Verify(secret, behind, nil, time.Minute); err != nil {
		t.Errorf("behind a proxy, the public URL set: %v", err)
	}
	for name, r := range map[string]*http.Request{
		"other status":  get("https://shop.example/status?invoice_id=inv-1&status=success"),
		"other invoice": get("https://shop.example/status?invoice_id=inv-2&status=cancelled"),
		"other host":    get("https://evil.example" + at),
		"plain http":    get("http://shop.example" + at),
	} {
		if err := Verify(secret, r, nil, time.Minute); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: %v, want ErrSignature", name, err)
		}
	}
	// What the status_url call was signed over before: no URL at all.
	old := get("https://shop.example" + at)
	old.Header.Set(HeaderSignature, Sign([][]byte{key}, id, now.Unix(), nil))
	if err := Verify(secret, old, nil, time.Minute); !errors.Is(err, ErrSignature) {
		t.Errorf("a signature over no URL: %v", err)
	}
}
