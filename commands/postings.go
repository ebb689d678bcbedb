package commands

import (
	"strings"

	"github.com/shopspring/decimal"
)

// Money is the arithmetic the allocation rule (AppendProcessingPostings)
// needs of an amount. decimal.Decimal has it; a reader that keeps amounts
// in a cheaper form (the projections' replay) brings its own, so that it
// checks an event's postings against the rule without allocating.
type Money[A any] interface {
	Neg() A
	Sub(A) A
	Sign() int
}

// ProcessingTerms are what a payment.processed's postings depend on,
// besides its allocation and paid_amount: the payment's gateway, currency
// and expected amount (payment_amount), and its invoice's merchant and
// USDT split (gross_usdt = merchant_usdt + fee_usdt). The commands know
// them from the payment and the invoice they load; the projections and the
// audit from the payment.created and invoice.created before.
type ProcessingTerms[A Money[A]] struct {
	Gateway  string
	Currency string // the payment's
	Expected A      // payment_amount
	Merchant string // the invoice's

	// The invoice's USDT split, posted only by allocation invoice: a
	// reader may leave them zero for the others.
	GrossUSDT, MerchantUSDT, FeeUSDT A
}

// PostingLine is a posting as the allocation rule gives it: the account as
// its name (AccountClearing, AccountSuspense, ...) and, for the accounts
// that have one, what follows the colon (Of: the gateway of
// gateway_clearing, the merchant of a merchant_* account; "" for
// conversion and fee_income), so that a reader compares an event's account
// with it without building the string.
type PostingLine[A Money[A]] struct {
	Account  string
	Of       string
	Currency string
	Amount   A
}

// FullAccount is the posting's account as events write it: "Account:Of",
// or Account alone.
func (l *PostingLine[A]) FullAccount() string {
	if l.Of == "" {
		return l.Account
	}
	return l.Account + ":" + l.Of
}

// IsAccount reports whether account is l's (FullAccount), without building
// it.
func (l *PostingLine[A]) IsAccount(account string) bool {
	if l.Of == "" {
		return account == l.Account
	}
	rest, ok := strings.CutPrefix(account, l.Account)
	return ok && len(rest) == len(l.Of)+1 && rest[0] == ':' && rest[1:] == l.Of
}

// allocExpiredInvoice held in suspense the money of a payment processed
// after its invoice's expires_at, for the short time the commands decided
// so (cdbf340, reverted by d1d32f1): a log written then may hold it.
const allocExpiredInvoice = "expired_invoice"

// AppendProcessingPostings appends to dst the postings a payment.processed
// of allocation alloc, paid_amount paid and terms t carries: exactly these,
// in this order, as ProcessPayment writes them and has always written them
// (postings are debits positive, credits negative).
//
//   - invoice: gateway_clearing:<gateway> + paid; conversion - expected;
//     merchant_overpayment:<merchant> - (paid - expected) when that is above
//     zero; in USDT, conversion + gross, merchant_available:<merchant> -
//     merchant_usdt, and fee_income - fee_usdt when that is above zero.
//   - duplicate, cancelled_invoice, underpaid (and expired_invoice, which
//     the commands wrote for a while): the two lines of money held
//     (AppendSuspensePostings).
//
// ok is false, and nothing is appended, for an allocation the commands
// never make: one they do not know, invoice with less than expected paid,
// or underpaid with at least that.
func AppendProcessingPostings[A Money[A]](dst []PostingLine[A], t *ProcessingTerms[A], alloc string, paid A) (_ []PostingLine[A], ok bool) {
	switch alloc {
	case AllocDuplicate, AllocCancelled, allocExpiredInvoice:
		return AppendSuspensePostings(dst, t.Gateway, t.Merchant, t.Currency, paid), true
	case AllocUnderpaid:
		if paid.Sub(t.Expected).Sign() >= 0 {
			return dst, false
		}
		return AppendSuspensePostings(dst, t.Gateway, t.Merchant, t.Currency, paid), true
	case AllocInvoice:
	default:
		return dst, false
	}
	over := paid.Sub(t.Expected)
	if over.Sign() < 0 {
		return dst, false
	}
	dst = append(dst,
		PostingLine[A]{Account: AccountClearing, Of: t.Gateway, Currency: t.Currency, Amount: paid},
		PostingLine[A]{Account: AccountConversion, Currency: t.Currency, Amount: t.Expected.Neg()})
	if over.Sign() > 0 {
		dst = append(dst, PostingLine[A]{Account: AccountOverpayment, Of: t.Merchant, Currency: t.Currency, Amount: over.Neg()})
	}
	dst = append(dst,
		PostingLine[A]{Account: AccountConversion, Currency: "USDT", Amount: t.GrossUSDT},
		PostingLine[A]{Account: AccountAvailable, Of: t.Merchant, Currency: "USDT", Amount: t.MerchantUSDT.Neg()})
	if t.FeeUSDT.Sign() > 0 {
		dst = append(dst, PostingLine[A]{Account: AccountFeeIncome, Currency: "USDT", Amount: t.FeeUSDT.Neg()})
	}
	return dst, true
}

// AppendSuspensePostings appends the two lines of money held for merchant
// m: gateway_clearing:<gateway> debited and merchant_suspense:<m> credited
// with what arrived, in the payment's currency (no conversion, no fee).
// Every suspense allocation of payment.processed posts them, and so does
// payment.receipt_held.
func AppendSuspensePostings[A Money[A]](dst []PostingLine[A], gateway, m, currency string, paid A) []PostingLine[A] {
	return append(dst,
		PostingLine[A]{Account: AccountClearing, Of: gateway, Currency: currency, Amount: paid},
		PostingLine[A]{Account: AccountSuspense, Of: m, Currency: currency, Amount: paid.Neg()})
}

// postingsOf is the rule's lines as an event's postings.
func postingsOf(lines []PostingLine[decimal.Decimal]) []Posting {
	out := make([]Posting, len(lines))
	for i := range lines {
		out[i] = Posting{Account: lines[i].FullAccount(), Currency: lines[i].Currency, Amount: lines[i].Amount}
	}
	return out
}
