package commands

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// seed001Methods is seed 001's list of payment methods, copied verbatim from
// shared/seeds/001_2a32b3ccc7018301.txt ("Name - code"), in the seed's order.
// The seed page lists 52 codes, although SPEC.md and the seeds README speak
// of 53: the catalogue follows the seed's actual list.
var seed001Methods = []string{
	"Airtel Money, MGA - airtel.mga",
	"Airtel Money, USD CONGO - airtel-congo.usd",
	"Airtel Money, CDF CONGO - airtel-congo.cdf",
	"Bank Transfer, NGN - bank.ngn",
	"Bitcoin, BTC - bitcoin",
	"Bitcoin Cash, BCH - bitcoin_cash",
	"ChainLink, LINK - link",
	"Ethereum, ETH - ethereum",
	"Expresso, XOF SENEGAL - expresso-senegal.xof",
	"FreeMoney, XOF SENEGAL - free_money-senegal.xof",
	"IMPS, INR - imps.inr",
	"Litecoin, LTC - litecoin",
	"Monero, XMR - monero",
	"MOOV, XOF TOGO - moov-togo.xof",
	"MOOV, XOF CI - moov-ci.xof",
	"MOOV, XOF BENIN - moov-benin.xof",
	"MOOV, XOF MALI - moov-mali.xof",
	"MOOV, XOF BURKINA-FASO - moov-burkina-faso.xof",
	"MPesa, USD CONGO - mpesa-congo.usd",
	"MPesa, CDF CONGO - mpesa-congo.cdf",
	"MTN, XOF TOGO - mtn-togo.xof",
	"MTN, XOF CI - mtn-ci.xof",
	"MTN, XOF BENIN - mtn-benin.xof",
	"MTN, GNF GUINEA - mtn-guinea.gnf",
	"MVola, MGA - mvola.mga",
	"Orange Money, MGA - orange_money.mga",
	"Orange Money, XOF TOGO - orange_money-togo.xof",
	"Orange Money, XOF CI - orange_money-ci.xof",
	"Orange Money, XOF BENIN - orange_money-benin.xof",
	"Orange Money, XOF SENEGAL - orange_money-senegal.xof",
	"Orange Money, XOF BURKINA-FASO - orange_money-burkina-faso.xof",
	"Orange Money, XOF MALI - orange_money-mali.xof",
	"Orange Money, USD CONGO - orange_money-congo.usd",
	"Orange Money, CDF CONGO - orange_money-congo.cdf",
	"Orange Money, GNF GUINEA - orange_money-guinea.gnf",
	"PayTM, INR - paytm.inr",
	"Phone PE, INR - phonepe.inr",
	"T-Money, XOF - tmoney.xof",
	"Tether ERC20, USDT ERC20 - usdt_erc20",
	"Tether TRC20, USDT TRC20 - usdt_trc20",
	"Tron, TRX - tron",
	"UPI, INR - upi.inr",
	"USDC TRC20, USDC TRC20 - usdc_trc20",
	"Vanilla Pay, MGA - vanilla_pay.mga",
	"Verve, NGN - verve.ngn",
	"VisaMaster, UAH - visamaster.uah",
	"VisaMaster, USD - visamaster.usd",
	"VisaMaster, NGN - visamaster.ngn",
	"VisaMaster, XOF - visamaster.xof",
	"Wave, XOF SENEGAL - wave-senegal.xof",
	"Wave, XOF CI - wave-ci.xof",
	"WizAll, XOF SENEGAL - wiz_all-senegal.xof",
}

func TestCatalogueMatchesSeed001(t *testing.T) {
	ms := Methods()
	if len(ms) != len(seed001Methods) || len(ms) != 52 {
		t.Fatalf("catalogue has %d methods, seed 001 lists %d", len(ms), len(seed001Methods))
	}
	seen := map[string]bool{}
	for i, line := range seed001Methods {
		name, code, ok := strings.Cut(line, " - ")
		if !ok {
			t.Fatalf("bad seed line %q", line)
		}
		if ms[i].Code != code || ms[i].Name != name {
			t.Errorf("method %d = %q %q, seed has %q %q", i, ms[i].Code, ms[i].Name, code, name)
		}
		if seen[ms[i].Code] {
			t.Errorf("duplicate code %q", ms[i].Code)
		}
		seen[ms[i].Code] = true
		got, ok := LookupMethod(code)
		if !ok || got.Code != code {
			t.Errorf("LookupMethod(%q) = %v, %v", code, got.Code, ok)
		}
	}
	for _, bad := range []string{"", "VISAMASTER.UAH", "visamaster.eur", "visamaster", " bitcoin"} {
		if _, ok := LookupMethod(bad); ok {
			t.Errorf("LookupMethod(%q) found a method", bad)
		}
	}
}

