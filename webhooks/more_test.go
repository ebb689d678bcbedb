package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/commands"
)

// A dispatcher stopped in the middle of retries and a new one opened on
// the same file: every delivery still arrives, none is made twice.
func TestRestartMidRetryLosesNothing(t *testing.T) {
	e := newEnv(t)
	var failing atomic.Bool
	failing.Store(true)
	rc := newReceiver(t, false, func(*http.Request, int) (int, http.Header) {
		if failing.Load() {
			return http.StatusBadGateway, nil
		}
		return http.StatusOK, nil
	})
	rc.secret = func(string) string { return e.kr.SigningSecret("m1", 1) }
	e.merchant("m1", rc.URL())
	path := filepath.Join(t.TempDir(), FileName)
	d, stop := e.dispatcher(path, e.config())
	firstInv, _ := e.paidInvoice("m1", "")
	waitFor(t, 10*time.Second, func() error {
		del, err := findFor(d, "m1", commands.TypeInvoiceCreated, firstInv)
		if err != nil {
			return err // not ingested yet
		}
		if del.AttemptCount < 3 {
			return &statusError{del}
		}
		return nil
	})
	stop() // mid-retry
	// Events committed while no dispatcher runs are not lost either.
	inv := e.invoice("m1", "")
	e.cancel("m1", inv)
	failing.Store(false)
	d2, _ := e.dispatcher(path, e.config())
	checkDelivered(t, d2, "m1", rc, 7)
	// No delivery was made twice: one per event, and the attempts of the
	// first run are kept.
	full, _ := d2.Delivery("m1", mustFindFor(t, d2, "m1", commands.TypeInvoiceCreated, firstInv).ID)
	if len(full.Attempts) < 4 {
		t.Errorf("attempts across the restart: %d", len(full.Attempts))
	}
	if cp := d2.Checkpoint(); cp != e.store.Head().Seq {
		t.Errorf("checkpoint %d, log head %d", cp, e.store.Head().Seq)
	}
}

// Ingest is idempotent: the same events again change nothing; a gap is refused.
func TestIngestIdempotentAndGapRefused(t *testing.T) {
	e := newEnv(t)
	e.merchant("m1", "http://127.0.0.1:9/hook")
	e.invoice("m1", "")
	d, err := Open(filepath.Join(t.TempDir(), FileName), e.config())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var all []ledgerEvent
	for ev, err := range e.store.Events(context.Background(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ev)
	}
	if err := d.Ingest(all); err != nil {
		t.Fatal(err)
	}
	if err := d.Ingest(all); err != nil {
		t.Fatalf("again: %v", err)
	}
	p, _ := d.ListDeliveries("m1", ListQuery{})
	if p.Details.TotalObjects != 1 {
		t.Fatalf("%d deliveries, want 1", p.Details.TotalObjects)
	}
	e.cancel("m1", p.Items[0].ResourceID)
	last, _ := e.store.Get(e.store.Head().Seq)
	last.Seq += 5
	if err := d.Ingest([]ledgerEvent{last}); !errors.Is(err, ErrSequenceGap) {
		t.Fatalf("gap: %v", err)
	}
}

