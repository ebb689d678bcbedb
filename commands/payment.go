package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/ledger"
)

// Payment is the payment aggregate, folded from its stream.
type Payment struct {
	PaymentCreated
	Status     string
	Allocation string
	Version    uint64
}

// Terminal reports whether no further transition is allowed.
func (p *Payment) Terminal() bool { return len(paymentTransitions[p.Status]) == 0 }

func (p *Payment) apply(e ledger.Event) error {
	p.Version = e.Version
	switch e.Type {
	case TypePaymentCreated:
		if err := unmarshal(e, &p.PaymentCreated); err != nil {
			return err
		}
		p.Status = PaymentStatusPending
	case TypePaymentConfirmed, TypePaymentRejected, TypePaymentCancelled, TypePaymentFailed:
		var d PaymentStatusChanged
		if err := unmarshal(e, &d); err != nil {
			return err
		}
		p.Status = d.Status
	case TypePaymentProcessed:
		var d PaymentProcessed
		if err := unmarshal(e, &d); err != nil {
			return err
		}
		p.Status, p.Allocation = PaymentStatusProcessed, d.Allocation
	}
	return nil
}

// LoadPayment folds a payment's stream (id: the ULID of its stream). A
// merchantID other than "" must own it, else ErrNotFound.
func (s *Service) LoadPayment(ctx context.Context, merchantID, paymentID string) (*Payment, error) {
	p := &Payment{}
	if err := s.loadOwned(ctx, StreamPayment, paymentID, merchantID, p.apply, func() string { return p.MerchantID }); err != nil {
		return nil, err
	}
	return p, nil
}

// MaxPaymentsPerInvoice bounds the payments one invoice has: a customer
// who cancels and chooses again does so a few times, while each payment
// is events, gateway details and webhooks to the merchant, and the hosted
// page takes no credentials. 100 leaves room for the conservation test's
// 100 concurrent payments on one invoice; with the hosted page's rate
// limit a script needs minutes to reach it. The invoice counts them from
// its own stream (invoice.payment_added), so the decision replays as it
// was made.
const MaxPaymentsPerInvoice = 100

// CreatePayment is a customer's (or the merchant's) attempt to pay an invoice
// with a method.
type CreatePayment struct {
	Meta
	PaymentID  ulid.ULID
	InvoiceID  string
	MerchantID string // "" from the hosted page; else the invoice's owner
	Method     string
	// MethodRate is the method currency's rate per USDT, needed only when it
	// differs from the invoice's currency (zero: none set; USDT's is 1
	// whatever is given).
	MethodRate decimal.Decimal
	// RequestKey: see Service.requestClaim. The payment.created event claims
	// it, so a retried request makes no second payment.
	RequestKey string
}

