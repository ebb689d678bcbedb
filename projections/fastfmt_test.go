package projections

import (
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/commands"
)

func randDecimal(rng *rand.Rand) decimal.Decimal {
	var m *big.Int
	switch rng.IntN(4) {
	case 0:
		m = big.NewInt(rng.Int64N(1000) - 500)
	case 1:
		m = big.NewInt(rng.Int64() >> rng.IntN(63))
	case 2: // around the 18-digit edge
		m = new(big.Int).Add(big.NewInt(pow10[18]), big.NewInt(rng.Int64N(2001)-1000))
	default: // beyond int64
		m = new(big.Int).Mul(big.NewInt(rng.Int64()), big.NewInt(rng.Int64N(1e6)+1))
	}
	if rng.IntN(2) == 0 {
		m.Neg(m)
	}
	if rng.IntN(4) == 0 { // trailing zeros
		m.Mul(m, big.NewInt(pow10[rng.IntN(5)]))
	}
	return decimal.NewFromBigInt(m, int32(rng.IntN(26)-22))
}

func TestFastFormatMatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for range 300_000 {
		d := randDecimal(rng)
		places := int32(rng.IntN(10))
		if got, want := numOf(d).fixed(places), commands.FormatAmount(d, commands.Currency{MinorUnits: places}); got != want {
			t.Fatalf("fixed(%s, %d) = %q, want %q", d, places, got, want)
		}
		if got, want := numOf(d).rate(), commands.FormatRate(d); got != want {
			t.Fatalf("rate(%s) = %q, want %q", d, got, want)
		}
		if got, want := plainString(d), d.String(); got != want {
			t.Fatalf("plainString(%s) = %q, want %q", d, got, want)
		}
	}
	for _, s := range []string{"0", "-0", "1500", "1500.00", "41.5", "0.0000105", "35.42", "-0.724578", "999999999999999999", "0.000000000000000001"} {
		d := decimal.RequireFromString(s)
		for _, cur := range []string{"UAH", "XOF", "KWD", "BTC", "USDT", "???"} {
			c, _ := commands.LookupCurrency(cur)
			want := commands.FormatRate(d)
			if c.Code != "" {
				want = commands.FormatAmount(d, c)
			}
			if got := currencyAmount(numOf(d), cur); got != want {
				t.Errorf("currencyAmount(%s, %s) = %q, want %q", s, cur, got, want)
			}
		}
	}
}

func TestSumMatchesDecimal(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 2))
	for range 20_000 {
		var a sum
		want := decimal.Zero
		for range rng.IntN(30) {
			d := randDecimal(rng)
			if rng.IntN(3) > 0 { // mostly money-like
				d = decimal.New(rng.Int64N(2e9)-1e9, -int32(rng.IntN(7)))
			}
			a.add(d)
			want = want.Add(d)
		}
		if got := a.value(); !got.Equal(want) || plainString(got) != want.String() {
			t.Fatalf("sum %s, want %s", got, want)
		}
	}
}

// TestNumMatches: a decimal's JSON text parsed by parseNum formats as the
// decimal does.
func TestNumMatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 1))
	for range 200_000 {
		d := randDecimal(rng)
		tok, _ := d.MarshalJSON()
		n, ok := parseNum(tok)
		if !ok {
			t.Fatalf("parseNum(%s) failed", tok)
		}
		ref := decimal.RequireFromString(d.String())
		places := int32(rng.IntN(10))
		if n.fixed(places) != ref.StringFixed(places) || n.rate() != commands.FormatRate(ref) ||
			n.plain() != ref.String() || n.isZero() != ref.IsZero() || !n.decimal().Equal(ref) {
			t.Fatalf("%s: fixed %q rate %q plain %q", tok, n.fixed(places), n.rate(), n.plain())
		}
		n2 := numOf(d)
		if n2.plain() != d.String() {
			t.Fatalf("numOf(%s).plain() = %q", d, n2.plain())
		}
	}
}

// TestNumArithmeticMatches: num's Neg, Sub, Sign and equal (the
// arithmetic of the commands' allocation rule, checkAllocated's) give the
// decimal's results, whatever the exponents.
func TestNumArithmeticMatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 3))
	for range 100_000 {
		a, b := randDecimal(rng), randDecimal(rng)
		if rng.IntN(3) == 0 { // the same number, written with another exponent
			k := rng.IntN(4)
			b = decimal.NewFromBigInt(new(big.Int).Mul(a.Coefficient(), big.NewInt(pow10[k])), a.Exponent()-int32(k))
		}
		ta, _ := a.MarshalJSON()
		tb, _ := b.MarshalJSON()
		x, okA := parseNum(ta)
		y, okB := parseNum(tb) // decimal text: trailing zeros trimmed
		if !okA || !okB {
			t.Fatalf("parseNum(%s, %s) failed", ta, tb)
		}
		if rng.IntN(2) == 0 {
			y = numOf(b) // b's own exponent
		}
		for _, n := range []num{x, numOf(a)} {
			if got := n.Sub(y); !got.decimal().Equal(a.Sub(b)) {
				t.Fatalf("%s - %s = %s, want %s", a, b, got.decimal(), a.Sub(b))
			}
			if got := n.Neg(); !got.decimal().Equal(a.Neg()) || got.Sign() != a.Neg().Sign() {
				t.Fatalf("-(%s) = %s (sign %d)", a, got.decimal(), got.Sign())
			}
			if n.Sign() != a.Sign() || n.equal(y) != a.Equal(b) || y.equal(n) != a.Equal(b) {
				t.Fatalf("%s vs %s: sign %d, equal %t", a, b, n.Sign(), n.equal(y))
			}
		}
	}
}
