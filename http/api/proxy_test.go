package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// serverOn serves h's API on a listener at addr too ("[::1]:0" for an
// IPv6 peer); it skips the test where addr cannot be listened on.
func (h *harness) serverOn(t *testing.T, addr string) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	ts := httptest.NewUnstartedServer(h.srv.Handler())
	ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

// TestClientAddrBehindProxies: which address a failed authentication is
// counted against and logged with, through a real server and connection:
// the peer (127.0.0.1 or ::1) unless it is in TrustedProxies; behind a
// trusted peer, the first address from the right of X-Forwarded-For (its
// lines joined in order) that is not trusted itself; the peer again when
// the header names only trusted addresses or has an entry that is not an
// address on the way.
func TestClientAddrBehindProxies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		peer    string // "127.0.0.1" or "::1"
		trusted string
		xff     []string // header lines
		want    string   // the bucket
		proxy   string   // the log's proxy=, "" for none
	}{
		{name: "no setting, spoofed header", peer: "127.0.0.1", xff: []string{"203.0.113.9"}, want: "127.0.0.1"},
		{name: "untrusted peer, spoofed header", peer: "127.0.0.1", trusted: "10.0.0.0/8, 192.0.2.1", xff: []string{"203.0.113.9"}, want: "127.0.0.1"},
		{name: "untrusted IPv6 peer, spoofed header", peer: "::1", trusted: "127.0.0.1", xff: []string{"203.0.113.9"}, want: "::/64"},
		{name: "trusted peer, no header", peer: "127.0.0.1", trusted: "127.0.0.1", want: "127.0.0.1"},
		{name: "trusted peer, one entry", peer: "127.0.0.1", trusted: "127.0.0.1", xff: []string{"203.0.113.9"}, want: "203.0.113.9", proxy: "127.0.0.1"},
		{name: "trusted peer, spoofed entries left of the client", peer: "127.0.0.1", trusted: "127.0.0.0/8,10.0.0.0/8",
			xff: []string{"198.51.100.1, 203.0.113.9,10.1.2.3 ,\t10.200.0.1"}, want: "203.0.113.9", proxy: "127.0.0.1"},
		{name: "trusted peer, several lines", peer: "127.0.0.1", trusted: "127.0.0.0/8,10.0.0.0/8",
			xff: []string{"198.51.100.1", "203.0.113.9, 10.1.2.3", "10.4.5.6"}, want: "203.0.113.9", proxy: "127.0.0.1"},
		{name: "trusted peer, the client in the first line", peer: "127.0.0.1", trusted: "127.0.0.0/8,10.0.0.0/8",
			xff: []string{"198.51.100.1, 203.0.113.9", "10.1.2.3", "10.4.5.6, 10.7.8.9"}, want: "203.0.113.9", proxy: "127.0.0.1"},
		{name: "every entry trusted", peer: "127.0.0.1", trusted: "127.0.0.0/8,10.0.0.0/8", xff: []string{"10.1.2.3, 10.4.5.6", "127.0.0.5"}, want: "127.0.0.1"},
		{name: "malformed entry before the client", peer: "127.0.0.1", trusted: "127.0.0.0/8,10.0.0.0/8", xff: []string{"203.0.113.9, bogus, 10.1.2.3"}, want: "127.0.0.1"},
		{name: "malformed last line", peer: "127.0.0.1", trusted: "127.0.0.1", xff: []string{"203.0.113.9", "unknown"}, want: "127.0.0.1"},
		{name: "empty entry", peer: "127.0.0.1", trusted: "127.0.0.1", xff: []string{"203.0.113.9,"}, want: "127.0.0.1"},
		{name: "entry with a port", peer: "127.0.0.1", trusted: "127.0.0.1", xff: []string{"203.0.113.9:4711"}, want: "127.0.0.1"},
		{name: "malformed entry left of the client is not read", peer: "127.0.0.1", trusted: "127.0.0.1", xff: []string{"bogus, 203.0.113.9"}, want: "203.0.113.9", proxy: "127.0.0.1"},
		{name: "IPv6 peer and client", peer: "::1", trusted: "::1", xff: []string{"2001:db8:1:2::99"}, want: "2001:db8:1:2::/64", proxy: "::1"},
		{name: "IPv6 proxies in the chain", peer: "::1", trusted: "::1, fd00::/8", xff: []string{"2001:db8:1:2::99, fd12::7, fd00::1"}, want: "2001:db8:1:2::/64", proxy: "::1"},
		{name: "IPv4 client behind an IPv6 peer", peer: "::1", trusted: "::1/128", xff: []string{"203.0.113.9"}, want: "203.0.113.9", proxy: "::1"},
		{name: "zone dropped", peer: "127.0.0.1", trusted: "127.0.0.1", xff: []string{"fe80::1%eth0"}, want: "fe80::/64", proxy: "127.0.0.1"},
		{name: "IPv4-mapped entry matches an IPv4 prefix", peer: "127.0.0.1", trusted: "127.0.0.1, 10.0.0.0/8", xff: []string{"203.0.113.9, ::ffff:10.0.0.1"}, want: "203.0.113.9", proxy: "127.0.0.1"},
		{name: "IPv4-mapped client unmapped", peer: "127.0.0.1", trusted: "127.0.0.1", xff: []string{"::ffff:203.0.113.9"}, want: "203.0.113.9", proxy: "127.0.0.1"},
		{name: "IPv4-mapped prefixes", peer: "127.0.0.1", trusted: "::ffff:127.0.0.1, ::ffff:10.0.0.0/104", xff: []string{"203.0.113.9, 10.1.2.3"}, want: "203.0.113.9", proxy: "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxies, err := ParseTrustedProxies(tc.trusted)
			if err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, func(c *Config) { c.AuthFailRate, c.AuthFailBurst, c.TrustedProxies = 0.001, 1, proxies })
			ts := h.ts
			if tc.peer == "::1" {
				ts = h.serverOn(t, "[::1]:0")
			}
			hr, err := http.NewRequestWithContext(context.Background(), "GET", ts.URL+"/api/v1/balance", nil)
			if err != nil {
				t.Fatal(err)
			}
			hr.Header.Set("X-Api-Key", "pl_wrong")
			for _, line := range tc.xff {
				hr.Header.Add("X-Forwarded-For", line)
			}
			res, err := ts.Client().Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusUnauthorized {
				t.Fatalf("bad key: %d", res.StatusCode)
			}
			if _, blocked := h.srv.authFails.Blocked(tc.want, h.clock.Now()); !blocked || h.srv.authFails.Len() != 1 {
				t.Errorf("the failure is not counted against %s alone (%d buckets)", tc.want, h.srv.authFails.Len())
			}
			logs := h.logs.String()
			if !strings.Contains(logs, "client="+tc.want+" ") {
				t.Errorf("the log does not name client %s:\n%s", tc.want, logs)
			}
			if tc.proxy == "" && strings.Contains(logs, " proxy=") || tc.proxy != "" && !strings.Contains(logs, " proxy="+tc.proxy+" ") {
				t.Errorf("the log should name proxy %q:\n%s", tc.proxy, logs)
			}
		})
	}
}

