package api

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clientFrom is an HTTP client whose connections come from the loopback
// address ip (127.0.0.2...: Linux routes all of 127/8 to lo), so the test
// server sees another client address. It skips the test where such an
// address cannot be bound.
func (h *harness) clientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	return clientFromTo(t, ip, h.ts.Listener.Addr().String())
}

// clientFromTo is clientFrom for the server at addr.
func clientFromTo(t *testing.T, ip, addr string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot connect from %s: %v", ip, err)
	}
	conn.Close()
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestFailedAuthLimit: wrong API keys and admin tokens are limited per
// client address, through a real server. After AuthFailBurst failures the
// address gets 429 RATE_LIMITED with Retry-After for any credentials, good
// ones too, before they are looked at; another address is served, and
// successes take nothing; once a token refills (the injected clock) the
// address is served again.
func TestFailedAuthLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AuthFailRate, c.AuthFailBurst = 0.5, 3 })
	m := h.seedSetup()
	other := h.clientFrom(t, "127.0.0.2")
	third := h.clientFrom(t, "127.0.0.3")
	withKey := func(c *http.Client, key, path string) resp {
		return h.do(req{method: "GET", path: path, header: map[string]string{"X-Api-Key": key}, client: c})
	}
	withToken := func(c *http.Client, token string) resp {
		return h.do(req{method: "GET", path: "/admin/v1/rates", header: map[string]string{"Authorization": "Bearer " + token}, client: c})
	}
	limited := func(what string, r resp, retryAfter string) {
		t.Helper()
		if r.Status != http.StatusTooManyRequests || r.errCode(t) != CodeRateLimited || r.Header.Get("Retry-After") != retryAfter {
			t.Errorf("%s: %d Retry-After %q %s, want 429 RATE_LIMITED, Retry-After %s", what, r.Status, r.Header.Get("Retry-After"), r.Body, retryAfter)
		}
	}

	// A missing key is no guess: not counted.
	for range 10 {
		if r := h.do(req{method: "GET", path: "/api/v1/balance"}); r.errCode(t) != CodeAPIKeyMissing {
			t.Fatalf("no key: %d %s", r.Status, r.Body)
		}
	}
	for i := range 3 {
		if r := withKey(nil, fmt.Sprintf("pl_wrong_%d", i), "/api/v1/balance"); r.Status != http.StatusUnauthorized || r.errCode(t) != CodeAPIKeyInvalid {
			t.Fatalf("bad key %d: %d %s", i+1, r.Status, r.Body)
		}
	}
	limited("4th bad key", withKey(nil, "pl_wrong_4", "/api/v1/balance"), "2")
	// Refused before the key is looked at: a good key, or the admin token,
	// from that address learns nothing either.
	limited("good key from the limited address", withKey(nil, m.Key, "/api/v1/balance"), "2")
	limited("admin token from the limited address", withToken(nil, testAdminToken), "2")
	if r := h.do(req{method: "POST", path: "/api/einvoice/create", body: seed001Request, header: map[string]string{"X-Api-Key": "pl_wrong"}}); r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "2" ||
		!strings.Contains(string(r.Body), `"code":6`) {
		t.Errorf("e-invoice from the limited address: %d %v %s", r.Status, r.Header, r.Body)
	}

	// Another address is served.
	if r := withKey(other, m.Key, "/api/v1/balance"); r.Status != http.StatusOK {
		t.Errorf("good key from another address: %d %s", r.Status, r.Body)
	}
	if r := withToken(other, testAdminToken); r.Status != http.StatusOK {
		t.Errorf("admin token from another address: %d %s", r.Status, r.Body)
	}
	// Bad admin tokens count the same way, in the same bucket as keys.
	for i := range 2 {
		r := withToken(other, "wrong-token")
		if r.Status != http.StatusUnauthorized || r.errCode(t) != CodeAdminTokenInvalid || !strings.Contains(r.Header.Get("WWW-Authenticate"), "invalid_token") {
			t.Fatalf("bad token %d: %d %v %s", i+1, r.Status, r.Header, r.Body)
		}
	}
	if r := withKey(other, "pl_wrong", "/api/v1/invoices"); r.errCode(t) != CodeAPIKeyInvalid {
		t.Fatalf("3rd failure from the other address: %d %s", r.Status, r.Body)
	}
	limited("4th failure from the other address", withToken(other, "wrong-token"), "2")

	// Successes take no token: many good requests, then still the whole
	// burst of failures.
	for i := range 50 {
		if r := withKey(third, m.Key, "/api/v1/balance"); r.Status != http.StatusOK {
			t.Fatalf("good request %d: %d %s", i, r.Status, r.Body)
		}
	}
	for i := range 3 {
		if r := withKey(third, "pl_wrong", "/api/v1/balance"); r.errCode(t) != CodeAPIKeyInvalid {
			t.Fatalf("bad key %d after good ones: %d %s", i+1, r.Status, r.Body)
		}
	}
	limited("4th bad key from the third address", withKey(third, "pl_wrong", "/api/v1/balance"), "2")

	// A token refills in 2s: one more try, then limited again.
	h.clock.Advance(2 * time.Second)
	if r := withKey(nil, m.Key, "/api/v1/balance"); r.Status != http.StatusOK {
		t.Errorf("good key after the wait: %d %s", r.Status, r.Body)
	}
	if r := withKey(nil, "pl_wrong", "/api/v1/balance"); r.errCode(t) != CodeAPIKeyInvalid {
		t.Errorf("bad key after the wait: %d %s", r.Status, r.Body)
	}
	limited("the next bad key", withKey(nil, "pl_wrong", "/api/v1/balance"), "2")
	h.clock.Advance(time.Minute)
	if r := withToken(nil, testAdminToken); r.Status != http.StatusOK {
		t.Errorf("admin token a minute later: %d %s", r.Status, r.Body)
	}

	logs := h.logs.String()
	if !strings.Contains(logs, "failed authentications limited") || !strings.Contains(logs, "client=127.0.0.1") {
		t.Errorf("no log line for the limited address:\n%s", logs)
	}
	if strings.Contains(logs, "pl_wrong") || strings.Contains(logs, "wrong-token") || strings.Contains(logs, m.Key) {
		t.Errorf("a credential reached the log:\n%s", logs)
	}
}