// Without AllowPrivate: plain http is refused for good; an https target
// on loopback, or at an IPv6 form of loopback, is refused at connect time;
// so is a redirect to one.
func TestSSRFRefusals(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, true, nil) // https on 127.0.0.1
	plain := newReceiver(t, false, nil)
	cfg := e.config()
	cfg.AllowPrivate = false
	cfg.TLSConfig = rc.tlsConfig()
	cfg.MaxAttempts = 2

	e.merchant("plain", plain.URL())
	e.merchant("direct", rc.URL())
	// The same receiver at an IPv4-compatible IPv6 form of 127.0.0.1.
	e.merchant("compat", fmt.Sprintf("https://[::127.0.0.1]:%d/hook", mustPort(t, rc.srv.URL)))
	d, _ := e.dispatcher("", cfg)
	e.invoice("plain", "")
	e.invoice("direct", "")
	e.invoice("compat", "")
	waitFor(t, 10*time.Second, func() error {
		for _, m := range []string{"plain", "direct", "compat"} {
			p, _ := d.ListDeliveries(m, ListQuery{Status: StatusFailed})
			if p.Details.TotalObjects != 1 {
				return errors.New(m + " not failed yet")
			}
		}
		return nil
	})
	pl := mustFind(t, d, "plain", commands.TypeInvoiceCreated)
	if pl.FailReason != ReasonTargetRefused || pl.AttemptCount != 1 || !strings.Contains(pl.LastError, "plain http") {
		t.Errorf("plain http: %+v", pl)
	}
	di := mustFind(t, d, "direct", commands.TypeInvoiceCreated)
	if di.FailReason != ReasonGaveUp || !strings.Contains(di.LastError, "loopback") {
		t.Errorf("loopback: %+v", di)
	}
	co := mustFind(t, d, "compat", commands.TypeInvoiceCreated)
	if co.FailReason != ReasonGaveUp || !strings.Contains(co.LastError, "IPv4-compatible address embedding 127.0.0.1") {
		t.Errorf("IPv4-compatible loopback: %+v", co)
	}
	if n := len(rc.requests()) + len(plain.requests()); n != 0 {
		t.Fatalf("refused targets got %d requests", n)
	}
}

func TestCheckAddr(t *testing.T) {
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"93.184.216.34", true}, {"2606:2800:220:1:248:1893:25c8:1946", true}, {"8.8.8.8", true},
		{"127.0.0.1", false}, {"127.1.2.3", false}, {"::1", false}, {"10.0.0.1", false}, {"172.16.5.4", false},
		{"192.168.1.1", false}, {"169.254.169.254", false}, {"fe80::1", false}, {"0.0.0.0", false}, {"::", false},
		{"100.64.0.1", false}, {"100.127.255.254", false}, {"224.0.0.1", false}, {"ff02::1", false},
		{"fd00::1", false}, {"::ffff:127.0.0.1", false}, {"::ffff:10.1.1.1", false}, {"64:ff9b::a00:1", false},
		{"255.255.255.255", false}, {"198.18.0.1", false},
	} {
		err := CheckAddr(netip.MustParseAddr(c.addr))
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrRefused)) {
			t.Errorf("%s: %v, want ok=%v", c.addr, err, c.ok)
		}
	}
}

// The refusal of embedded IPv4 addresses is made where the dialer checks
// the address it is about to connect to: a receiver on 127.0.0.1, reached
// at IPv6 forms of that address, gets no request. (An address that is
// not a literal resolves to these forms and meets the same check: the
// dialer hands Control the resolved address.)
func TestDialRefusesEmbeddedLoopback(t *testing.T) {
	rc := newReceiver(t, true, nil) // https on 127.0.0.1
	port := mustPort(t, rc.srv.URL)
	cfg, _ := Config{Keys: noKeys{}, TLSConfig: rc.tlsConfig(), AttemptTimeout: 2 * time.Second}.withDefaults()
	client := newClient(cfg)
	for _, c := range []struct{ host, why string }{
		{"[::127.0.0.1]", "IPv4-compatible address embedding 127.0.0.1"},
		{"[::ffff:127.0.0.1]", "loopback address"},
		{"[::ffff:0:127.0.0.1]", "IPv4-translated address embedding 127.0.0.1"},
		{"[64:ff9b::127.0.0.1]", "NAT64 address embedding 127.0.0.1"},
		{"[2002:7f00:1::1]", "6to4 address embedding 127.0.0.1"},
		{"[2002:7f00:1::1%25lo]", "6to4 address embedding 127.0.0.1"},
	} {
		u := fmt.Sprintf("https://%s:%d/hook", c.host, port)
		req, err := http.NewRequest(http.MethodPost, u, strings.NewReader("{}"))
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: %v, want a refusal saying %q", u, err, c.why)
		}
	}
	if n := len(rc.requests()); n != 0 {
		t.Fatalf("the receiver got %d requests", n)
	}
}

