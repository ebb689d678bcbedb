package commands

import (
	"net/netip"
	"testing"
)

// TestIPv4Literal: the forms inet_aton and the WHATWG URL standard read as
// an IPv4 address, which a URL's host must not use to name a non-public
// one; a host with anything but numbers and dots is a name.
func TestIPv4Literal(t *testing.T) {
	for _, tc := range []struct {
		host    string
		want    string // "": not an address
		numeric bool
	}{
		{"127.0.0.1", "127.0.0.1", true},
		{"127.1", "127.0.0.1", true},
		{"127.0.1", "127.0.0.1", true},
		{"10.65535", "10.0.255.255", true},
		{"2130706433", "127.0.0.1", true},
		{"0x7f000001", "127.0.0.1", true},
		{"0X7F.1", "127.0.0.1", true},
		{"017700000001", "127.0.0.1", true},
		{"0177.0.0.01", "127.0.0.1", true},
		{"0", "0.0.0.0", true},
		{"0x", "0.0.0.0", true},
		{"4294967295", "255.255.255.255", true},
		{"0xffffffff", "255.255.255.255", true},
		{"010.0.0.1", "8.0.0.1", true},
		{"93.184.216.34", "93.184.216.34", true},

		{"4294967296", "", true}, // over 32 bits
		{"256.0.0.1", "", true},  // a leading part over 255
		{"1.2.3.256", "", true},  // the last part over its one byte
		{"1.2.65536", "", true},  // over its two bytes
		{"1.16777216", "", true}, // over its three bytes
		{"08", "", true},         // not octal
		{"0x1g", "", false},      // not hexadecimal: a name
		{"1.2.3.4.5", "", true},  // five parts
		{"1..2", "", true},       // an empty part
		{"99999999999999999999", "", true},

		{"example.com", "", false},
		{"1.2.3.example", "", false},
		{"0xcafe.example", "", false},
		{"localhost", "", false},
		{"1e5", "", false},
	} {
		a, numeric, err := ipv4Literal(tc.host)
		switch {
		case numeric != tc.numeric:
			t.Errorf("%s: numeric %v, want %v", tc.host, numeric, tc.numeric)
		case tc.want == "" && tc.numeric && err == nil:
			t.Errorf("%s: %v, want an error", tc.host, a)
		case tc.want != "" && (err != nil || a != netip.MustParseAddr(tc.want)):
			t.Errorf("%s: %v, %v; want %s", tc.host, a, err, tc.want)
		}
	}
}

// FuzzIPv4Literal: no host panics the parser, and a dotted quad netip
// reads is read as the same address.
func FuzzIPv4Literal(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "127.1", "0x7f000001", "017700000001", "1..2", "example.com", "0x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		a, numeric, err := ipv4Literal(host)
		if want, perr := netip.ParseAddr(host); perr == nil && want.Is4() {
			if !numeric || err != nil || a != want {
				t.Errorf("%q: %v, %v, %v; netip reads %v", host, a, numeric, err, want)
			}
		}
	})
}