// TestFailedAuthLimitOff: a negative AuthFailRate disables the limit.
func TestFailedAuthLimitOff(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AuthFailRate = -1 })
	for i := range 2 * DefaultAuthFailBurst {
		if r := h.do(req{method: "GET", path: "/api/v1/balance", header: map[string]string{"X-Api-Key": "pl_wrong"}}); r.Status != http.StatusUnauthorized {
			t.Fatalf("bad key %d: %d %s", i+1, r.Status, r.Body)
		}
	}
	if n := h.srv.authFails.Len(); n != 0 {
		t.Errorf("the disabled limit holds %d addresses", n)
	}
}

// TestFailedAuthLimitDefault: with the default settings DefaultAuthFailBurst
// bad keys are answered 401, the next 429.
func TestFailedAuthLimitDefault(t *testing.T) {
	h := newHarness(t)
	for i := range DefaultAuthFailBurst {
		if r := h.do(req{method: "GET", path: "/api/v1/balance", header: map[string]string{"X-Api-Key": "pl_wrong"}}); r.Status != http.StatusUnauthorized {
			t.Fatalf("bad key %d: %d %s", i+1, r.Status, r.Body)
		}
	}
	r := h.do(req{method: "GET", path: "/api/v1/balance", header: map[string]string{"X-Api-Key": "pl_wrong"}})
	if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "1" {
		t.Errorf("bad key %d: %d %v %s", DefaultAuthFailBurst+1, r.Status, r.Header.Get("Retry-After"), r.Body)
	}
}