// TestTrustedProxyEndToEnd: two clients (127.0.0.2, 127.0.0.3) reach the
// API through one real reverse proxy (httputil.ReverseProxy, connecting
// from 127.0.0.1 and appending the client to X-Forwarded-For). One keeps
// sending wrong keys, each with a new spoofed X-Forwarded-For. With the
// proxy trusted, it is limited alone and the other's good key is served
// throughout; without the setting, or with prefixes that leave the proxy
// out, they share the proxy's address and the good key is refused too.
func TestTrustedProxyEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		trusted    string
		neighbours bool // the good client is refused with the bad one
	}{
		{"", true},
		{"10.0.0.0/8", true},
		{"127.0.0.1", false},
	} {
		t.Run("trusted="+tc.trusted, func(t *testing.T) {
			proxies, err := ParseTrustedProxies(tc.trusted)
			if err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, func(c *Config) { c.AuthFailRate, c.AuthFailBurst, c.TrustedProxies = 0.01, 3, proxies })
			m := h.seedSetup()
			target, err := url.Parse(h.ts.URL)
			if err != nil {
				t.Fatal(err)
			}
			lb := httptest.NewServer(httputil.NewSingleHostReverseProxy(target))
			t.Cleanup(lb.Close)
			attacker := clientFromTo(t, "127.0.0.2", lb.Listener.Addr().String())
			merchant := clientFromTo(t, "127.0.0.3", lb.Listener.Addr().String())
			get := func(c *http.Client, key, spoof string) int {
				t.Helper()
				hr, err := http.NewRequestWithContext(context.Background(), "GET", lb.URL+"/api/v1/balance", nil)
				if err != nil {
					t.Fatal(err)
				}
				hr.Header.Set("X-Api-Key", key)
				if spoof != "" {
					hr.Header.Set("X-Forwarded-For", spoof)
				}
				res, err := c.Do(hr)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				return res.StatusCode
			}

			refused := false
			for i := range 10 {
				code := get(attacker, "pl_wrong", netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}).String())
				if want := map[bool]int{true: http.StatusUnauthorized, false: http.StatusTooManyRequests}[i < 3]; code != want {
					t.Fatalf("bad key %d: %d, want %d", i+1, code, want)
				}
				if get(merchant, m.Key, "") != http.StatusOK {
					refused = true
				}
			}
			if refused != tc.neighbours {
				t.Errorf("the good client refused: %v, want %v", refused, tc.neighbours)
			}
			logs := h.logs.String()
			want := "client=127.0.0.2 proxy=127.0.0.1 "
			if tc.neighbours {
				want = "client=127.0.0.1 "
			}
			if !strings.Contains(logs, want) {
				t.Errorf("the log does not say %q:\n%s", want, logs)
			}
		})
	}
}