func TestCatalogueCurrencies(t *testing.T) {
	cryptoCurrency := map[string]string{
		"bitcoin": "BTC", "bitcoin_cash": "BCH", "link": "LINK", "ethereum": "ETH", "litecoin": "LTC",
		"monero": "XMR", "tron": "TRX", "usdt_erc20": "USDT", "usdt_trc20": "USDT", "usdc_trc20": "USDC",
	}
	kinds := map[string]bool{KindCard: true, KindMobileMoney: true, KindBank: true, KindCrypto: true, KindUPIWallet: true}
	country := regexp.MustCompile(`^[A-Z]{2}$`)
	for _, m := range Methods() {
		cur, ok := LookupCurrency(m.Currency)
		if !ok {
			t.Errorf("%s: currency %q unknown to LookupCurrency", m.Code, m.Currency)
			continue
		}
		if want, isCrypto := cryptoCurrency[m.Code]; isCrypto {
			if m.Currency != want || !cur.Crypto || m.Kind != KindCrypto || m.Country != "" {
				t.Errorf("%s: currency %s kind %s country %q, want crypto %s", m.Code, m.Currency, m.Kind, m.Country, want)
			}
		} else {
			// Fiat methods end in the lower-case ISO code: visamaster.uah -> UAH.
			_, suffix, _ := strings.Cut(m.Code, ".")
			if m.Currency != strings.ToUpper(suffix) || !IsFiat(m.Currency) || m.Kind == KindCrypto {
				t.Errorf("%s: currency %s kind %s, want fiat %s", m.Code, m.Currency, m.Kind, strings.ToUpper(suffix))
			}
		}
		if !kinds[m.Kind] {
			t.Errorf("%s: unknown kind %q", m.Code, m.Kind)
		}
		if m.Country != "" && !country.MatchString(m.Country) {
			t.Errorf("%s: country %q is not ISO 3166 alpha-2", m.Code, m.Country)
		}
		if !strings.Contains(m.Name, ", ") {
			t.Errorf("%s: name %q is not seed 001's \"Provider, CURRENCY\"", m.Code, m.Name)
		}
	}
	var xof []string
	for _, m := range MethodsForCurrency("XOF") {
		xof = append(xof, m.Code)
	}
	if len(xof) != 21 || xof[0] != "expresso-senegal.xof" || xof[len(xof)-1] != "wiz_all-senegal.xof" {
		t.Errorf("MethodsForCurrency(XOF) = %v", xof)
	}
	if got := MethodsForCurrency("USDT"); len(got) != 2 {
		t.Errorf("MethodsForCurrency(USDT) = %d methods, want 2", len(got))
	}
	if got := MethodsForCurrency("EUR"); got != nil {
		t.Errorf("MethodsForCurrency(EUR) = %v, want none", got)
	}
}

