package projections

import (
	"testing"

	"github.com/payledger/payledger/commands"
)

// TestCheckAllocatedAllocatesNothing: checking a payment.processed's
// postings against the allocation rule, once per processed payment in a
// rebuild, allocates nothing: the views' amounts are parsed into nums, the
// rule's lines go into the state's buffer, the accounts are compared in
// their parts.
func TestCheckAllocatedAllocatesNothing(t *testing.T) {
	n := func(s string) num {
		v, ok := parseNum([]byte(s))
		if !ok {
			t.Fatalf("parseNum(%q)", s)
		}
		return v
	}
	pay := &PaymentView{GatewayID: "12", PaymentCurrency: "UAH", PaymentAmount: "1500.00", MerchantID: "m1", Stream: "payment-x"}
	inv := &InvoiceView{GrossUSDT: "36.144578", MerchantUSDT: "35.42", FeeUSDT: "0.724578"}
	paying := &pProcessed{allocation: commands.AllocInvoice, paid: n("1600"), lines: []mPosting{
		{Account: "gateway_clearing:12", Currency: "UAH", Amount: n("1600")},
		{Account: "conversion", Currency: "UAH", Amount: n("-1500")},
		{Account: "merchant_overpayment:m1", Currency: "UAH", Amount: n("-100")},
		{Account: "conversion", Currency: "USDT", Amount: n("36.144578")},
		{Account: "merchant_available:m1", Currency: "USDT", Amount: n("-35.42")},
		{Account: "fee_income", Currency: "USDT", Amount: n("-0.724578")},
	}}
	held := &pProcessed{allocation: commands.AllocUnderpaid, paid: n("1000.5"), lines: []mPosting{
		{Account: "gateway_clearing:12", Currency: "UAH", Amount: n("1000.50")},
		{Account: "merchant_suspense:m1", Currency: "UAH", Amount: n("-1000.5")},
	}}
	s := &state{}
	for _, c := range []struct {
		name string
		inv  *InvoiceView
		pr   *pProcessed
	}{{"invoice, overpaid", inv, paying}, {"underpaid", nil, held}} {
		if err := s.checkAllocated(pay, c.inv, c.pr); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if a := testing.AllocsPerRun(100, func() { _ = s.checkAllocated(pay, c.inv, c.pr) }); a != 0 {
			t.Errorf("%s: %.1f allocations a check, want none", c.name, a)
		}
	}
}