// TestClientAddr: without trusted proxies the remote address, never a
// forwarding header; IPv4-mapped IPv6 as IPv4; IPv6 by its /64.
func TestClientAddr(t *testing.T) {
	for _, tc := range []struct{ remote, want string }{
		{"192.0.2.7:51000", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:51000", "192.0.2.7"},
		{"[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2::1]:1", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
		{"@", "@"},
	} {
		r, _ := http.NewRequestWithContext(context.Background(), "GET", "/", nil)
		r.RemoteAddr = tc.remote
		r.Header.Set("X-Forwarded-For", "203.0.113.9")
		r.Header.Set("X-Real-Ip", "203.0.113.9")
		if got, peer := (&Server{}).clientAddr(r); got != tc.want || peer != "" {
			t.Errorf("clientAddr(%q) = %q, %q, want %q", tc.remote, got, peer, tc.want)
		}
	}
}

// TestReplayCacheBounded: the replay cache holds at most
// MaxSignaturesPerMerchant signatures of a merchant and MaxSignatures in
// all. Past a bound a new signed request is refused (429 for the merchant,
// 503 for the server) with Retry-After until the earliest expires; a replay
// is still SIGNATURE_REPLAYED, never let through; unsigned requests are not
// affected.
func TestReplayCacheBounded(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxSignaturesPerMerchant, c.MaxSignatures = 3, 5 })
	a, b, c := h.newMerchant(`{"name": "a"}`), h.newMerchant(`{"name": "b"}`), h.newMerchant(`{"name": "c"}`)
	t0 := h.clock.Now().UnixMilli()
	signed := func(m merchant, ts int64) resp {
		tss := strconv.FormatInt(ts, 10)
		sig := Sign(h.kr.SigningKey(m.ID, 1), tss, "GET", "/api/v1/balance", nil)
		return h.do(req{method: "GET", path: "/api/v1/balance", header: map[string]string{
			"X-Api-Key": m.Key, "X-Timestamp": tss, "X-Signature": sig}})
	}
	ok := func(what string, r resp) {
		t.Helper()
		if r.Status != http.StatusOK {
			t.Fatalf("%s: %d %s", what, r.Status, r.Body)
		}
	}
	refused := func(what string, r resp, status int, code, retryAfter string) {
		t.Helper()
		if r.Status != status || r.errCode(t) != code || r.Header.Get("Retry-After") != retryAfter {
			t.Errorf("%s: %d %q Retry-After %q %s, want %d %s Retry-After %s", what, r.Status, r.errCode(t), r.Header.Get("Retry-After"), r.Body, status, code, retryAfter)
		}
	}
	for i := range 3 {
		ok(fmt.Sprint("a's signed request ", i), signed(a, t0+int64(i)))
	}
	// The earliest of a's signatures is held until t0 + 3 min inclusive.
	refused("a's 4th signature", signed(a, t0+3), http.StatusTooManyRequests, CodeRateLimited, "181")
	refused("a's replay at its cap", signed(a, t0), http.StatusUnauthorized, CodeSignatureReplayed, "")
	ok("a's unsigned request", h.api(a, "GET", "/api/v1/balance", ""))
	ok("b's 1st", signed(b, t0+10*1000))
	ok("b's 2nd", signed(b, t0+10*1000+1))
	refused("c's 1st with the cache full", signed(c, t0), http.StatusServiceUnavailable, CodeUnavailable, "181")
	refused("b's replay with the cache full", signed(b, t0+10*1000), http.StatusUnauthorized, CodeSignatureReplayed, "")
	ok("c's unsigned request", h.api(c, "GET", "/api/v1/balance", ""))

	// 3 min later (a's are held to the millisecond, inclusive): still full.
	h.clock.Advance(3 * time.Minute)
	refused("c at a's last held instant", signed(c, t0+3*60*1000), http.StatusServiceUnavailable, CodeUnavailable, "1")
	h.clock.Advance(time.Second)
	// a's three have expired; their timestamps are now outside the window,
	// so they cannot be replayed either.
	ok("c once a's expired", signed(c, t0+3*60*1000))
	refused("a's first, replayed after expiry", signed(a, t0), http.StatusUnauthorized, CodeSignatureExpired, "")
	ok("a again", signed(a, t0+3*60*1000+1))
	refused("b's replay, still held", signed(b, t0+10*1000), http.StatusUnauthorized, CodeSignatureReplayed, "")
	if n := h.srv.replays.len(); n != 4 {
		t.Errorf("the cache holds %d signatures, want 4 (b's 2, c's, a's)", n)
	}
}

