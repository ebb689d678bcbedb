package commands

import (
	"fmt"

	"github.com/shopspring/decimal"
)

// MaxAmountDigits is the number of integer digits an amount may have: up to
// 999 trillion, far above any invoice and small enough that every amount and
// every product of an amount and a rate stays exact in the views.
const MaxAmountDigits = 15

// amountBound is the least amount with more than MaxAmountDigits integer digits.
var amountBound = decimal.New(1, MaxAmountDigits)

// withinAmountDigits reports whether d has at most MaxAmountDigits integer
// digits, as ParseAmount requires of every amount it takes: an amount the
// ledger computes (a payment's, converted) must be one it could be told
// was paid.
func withinAmountDigits(d decimal.Decimal) bool {
	return d.Abs().LessThan(amountBound)
}

// Rate limits: a rate is units of a currency per 1 USDT, from about 1e-6 (BTC)
// to about 1e5 (IRR, VND), so 12 places either side leave room without letting
// a typo through unnoticed.
const (
	maxRateDigits = 12
	maxRatePlaces = 12
)

// USDTPlaces is the precision of gross USDT amounts (USDT's minor units);
// MerchantUSDTPlaces is the precision of what a merchant is credited: cents.
const (
	USDTPlaces         = 6
	MerchantUSDTPlaces = 2
)

// ParseAmount parses the JSON string form of a money amount in cur and
// validates it. field names the request field in the returned error, e.g.
// "amount".
//
// The accepted form is a JSON number without sign or exponent: "1500",
// "1500.00", "0.5". A leading "+", an exponent ("1e3"), spaces, a leading or
// trailing dot (".5", "5."), leading zeros ("007"), hex, "NaN" and "Infinity"
// are all refused. Decimal places are counted as written, so "1500.00" is too
// precise for XOF even though its value is whole: a client that sends more
// places than the currency has has misunderstood the currency, and we say so
// rather than guess.
//
// The returned FieldError's Type is one of:
//   - "missing": s is empty;
//   - "invalid": s is not of the form above;
//   - "not_positive": s is negative (including "-0") or zero;
//   - "too_precise": more than cur.MinorUnits decimal places;
//   - "too_large": more than MaxAmountDigits integer digits.
func ParseAmount(field, s string, cur Currency) (decimal.Decimal, *FieldError) {
	precise := func() string {
		if cur.MinorUnits == 0 {
			return fmt.Sprintf("%s must be a whole number for %s (no decimal places)", field, cur.Code)
		}
		return fmt.Sprintf("%s must have at most %d decimal places for %s", field, cur.MinorUnits, cur.Code)
	}
	return parsePositive(field, s, cur.MinorUnits, MaxAmountDigits, precise)
}

// ParseRate parses a conversion rate (units of a currency per 1 USDT) from
// its JSON string form, with the same grammar as ParseAmount. A rate must be
// greater than zero and have at most 12 decimal places ("too_precise") and
// at most 12 integer digits ("too_large"); the other error types are those of
// ParseAmount.
func ParseRate(field, s string) (decimal.Decimal, *FieldError) {
	precise := func() string {
		return fmt.Sprintf("%s must have at most %d decimal places", field, maxRatePlaces)
	}
	return parsePositive(field, s, maxRatePlaces, maxRateDigits, precise)
}

// parsePositive checks the grammar by hand before handing s to the decimal
// package, whose own parser accepts exponents, signs and strings long enough
// to cost real time.
func parsePositive(field, s string, maxPlaces int32, maxDigits int, preciseMsg func() string) (decimal.Decimal, *FieldError) {
	fail := func(typ, msg string) (decimal.Decimal, *FieldError) {
		return decimal.Zero, &FieldError{Path: field, Type: typ, Message: msg}
	}
	if s == "" {
		return fail("missing", field+" is required")
	}
	negative := false
	body := s
	if body[0] == '-' {
		negative = true
		body = body[1:]
	}
	intDigits, places, ok := scanDecimal(body)
	if !ok {
		return fail("invalid", fmt.Sprintf(`%s must be a decimal string such as "1500.00": digits, optionally a dot and more digits; no sign, exponent, spaces or leading zeros`, field))
	}
	if negative {
		return fail("not_positive", field+" must be greater than zero")
	}
	if places > int(maxPlaces) {
		return fail("too_precise", preciseMsg())
	}
	if intDigits > maxDigits {
		return fail("too_large", fmt.Sprintf("%s must have at most %d integer digits", field, maxDigits))
	}
	d, err := decimal.NewFromString(body)
	if err != nil {
		// Unreachable: scanDecimal admits only what NewFromString parses.
		return fail("invalid", field+" is not a decimal number")
	}
	if d.Sign() <= 0 {
		return fail("not_positive", field+" must be greater than zero")
	}
	return d, nil
}

// scanDecimal matches s against `^(0|[1-9][0-9]*)(\.[0-9]+)?$` and returns
// the number of integer and fractional digits.
func scanDecimal(s string) (intDigits, places int, ok bool) {
	i := 0
	for i < len(s) && isASCIIDigit(s[i]) {
		i++
	}
	intDigits = i
	if intDigits == 0 || (intDigits > 1 && s[0] == '0') {
		return 0, 0, false
	}
	if i == len(s) {
		return intDigits, 0, true
	}
	if s[i] != '.' {
		return 0, 0, false
	}
	i++
	j := i
	for j < len(s) && isASCIIDigit(s[j]) {
		j++
	}
	if j == i || j != len(s) {
		return 0, 0, false
	}
	return intDigits, j - i, true
}

