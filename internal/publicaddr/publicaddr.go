// Package publicaddr tells a public unicast IP address from one that
// outgoing calls (webhooks, status_url) must not reach: loopback, private,
// link-local and the other non-public ranges, and IPv6 forms that carry
// such an IPv4 address. The webhook dialer checks every address it
// connects to; commands check a URL whose host is an address literal.
package publicaddr

import (
	"fmt"
	"net/netip"
)

// Reason returns "" for a public unicast address and, for any other, why
// not: loopback, private, link-local, CGNAT, multicast, unspecified and the
// other non-public ranges, and an IPv6 address that embeds an IPv4 address
// it would refuse (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64,
// 6to4, Teredo, ISATAP). IPv4-compatible, NAT64 and 6to4 addresses are
// refused whatever they embed. A zone is not looked at.
func Reason(a netip.Addr) string {
	// A zone (a URL's [2002:7f00:1::1%25eth0]) would make every
	// Prefix.Contains below false.
	a = a.Unmap().WithZone("")
	reason := predicateReason(a)
	if reason == "" {
		reason = embeddedReason(a)
	}
	if reason == "" {
		reason = nonPublicReason(a)
	}
	return reason
}

// nonPublic are the prefixes, besides what netip's predicates name, that a
// webhook must never reach: they are not the public internet.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated): an IPv4 address in disguise
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: an IPv4 address in disguise
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local NAT64
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: an IPv4 address in disguise
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
}

// embedding is an IPv6 form that carries an IPv4 address, which a host or
// a gateway on the way may turn into an IPv4 packet to that address.
type embedding struct {
	name   string
	prefix netip.Prefix // the zero Prefix: any address (ISATAP)
	// v4 returns the IPv4 addresses that b, an address of prefix, embeds.
	v4 func(b [16]byte) []netip.Addr
}

func v4At(b [16]byte, i int) netip.Addr { return netip.AddrFrom4([4]byte(b[i : i+4])) }

// embeddings are the IPv6 forms whose embedded IPv4 address Reason
// checks as if it were the target. (IPv4-mapped ::ffff:a.b.c.d is unmapped
// before any check.) IPv4-compatible, NAT64 and 6to4 are also refused
// whole, in nonPublic: here they give a refusal its reason.
var embeddings = []embedding{
	{"IPv4-compatible", netip.MustParsePrefix("::/96"), func(b [16]byte) []netip.Addr { return []netip.Addr{v4At(b, 12)} }},
	{"IPv4-translated", netip.MustParsePrefix("::ffff:0:0:0/96"), func(b [16]byte) []netip.Addr { return []netip.Addr{v4At(b, 12)} }},
	{"NAT64", netip.MustParsePrefix("64:ff9b::/96"), func(b [16]byte) []netip.Addr { return []netip.Addr{v4At(b, 12)} }},
	{"6to4", netip.MustParsePrefix("2002::/16"), func(b [16]byte) []netip.Addr { return []netip.Addr{v4At(b, 2)} }},
	// Teredo: the server's address, and the client's (its NAT's public
	// address), stored inverted.
	{"Teredo", netip.MustParsePrefix("2001::/32"), func(b [16]byte) []netip.Addr {
		client := [4]byte{^b[12], ^b[13], ^b[14], ^b[15]}
		return []netip.Addr{v4At(b, 4), netip.AddrFrom4(client)}
	}},
	// ISATAP (RFC 5214): any prefix, with the interface identifier
	// 0000:5efe:a.b.c.d (0200:5efe when a.b.c.d is global; the group bit
	// is not looked at).
	{"ISATAP", netip.Prefix{}, func(b [16]byte) []netip.Addr {
		if b[8]&^0x03 != 0 || b[9] != 0 || b[10] != 0x5e || b[11] != 0xfe {
			return nil
		}
		return []netip.Addr{v4At(b, 12)}
	}},
}

// predicateReason says why netip's predicates make a non-public, or "".
func predicateReason(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "not an IP address"
	case a.IsUnspecified():
		return "unspecified address"
	case a.IsLoopback():
		return "loopback address"
	case a.IsPrivate():
		return "private address"
	case a.IsLinkLocalUnicast():
		return "link-local address"
	case a.IsMulticast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast():
		return "multicast address"
	}
	return ""
}

// embeddedReason says why an IPv4 address that the IPv6 address a embeds
// is refused, or "".
func embeddedReason(a netip.Addr) string {
	if !a.Is6() {
		return ""
	}
	b := a.As16()
	for _, e := range embeddings {
		if e.prefix.IsValid() && !e.prefix.Contains(a) {
			continue
		}
		for _, v4 := range e.v4(b) {
			r := predicateReason(v4)
			if r == "" {
				r = nonPublicReason(v4)
			}
			if r != "" {
				return fmt.Sprintf("%s address embedding %s, a %s", e.name, v4, r)
			}
		}
	}
	return ""
}

func nonPublicReason(a netip.Addr) string {
	for _, p := range nonPublic {
		if p.Contains(a) {
			return "non-public address (" + p.String() + ")"
		}
	}
	return ""
}
