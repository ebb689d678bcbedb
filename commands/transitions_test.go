package commands_test

import (
	"testing"
	"time"

	"github.com/payledger/payledger/commands"
)

// TestPaidLate: a payment is late when its invoice was expired, or when it
// was processed at or after the invoice's expires_at, whatever the status.
func TestPaidLate(t *testing.T) {
	expires := time.Date(2026, 2, 25, 12, 20, 0, 0, time.UTC)
	for _, tc := range []struct {
		status string
		d      time.Duration // processed at expires_at + d
		want   bool
	}{
		{commands.InvoiceStatusPending, -time.Nanosecond, false},
		{commands.InvoiceStatusPending, 0, true},
		{commands.InvoiceStatusPending, time.Second, true},
		{commands.InvoiceStatusExpired, -time.Second, true},
		{commands.InvoiceStatusExpired, 0, true},
		{commands.InvoiceStatusExpired, time.Second, true},
		{commands.InvoiceStatusSuccess, -time.Second, false}, // a duplicate in time
		{commands.InvoiceStatusCancelled, time.Second, true},
	} {
		if got := commands.PaidLate(tc.status, expires.Add(tc.d), expires); got != tc.want {
			t.Errorf("PaidLate(%s, expires_at%+v) = %t, want %t", tc.status, tc.d, got, tc.want)
		}
	}
}
