package commands_test

import (
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/commands"
)

// TestAppendProcessingPostings: the allocation rule's postings, line by
// line, for seed 003's invoice (1500.00 UAH at 41.50 with 2%) paid through
// gateway 1 (docs/payments.md), and the allocations it refuses: ones the
// commands never make of that amount, or at all.
func TestAppendProcessingPostings(t *testing.T) {
	conv := commands.Convert(dec("1500"), dec("41.50"), dec("2"))
	terms := commands.ProcessingTerms[decimal.Decimal]{Gateway: "1", Currency: "UAH", Expected: dec("1500.00"), Merchant: "m1",
		GrossUSDT: conv.GrossUSDT, MerchantUSDT: conv.MerchantUSDT, FeeUSDT: conv.FeeUSDT}
	noFee := terms
	noFee.MerchantUSDT, noFee.FeeUSDT = noFee.GrossUSDT, decimal.Zero
	held := func(paid string) string {
		return "gateway_clearing:1 UAH " + paid + "; merchant_suspense:m1 UAH -" + paid
	}
	for _, c := range []struct {
		name  string
		terms *commands.ProcessingTerms[decimal.Decimal]
		alloc string
		paid  string
		want  string // the lines; "": refused
	}{
		{"invoice, exactly", &terms, commands.AllocInvoice, "1500",
			"gateway_clearing:1 UAH 1500; conversion UAH -1500; conversion USDT 36.144578; merchant_available:m1 USDT -35.42; fee_income USDT -0.724578"},
		{"invoice, overpaid", &terms, commands.AllocInvoice, "1600.50",
			"gateway_clearing:1 UAH 1600.5; conversion UAH -1500; merchant_overpayment:m1 UAH -100.5; conversion USDT 36.144578; merchant_available:m1 USDT -35.42; fee_income USDT -0.724578"},
		{"invoice, no fee", &noFee, commands.AllocInvoice, "1500",
			"gateway_clearing:1 UAH 1500; conversion UAH -1500; conversion USDT 36.144578; merchant_available:m1 USDT -36.144578"},
		{"invoice, less than expected", &terms, commands.AllocInvoice, "1499.99", ""},
		{"underpaid", &terms, commands.AllocUnderpaid, "1499.99", held("1499.99")},
		{"underpaid, the full amount", &terms, commands.AllocUnderpaid, "1500", ""},
		{"duplicate", &terms, commands.AllocDuplicate, "2000", held("2000")},
		{"cancelled_invoice", &terms, commands.AllocCancelled, "10", held("10")},
		{"expired_invoice, an older log's", &terms, "expired_invoice", "1500", held("1500")},
		{"unknown", &terms, "gift", "1500", ""},
		{"none", &terms, "", "1500", ""},
	} {
		lines, ok := commands.AppendProcessingPostings(nil, c.terms, c.alloc, dec(c.paid))
		var got []string
		for _, l := range lines {
			got = append(got, l.FullAccount()+" "+l.Currency+" "+l.Amount.String())
			if !l.IsAccount(l.FullAccount()) {
				t.Errorf("%s: %+v is not its own account %q", c.name, l, l.FullAccount())
			}
		}
		if ok != (c.want != "") || strings.Join(got, "; ") != c.want {
			t.Errorf("%s: %q, %t; want %q", c.name, strings.Join(got, "; "), ok, c.want)
		}
	}
}

// TestPostingLineIsAccount: an account is a line's only when it is
// exactly "<account>:<of>", or the account alone for a line without Of.
func TestPostingLineIsAccount(t *testing.T) {
	clearing := commands.PostingLine[decimal.Decimal]{Account: commands.AccountClearing, Of: "1"}
	fee := commands.PostingLine[decimal.Decimal]{Account: commands.AccountFeeIncome}
	for _, c := range []struct {
		line    *commands.PostingLine[decimal.Decimal]
		account string
		want    bool
	}{
		{&clearing, "gateway_clearing:1", true},
		{&clearing, "gateway_clearing:12", false},
		{&clearing, "gateway_clearing:", false},
		{&clearing, "gateway_clearing", false},
		{&clearing, "gateway_clearing-1", false},
		{&clearing, "xgateway_clearing:1", false},
		{&clearing, "gateway_clearing:1:", false},
		{&fee, "fee_income", true},
		{&fee, "fee_income:", false},
		{&fee, "fee_income:m1", false},
	} {
		if got := c.line.IsAccount(c.account); got != c.want {
			t.Errorf("%s IsAccount(%q) = %t", c.line.FullAccount(), c.account, got)
		}
	}
}
