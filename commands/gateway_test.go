package commands

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

// luhnValid is the textbook check, written apart from luhnCheckDigit so the
// test does not share its mistakes.
func luhnValid(s string) bool {
	if s == "" {
		return false
	}
	sum, double := 0, false
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
		d := int(s[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

func TestLuhnCheckDigit(t *testing.T) {
	// Known valid numbers: test cards and the Luhn article's example.
	for _, n := range []string{"79927398713", "4111111111111111", "5555555555554444", "4444111144441111"} {
		if !luhnValid(n) {
			t.Fatalf("luhnValid(%s) = false", n)
		}
		body := n[:len(n)-1]
		if got := luhnCheckDigit(body); got != int(n[len(n)-1]-'0') {
			t.Errorf("luhnCheckDigit(%s) = %d, want %c", body, got, n[len(n)-1])
		}
	}
	if luhnValid("4111111111111112") {
		t.Fatal("luhnValid accepts a bad number")
	}
}

func sandboxRequest(m Method, paymentID string) AssignRequest {
	return AssignRequest{
		PaymentID: paymentID,
		InvoiceID: "01JN0000000000000000000000",
		Method:    m,
		Amount:    decimal.RequireFromString("1500.00"),
		Currency:  m.Currency,
	}
}

func TestSandboxAssign(t *testing.T) {
	sb := NewSandbox()
	if sb.ID() != "1" || sb.Name() != "sandbox" {
		t.Fatalf("sandbox is %q %q", sb.ID(), sb.Name())
	}
	crypto := regexp.MustCompile(`^sandbox1[0-9a-f]{32}$`)
	phone := regexp.MustCompile(`^\+[0-9]{11,13}$`)
	vpa := regexp.MustCompile(`^[a-zA-Z0-9.\-_]{2,256}@[a-zA-Z]{2,64}$`)
	for _, m := range Methods() {
		if !sb.Supports(m) {
			t.Errorf("sandbox does not support %s", m.Code)
		}
		req := sandboxRequest(m, "01JN0000000000000000000001")
		d1, err := sb.Assign(req)
		if err != nil {
			t.Fatalf("%s: %v", m.Code, err)
		}
		// Deterministic: the same request, even from a fresh gateway and with
		// another amount, gives the same details.
		req.Amount = decimal.RequireFromString("1")
		d2, err := NewSandbox().Assign(req)
		if err != nil || d1 != d2 {
			t.Fatalf("%s: not deterministic: %+v then %+v, %v", m.Code, d1, d2, err)
		}
		other, _ := sb.Assign(sandboxRequest(m, "01JN0000000000000000000002"))
		if other.AccountNumber == d1.AccountNumber {
			t.Errorf("%s: two payments share account %s", m.Code, d1.AccountNumber)
		}
		if d1.AccountName == "" || d1.BankName == "" {
			t.Errorf("%s: incomplete details %+v", m.Code, d1)
		}
		switch m.Kind {
		case KindCard, KindBank:
			if len(d1.AccountNumber) != 16 || !luhnValid(d1.AccountNumber) || d1.BankName != "Sandbox Bank" {
				t.Errorf("%s: %+v is not a 16-digit Luhn account at Sandbox Bank", m.Code, d1)
			}
		case KindMobileMoney:
			if !phone.MatchString(d1.AccountNumber) || !strings.HasPrefix(m.Name, d1.BankName+", ") {
				t.Errorf("%s: %+v is not a phone number at the operator", m.Code, d1)
			}
		case KindUPIWallet:
			if !vpa.MatchString(d1.AccountNumber) {
				t.Errorf("%s: %+v is not a UPI address", m.Code, d1)
			}
		case KindCrypto:
			if !crypto.MatchString(d1.AccountNumber) || d1.AccountName != "Sandbox wallet" {
				t.Errorf("%s: %+v is not a sandbox wallet", m.Code, d1)
			}
		}
	}
}

// TestSandboxGolden pins the derivation: payments already in the log were
// shown these details, so a change here would change them on replay.
func TestSandboxGolden(t *testing.T) {
	tests := []struct {
		method string
		want   string
	}{
		{"visamaster.uah", "7177107176556301|Ngozi Adeyemi|Sandbox Bank"},
		{"mtn-ci.xof", "+225111941246|Aïssata Traoré|MTN"},
		{"upi.inr", "sandbox.20aeb8ca40@sandbox|Jean-Baptiste Mukendi|Sandbox UPI"},
		{"usdt_trc20", "sandbox15e941a934a64db95b6239b3ecb0ab098|Sandbox wallet|Tron (TRC20)"},
	}
	for _, tt := range tests {
		m, _ := LookupMethod(tt.method)
		d, err := NewSandbox().Assign(sandboxRequest(m, "01JN0000000000000000000001"))
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%s|%s|%s", d.AccountNumber, d.AccountName, d.BankName); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.method, got, tt.want)
		}
	}
	m, _ := LookupMethod("mtn-ci.xof")
	if d, _ := NewSandbox().Assign(sandboxRequest(m, "x")); !strings.HasPrefix(d.AccountNumber, "+225") || d.BankName != "MTN" {
		t.Errorf("mtn-ci.xof: %+v, want a +225 number at MTN", d)
	}
}

func TestSandboxAssignRefuses(t *testing.T) {
	m, _ := LookupMethod("visamaster.uah")
	for _, req := range []AssignRequest{
		{InvoiceID: "i", Method: m},
		{PaymentID: "p", Method: m},
		{PaymentID: "p", InvoiceID: "i"},
	} {
		if _, err := NewSandbox().Assign(req); !errors.Is(err, ErrValidation) {
			t.Errorf("Assign(%+v) = %v, want ErrValidation", req, err)
		}
	}
}

// cryptoOnly is a gateway that takes only crypto methods.
type cryptoOnly struct{ id string }

func (g cryptoOnly) ID() string             { return g.id }
func (g cryptoOnly) Name() string           { return "crypto-" + g.id }
func (g cryptoOnly) Supports(m Method) bool { return m.Kind == KindCrypto }
func (g cryptoOnly) Assign(req AssignRequest) (PaymentDetails, error) {
	if !g.Supports(req.Method) {
		return PaymentDetails{}, fmt.Errorf("%s: %w", g.Name(), ErrMethodInvalid)
	}
	return PaymentDetails{AccountNumber: "addr", AccountName: "n", BankName: "b"}, nil
}

func TestGateways(t *testing.T) {
	btc, _ := LookupMethod("bitcoin")
	card, _ := LookupMethod("visamaster.uah")
	all := GatewaySwitches{}

	r := DefaultGateways()
	if g, ok := r.Lookup("1"); !ok || g.Name() != "sandbox" {
		t.Fatalf("DefaultGateways().Lookup(1) = %v, %v", g, ok)
	}
	if g, ok := r.For(card, all); !ok || g.ID() != SandboxID {
		t.Fatalf("DefaultGateways().For(card) = %v, %v", g, ok)
	}
	if _, ok := r.Lookup("2"); ok {
		t.Fatal("Lookup(2) found a gateway")
	}

	// Registration order decides: a crypto gateway registered first takes
	// crypto, the sandbox keeps the rest.
	r = NewGateways()
	r.Register(cryptoOnly{id: "7"})
	r.Register(NewSandbox())
	if g, _ := r.For(btc, all); g.ID() != "7" {
		t.Errorf("For(bitcoin) = %s, want 7", g.ID())
	}
	if g, _ := r.For(card, all); g.ID() != "1" {
		t.Errorf("For(card) = %s, want 1", g.ID())
	}

	// A switched-off gateway is routed around but stays reachable by id.
	if g, _ := r.For(btc, GatewaySwitches{Disabled: map[string]bool{"7": true}}); g.ID() != "1" {
		t.Errorf("For(bitcoin) with 7 disabled = %s, want 1", g.ID())
	}
	if _, ok := r.Lookup("7"); !ok {
		t.Error("gateway not found by Lookup")
	}
	if g, ok := r.For(card, GatewaySwitches{Disabled: map[string]bool{"1": true, "7": true}}); ok {
		t.Errorf("For(card) with everything disabled = %s", g.ID())
	}

	// Re-registering an id replaces the gateway in place.
	r.Register(cryptoOnly{id: "7"})
	if all := r.All(); len(all) != 2 || all[0].ID() != "7" || all[1].ID() != "1" {
		t.Errorf("All() = %v", all)
	}

	var zero Gateways
	zero.Register(NewSandbox())
	if g, ok := zero.For(card, all); !ok || g.ID() != "1" {
		t.Errorf("zero-value registry: For(card) = %v, %v", g, ok)
	}
}