// CreatePayment decides payment.created: the gateway for the method assigns
// the payment details. The invoice must be pending, not past expires_at,
// and have fewer than MaxPaymentsPerInvoice payments; invoice.payment_added
// is appended to it in the same append.
//
// A payment in another currency than its invoice's is converted
// (ConvertBetween); a converted amount of more than MaxAmountDigits integer
// digits is refused, a *ValidationError on "method" of type "too_large":
// its paid_amount could not be recorded (ParseAmount).
//
// Errors: *ValidationError, ErrNotFound, ErrInvoiceNotPayable, ErrTooManyPayments,
// ErrMerchantDisabled (the merchant is suspended), ErrMethodInvalid,
// ErrNoGateway (no enabled gateway serves the method; it wraps
// ErrMethodInvalid), ErrCurrencyInvalid (no rate to convert), ErrConflict, *RepeatedError
// (ErrRepeated).
func (s *Service) CreatePayment(ctx context.Context, c CreatePayment) (*Payment, uint64, error) {
	if err := checkMeta(c.Meta); err != nil {
		return nil, 0, err
	}
	// A retry finds the first payment before anything else is decided: the
	// invoice may be paid or expired by now.
	claims, err := s.requestClaim(c.MerchantID, c.RequestKey)
	if err != nil {
		return nil, 0, err
	}
	if c.Method == "" {
		return nil, 0, s.repeated(&ValidationError{Fields: []FieldError{{Path: "method", Type: "missing", Message: "method is required"}}}, claims)
	}
	method, ok := LookupMethod(c.Method)
	if !ok {
		return nil, 0, s.repeated(fmt.Errorf("method %q: %w", c.Method, ErrMethodInvalid), claims)
	}
	var created PaymentCreated
	evs, err := s.run(ctx, func() (decision, error) {
		inv, err := s.LoadInvoice(ctx, c.MerchantID, c.InvoiceID)
		if err != nil {
			return decision{}, err
		}
		if !PaymentCreationAllowed(inv.Status) || !c.Time.Before(inv.ExpiresAt) {
			return decision{}, fmt.Errorf("invoice %s (%s): %w", inv.InvoiceID, inv.Status, ErrInvoiceNotPayable)
		}
		if inv.Payments >= MaxPaymentsPerInvoice {
			return decision{}, fmt.Errorf("invoice %s has %d payments: %w", inv.InvoiceID, inv.Payments, ErrTooManyPayments)
		}
		m, err := s.LoadMerchant(ctx, inv.MerchantID)
		if err != nil {
			return decision{}, err
		}
		// A suspended merchant takes no new money. The invoicing switch
		// is not asked: it stops new invoices, not payments of made ones.
		if m.Disabled {
			return decision{}, fmt.Errorf("merchant %s: %w", m.ID, ErrMerchantDisabled)
		}
		if !m.MethodEnabled(method.Code) || (inv.Method != "" && inv.Method != method.Code) {
			return decision{}, fmt.Errorf("method %q: %w", method.Code, ErrMethodInvalid)
		}
		cur, ok := LookupCurrency(method.Currency)
		if !ok {
			return decision{}, fmt.Errorf("method %q currency %q: %w", method.Code, method.Currency, ErrMethodInvalid)
		}
		amount := inv.Amount
		if method.Currency != inv.Currency {
			rate := settlementRate(method.Currency, c.MethodRate)
			if !rate.IsPositive() {
				return decision{}, fmt.Errorf("currency %q: %w", method.Currency, ErrCurrencyInvalid)
			}
			amount = ConvertBetween(inv.Amount, inv.ConversionRate, rate, cur)
			// Its paid_amount and receipts are parsed with ParseAmount's
			// digit limit: a larger amount could be asked for but never
			// recorded as paid.
			if !withinAmountDigits(amount) {
				invCur, _ := LookupCurrency(inv.Currency)
				return decision{}, &ValidationError{Fields: []FieldError{{Path: "method", Type: "too_large",
					Message: fmt.Sprintf("the invoice's %s %s is %s %s at its rate and %s's current rate: more than %d integer digits, too large to pay with %s; choose a method in another currency",
						FormatAmount(inv.Amount, invCur), inv.Currency, FormatAmount(amount, cur), cur.Code, cur.Code, MaxAmountDigits, method.Code)}}}
			}
		}
		sw, err := s.GatewaySwitches(ctx)
		if err != nil {
			return decision{}, err
		}
		gw, ok := s.gateways.For(method, sw)
		if !ok {
			return decision{}, fmt.Errorf("method %q: %w", method.Code, ErrNoGateway)
		}
		pid := c.PaymentID.String()
		details, err := gw.Assign(AssignRequest{PaymentID: pid, InvoiceID: inv.InvoiceID, Method: method, Amount: amount, Currency: cur.Code})
		if err != nil {
			return decision{}, fmt.Errorf("gateway %s: assign details: %w", gw.ID(), err)
		}
		created = PaymentCreated{
			PaymentID:           pid,
			InvoiceID:           inv.InvoiceID,
			MerchantID:          inv.MerchantID,
			Method:              method.Code,
			GatewayID:           gw.ID(),
			Extra:               PaymentExtra(details),
			PaymentCurrency:     cur.Code,
			PaymentAmount:       amount,
			DestinationCurrency: "USDT",
			DestinationAmount:   inv.MerchantUSDT,
			CreatedAt:           c.Time.UTC(),
		}
		ids := &eventIDs{meta: c.Meta}
		return decision{writes: []ledger.Write{
			{Stream: StreamID(StreamPayment, pid), Expected: ledger.NoStream,
				Events: []ledger.NewEvent{ids.event(TypePaymentCreated, inv.MerchantID, created, claims...)}},
			// The invoice must still be as read: cancelled or expired since, or
			// given another payment, and the payment is decided again.
			{Stream: StreamID(StreamInvoice, inv.InvoiceID), Expected: ledger.Exactly(inv.Version),
				Events: []ledger.NewEvent{ids.event(TypeInvoicePaymentAdded, inv.MerchantID,
					InvoicePaymentAdded{PaymentID: StreamID(StreamPayment, pid), AddedAt: created.CreatedAt})}},
			// And the gateway switches: a gateway disabled since is not
			// given the payment (the retry routes it anew, or refuses it).
			{Stream: StreamGateways, Expected: ledger.Exactly(sw.Version)},
			// And the merchant: one suspended since, or with the method
			// disabled since, is not given it.
			m.asRead(),
		}}, nil
	})
	if err != nil {
		// A twin of this request that took the invoice's last place, or
		// whose payment has paid it since, is its answer (see repeated).
		return nil, 0, s.repeated(err, claims)
	}
	return &Payment{PaymentCreated: created, Status: PaymentStatusPending, Version: evs[0].Version}, evs[0].Seq, nil
}

