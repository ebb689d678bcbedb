package commands

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

func mustCurrency(t testing.TB, code string) Currency {
	t.Helper()
	c, ok := LookupCurrency(code)
	if !ok {
		t.Fatalf("LookupCurrency(%q): not found", code)
	}
	return c
}

func TestParseAmount(t *testing.T) {
	tests := []struct {
		cur, in string
		want    string // the parsed value, when ok
		typ     string // the FieldError type, when refused
	}{
		{"UAH", "1500.00", "1500", ""},
		{"UAH", "1500", "1500", ""},
		{"UAH", "1500.5", "1500.5", ""},
		{"UAH", "0.01", "0.01", ""},
		{"UAH", "0.5", "0.5", ""},
		{"UAH", "999999999999999.99", "999999999999999.99", ""},
		{"UAH", "", "", "missing"},
		{"UAH", "-5", "", "not_positive"},
		{"UAH", "-5.123", "", "not_positive"},
		{"UAH", "-0", "", "not_positive"},
		{"UAH", "0", "", "not_positive"},
		{"UAH", "0.00", "", "not_positive"},
		{"UAH", "1500.001", "", "too_precise"},
		{"UAH", "0.001", "", "too_precise"},
		{"UAH", "1234567890123456", "", "too_large"},
		{"UAH", "1" + strings.Repeat("0", 400), "", "too_large"},
		{"UAH", "1." + strings.Repeat("0", 400), "", "too_precise"},
		{"UAH", "1e3", "", "invalid"},
		{"UAH", "1E3", "", "invalid"},
		{"UAH", "1.5e2", "", "invalid"},
		{"UAH", ".5", "", "invalid"},
		{"UAH", "5.", "", "invalid"},
		{"UAH", "+5", "", "invalid"},
		{"UAH", " 5", "", "invalid"},
		{"UAH", "5 ", "", "invalid"},
		{"UAH", "1 500", "", "invalid"},
		{"UAH", "1,5", "", "invalid"},
		{"UAH", "007", "", "invalid"},
		{"UAH", "00.5", "", "invalid"},
		{"UAH", "0x10", "", "invalid"},
		{"UAH", "NaN", "", "invalid"},
		{"UAH", "Infinity", "", "invalid"},
		{"UAH", "-Infinity", "", "invalid"},
		{"UAH", "inf", "", "invalid"},
		{"UAH", "-", "", "invalid"},
		{"UAH", "--5", "", "invalid"},
		{"UAH", ".", "", "invalid"},
		{"UAH", "1..5", "", "invalid"},
		{"UAH", "1.5.0", "", "invalid"},
		{"UAH", "١٢٣", "", "invalid"}, // Arabic-Indic digits
		{"UAH", "12\x00", "", "invalid"},
		{"XOF", "1500", "1500", ""},
		{"XOF", "1500.00", "", "too_precise"},
		{"XOF", "1500.5", "", "too_precise"},
		{"GNF", "25000", "25000", ""},
		{"KWD", "1.234", "1.234", ""},
		{"KWD", "1.2345", "", "too_precise"},
		{"BTC", "0.00000001", "0.00000001", ""},
		{"BTC", "0.000000001", "", "too_precise"},
		{"USDT", "35.420000", "35.42", ""},
	}
	for _, tt := range tests {
		t.Run(tt.cur+"/"+tt.in, func(t *testing.T) {
			d, fe := ParseAmount("amount", tt.in, mustCurrency(t, tt.cur))
			if tt.typ == "" {
				if fe != nil {
					t.Fatalf("refused: %+v", *fe)
				}
				if !d.Equal(decimal.RequireFromString(tt.want)) {
					t.Fatalf("got %s, want %s", d, tt.want)
				}
				return
			}
			if fe == nil {
				t.Fatalf("accepted as %s, want %s", d, tt.typ)
			}
			if fe.Type != tt.typ || fe.Path != "amount" {
				t.Fatalf("got %+v, want type %s at amount", *fe, tt.typ)
			}
			if !strings.HasPrefix(fe.Message, "amount ") {
				t.Fatalf("message %q does not name the field", fe.Message)
			}
			if len(fe.Message) > 200 {
				t.Fatalf("message echoes the input: %d bytes", len(fe.Message))
			}
		})
	}
}

