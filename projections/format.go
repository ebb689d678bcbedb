package projections

import (
	"time"

	"github.com/payledger/payledger/commands"
)

// currencyAmount renders an amount in the currency a customer is asked to
// pay (an invoice's amount, a payment's amounts) at exactly its minor units,
// fiat or crypto: "1500.00" UAH, "1500" XOF, "0.00100000" BTC, "25.000000"
// USDT. A currency LookupCurrency does not know (none reaches the log)
// keeps its significant places, at least two. The USDT a merchant is
// credited (merchant_usdt, destinationAmount, gross and fee) is not
// rendered here but with FormatRate's places (num.rate).
func currencyAmount(n num, currency string) string {
	if cur, ok := commands.LookupCurrency(currency); ok {
		return n.fixed(cur.MinorUnits)
	}
	return n.rate()
}

// utc normalizes a time for a view: UTC, so JSON always ends in "Z".
func utc(t time.Time) time.Time { return t.UTC() }

func timePtr(t time.Time) *time.Time {
	t = t.UTC()
	return &t
}
