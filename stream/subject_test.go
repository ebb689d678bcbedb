package stream_test

import (
	"strings"
	"testing"

	"github.com/payledger/payledger/stream"
)

func TestSubject(t *testing.T) {
	long := strings.Repeat("m", 200)
	tests := []struct {
		merchant, typ, want string
	}{
		{"01J9Z3ABC", "invoice.created", "payledger.events.01J9Z3ABC.invoice.created"},
		{"", "rate.set", "payledger.events._.rate.set"},
		{"_", "rate.set", "payledger.events.%5F.rate.set"},
		{"a.b", "payment.processed", "payledger.events.a%2Eb.payment.processed"},
		{"a b*>", "x", "payledger.events.a%20b%2A%3E.x"},
		{"100%", "x", "payledger.events.100%25.x"},
		{"~x", "x", "payledger.events.%7Ex.x"},
		{"m", "weird..type.", "payledger.events.m.weird._.type._"},
		{"m", "", "payledger.events.m._"},
		{"m", "a*.>", "payledger.events.m.a%2A.%3E"},
		{long, "x", "payledger.events.~" + stream.Token(long)[1:] + ".x"},
	}
	for _, tt := range tests {
		got := stream.Subject("", tt.merchant, tt.typ)
		if got != tt.want {
			t.Errorf("Subject(%q, %q) = %q, want %q", tt.merchant, tt.typ, got, tt.want)
		}
		for tok := range strings.SplitSeq(got, ".") {
			if tok == "" || strings.ContainsAny(tok, " \t\r\n*>") || len(tok) > 128 {
				t.Errorf("Subject(%q, %q) = %q has a bad token %q", tt.merchant, tt.typ, got, tok)
			}
		}
	}
	if got := stream.Token(long); len(got) != 33 || got[0] != '~' {
		t.Errorf("Token(long) = %q, want ~ and 32 hex digits", got)
	}
	for _, tt := range []struct{ merchant, types, want string }{
		{"a.b", "", "payledger.events.a%2Eb.>"},
		{"m-1", "invoice.>", "payledger.events.m-1.invoice.>"},
		{"*", "payment.*", "payledger.events.*.payment.*"},
		{"", "rate.set", "payledger.events._.rate.set"},
		{"m", "a b.>", "payledger.events.m.a%20b.>"},
	} {
		if got := stream.Filter("", tt.merchant, tt.types); got != tt.want {
			t.Errorf("Filter(%q, %q) = %q, want %q", tt.merchant, tt.types, got, tt.want)
		}
	}
}

func TestTokenInjective(t *testing.T) {
	inputs := []string{"", "_", "%5F", "a.b", "a%2Eb", "a_b", "~", "%7E", "a b", "a%20b", "*", ">", "%"}
	seen := map[string]string{}
	for _, in := range inputs {
		tok := stream.Token(in)
		if prev, dup := seen[tok]; dup {
			t.Errorf("Token(%q) = Token(%q) = %q", in, prev, tok)
		}
		seen[tok] = in
	}
}
