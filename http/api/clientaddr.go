package api

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ParseTrustedProxies reads a comma-separated list of CIDR prefixes, IPv4
// or IPv6 (serve's --trusted-proxies), for Config.TrustedProxies. A bare
// address is the prefix of that one address; an IPv4-mapped IPv6 prefix
// (::ffff:10.0.0.0/104) is the IPv4 prefix it covers (10.0.0.0/8), as
// addresses are matched unmapped; host bits are dropped (10.1.2.3/8 is
// 10.0.0.0/8). Blank entries are skipped: "" is no trusted proxy.
//
// Errors: ErrTrustedProxy, naming the entry that is not a prefix or an
// address.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		p, err := parseTrustedProxy(entry)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrTrustedProxy, entry, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func parseTrustedProxy(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return normalPrefix(p)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("an address with a zone (%%%s) is no prefix", a.Zone())
	}
	return normalPrefix(netip.PrefixFrom(a, a.BitLen()))
}

// normalPrefix masks p and unmaps an IPv4-mapped one, so that it matches
// the unmapped addresses trusted compares.
func normalPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("invalid prefix %v", p)
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// trusted reports whether a (unmapped, without zone) is inside one of the
// prefixes.
func trusted(a netip.Addr, proxies []netip.Prefix) bool {
	for _, p := range proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerIP is a RemoteAddr's IP, unmapped and without its zone; false for
// what is not IP:port (a Unix socket's peer).
func peerIP(remote string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap().WithZone(""), true
}

// forwardedFor is the client a chain of trusted proxies reports in
// X-Forwarded-For (its header lines in order, as if joined with commas):
// walking the entries from the right, each appended by the proxy that
// received the request, it skips those in proxies and returns the first
// other one, unmapped and without its zone. An entry that is not an IP
// address on the way there (blank, a port, a name, garbage) makes it give
// up, as does a header with no entry outside proxies: false, and the caller
// keeps the peer's address. Entries left of the one returned were written
// by the client or proxies nobody trusts and are not read: garbage there
// cannot move a client onto the proxy's address.
func forwardedFor(lines []string, proxies []netip.Prefix) (netip.Addr, bool) {
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		for {
			comma := strings.LastIndexByte(line, ',')
			a, err := netip.ParseAddr(strings.TrimSpace(line[comma+1:]))
			if err != nil {
				return netip.Addr{}, false
			}
			a = a.Unmap().WithZone("")
			if !trusted(a, proxies) {
				return a, true
			}
			if comma < 0 {
				break
			}
			line = line[:comma]
		}
	}
	return netip.Addr{}, false
}

// clientIP is the IP of the client a request came from: the connection's
// peer, or, when the peer is in proxies, the client X-Forwarded-For names
// (forwardedFor), never the header of a peer not trusted. false: the peer
// is not an IP address.
func clientIP(remote string, xff []string, proxies []netip.Prefix) (client, peer netip.Addr, ok bool) {
	peer, ok = peerIP(remote)
	if !ok {
		return netip.Addr{}, netip.Addr{}, false
	}
	if len(proxies) == 0 || len(xff) == 0 || !trusted(peer, proxies) {
		return peer, peer, true
	}
	if a, ok := forwardedFor(xff, proxies); ok {
		return a, peer, true
	}
	return peer, peer, true
}

// clientAddr is the address failed authentications are counted against and
// logged with: clientIP (the remote IP unless it is a trusted proxy's), an
// IPv6 one by its /64 (one host usually has a whole /64 to choose from);
// peer is the connection's remote IP when a trusted proxy forwarded the
// request, else "".
func (s *Server) clientAddr(r *http.Request) (client, peer string) {
	a, p, ok := clientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), s.cfg.TrustedProxies)
	if !ok {
		return r.RemoteAddr, ""
	}
	if a != p {
		peer = p.String()
	}
	if a.Is6() {
		if pf, err := a.Prefix(64); err == nil {
			return pf.String(), peer
		}
	}
	return a.String(), peer
}