func isASCIIDigit(c byte) bool { return '0' <= c && c <= '9' }

// FormatAmount renders d with exactly cur.MinorUnits decimal places: "1500.00"
// for UAH, "1500" for XOF. Amounts are expected to be at the currency's
// precision already (ParseAmount and Convert guarantee it); anything finer is
// rounded half away from zero.
func FormatAmount(d decimal.Decimal, cur Currency) string {
	return d.StringFixed(cur.MinorUnits)
}

// FormatRate renders a rate with its significant decimal places, and at least
// two: 41.5 is "41.50", 41.505 is "41.505", 0.0000105 is "0.0000105".
func FormatRate(d decimal.Decimal) string {
	places := -d.Normalize().Exponent()
	if places < 2 {
		places = 2
	}
	return d.StringFixed(places)
}

// Conversion is the USDT side of an invoice: what the customer's fiat buys at
// the invoice's rate, split between the merchant and the fee.
type Conversion struct {
	Rate         decimal.Decimal // units of the fiat per 1 USDT, as given
	GrossUSDT    decimal.Decimal // amount / rate, truncated to USDTPlaces
	FeeUSDT      decimal.Decimal // GrossUSDT - MerchantUSDT
	MerchantUSDT decimal.Decimal // credited to the merchant, truncated to cents
}

var decHundred = decimal.NewFromInt(100)

// settlementRate returns given, the rate of currency per USDT that came in
// with a command, except for USDT itself, whose rate is 1 by definition:
// the operator cannot set one (SetRate refuses it), so an adapter reading
// the rates view never has one to give.
func settlementRate(currency string, given decimal.Decimal) decimal.Decimal {
	if currency == SettlementCurrency().Code {
		return decimal.NewFromInt(1)
	}
	return given
}

// Convert converts a fiat amount to USDT at rate (units of the fiat per
// 1 USDT) and splits it by commissionPercent (0 to 100, e.g. 2 for 2%).
//
// Rounding, always towards the house and never by more than one unit of the
// last place:
//   - GrossUSDT = amount / rate, truncated (rounded down) to 6 places, USDT's
//     minor units. The quotient is truncated exactly, from the division's
//     remainder, not from a rounded intermediate.
//   - MerchantUSDT = GrossUSDT * (100 - commissionPercent) / 100, exact, then
//     truncated to 2 places (cents), as seed 003 shows merchant_usdt.
//   - FeeUSDT = GrossUSDT - MerchantUSDT, exact, so GrossUSDT equals
//     MerchantUSDT + FeeUSDT to the last digit: the truncated fractions of a
//     cent are the house's fee, and the postings balance.
//
// Seed 003: 1500.00 at 41.50 with 2% gives GrossUSDT 36.144578, MerchantUSDT
// 35.42 and FeeUSDT 0.724578.
//
// rate must be greater than zero (ParseRate ensures it); Convert panics on a
// zero rate, as division by zero does.
func Convert(amount, rate, commissionPercent decimal.Decimal) Conversion {
	gross, _ := amount.QuoRem(rate, USDTPlaces)
	merchant := gross.Mul(decHundred.Sub(commissionPercent)).Shift(-2).RoundDown(MerchantUSDTPlaces)
	return Conversion{
		Rate:         rate,
		GrossUSDT:    gross,
		FeeUSDT:      gross.Sub(merchant),
		MerchantUSDT: merchant,
	}
}

// MinCreditedAmount is the least amount of cur that Convert at rate, with
// commissionPercent (below 100), credits the merchant anything: 0.01 USDT.
// Below it the whole amount is fee (newInvoice refuses such an invoice).
// Seed 003's rate and commission: 41.50 UAH per USDT with 2% gives 0.43
// UAH (0.42 UAH is 0.010120 USDT, 0.009918 after commission: 0.00).
//
// Exactly, with no rounded intermediate: MerchantUSDT >= 0.01 exactly when
// GrossUSDT * (100 - commissionPercent) >= 1, so the least GrossUSDT is
// 1 / (100 - commissionPercent) rounded up to USDTPlaces; GrossUSDT is
// amount / rate truncated to USDTPlaces, so it reaches that gross exactly
// when amount >= gross * rate, rounded up here to cur.MinorUnits.
func MinCreditedAmount(rate, commissionPercent decimal.Decimal, cur Currency) decimal.Decimal {
	gross, r := decimal.NewFromInt(1).QuoRem(decHundred.Sub(commissionPercent), USDTPlaces)
	if r.Sign() > 0 {
		gross = gross.Add(decimal.New(1, -USDTPlaces))
	}
	return gross.Mul(rate).RoundCeil(cur.MinorUnits)
}

// ConvertBetween converts amount from currency A to currency to (B) through
// their USDT rates: fromRate is units of A per 1 USDT, toRate units of B per
// 1 USDT, so the result is amount * toRate / fromRate. It is rounded up to
// to.MinorUnits places, exactly (any nonzero remainder adds one unit): a
// customer paying a UAH invoice in BTC pays at least the invoiced value.
//
// fromRate must be greater than zero; ConvertBetween panics on a zero rate.
func ConvertBetween(amount decimal.Decimal, fromRate, toRate decimal.Decimal, to Currency) decimal.Decimal {
	q, r := amount.Mul(toRate).QuoRem(fromRate, to.MinorUnits)
	if r.Sign() > 0 {
		q = q.Add(decimal.New(1, -to.MinorUnits))
	}
	return q
}