func TestParseAmountMessages(t *testing.T) {
	tests := []struct{ cur, in, want string }{
		{"UAH", "1.001", "amount must have at most 2 decimal places for UAH"},
		{"XOF", "1.5", "amount must be a whole number for XOF (no decimal places)"},
		{"UAH", "1234567890123456", "amount must have at most 15 integer digits"},
		{"UAH", "-1", "amount must be greater than zero"},
	}
	for _, tt := range tests {
		_, fe := ParseAmount("amount", tt.in, mustCurrency(t, tt.cur))
		if fe == nil || fe.Message != tt.want {
			t.Errorf("ParseAmount(%q, %s) = %+v, want message %q", tt.in, tt.cur, fe, tt.want)
		}
	}
}

func TestParseRate(t *testing.T) {
	tests := []struct{ in, want, typ string }{
		{"41.50", "41.5", ""},
		{"41", "41", ""},
		{"0.000000000001", "0.000000000001", ""},
		{"999999999999.999999999999", "999999999999.999999999999", ""},
		{"0.0000000000001", "", "too_precise"},
		{"1234567890123", "", "too_large"},
		{"0", "", "not_positive"},
		{"-41.5", "", "not_positive"},
		{"4.15e1", "", "invalid"},
		{"", "", "missing"},
	}
	for _, tt := range tests {
		d, fe := ParseRate("rate", tt.in)
		switch {
		case tt.typ == "" && (fe != nil || !d.Equal(decimal.RequireFromString(tt.want))):
			t.Errorf("ParseRate(%q) = %s, %+v; want %s", tt.in, d, fe, tt.want)
		case tt.typ != "" && (fe == nil || fe.Type != tt.typ || fe.Path != "rate"):
			t.Errorf("ParseRate(%q) = %s, %+v; want type %s", tt.in, d, fe, tt.typ)
		}
	}
}

func TestFormatAmount(t *testing.T) {
	tests := []struct{ in, cur, want string }{
		{"1500", "UAH", "1500.00"},
		{"1500.5", "UAH", "1500.50"},
		{"1500", "XOF", "1500"},
		{"1.2", "KWD", "1.200"},
		{"0.5", "BTC", "0.50000000"},
		{"35.42", "USDT", "35.420000"},
	}
	for _, tt := range tests {
		if got := FormatAmount(decimal.RequireFromString(tt.in), mustCurrency(t, tt.cur)); got != tt.want {
			t.Errorf("FormatAmount(%s, %s) = %q, want %q", tt.in, tt.cur, got, tt.want)
		}
	}
}