// The dial check runs at connect time on every connection, including a
// redirect's: a public-looking first hop that redirects to loopback is
// refused. (The test stands in a policy that lets the first server's port
// through as if it were public.)
func TestRedirectToPrivateRefused(t *testing.T) {
	inner := newReceiver(t, true, nil)
	var hops atomic.Int32
	outer := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hops.Add(1)
		http.Redirect(w, r, inner.URL(), http.StatusTemporaryRedirect)
	}))
	defer outer.Close()
	outerPort := mustPort(t, outer.URL)
	ctl := func(ctx context.Context, network, address string, c syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err == nil && ap.Port() == outerPort {
			return nil // "public"
		}
		return dialControl(ctx, network, address, c)
	}
	pool := inner.tlsConfig()
	pool.RootCAs.AddCert(outer.Certificate())
	cfg, _ := Config{Keys: noKeys{}, TLSConfig: pool, AttemptTimeout: 2 * time.Second}.withDefaults()
	client := newClientControl(cfg, ctl)

	req, _ := http.NewRequest(http.MethodPost, outer.URL+"/hook", strings.NewReader("{}"))
	req.GetBody = func() (io_ReadCloser, error) { return io_NopCloser(strings.NewReader("{}")), nil }
	_, err := client.Do(req)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("redirect to loopback: %v", err)
	}
	if hops.Load() != 1 || len(inner.requests()) != 0 {
		t.Fatalf("outer %d requests, inner %d", hops.Load(), len(inner.requests()))
	}

	// A redirect to plain http is refused by scheme; 302 would turn the POST into a GET.
	for _, c := range []struct {
		to     string
		status int
		want   string
	}{{"http://example.com/hook", http.StatusTemporaryRedirect, "plain http"}, {inner.URL(), http.StatusFound, "would change POST"}} {
		outer.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, c.to, c.status) })
		req, _ := http.NewRequest(http.MethodPost, outer.URL+"/hook", strings.NewReader("{}"))
		_, err := client.Do(req)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("redirect %d to %s: %v", c.status, c.to, err)
		}
	}
}

func mustPort(t *testing.T, raw string) uint16 {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	ap, err := netip.ParseAddrPort(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	return ap.Port()
}

// A receiver that hangs does not hold up another merchant's.
func TestSlowReceiverDoesNotBlockOthers(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	slow := newReceiver(t, false, func(r *http.Request, n int) (int, http.Header) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return 599, nil
	})
	fast := newReceiver(t, false, nil)
	fast.secret = func(string) string { return e.kr.SigningSecret("fast", 1) }
	e.merchant("slow", slow.URL())
	e.merchant("fast", fast.URL())
	cfg := e.config()
	// The slow receiver's attempts end only with the test: far past
	// checkDelivered's 20 s deadline, so fast deliveries that wait for
	// a slow attempt to time out fail there.
	cfg.AttemptTimeout = time.Minute
	cfg.PerHostConcurrency = 2
	cfg.Concurrency = 4
	d, _ := e.dispatcher("", cfg)
	for range 10 {
		e.invoice("slow", "")
	}
	waitFor(t, 5*time.Second, func() error {
		if st := d.Stats(); st.InFlight < 2 {
			return errors.New("slow receiver not yet holding its slots")
		}
		return nil
	})
	for range 10 {
		e.invoice("fast", "")
	}
	checkDelivered(t, d, "fast", fast, 10)
	// Once the fast merchant's attempts are recorded, the slow host still
	// holds its 2 slots, and no more.
	waitFor(t, 5*time.Second, func() error {
		if st := d.Stats(); st.InFlight != 2 {
			return fmt.Errorf("%d attempts in flight, want the slow host's 2", st.InFlight)
		}
		return nil
	})
	close(release)
}