func TestCatalogueExtraFields(t *testing.T) {
	types := map[string]bool{FieldString: true, FieldPhone: true, FieldEmail: true, FieldAccount: true}
	for _, m := range Methods() {
		names := map[string]bool{}
		for _, f := range m.ExtraFields {
			if names[f.Name] {
				t.Errorf("%s: field %s twice", m.Code, f.Name)
			}
			names[f.Name] = true
			if !types[f.Type] || f.Description == "" {
				t.Errorf("%s.%s: type %q, description %q", m.Code, f.Name, f.Type, f.Description)
			}
			if !strings.HasPrefix(f.Pattern, "^") || !strings.HasSuffix(f.Pattern, "$") {
				t.Errorf("%s.%s: pattern %q is not anchored", m.Code, f.Name, f.Pattern)
			}
			if _, err := regexp.Compile(f.Pattern); err != nil {
				t.Errorf("%s.%s: %v", m.Code, f.Name, err)
			}
		}
		required := func(field string) {
			t.Helper()
			i := slices.IndexFunc(m.ExtraFields, func(f ExtraField) bool { return f.Name == field })
			if i < 0 || !m.ExtraFields[i].Required {
				t.Errorf("%s: %s is not required", m.Code, field)
			}
		}
		switch {
		case m.Kind == KindMobileMoney:
			required("phone")
		case m.Code == "bank.ngn":
			required("bank_code")
			required("account_number")
		case m.Code == "imps.inr":
			required("ifsc")
		case m.Code == "upi.inr":
			required("vpa")
		case m.Kind == KindCard || m.Kind == KindCrypto:
			for _, f := range m.ExtraFields {
				if f.Required {
					t.Errorf("%s: %s is required; cards and crypto need nothing", m.Code, f.Name)
				}
			}
		}
	}
}

func TestMethodsReturnsCopies(t *testing.T) {
	ms := Methods()
	ms[0].Code = "changed"
	ms[0].ExtraFields[0].Required = false
	m, _ := LookupMethod("airtel.mga")
	m.ExtraFields[0].Pattern = "changed"
	again := Methods()
	if again[0].Code != "airtel.mga" || !again[0].ExtraFields[0].Required || again[0].ExtraFields[0].Pattern != patPhone {
		t.Fatalf("catalogue changed through a returned copy: %+v", again[0])
	}
}