func TestFormatRate(t *testing.T) {
	tests := []struct{ in, want string }{
		{"41.5", "41.50"},
		{"41.50", "41.50"},
		{"41.500", "41.50"},
		{"41", "41.00"},
		{"41.505", "41.505"},
		{"0.0000105", "0.0000105"},
		{"600", "600.00"},
	}
	for _, tt := range tests {
		if got := FormatRate(decimal.RequireFromString(tt.in)); got != tt.want {
			t.Errorf("FormatRate(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestConvertSeed003 is seed 003's example: 1500.00 UAH at 41.50 UAH/USDT with a
// 2% commission shows conversion_rate "41.50" and merchant_usdt "35.42".
func TestConvertSeed003(t *testing.T) {
	uah := mustCurrency(t, "UAH")
	amount, fe := ParseAmount("amount", "1500.00", uah)
	if fe != nil {
		t.Fatal(fe)
	}
	rate, fe := ParseRate("rate", "41.50")
	if fe != nil {
		t.Fatal(fe)
	}
	c := Convert(amount, rate, decimal.NewFromInt(2))
	if got := FormatRate(c.Rate); got != "41.50" {
		t.Errorf("conversion_rate = %q, want 41.50", got)
	}
	if got := c.MerchantUSDT.StringFixed(MerchantUSDTPlaces); got != "35.42" {
		t.Errorf("merchant_usdt = %q, want 35.42", got)
	}
	if got := c.GrossUSDT.String(); got != "36.144578" {
		t.Errorf("gross = %q, want 36.144578", got)
	}
	if got := c.FeeUSDT.String(); got != "0.724578" {
		t.Errorf("fee = %q, want 0.724578", got)
	}
	if !c.GrossUSDT.Equal(c.MerchantUSDT.Add(c.FeeUSDT)) {
		t.Errorf("gross %s != merchant %s + fee %s", c.GrossUSDT, c.MerchantUSDT, c.FeeUSDT)
	}
}

func TestConvertEdges(t *testing.T) {
	d := decimal.RequireFromString
	tests := []struct{ amount, rate, commission, gross, merchant, fee string }{
		{"100", "1", "0", "100", "100", "0"},
		{"100", "1", "100", "100", "0", "100"},
		{"100", "3", "0", "33.333333", "33.33", "0.003333"},
		{"0.01", "41.5", "2", "0.00024", "0", "0.00024"},
		// The quotient 1.9999999999999999999999 must truncate to 1.999999, not
		// round up at 18 places to 2 first.
		{"1.9999999999999999999999", "1", "0", "1.999999", "1.99", "0.009999"},
		{"1500", "41.5", "2.5", "36.144578", "35.24", "0.904578"},
	}
	for _, tt := range tests {
		c := Convert(d(tt.amount), d(tt.rate), d(tt.commission))
		if !c.GrossUSDT.Equal(d(tt.gross)) || !c.MerchantUSDT.Equal(d(tt.merchant)) || !c.FeeUSDT.Equal(d(tt.fee)) {
			t.Errorf("Convert(%s, %s, %s) = %s/%s/%s, want %s/%s/%s", tt.amount, tt.rate, tt.commission,
				c.GrossUSDT, c.MerchantUSDT, c.FeeUSDT, tt.gross, tt.merchant, tt.fee)
		}
	}
}

// randDecimal returns a positive decimal with up to intDigits integer digits
// and exactly places decimal places (trailing zeros allowed).
func randDecimal(r *rand.Rand, intDigits, places int) decimal.Decimal {
	var b strings.Builder
	n := 1 + r.IntN(intDigits)
	for range n {
		b.WriteByte(byte('0' + r.IntN(10)))
	}
	if places > 0 {
		b.WriteByte('.')
		for range places {
			b.WriteByte(byte('0' + r.IntN(10)))
		}
	}
	d := decimal.RequireFromString(b.String())
	if d.Sign() == 0 {
		return decimal.New(1, int32(-places))
	}
	return d
}

// TestConvertConservation checks on random inputs that the split conserves
// money (gross = merchant + fee exactly) and that each rounding is a
// truncation by less than one unit of the last place.
func TestConvertConservation(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 2026))
	usdtUnit := decimal.New(1, -USDTPlaces)
	centUnit := decimal.New(1, -MerchantUSDTPlaces)
	for i := range 20000 {
		amount := randDecimal(r, MaxAmountDigits, r.IntN(9))
		rate := randDecimal(r, 6, r.IntN(maxRatePlaces+1))
		commission := randDecimal(r, 2, r.IntN(3))
		if commission.GreaterThan(decHundred) {
			commission = decHundred
		}
		c := Convert(amount, rate, commission)
		fail := func(what string) {
			t.Fatalf("case %d: Convert(%s, %s, %s) = gross %s merchant %s fee %s: %s",
				i, amount, rate, commission, c.GrossUSDT, c.MerchantUSDT, c.FeeUSDT, what)
		}
		if !c.GrossUSDT.Equal(c.MerchantUSDT.Add(c.FeeUSDT)) {
			fail("gross != merchant + fee")
		}
		if !c.Rate.Equal(rate) {
			fail("rate changed")
		}
		if !c.GrossUSDT.Equal(c.GrossUSDT.RoundDown(USDTPlaces)) || !c.MerchantUSDT.Equal(c.MerchantUSDT.RoundDown(MerchantUSDTPlaces)) {
			fail("more places than allowed")
		}
		if c.MerchantUSDT.Sign() < 0 || c.FeeUSDT.Sign() < 0 {
			fail("negative share")
		}
		// gross*rate <= amount < (gross+unit)*rate, exactly.
		if c.GrossUSDT.Mul(rate).GreaterThan(amount) || !c.GrossUSDT.Add(usdtUnit).Mul(rate).GreaterThan(amount) {
			fail("gross is not amount/rate truncated to 6 places")
		}
		// merchant*100 <= gross*(100-c) < (merchant+cent)*100, exactly.
		share := c.GrossUSDT.Mul(decHundred.Sub(commission))
		if c.MerchantUSDT.Mul(decHundred).GreaterThan(share) || !c.MerchantUSDT.Add(centUnit).Mul(decHundred).GreaterThan(share) {
			fail("merchant is not the share truncated to cents")
		}
	}
}

// TestMinCreditedAmount: Convert of MinCreditedAmount credits the merchant
// something, and of one minor unit less nothing, on random rates,
// commissions and currencies.
func TestMinCreditedAmount(t *testing.T) {
	d := decimal.RequireFromString
	if got := MinCreditedAmount(d("41.50"), d("2"), mustCurrency(t, "UAH")); !got.Equal(d("0.43")) {
		t.Errorf("seed 003: MinCreditedAmount = %s, want 0.43", got)
	}
	r := rand.New(rand.NewPCG(11, 2026))
	curs := []Currency{mustCurrency(t, "BTC"), mustCurrency(t, "XOF"), mustCurrency(t, "UAH"), mustCurrency(t, "KWD"), SettlementCurrency()}
	for i := range 20000 {
		rate := randDecimal(r, 6, r.IntN(maxRatePlaces+1))
		commission := randDecimal(r, 2, r.IntN(5))
		if commission.GreaterThanOrEqual(decHundred) {
			commission = d("99.9999")
		}
		cur := curs[r.IntN(len(curs))]
		least := MinCreditedAmount(rate, commission, cur)
		if !least.Equal(least.RoundDown(cur.MinorUnits)) {
			t.Fatalf("case %d: %s has more than %d places", i, least, cur.MinorUnits)
		}
		if c := Convert(least, rate, commission); !c.MerchantUSDT.IsPositive() {
			t.Fatalf("case %d: MinCreditedAmount(%s, %s, %s) = %s credits nothing", i, rate, commission, cur.Code, least)
		}
		below := least.Sub(decimal.New(1, -cur.MinorUnits))
		if below.IsPositive() && Convert(below, rate, commission).MerchantUSDT.IsPositive() {
			t.Fatalf("case %d: MinCreditedAmount(%s, %s, %s) = %s, but %s credits the merchant too", i, rate, commission, cur.Code, least, below)
		}
	}
}

func TestConvertBetween(t *testing.T) {
	d := decimal.RequireFromString
	tests := []struct{ amount, from, to, cur, want string }{
		{"100", "40", "1", "USD", "2.5"},                  // exact: no rounding
		{"100", "41.6", "1", "USD", "2.41"},               // 2.4038...: up, where half-up gives 2.40
		{"100", "41.5", "0.0000105", "BTC", "0.00002531"}, // 0.0000253012...
		{"1000", "41.5", "600", "XOF", "14458"},           // 14457.83...
		{"1500", "41.5", "41.5", "UAH", "1500"},           // same rate: unchanged
	}
	for _, tt := range tests {
		got := ConvertBetween(d(tt.amount), d(tt.from), d(tt.to), mustCurrency(t, tt.cur))
		if !got.Equal(d(tt.want)) {
			t.Errorf("ConvertBetween(%s, %s, %s, %s) = %s, want %s", tt.amount, tt.from, tt.to, tt.cur, got, tt.want)
		}
	}

	// The customer never pays less than the invoiced value, and never a full
	// minor unit more than needed.
	r := rand.New(rand.NewPCG(7, 2026))
	curs := []Currency{mustCurrency(t, "BTC"), mustCurrency(t, "XOF"), mustCurrency(t, "UAH"), mustCurrency(t, "KWD")}
	for i := range 20000 {
		amount := randDecimal(r, 9, r.IntN(3))
		from := randDecimal(r, 5, r.IntN(7))
		to := randDecimal(r, 5, r.IntN(9))
		cur := curs[r.IntN(len(curs))]
		got := ConvertBetween(amount, from, to, cur)
		need := amount.Mul(to) // got*from must cover it
		unit := decimal.New(1, -cur.MinorUnits)
		if !got.Equal(got.RoundDown(cur.MinorUnits)) {
			t.Fatalf("case %d: %s has more than %d places", i, got, cur.MinorUnits)
		}
		if got.Mul(from).LessThan(need) || !got.Sub(unit).Mul(from).LessThan(need) {
			t.Fatalf("case %d: ConvertBetween(%s, %s, %s, %s) = %s is not the exact value rounded up",
				i, amount, from, to, cur.Code, got)
		}
	}
}

// FuzzParseAmount: ParseAmount never panics, refuses with a known type, and
// whatever it accepts is positive, within the currency's limits, and survives
// FormatAmount and a second ParseAmount unchanged.
func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"1500.00", "1500", "0.01", "-0", "1e3", ".5", "5.", "+5", " 5",
		"NaN", "Infinity", "0x1F", "1234567890123456", "999999999999999.99", "0.00000001", "007", ""} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(1))
		f.Add(s, uint8(2))
	}
	curs := []string{"UAH", "XOF", "KWD", "BTC", "USDT", "CLF"}
	types := map[string]bool{"missing": true, "invalid": true, "not_positive": true, "too_precise": true, "too_large": true}
	f.Fuzz(func(t *testing.T, s string, ci uint8) {
		cur := mustCurrency(t, curs[int(ci)%len(curs)])
		d, fe := ParseAmount("amount", s, cur)
		if fe != nil {
			if !types[fe.Type] || fe.Path != "amount" || fe.Message == "" {
				t.Fatalf("ParseAmount(%q): bad refusal %+v", s, *fe)
			}
			return
		}
		if d.Sign() <= 0 {
			t.Fatalf("ParseAmount(%q) accepted non-positive %s", s, d)
		}
		if !d.Equal(d.RoundDown(cur.MinorUnits)) {
			t.Fatalf("ParseAmount(%q) accepted %s, finer than %d places", s, d, cur.MinorUnits)
		}
		if len(d.Truncate(0).String()) > MaxAmountDigits {
			t.Fatalf("ParseAmount(%q) accepted %s, more than %d digits", s, d, MaxAmountDigits)
		}
		out := FormatAmount(d, cur)
		d2, fe := ParseAmount("amount", out, cur)
		if fe != nil {
			t.Fatalf("ParseAmount(%q) = %s formats as %q, which is refused: %+v", s, d, out, *fe)
		}
		if !d2.Equal(d) {
			t.Fatalf("ParseAmount(%q) = %s formats as %q, which parses as %s", s, d, out, d2)
		}
		if FormatAmount(d2, cur) != out {
			t.Fatalf("format of %q is not stable", s)
		}
	})
}

func BenchmarkParseAmount(b *testing.B) {
	uah := mustCurrency(b, "UAH")
	for b.Loop() {
		if _, fe := ParseAmount("amount", "1500.00", uah); fe != nil {
			b.Fatal(fe)
		}
	}
}

func BenchmarkConvert(b *testing.B) {
	amount, rate, commission := decimal.RequireFromString("1500.00"), decimal.RequireFromString("41.50"), decimal.NewFromInt(2)
	for b.Loop() {
		Convert(amount, rate, commission)
	}
}