// Merchants list (filtered, paginated), get, redeliver one with the same
// webhook-id, and redeliver everything since a time.
func TestListGetRedeliver(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, false, func(r *http.Request, n int) (int, http.Header) {
		var b struct{ Status string }
		_ = json.NewDecoder(r.Body).Decode(&b)
		if b.Status == commands.InvoiceStatusCancelled && n == 1 {
			return http.StatusBadRequest, nil // the cancelled webhooks fail the first time
		}
		return http.StatusOK, nil
	})
	e.merchant("m1", rc.URL())
	e.merchant("m2", rc.URL())
	cfg := e.config()
	cfg.MaxAttempts = 1
	d, _ := e.dispatcher("", cfg)
	for range 3 {
		inv := e.invoice("m1", "")
		e.cancel("m1", inv)
	}
	e.invoice("m2", "")
	waitFor(t, 10*time.Second, func() error {
		p, _ := d.ListDeliveries("m1", ListQuery{Status: StatusPending})
		q, _ := d.ListDeliveries("m1", ListQuery{})
		if p.Details.TotalObjects != 0 || q.Details.TotalObjects != 6 {
			return errors.New("not settled")
		}
		return nil
	})
	failed, err := d.ListDeliveries("m1", ListQuery{Status: StatusFailed, PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := projectionsPageDetails{PageNumber: 1, PageSize: 2, TotalPages: 2, TotalObjects: 3}
	if failed.Details != want || len(failed.Items) != 2 {
		t.Fatalf("failed page 1: %+v, %d items", failed.Details, len(failed.Items))
	}
	page2, _ := d.ListDeliveries("m1", ListQuery{Status: StatusFailed, Page: 2, PageSize: 2})
	if len(page2.Items) != 1 || page2.Items[0].ID == failed.Items[0].ID || page2.Items[0].ID == failed.Items[1].ID {
		t.Fatalf("failed page 2: %+v", page2.Items)
	}
	if !failed.Items[0].CreatedAt.After(page2.Items[0].CreatedAt) && !failed.Items[0].CreatedAt.Equal(page2.Items[0].CreatedAt) {
		t.Errorf("not newest first")
	}
	delivered, _ := d.ListDeliveries("m1", ListQuery{Status: StatusDelivered})
	if delivered.Details.TotalObjects != 3 {
		t.Fatalf("delivered: %+v", delivered.Details)
	}
	var qe *QueryError
	if _, err := d.ListDeliveries("m1", ListQuery{Status: "nope"}); !errors.Is(err, ErrInvalidQuery) || !errors.As(err, &qe) || len(qe.Fields) != 1 || qe.Fields[0].Path != "status" {
		t.Fatalf("bad status: %v", err)
	}
	// Another merchant's delivery is not found.
	if _, err := d.Delivery("m2", failed.Items[0].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other merchant: %v", err)
	}
	if _, err := d.Redeliver("m2", failed.Items[0].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other merchant's redeliver: %v", err)
	}
	if _, err := d.Delivery("m1", ulid.Make().String()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}

	// Redeliver one: same webhook-id; its attempts show the redelivery.
	one := failed.Items[0]
	before := len(rc.requests())
	if _, err := d.Redeliver("m1", one.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error { return statusIs(d, "m1", one.EventType, one.ResourceID, StatusDelivered) })
	got, _ := d.Delivery("m1", one.ID)
	if len(got.Attempts) != 2 || !got.Attempts[1].Redelivery || got.Attempts[1].StatusCode != 200 || got.Redeliveries != 1 {
		t.Fatalf("after redelivery: %+v", got)
	}
	reqs := rc.requests()
	if len(reqs) != before+1 || reqs[len(reqs)-1].ID != one.WebhookID {
		t.Fatalf("redelivered request: %+v", reqs[before:])
	}

	// Redeliver everything since the first event: 6 deliveries of m1, none of m2.
	since := failed.Items[len(failed.Items)-1].CreatedAt.Add(-time.Hour)
	n, err := d.RedeliverSince("m1", since, "")
	if err != nil || n != 6 {
		t.Fatalf("redeliver since: %d, %v", n, err)
	}
	waitFor(t, 10*time.Second, func() error {
		p, _ := d.ListDeliveries("m1", ListQuery{Status: StatusDelivered})
		if p.Details.TotalObjects != 6 {
			return errors.New("not all delivered again")
		}
		return nil
	})
	if n, _ := d.RedeliverSince("m1", time.Now().Add(time.Hour), ""); n != 0 {
		t.Errorf("since the future: %d", n)
	}
	_, err = d.RedeliverSince("m1", time.Time{}, "nope")
	if !errors.Is(err, ErrInvalidQuery) || !errors.As(err, &qe) || len(qe.Fields) != 2 || qe.Fields[0].Path != "since" || qe.Fields[1].Path != "status" {
		t.Errorf("zero since, unknown status: %v", err)
	}
}

// An invoice's callback_url (https) overrides the merchant's URL, for the
// invoice's and its payments' webhooks; an e-invoice's status_url gets a
// signed GET on the final status.
func TestCallbackURLAndStatusURL(t *testing.T) {
	e := newEnv(t)
	merchantRC := newReceiver(t, false, nil)
	callback := newReceiver(t, true, nil)
	callback.secret = func(string) string { return e.kr.SigningSecret("m1", 1) }
	status := newReceiver(t, false, nil)
	status.secret = callback.secret
	e.merchant("m1", merchantRC.URL())
	cfg := e.config()
	cfg.TLSConfig = callback.tlsConfig()
	d, _ := e.dispatcher("", cfg)
	e.paidInvoice("m1", callback.URL())
	checkDelivered(t, d, "m1", callback, 5)
	if n := len(merchantRC.requests()); n != 0 {
		t.Fatalf("merchant URL got %d requests; the callback_url overrides it", n)
	}

	inv, err := e.svc.CreateEInvoice(e.ctx, commands.CreateEInvoice{
		Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: "m1", PaymentID: "order-77", Method: "bitcoin",
		Amount: "100.00", Description: "e-invoice", StatusURL: status.URL() + "?shop=1", Rate: e.rate,
	})
	if err != nil {
		t.Fatalf("e-invoice: %v", err)
	}
	e.cancel("m1", inv.InvoiceID)
	waitFor(t, 10*time.Second, func() error {
		return statusIs(d, "m1", commands.TypeInvoiceCancelled, inv.InvoiceID, StatusDelivered)
	})
	var get received
	waitFor(t, 10*time.Second, func() error {
		if r := status.accepted(); len(r) == 1 {
			get = r[0]
			return nil
		}
		return errors.New("no status_url call yet")
	})
	u, _ := url.Parse(get.URL)
	q := u.Query()
	if get.Method != http.MethodGet || len(get.Body) != 0 || q.Get("status") != "cancelled" || q.Get("payment_id") != "order-77" ||
		q.Get("tracking") != inv.Tracking || q.Get("shop") != "1" || get.VerifyErr != nil {
		t.Fatalf("status_url call: %+v (query %v)", get, q)
	}
	sd, err := d.Delivery("m1", get.ID+statusSuffix)
	if err != nil || sd.Kind != KindStatusURL || sd.Status != StatusDelivered {
		t.Fatalf("status delivery: %+v, %v", sd, err)
	}
}

// While a secret rotates, webhooks carry two signatures: either secret
// verifies; after PreviousValidUntil, only the new one.
func TestRotationSignsTwice(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, false, nil)
	e.merchant("m1", rc.URL())
	d, _ := e.dispatcher("", e.config())
	if _, err := e.svc.RotateSigningSecret(e.ctx, commands.RotateSigningSecret{
		Meta: e.meta(), MerchantID: "m1", Secret: fixedSecret(strings.Repeat("a", 64)), Overlap: time.Hour,
	}); err != nil {
		t.Fatal(err)
	}
	e.invoice("m1", "")
	waitFor(t, 10*time.Second, func() error {
		if len(rc.accepted()) == 1 {
			return nil
		}
		return errors.New("not yet")
	})
	r := rc.accepted()[0]
	h := hdr(r.ID, r.Timestamp, r.Signature)
	if n := len(strings.Fields(r.Signature)); n != 2 {
		t.Fatalf("%d signatures during rotation: %q", n, r.Signature)
	}
	for v := 1; v <= 2; v++ {
		if err := Verify(e.kr.SigningSecret("m1", v), posted(h), r.Body, time.Minute); err != nil {
			t.Errorf("secret version %d: %v", v, err)
		}
	}
	if err := Verify(e.kr.SigningSecret("m1", 3), posted(h), r.Body, time.Minute); !errors.Is(err, ErrSignature) {
		t.Errorf("unknown secret: %v", err)
	}
	// Without overlap: one signature, the new secret's.
	if _, err := e.svc.RotateSigningSecret(e.ctx, commands.RotateSigningSecret{
		Meta: e.meta(), MerchantID: "m1", Secret: fixedSecret(strings.Repeat("b", 64)),
	}); err != nil {
		t.Fatal(err)
	}
	e.invoice("m1", "")
	waitFor(t, 10*time.Second, func() error {
		if len(rc.accepted()) == 2 {
			return nil
		}
		return errors.New("not yet")
	})
	r = rc.accepted()[1]
	h = hdr(r.ID, r.Timestamp, r.Signature)
	if len(strings.Fields(r.Signature)) != 1 || Verify(e.kr.SigningSecret("m1", 3), posted(h), r.Body, time.Minute) != nil {
		t.Errorf("after rotation without overlap: %q", r.Signature)
	}
	_ = d
}

