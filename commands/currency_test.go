package commands

import (
	"regexp"
	"testing"
)

func TestLookupCurrency(t *testing.T) {
	tests := []struct {
		code   string
		minor  int32
		crypto bool
	}{
		{"UAH", 2, false}, {"USD", 2, false}, {"EUR", 2, false}, {"RUB", 2, false},
		{"XOF", 0, false}, {"XAF", 0, false}, {"GNF", 0, false}, {"JPY", 0, false}, {"KRW", 0, false},
		{"KWD", 3, false}, {"BHD", 3, false}, {"TND", 3, false}, {"CLF", 4, false}, {"UYW", 4, false},
		{"MGA", 2, false}, {"CDF", 2, false}, {"NGN", 2, false}, {"INR", 2, false},
		{"ISK", 0, false}, {"VND", 0, false}, {"IDR", 2, false}, {"HUF", 2, false},
		{"SLE", 2, false}, {"VED", 2, false}, {"ZWG", 2, false}, {"XCG", 2, false},
		{"BTC", 8, true}, {"BCH", 8, true}, {"LINK", 8, true}, {"ETH", 8, true}, {"LTC", 8, true},
		{"XMR", 8, true}, {"TRX", 6, true}, {"USDT", 6, true}, {"USDC", 6, true},
	}
	for _, tt := range tests {
		c, ok := LookupCurrency(tt.code)
		if !ok || c.Code != tt.code || c.MinorUnits != tt.minor || c.Crypto != tt.crypto {
			t.Errorf("LookupCurrency(%q) = %+v, %v; want %d places, crypto %v", tt.code, c, ok, tt.minor, tt.crypto)
		}
		if IsFiat(tt.code) == tt.crypto {
			t.Errorf("IsFiat(%q) = %v", tt.code, !tt.crypto)
		}
	}
}

func TestLookupCurrencyRefuses(t *testing.T) {
	for _, code := range []string{
		"", "uah", "Uah", "UAH ", " UAH", "UA", "UAHH", "XXX", "XTS", "XAU", "XDR",
		"HRK", "ZWL", "SLL", "ANG", "CUC", "BGN", "usdt", "DOGE",
	} {
		if c, ok := LookupCurrency(code); ok {
			t.Errorf("LookupCurrency(%q) = %+v, want not found", code, c)
		}
		if IsFiat(code) {
			t.Errorf("IsFiat(%q) = true", code)
		}
	}
}

func TestCurrencyTables(t *testing.T) {
	iso := regexp.MustCompile(`^[A-Z]{3}$`)
	for code, mu := range fiatMinorUnits {
		if !iso.MatchString(code) || mu < 0 || mu > 4 {
			t.Errorf("fiat %q: %d places", code, mu)
		}
		if _, dup := cryptoMinorUnits[code]; dup {
			t.Errorf("%q is both fiat and crypto", code)
		}
	}
	for code, mu := range cryptoMinorUnits {
		if mu < 0 || mu > 8 {
			t.Errorf("crypto %q: %d places, cap is 8", code, mu)
		}
	}
	if n := len(fiatMinorUnits); n < 150 {
		t.Errorf("only %d ISO 4217 codes", n)
	}
	s := SettlementCurrency()
	if c, _ := LookupCurrency("USDT"); c != s {
		t.Errorf("SettlementCurrency() = %+v, LookupCurrency(USDT) = %+v", s, c)
	}
}