func TestValidateExtra(t *testing.T) {
	type want struct{ path, typ string }
	tests := []struct {
		method string
		fields map[string]string
		want   []want
	}{
		{"mtn-ci.xof", map[string]string{"phone": "+2250700000000"}, nil},
		{"mtn-ci.xof", map[string]string{"phone": "2250700000000"}, nil},
		{"mtn-ci.xof", nil, []want{{"extra_fields.phone", "missing"}}},
		{"mtn-ci.xof", map[string]string{"phone": ""}, []want{{"extra_fields.phone", "missing"}}},
		{"mtn-ci.xof", map[string]string{"phone": "abc"}, []want{{"extra_fields.phone", "invalid"}}},
		{"mtn-ci.xof", map[string]string{"phone": "+225 0700 0000"}, []want{{"extra_fields.phone", "invalid"}}},
		{"mtn-ci.xof", map[string]string{"phone": "+2250700000000x"}, []want{{"extra_fields.phone", "invalid"}}},
		{"mtn-ci.xof", map[string]string{"phone": "1234567"}, []want{{"extra_fields.phone", "invalid"}}},
		{"mtn-ci.xof", map[string]string{"phone": "+2250700000000", "zeta": "1", "alpha": "2"},
			[]want{{"extra_fields.alpha", "unknown"}, {"extra_fields.zeta", "unknown"}}},
		{"bank.ngn", map[string]string{"bank_code": "058", "account_number": "0123456789"}, nil},
		{"bank.ngn", map[string]string{"bank_code": "000013", "account_number": "0123456789"}, nil},
		{"bank.ngn", map[string]string{}, []want{{"extra_fields.bank_code", "missing"}, {"extra_fields.account_number", "missing"}}},
		{"bank.ngn", map[string]string{"bank_code": "58", "account_number": "012345678"},
			[]want{{"extra_fields.bank_code", "invalid"}, {"extra_fields.account_number", "invalid"}}},
		{"imps.inr", map[string]string{"ifsc": "SBIN0001234"}, nil},
		{"imps.inr", map[string]string{"ifsc": "HDFC0ABC123", "account_number": "123456789012"}, nil},
		{"imps.inr", map[string]string{"ifsc": "sbin0001234"}, []want{{"extra_fields.ifsc", "invalid"}}},
		{"imps.inr", map[string]string{"ifsc": "SBIN1001234"}, []want{{"extra_fields.ifsc", "invalid"}}},
		{"imps.inr", map[string]string{}, []want{{"extra_fields.ifsc", "missing"}}},
		{"upi.inr", map[string]string{"vpa": "alice.k-1_2@okaxis"}, nil},
		{"upi.inr", map[string]string{"vpa": "alice"}, []want{{"extra_fields.vpa", "invalid"}}},
		{"upi.inr", map[string]string{"vpa": "alice@ok1"}, []want{{"extra_fields.vpa", "invalid"}}},
		{"paytm.inr", map[string]string{"phone": "+919876543210"}, nil},
		{"paytm.inr", map[string]string{"phone": "5876543210"}, []want{{"extra_fields.phone", "invalid"}}},
		{"visamaster.uah", nil, nil},
		{"visamaster.uah", map[string]string{"card_holder": ""}, nil},
		{"visamaster.uah", map[string]string{"card_holder": "Olena Kovalenko"}, nil},
		{"visamaster.uah", map[string]string{"card_holder": "<script>"}, []want{{"extra_fields.card_holder", "invalid"}}},
		{"visamaster.uah", map[string]string{"phone": "+380501234567"}, []want{{"extra_fields.phone", "unknown"}}},
		{"ethereum", map[string]string{"refund_address": "0x52908400098527886E0F7030069857D2E4169EE7"}, nil},
		{"ethereum", map[string]string{"refund_address": "0x5290"}, []want{{"extra_fields.refund_address", "invalid"}}},
		{"usdt_trc20", map[string]string{"refund_address": "TNPeeaaFB7K9cmo4uQpcU32zGK8G1NYqeL"}, nil},
		{"bitcoin", map[string]string{"refund_address": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"}, nil},
		{"bitcoin", map[string]string{"refund_address": "0x52908400098527886E0F7030069857D2E4169EE7"}, []want{{"extra_fields.refund_address", "invalid"}}},
		{"bitcoin", nil, nil},
	}
	for _, tt := range tests {
		m, ok := LookupMethod(tt.method)
		if !ok {
			t.Fatalf("no method %s", tt.method)
		}
		var v ValidationError
		m.ValidateExtra(tt.fields, &v)
		var got []want
		for _, f := range v.Fields {
			got = append(got, want{f.Path, f.Type})
			if !strings.Contains(f.Message, f.Path) {
				t.Errorf("%s %v: message %q does not name %s", tt.method, tt.fields, f.Message, f.Path)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s %v: got %v, want %v", tt.method, tt.fields, got, tt.want)
		}
		if err := v.Err(); (err != nil) != (len(tt.want) > 0) || (err != nil && !errors.Is(err, ErrValidation)) {
			t.Errorf("%s %v: Err() = %v", tt.method, tt.fields, err)
		}
	}
}

func TestValidateExtraOutsideCatalogue(t *testing.T) {
	m := Method{Code: "custom", ExtraFields: []ExtraField{
		{Name: "ref", Type: FieldString, Required: true, Pattern: `^[A-Z]{3}$`},
		{Name: "broken", Type: FieldString, Pattern: `^(`},
	}}
	var v ValidationError
	m.ValidateExtra(map[string]string{"ref": "ABC"}, &v)
	if v.Err() != nil {
		t.Fatalf("valid input refused: %v", v.Err())
	}
	m.ValidateExtra(map[string]string{"ref": "abc", "broken": "x"}, &v)
	if len(v.Fields) != 2 || v.Fields[0].Type != "invalid" || v.Fields[1].Type != "invalid" {
		t.Fatalf("got %+v", v.Fields)
	}
}

// TestMethodsDoc keeps docs/methods.md in step with the catalogue: every
// method has its row, with its name, currency, kind and extra fields.
func TestMethodsDoc(t *testing.T) {
	doc, err := os.ReadFile("../docs/methods.md")
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range Methods() {
		country := m.Country
		if country == "" {
			country = "-"
		}
		var fields []string
		for _, f := range m.ExtraFields {
			s := "`" + f.Name + "`"
			if f.Required {
				s += "*"
			}
			fields = append(fields, s)
		}
		row := fmt.Sprintf("| %d | `%s` | %s | %s | %s | %s | %s |", i+1, m.Code, m.Name, m.Currency, m.Kind, country, strings.Join(fields, ", "))
		if !strings.Contains(string(doc), row+"\n") {
			t.Errorf("docs/methods.md lacks the row %q", row)
		}
	}
}