func TestVerify(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	secret := "whsec_" + base64Std(key)
	body := []byte(`{"status":"PROCESSED"}`)
	now := time.Unix(1_700_000_000, 0)
	h := hdr("01J00000000000000000000000", "1700000000", "")
	h.Set(HeaderSignature, Sign([][]byte{[]byte("other key"), key}, h.Get(HeaderID), now.Unix(), body))
	if err := verifyAt(secret, h, body, 5*time.Minute, now.Add(time.Minute)); err != nil {
		t.Fatalf("valid: %v", err)
	}
	for name, c := range map[string]struct {
		secret string
		h      http.Header
		body   []byte
		now    time.Time
		want   error
	}{
		"tampered body": {secret, h, []byte(`{"status":"REJECTED"}`), now, ErrSignature},
		"wrong secret":  {"whsec_" + base64Std([]byte("nope")), h, body, now, ErrSignature},
		"too old":       {secret, h, body, now.Add(6 * time.Minute), ErrTimestamp},
		"future":        {secret, h, body, now.Add(-6 * time.Minute), ErrTimestamp},
		"no signature":  {secret, hdr("x", "1", ""), body, now, ErrMissingHeader},
		"bad secret":    {"sk_live", h, body, now, ErrSecret},
		"other id":      {secret, withHeader(h, HeaderID, "01J00000000000000000000001"), body, now, ErrSignature},
		"bad timestamp": {secret, withHeader(h, HeaderTimestamp, "soon"), body, now, ErrTimestamp},
	} {
		if err := verifyAt(c.secret, c.h, c.body, 5*time.Minute, c.now); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

func withHeader(h http.Header, k, v string) http.Header {
	c := h.Clone()
	c.Set(k, v)
	return c
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 2, 25, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"": 0, "0": 0, "-5": 0, "120": 2 * time.Minute, "soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("%q: %v, want %v", in, got, want)
		}
	}
}

// The documented schedule: first attempt at once, then doubling from 10s
// to a 6h cap, 23 attempts over about three days.
func TestDefaultSchedule(t *testing.T) {
	s := Config{}.Schedule()
	if len(s) != 23 || s[0] != 0 || s[1] != 10*time.Second || s[2] != 30*time.Second {
		t.Fatalf("schedule %v", s)
	}
	last := s[len(s)-1]
	if last < 70*time.Hour || last > 74*time.Hour {
		t.Fatalf("last attempt at %v, want about 72h", last)
	}
}
