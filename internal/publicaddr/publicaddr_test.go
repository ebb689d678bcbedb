package publicaddr

import (
	"net/netip"
	"strings"
	"testing"
)

func TestReason(t *testing.T) {
	for _, c := range []struct{ addr, why string }{
		{"93.184.216.34", ""}, {"8.8.8.8", ""}, {"2606:2800:220:1:248:1893:25c8:1946", ""},
		{"127.0.0.1", "loopback address"}, {"::1", "loopback address"},
		{"10.0.0.1", "private address"}, {"192.168.1.1", "private address"}, {"fd00::1", "private address"},
		{"169.254.169.254", "link-local address"}, {"fe80::1", "link-local address"},
		{"0.0.0.0", "unspecified address"}, {"224.0.0.1", "multicast address"},
		{"100.64.0.1", "non-public address (100.64.0.0/10)"},
		{"::ffff:10.1.1.1", "private address"},
		{"", "not an IP address"},
	} {
		var a netip.Addr
		if c.addr != "" {
			a = netip.MustParseAddr(c.addr)
		}
		if r := Reason(a); r != c.why {
			t.Errorf("%q: %q, want %q", c.addr, r, c.why)
		}
	}
}

// IPv6 forms that carry an IPv4 address are refused when what they carry
// would be; IPv4-compatible, NAT64 and 6to4 whatever they carry. why is
// part of the refusal's reason ("" for an address let through).
func TestReasonEmbeddedIPv4(t *testing.T) {
	for _, c := range []struct{ addr, why string }{
		// IPv4-compatible ::a.b.c.d (deprecated; refused whole).
		{"::127.0.0.1", "IPv4-compatible address embedding 127.0.0.1, a loopback"},
		{"::10.0.0.1", "IPv4-compatible address embedding 10.0.0.1, a private"},
		{"::169.254.169.254", "embedding 169.254.169.254, a link-local"},
		{"::100.64.0.1", "embedding 100.64.0.1, a non-public address (100.64.0.0/10)"},
		{"::0.0.0.2", "embedding 0.0.0.2"},
		{"::8.8.8.8", "non-public address (::/96)"},
		// IPv4-mapped ::ffff:a.b.c.d: checked as the IPv4 address itself.
		{"::ffff:127.0.0.1", "loopback address"},
		{"::ffff:10.0.0.1", "private address"},
		{"::ffff:169.254.169.254", "link-local address"},
		{"::ffff:8.8.8.8", ""},
		// IPv4-translated ::ffff:0:a.b.c.d (SIIT).
		{"::ffff:0:127.0.0.1", "IPv4-translated address embedding 127.0.0.1"},
		{"::ffff:0:192.168.0.1", "IPv4-translated address embedding 192.168.0.1"},
		{"::ffff:0:8.8.8.8", ""},
		// NAT64 64:ff9b::/96 (refused whole) and local-use 64:ff9b:1::/48.
		{"64:ff9b::127.0.0.1", "NAT64 address embedding 127.0.0.1, a loopback"},
		{"64:ff9b::10.0.0.1", "NAT64 address embedding 10.0.0.1, a private"},
		{"64:ff9b::8.8.8.8", "non-public address (64:ff9b::/96)"},
		{"64:ff9b:1::a00:1", "non-public address (64:ff9b:1::/48)"},
		// 6to4 2002:AABB:CCDD::/48 (refused whole).
		{"2002:7f00:1::1", "6to4 address embedding 127.0.0.1, a loopback"},
		{"2002:a00:1::1", "6to4 address embedding 10.0.0.1, a private"},
		{"2002:c0a8:101:1::1", "6to4 address embedding 192.168.1.1"},
		{"2002:808:808::1", "non-public address (2002::/16)"},
		// Teredo 2001:0:SERVER:flags:port:~CLIENT.
		{"2001:0:7f00:1::", "Teredo address embedding 127.0.0.1"},                          // server 127.0.0.1
		{"2001:0:808:808:0:0:f5ff:fffe", "Teredo address embedding 10.0.0.1, a private"},   // client ~f5ff:fffe
		{"2001:0:808:808:0:0:80ff:fefe", "Teredo address embedding 127.0.1.1, a loopback"}, // client ~80ff:fefe
		{"2001:0:808:808:0:0:f7f7:f7f7", ""},                                               // client 8.8.8.8
		// ISATAP: any prefix, interface identifier 0000:5efe or 0200:5efe.
		{"2606:4700::5efe:a00:1", "ISATAP address embedding 10.0.0.1"},
		{"2606:4700::200:5efe:7f00:1", "ISATAP address embedding 127.0.0.1"},
		{"2606:4700::200:5efe:808:808", ""},
		// Zones would make prefix matches fail: they are not looked at.
		{"2002:7f00:1::1%eth0", "6to4 address embedding 127.0.0.1"},
		{"::127.0.0.1%lo", "IPv4-compatible address embedding 127.0.0.1"},
		{"64:ff9b::8.8.8.8%eth0", "non-public address (64:ff9b::/96)"},
		{"2001:db8::1%eth0", "non-public address (2001:db8::/32)"},
		// Plain public IPv6 addresses go.
		{"2606:4700:4700::1111", ""},
		{"2a00:1450:4001:82b::200e", ""},
	} {
		r := Reason(netip.MustParseAddr(c.addr))
		switch {
		case c.why == "" && r != "":
			t.Errorf("%s refused: %s", c.addr, r)
		case c.why != "" && !strings.Contains(r, c.why):
			t.Errorf("%s: %q, want a refusal saying %q", c.addr, r, c.why)
		}
	}
}
