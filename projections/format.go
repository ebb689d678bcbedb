package projections

import (
	"time"

	"github.com/payledger/payledger/commands"
)

// fiatAmount renders an amount of a fiat currency at its minor units
// ("1500.00" UAH, "1500" XOF); crypto and unknown currencies keep their
// significant places, at least two ("0.00123", "36.144578").
func fiatAmount(n num, currency string) string {
	if cur, ok := commands.LookupCurrency(currency); ok && !cur.Crypto {
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