// TestReplayCacheConcurrent: signed requests sent at once never get more
// than the cap past, and each signature once at most.
func TestReplayCacheConcurrent(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxSignaturesPerMerchant = 5 })
	m := h.newMerchant(`{"name": "busy"}`)
	t0 := h.clock.Now().UnixMilli()
	out := h.concurrently(40, func(i int) resp {
		tss := strconv.FormatInt(t0+int64(i%20), 10) // each signature twice
		sig := Sign(h.kr.SigningKey(m.ID, 1), tss, "GET", "/api/v1/balance", nil)
		return h.do(req{method: "GET", path: "/api/v1/balance", header: map[string]string{
			"X-Api-Key": m.Key, "X-Timestamp": tss, "X-Signature": sig}})
	})
	passed := map[int]int{}
	for i, r := range out {
		switch r.Status {
		case http.StatusOK:
			passed[i%20]++
		case http.StatusTooManyRequests, http.StatusUnauthorized:
		default:
			t.Errorf("request %d: %d %s", i, r.Status, r.Body)
		}
	}
	if len(passed) != 5 {
		t.Errorf("%d signatures passed, want the cap, 5", len(passed))
	}
	for sig, n := range passed {
		if n != 1 {
			t.Errorf("signature %d passed %d times", sig, n)
		}
	}
}

// TestReplayCacheModel runs the cache against a plain map of every
// signature ever accepted: an unexpired one is never accepted twice, and a
// refusal for a full cache happens only when it is full of unexpired ones.
func TestReplayCacheModel(t *testing.T) {
	const window = 10 * time.Second
	c := newReplayCache(20, 50)
	rng := rand.New(rand.NewPCG(1, 2))
	accepted := map[string]time.Time{} // merchant/mac -> expiry
	outcomes := map[string]int{}
	now := seedTime
	for i := range 20_000 {
		now = now.Add(time.Duration(rng.IntN(300)) * time.Millisecond)
		merchant := fmt.Sprint("m", min(rng.IntN(8), 4)) // m4 half the time
		var mac [32]byte
		mac[0], mac[1] = byte(rng.IntN(40)), byte(i%3)
		at := now.Add(time.Duration(rng.Int64N(int64(2*window))) - window)
		exp := at.Add(window)
		key := merchant + "/" + string(mac[:])
		held, mine := 0, 0
		for k, e := range accepted {
			if !now.After(e) {
				held++
				if strings.HasPrefix(k, merchant+"/") {
					mine++
				}
			}
		}
		prev, seen := accepted[key]
		err := c.first(merchant, mac[:], exp, now)
		code := "accepted"
		if err != nil {
			ae, _ := classify(err)
			code = ae.Code
		}
		outcomes[code]++
		if err != nil {
			ae, _ := classify(err)
			if code != CodeSignatureReplayed && ae.RetryAfter < 1 {
				t.Fatalf("step %d: %v without Retry-After", i, err)
			}
		}
		switch {
		case seen && !now.After(prev):
			if code != CodeSignatureReplayed {
				t.Fatalf("step %d: a held signature: %v, want SIGNATURE_REPLAYED", i, err)
			}
		case code == CodeRateLimited:
			if mine < 20 {
				t.Fatalf("step %d: refused for the merchant with %d of its signatures held", i, mine)
			}
		case code == CodeUnavailable:
			if held < 50 {
				t.Fatalf("step %d: refused for the server with %d signatures held", i, held)
			}
		case err != nil:
			t.Fatalf("step %d: %v", i, err)
		default:
			if mine >= 20 || held >= 50 {
				t.Fatalf("step %d: accepted past a bound: %d held, %d of the merchant's", i, held, mine)
			}
			accepted[key] = exp
		}
		if c.len() > 50 {
			t.Fatalf("step %d: %d held, bound 50", i, c.len())
		}
	}
	for _, code := range []string{"accepted", CodeSignatureReplayed, CodeRateLimited, CodeUnavailable} {
		if outcomes[code] == 0 {
			t.Errorf("no %s in %v: the model does not reach every case", code, outcomes)
		}
	}
	t.Logf("outcomes: %v", outcomes)
}

// len is the number of signatures held.
func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
