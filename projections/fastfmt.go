package projections

import (
	"strconv"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/commands"
)

// Decimal formatting without big.Int arithmetic, for the amounts a replay
// formats by the million. Each function returns exactly what its reference
// returns (fastfmt_test.go checks it); it takes the fast path only when the
// coefficient fits in 18 digits and the result needs no rounding, and calls
// the reference otherwise.

var pow10 = [19]int64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18}

// small returns d as coefficient and exponent when the coefficient has at
// most 18 digits and the exponent is in [-18, 0].
func small(d decimal.Decimal) (m int64, e int32, ok bool) {
	e = d.Exponent()
	if e > 0 || e < -18 || d.NumDigits() > 18 {
		return 0, 0, false
	}
	return d.CoefficientInt64(), e, true
}

// fixed renders m * 10^e with exactly places decimals, if that is exact and
// fits; ok is false otherwise.
func fixed(m int64, e, places int32) (string, bool) {
	if places < 0 || places > 18 {
		return "", false
	}
	switch shift := places + e; {
	case shift > 0:
		if shift > 18 || abs64(m) >= pow10[18-shift] {
			return "", false
		}
		m *= pow10[shift]
	case shift < 0:
		if -shift > 18 || m%pow10[-shift] != 0 {
			return "", false // rounding: leave it to decimal
		}
		m /= pow10[-shift]
	}
	var buf [48]byte
	b := buf[:0]
	if m < 0 {
		b = append(b, '-')
		m = -m
	}
	var digits [20]byte
	ds := strconv.AppendInt(digits[:0], m, 10)
	if int32(len(ds)) <= places { // 0.0ddd
		b = append(b, '0', '.')
		for i := int32(len(ds)); i < places; i++ {
			b = append(b, '0')
		}
		b = append(b, ds...)
		return string(b), true
	}
	cut := int32(len(ds)) - places
	b = append(b, ds[:cut]...)
	if places > 0 {
		b = append(b, '.')
		b = append(b, ds[cut:]...)
	}
	return string(b), true
}

func abs64(m int64) int64 {
	if m < 0 {
		return -m
	}
	return m
}

// significant returns the number of decimal places of m * 10^e once
// trailing zeros are dropped (0 for whole numbers).
func significant(m int64, e int32) int32 {
	if m == 0 {
		return 0
	}
	for e < 0 && m%10 == 0 {
		m /= 10
		e++
	}
	return -e
}

// plainString is d.String().
func plainString(d decimal.Decimal) string {
	if decimal.TrimTrailingZeros && !decimal.UseScientificNotation {
		if m, e, ok := small(d); ok {
			if s, ok := fixed(m, e, significant(m, e)); ok {
				return s
			}
		}
	}
	return d.String()
}

// num is a decimal as the hot path keeps it: the coefficient and exponent
// when small (no big.Int), else the decimal itself.
type num struct {
	m int64
	e int32
	d *decimal.Decimal // set when the value is not small
}

// numOf converts a decimal.
func numOf(d decimal.Decimal) num {
	if m, e, ok := small(d); ok {
		return num{m: m, e: e}
	}
	return num{d: &d}
}

// parseNum parses a JSON decimal token (a quoted string or a number) as
// decimal.Decimal.UnmarshalJSON does, without the decimal package when the
// token is plain digits with at most 18 of them.
func parseNum(tok []byte) (num, bool) {
	b := tok
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		b = b[1 : len(b)-1]
	}
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	var m int64
	var e int32
	digits, dot := 0, false
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			if digits == 18 {
				return slowNum(tok)
			}
			m = m*10 + int64(c-'0')
			digits++
			if dot {
				e--
			}
		case c == '.' && !dot && digits > 0:
			dot = true
		default:
			return slowNum(tok)
		}
	}
	if digits == 0 || (dot && e == 0) {
		return slowNum(tok)
	}
	if neg {
		m = -m
	}
	return num{m: m, e: e}, true
}

func slowNum(tok []byte) (num, bool) {
	var d decimal.Decimal
	if d.UnmarshalJSON(tok) != nil {
		return num{}, false
	}
	return numOf(d), true
}

func (n num) decimal() decimal.Decimal {
	if n.d != nil {
		return *n.d
	}
	return decimal.New(n.m, n.e)
}

func (n num) isZero() bool {
	if n.d != nil {
		return n.d.IsZero()
	}
	return n.m == 0
}

// equal reports whether n and o are the same number, however written
// ("1500" and "1500.00" are equal).
func (n num) equal(o num) bool {
	if n.d == nil && o.d == nil {
		if n.e < o.e {
			n, o = o, n
		}
		// n has the larger exponent: scaled to o's, its coefficient is
		// o's if they are equal, and then it fits.
		if k := n.e - o.e; k <= 18 && abs64(n.m) < pow10[18-k] {
			return n.m*pow10[k] == o.m
		}
	}
	return n.decimal().Equal(o.decimal())
}

// Neg, Sub and Sign are the arithmetic the commands' allocation rule
// needs (commands.Money), exact, on int64s while the result fits.

// Neg is -n.
func (n num) Neg() num {
	if n.d != nil {
		return numOf(n.d.Neg())
	}
	return num{m: -n.m, e: n.e}
}

// Sub is n - o.
func (n num) Sub(o num) num {
	var a sum
	a.addNum(n)
	a.addNum(o.Neg())
	if a.big != nil {
		return numOf(*a.big)
	}
	return num{m: a.m, e: a.e}
}

// Sign is -1, 0 or 1 as n is below, at or above zero.
func (n num) Sign() int {
	switch {
	case n.d != nil:
		return n.d.Sign()
	case n.m < 0:
		return -1
	case n.m > 0:
		return 1
	}
	return 0
}

// fixed is decimal.StringFixed(places).
func (n num) fixed(places int32) string {
	if n.d == nil {
		if s, ok := fixed(n.m, n.e, places); ok {
			return s
		}
	}
	return n.decimal().StringFixed(places)
}

// rate is commands.FormatRate.
func (n num) rate() string {
	if n.d == nil {
		if s, ok := fixed(n.m, n.e, max(2, significant(n.m, n.e))); ok {
			return s
		}
	}
	return commands.FormatRate(n.decimal())
}

// plain is decimal.String.
func (n num) plain() string {
	if n.d == nil && decimal.TrimTrailingZeros && !decimal.UseScientificNotation {
		if s, ok := fixed(n.m, n.e, significant(n.m, n.e)); ok {
			return s
		}
	}
	return n.decimal().String()
}