// PaymentTransition moves a payment to CONFIRMED, REJECTED, CANCELLED or
// ERROR. MerchantID "" is the operator (or the gateway, or the hosted
// page); else the merchant must own the payment.
type PaymentTransition struct {
	Meta
	MerchantID string
	PaymentID  string
	Status     string
	Reason     string
	By         string // who asked (ByMerchant, ByCustomer, ByOperator), recorded in the event; "": not recorded
}

var transitionType = map[string]string{
	PaymentStatusConfirmed: TypePaymentConfirmed,
	PaymentStatusRejected:  TypePaymentRejected,
	PaymentStatusCancelled: TypePaymentCancelled,
	PaymentStatusError:     TypePaymentFailed,
}

// TransitionPayment appends the status change.
//
// Errors: ErrNotFound, ErrInvalidTransition, *ValidationError (unknown
// status), ErrConflict.
func (s *Service) TransitionPayment(ctx context.Context, c PaymentTransition) (*Payment, error) {
	if err := checkMeta(c.Meta); err != nil {
		return nil, err
	}
	typ, ok := transitionType[c.Status]
	if !ok {
		return nil, &ValidationError{Fields: []FieldError{{Path: "status", Type: "invalid", Message: fmt.Sprintf("unknown target status %q", c.Status)}}}
	}
	if len(c.Reason) > maxPurposeLen {
		return nil, &ValidationError{Fields: []FieldError{{Path: "reason", Type: "too_long", Message: "reason must be at most 1024 characters"}}}
	}
	var out *Payment
	evs, err := s.run(ctx, func() (decision, error) {
		p, err := s.LoadPayment(ctx, c.MerchantID, c.PaymentID)
		if err != nil {
			return decision{}, err
		}
		if _, ok := NextPaymentStatus(p.Status, typ); !ok {
			return decision{}, fmt.Errorf("payment %s: %s -> %s: %w", p.PaymentID, p.Status, c.Status, ErrInvalidTransition)
		}
		out = p
		return single(c.Meta, StreamID(StreamPayment, p.PaymentID), p.MerchantID, p.Version, typ,
			PaymentStatusChanged{Status: c.Status, Reason: c.Reason, By: c.By, At: c.Time.UTC()}), nil
	})
	if err != nil {
		return nil, err
	}
	if err := out.apply(evs[0]); err != nil {
		return nil, err
	}
	return out, nil
}

// ProcessPayment records that the gateway received the money. PaidAmount ""
// means exactly the expected amount.
type ProcessPayment struct {
	Meta
	MerchantID string
	PaymentID  string
	PaidAmount string
}

// ProcessResult is what processing decided.
type ProcessResult struct {
	Payment     *Payment
	Allocation  string
	Late        bool
	InvoicePaid bool
}