// TestParseTrustedProxies: prefixes and bare addresses, IPv4 and IPv6,
// normalised; a bad entry is ErrTrustedProxy naming it; New refuses an
// invalid prefix.
func TestParseTrustedProxies(t *testing.T) {
	got, err := ParseTrustedProxies(" 10.0.0.0/8,192.0.2.7 ,, 2001:db8::/32,::1, ::ffff:172.16.0.0/108, 10.1.2.3/16,")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "::1/128", "172.16.0.0/12", "10.1.0.0/16"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("entry %d: %v, want %s", i, got[i], want[i])
		}
	}
	if p, err := ParseTrustedProxies(""); err != nil || len(p) != 0 {
		t.Errorf("empty: %v %v", p, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "10.0.0", "proxy.internal", "fe80::1%eth0", "10.0.0.0/8/8", "2001:db8::/129", "10.0.0.1:80"} {
		_, err := ParseTrustedProxies("127.0.0.1," + bad)
		if !errors.Is(err, ErrTrustedProxy) || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("%q: %v, want ErrTrustedProxy naming it", bad, err)
		}
	}
	h := newHarness(t)
	cfg := h.srv.cfg
	cfg.TrustedProxies = []netip.Prefix{{}}
	if _, err := New(cfg); !errors.Is(err, ErrTrustedProxy) {
		t.Errorf("New with an invalid prefix: %v", err)
	}
}

// FuzzForwardedFor: whatever X-Forwarded-For holds (lines split at \n),
// clientIP never panics and returns a valid address, unmapped, without a
// zone: the trusted peer's, or one the trusted prefixes leave out.
func FuzzForwardedFor(f *testing.F) {
	for _, s := range []string{
		"", ",", " , ", "203.0.113.9", "198.51.100.1, 203.0.113.9, 10.1.2.3", "10.1.2.3, 10.4.5.6",
		"bogus, 203.0.113.9", "203.0.113.9, bogus", "203.0.113.9\n10.1.2.3", "::ffff:10.0.0.1",
		"::ffff:203.0.113.9", "fe80::1%eth0", "2001:db8::1, fd00::1", "[::1]:80", "203.0.113.9:80",
		"1.2.3.4\n\n", "\x00", "%", "::ffff:0:0", "0.0.0.0, ::",
	} {
		f.Add(s)
	}
	proxies, err := ParseTrustedProxies("127.0.0.0/8, 10.0.0.0/8, fd00::/8, ::1")
	if err != nil {
		f.Fatal(err)
	}
	peer := netip.MustParseAddr("127.0.0.1")
	f.Fuzz(func(t *testing.T, header string) {
		client, gotPeer, ok := clientIP("127.0.0.1:5000", strings.Split(header, "\n"), proxies)
		if !ok || gotPeer != peer {
			t.Fatalf("%q: ok %v, peer %v", header, ok, gotPeer)
		}
		if !client.IsValid() || client.Zone() != "" || client.Is4In6() {
			t.Fatalf("%q: client %v is not a plain address", header, client)
		}
		if client != peer && trusted(client, proxies) {
			t.Fatalf("%q: client %v is a trusted proxy", header, client)
		}
		if a, err := netip.ParseAddr(strings.TrimSpace(header)); err == nil && !strings.ContainsAny(header, "\n,") && !trusted(a.Unmap().WithZone(""), proxies) && client != a.Unmap().WithZone("") {
			t.Fatalf("%q: client %v, want the one address it names", header, client)
		}
	})
}

// FuzzParseTrustedProxies: a list either parses into valid, masked,
// unmapped prefixes or fails with ErrTrustedProxy; never a panic.
func FuzzParseTrustedProxies(f *testing.F) {
	for _, s := range []string{"", "10.0.0.0/8", "::1, 127.0.0.1", "::ffff:10.0.0.0/104", "::ffff:0:0/90", "x", "1.2.3.4/", "/8", "fe80::%a/64"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParseTrustedProxies(s)
		if err != nil {
			if !errors.Is(err, ErrTrustedProxy) {
				t.Fatalf("%q: %v is not ErrTrustedProxy", s, err)
			}
			return
		}
		for _, p := range ps {
			if !p.IsValid() || p != p.Masked() || (p.Addr().Is4In6() && p.Bits() >= 96) || p.Addr().Zone() != "" {
				t.Fatalf("%q: prefix %v", s, p)
			}
		}
	})
}