// ProcessPayment appends payment.processed with its postings and, when the
// payment pays its invoice, invoice.paid, atomically and conditional on both
// streams' versions, so an invoice is paid at most once whatever races.
//
// What happens to the money (docs/payments.md):
//   - invoice pending, full amount: the invoice is paid (late if past expires_at);
//     an excess is held as overpayment;
//   - invoice expired, full amount: paid late (the expired invoice becomes success, flagged late);
//   - less than expected: held in the merchant's suspense account, invoice unchanged;
//   - invoice already paid (by another payment) or cancelled: held in suspense.
//
// Errors: ErrNotFound, ErrInvalidTransition (terminal payment),
// *ValidationError (bad paid amount), ErrConflict.
func (s *Service) ProcessPayment(ctx context.Context, c ProcessPayment) (*ProcessResult, error) {
	if err := checkMeta(c.Meta); err != nil {
		return nil, err
	}
	var res ProcessResult
	_, err := s.run(ctx, func() (decision, error) {
		p, err := s.LoadPayment(ctx, c.MerchantID, c.PaymentID)
		if err != nil {
			return decision{}, err
		}
		if _, ok := NextPaymentStatus(p.Status, TypePaymentProcessed); !ok {
			return decision{}, fmt.Errorf("payment %s: %s -> %s: %w", p.PaymentID, p.Status, PaymentStatusProcessed, ErrInvalidTransition)
		}
		inv, err := s.LoadInvoice(ctx, "", p.InvoiceID)
		if err != nil {
			return decision{}, err
		}
		cur, _ := LookupCurrency(p.PaymentCurrency)
		paid := p.PaymentAmount
		if c.PaidAmount != "" {
			d, ferr := ParseAmount("paid_amount", c.PaidAmount, cur)
			if ferr != nil {
				return decision{}, &ValidationError{Fields: []FieldError{*ferr}}
			}
			paid = d
		}
		d := decideProcessing(p, inv, paid, c.Time)
		ids := &eventIDs{meta: c.Meta}
		writes := []ledger.Write{{
			Stream: StreamID(StreamPayment, p.PaymentID), Expected: ledger.Exactly(p.Version),
			Events: []ledger.NewEvent{ids.event(TypePaymentProcessed, p.MerchantID, d.processed)},
		}, {
			Stream: StreamID(StreamInvoice, inv.InvoiceID), Expected: ledger.Exactly(inv.Version),
		}}
		if d.paid != nil {
			writes[1].Events = []ledger.NewEvent{ids.event(TypeInvoicePaid, inv.MerchantID, *d.paid)}
		}
		p.Status, p.Allocation = PaymentStatusProcessed, d.processed.Allocation
		res = ProcessResult{Payment: p, Allocation: d.processed.Allocation, Late: d.processed.Late, InvoicePaid: d.paid != nil}
		return decision{writes: writes}, nil
	})
	if err != nil {
		return nil, err
	}
	res.Payment.Version++
	return &res, nil
}

type processing struct {
	processed PaymentProcessed
	paid      *InvoicePaid
}

// decideProcessing is the pure allocation rule of ProcessPayment: which
// allocation the money gets, from the invoice's status and the amount;
// the postings of that allocation are AppendProcessingPostings'.
func decideProcessing(p *Payment, inv *Invoice, paid decimal.Decimal, at time.Time) processing {
	at = at.UTC()
	// Late: the money came after the invoice's expires_at, whatever became
	// of it (docs/events.md), so that a late duplicate or underpayment is
	// told apart from one in time.
	late := PaidLate(inv.Status, at, inv.ExpiresAt)
	var alloc string
	switch {
	case inv.Status == InvoiceStatusSuccess:
		alloc = AllocDuplicate
	case inv.Status == InvoiceStatusCancelled:
		alloc = AllocCancelled
	case paid.LessThan(p.PaymentAmount):
		alloc = AllocUnderpaid
	default:
		// Pending or expired, and at least the expected amount arrived: pay it.
		alloc = AllocInvoice
	}
	terms := ProcessingTerms[decimal.Decimal]{Gateway: p.GatewayID, Currency: p.PaymentCurrency, Expected: p.PaymentAmount,
		Merchant: inv.MerchantID, GrossUSDT: inv.GrossUSDT, MerchantUSDT: inv.MerchantUSDT, FeeUSDT: inv.FeeUSDT}
	// The switch chose an allocation the rule has for this amount.
	lines, _ := AppendProcessingPostings(nil, &terms, alloc, paid)
	out := processing{processed: PaymentProcessed{At: at, PaidAmount: paid, Allocation: alloc, Late: late, Postings: postingsOf(lines)}}
	if alloc != AllocInvoice {
		return out
	}
	paidEv := InvoicePaid{PaymentID: StreamID(StreamPayment, p.PaymentID), PaidAt: at, Late: late, PaidAmount: paid}
	if over := paid.Sub(p.PaymentAmount); over.IsPositive() {
		paidEv.Overpaid = over
	}
	out.paid = &paidEv
	return out
}

// HoldReceipt is the operator's record of money the gateway received for a
// payment that ended CANCELLED, REJECTED or ERROR, or of a further arrival
// for a PROCESSED one (ReceiptHoldAllowed).
type HoldReceipt struct {
	Meta
	PaymentID  string
	PaidAmount string // required: what arrived, in the payment currency
	Reason     string
	// RequestKey: see Service.requestClaim; scoped to the admin API
	// (AdminRequestClaim). A payment may hold several receipts, so a
	// retried request must not record a second one.
	RequestKey string
}

// HoldReceipt appends payment.receipt_held: paid_amount held in the
// merchant's suspense account (the postings of a suspense allocation), the
// payment's status and its invoice unchanged. Each call records one
// receipt: money can arrive twice for one payment, and each arrival is
// recorded (a PROCESSED payment's first arrival is its payment.processed;
// a receipt is any further one). When an earlier command with the request
// key recorded one, it appends nothing and returns a *RepeatedError naming
// the payment's stream.
//
// Errors: ErrNotFound, ErrInvalidTransition (the payment is PENDING or
// CONFIRMED: process it), *ValidationError (missing or bad paid amount,
// reason too long), *RepeatedError (ErrRepeated), ErrConflict.
func (s *Service) HoldReceipt(ctx context.Context, c HoldReceipt) (*Payment, error) {
	if err := checkMeta(c.Meta); err != nil {
		return nil, err
	}
	if c.PaidAmount == "" {
		return nil, &ValidationError{Fields: []FieldError{{Path: "paid_amount", Type: "missing", Message: "paid_amount is required"}}}
	}
	if len(c.Reason) > maxPurposeLen {
		return nil, &ValidationError{Fields: []FieldError{{Path: "reason", Type: "too_long", Message: "reason must be at most 1024 characters"}}}
	}
	var out *Payment
	evs, err := s.run(ctx, func() (decision, error) {
		p, err := s.LoadPayment(ctx, "", c.PaymentID)
		if err != nil {
			return decision{}, err
		}
		if !ReceiptHoldAllowed(p.Status) {
			return decision{}, fmt.Errorf("payment %s is %s: process it; only a payment in a final status takes a receipt: %w",
				p.PaymentID, p.Status, ErrInvalidTransition)
		}
		cur, _ := LookupCurrency(p.PaymentCurrency)
		paid, ferr := ParseAmount("paid_amount", c.PaidAmount, cur)
		if ferr != nil {
			return decision{}, &ValidationError{Fields: []FieldError{*ferr}}
		}
		// The claim is checked after the stream's version is read, and the
		// append expects that version: a twin that appended first is a
		// version conflict, and the next attempt sees its claim.
		claims, err := s.adminRequestClaim(c.RequestKey)
		if err != nil {
			return decision{}, err
		}
		out = p
		return single(c.Meta, StreamID(StreamPayment, p.PaymentID), p.MerchantID, p.Version, TypePaymentReceiptHeld,
			PaymentReceiptHeld{At: c.Time.UTC(), PaidAmount: paid, Reason: c.Reason, By: ByOperator,
				Postings: postingsOf(AppendSuspensePostings(nil, p.GatewayID, p.MerchantID, p.PaymentCurrency, paid))}, claims...), nil
	})
	if err != nil {
		return nil, err
	}
	if err := out.apply(evs[0]); err != nil {
		return nil, err
	}
	return out, nil
}

// PostingsBalance sums postings per currency; every event's must be zero.
func PostingsBalance(ps []Posting) map[string]decimal.Decimal {
	sum := map[string]decimal.Decimal{}
	for _, p := range ps {
		sum[p.Currency] = sum[p.Currency].Add(p.Amount)
	}
	return sum
}
