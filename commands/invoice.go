package commands

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/ledger"
)

// Invoice is the invoice aggregate, folded from its stream.
type Invoice struct {
	InvoiceCreated
	Status   string
	PaidBy   string // payment stream id that paid it
	PaidAt   time.Time
	Late     bool
	Payments int // its invoice.payment_added events: MaxPaymentsPerInvoice bounds them
	Version  uint64
}

func (inv *Invoice) apply(e ledger.Event) error {
	inv.Version = e.Version
	switch e.Type {
	case TypeInvoiceCreated:
		if err := unmarshal(e, &inv.InvoiceCreated); err != nil {
			return err
		}
		inv.Status = InvoiceStatusPending
	case TypeInvoiceCancelled:
		inv.Status = InvoiceStatusCancelled
	case TypeInvoiceExpired:
		inv.Status = InvoiceStatusExpired
	case TypeInvoicePaid:
		var d InvoicePaid
		if err := unmarshal(e, &d); err != nil {
			return err
		}
		inv.Status, inv.PaidBy, inv.PaidAt, inv.Late = InvoiceStatusSuccess, d.PaymentID, d.PaidAt, d.Late
	case TypeInvoicePaymentAdded:
		inv.Payments++
	}
	return nil
}

// LoadInvoice folds an invoice's stream. merchantID "" loads any merchant's
// invoice (hosted pages, the operator); otherwise another merchant's invoice is
// ErrNotFound.
func (s *Service) LoadInvoice(ctx context.Context, merchantID, invoiceID string) (*Invoice, error) {
	inv := &Invoice{}
	if err := s.loadOwned(ctx, StreamInvoice, invoiceID, merchantID, inv.apply, func() string { return inv.MerchantID }); err != nil {
		return nil, err
	}
	return inv, nil
}

// Limits on free-text fields.
const (
	maxIDLen      = 128
	maxPurposeLen = 1024
)

var (
	currencyCodeRE = regexp.MustCompile(`^[A-Z]{3}$`)
	externalIDRE   = regexp.MustCompile(`^[\x21-\x7e]+$`) // printable ASCII, no spaces
)

// CreateInvoice is seed 003's create-invoice request, after JSON decoding.
type CreateInvoice struct {
	Meta
	InvoiceID   ulid.ULID
	MerchantID  string
	Amount      string
	Currency    string
	CustomerID  string
	ExternalID  string
	Purpose     string
	CallbackURL string
	SuccessURL  string
	FailURL     string
	// Rate is the currency's current rate per USDT, read by the adapter from
	// the rates view (zero: no rate set, so the currency is refused).
	Rate decimal.Decimal
	// RequestKey: see Service.requestClaim.
	RequestKey string
}

// CreateInvoice decides and appends invoice.created.
//
// Errors: *ValidationError, ErrNotFound (merchant), ErrMerchantDisabled,
// ErrDealsDisabled, ErrCurrencyInvalid, ErrNoPayableMethod (no method in
// the currency that the merchant accepts is served by an enabled gateway;
// it wraps ErrCurrencyInvalid), ErrDuplicateExternalID, ErrConflict,
// *RepeatedError (ErrRepeated), and infrastructure errors.
func (s *Service) CreateInvoice(ctx context.Context, c CreateInvoice) (*Invoice, error) {
	if err := checkMeta(c.Meta); err != nil {
		return nil, err
	}
	v := &ValidationError{}
	cur, currencyOK := checkInvoiceCurrency(c.Currency, "currency_code", v)
	amount := checkAmount("amount", c.Amount, cur, v)
	switch {
	case c.ExternalID == "":
		v.Add("external_id", "missing", "external_id is required")
	case len(c.ExternalID) > maxIDLen || !externalIDRE.MatchString(c.ExternalID):
		v.Add("external_id", "invalid", fmt.Sprintf("external_id must be 1 to %d printable characters without spaces", maxIDLen))
	}
	checkText("customer_id", c.CustomerID, maxIDLen, v)
	checkText("purpose", c.Purpose, maxPurposeLen, v)
	checkTarget("callback_url", c.CallbackURL, s.allowPrivate, v)
	checkOptionalURL("success_url", c.SuccessURL, false, v)
	checkOptionalURL("fail_url", c.FailURL, false, v)
	if err := v.Err(); err != nil {
		return nil, err
	}
	claims, err := s.requestClaim(c.MerchantID, c.RequestKey)
	if err != nil {
		return nil, err
	}
	evClaims := append(claims[:len(claims):len(claims)], ExternalIDClaim(c.MerchantID, c.ExternalID))
	var d InvoiceCreated
	fresh := false
	evs, err := s.run(ctx, func() (decision, error) {
		m, err := s.payableMerchant(ctx, c.MerchantID)
		if err != nil {
			return decision{}, err
		}
		if !currencyOK || !c.Rate.IsPositive() {
			return decision{}, fmt.Errorf("currency %q: %w", c.Currency, ErrCurrencyInvalid)
		}
		if d, err = newInvoice(c.Meta, c.InvoiceID, m, amount, cur, c.Rate); err != nil {
			return decision{}, err
		}
		d.Source = SourceAPI
		d.ExternalID, d.CustomerID, d.Purpose = c.ExternalID, c.CustomerID, c.Purpose
		d.CallbackURL, d.SuccessURL, d.FailURL = c.CallbackURL, c.SuccessURL, c.FailURL
		// The customer picks the method on the payment page: with none in
		// the currency that the merchant accepts and an enabled gateway
		// serves, the page could offer nothing. The switches are the
		// cached fold, read from the log only to confirm a refusal or
		// after a conflict: the append is conditional on their version,
		// so a stale fold decides again rather than creating an invoice
		// while every gateway for it is disabled.
		sw := s.cachedSwitches()
		if fresh || !s.payableIn(m, cur.Code, sw) {
			var err error
			if sw, err = s.GatewaySwitches(ctx); err != nil {
				return decision{}, err
			}
			if !s.payableIn(m, cur.Code, sw) {
				return decision{}, fmt.Errorf("currency %q: %w", cur.Code, ErrNoPayableMethod)
			}
		}
		fresh = true
		ids := &eventIDs{meta: c.Meta}
		ev := ids.event(TypeInvoiceCreated, m.ID, d, evClaims...)
		return decision{writes: []ledger.Write{
			{Stream: StreamID(StreamInvoice, d.InvoiceID), Expected: ledger.NoStream, Events: []ledger.NewEvent{ev}},
			{Stream: StreamGateways, Expected: ledger.Exactly(sw.Version)},
			m.asRead(),
		}}, nil
	})
	if err = s.repeated(err, claims); err != nil {
		if errors.Is(err, ErrRepeated) {
			return nil, err
		}
		if errors.Is(err, ledger.ErrClaimed) {
			return nil, fmt.Errorf("external_id %q: %w", c.ExternalID, ErrDuplicateExternalID)
		}
		return nil, fmt.Errorf("create invoice: %w", err) // run made a version conflict ErrConflict
	}
	s.created()
	return &Invoice{InvoiceCreated: d, Status: InvoiceStatusPending, Version: evs[0].Version}, nil
}

// ExternalIDClaim is the unique key an API invoice's external id takes.
func ExternalIDClaim(merchantID, externalID string) string {
	return "external_id/" + merchantID + "/" + externalID
}

// PaymentIDClaim is the unique key an e-invoice's payment_id takes.
func PaymentIDClaim(merchantID, paymentID string) string {
	return "payment_id/" + merchantID + "/" + paymentID
}

// TrackingClaim is the unique key an e-invoice's tracking number takes.
func TrackingClaim(tracking string) string { return "tracking/" + tracking }

// payableMerchant loads a merchant that may create invoices.
func (s *Service) payableMerchant(ctx context.Context, merchantID string) (*Merchant, error) {
	m, err := s.LoadMerchant(ctx, merchantID)
	if err != nil {
		return nil, err
	}
	if m.Disabled {
		return nil, fmt.Errorf("merchant %s: %w", m.ID, ErrMerchantDisabled)
	}
	if !m.InvoicingEnabled {
		return nil, fmt.Errorf("merchant %s: %w", m.ID, ErrDealsDisabled)
	}
	return m, nil
}

// newInvoice prices an invoice of amount in cur at rate for merchant m.
//
// An amount whose conversion credits the merchant nothing (merchant_usdt
// 0.00: all of it fee, or no USDT at all) is refused, as a *ValidationError
// on "amount" of type "too_small" that names the least amount that would
// credit a cent: such an invoice, once paid, would move the customer's
// money to fee income only.
func newInvoice(meta Meta, id ulid.ULID, m *Merchant, amount decimal.Decimal, cur Currency, rate decimal.Decimal) (InvoiceCreated, error) {
	conv := Convert(amount, rate, m.CommissionPercent)
	if !conv.MerchantUSDT.IsPositive() {
		least := MinCreditedAmount(rate, m.CommissionPercent, cur)
		at := fmt.Sprintf(" at the current rate (%s %s per USDT)", FormatRate(rate), cur.Code)
		if cur.Code == "USDT" {
			at = "" // no conversion: a rate of 1 says nothing
		}
		return InvoiceCreated{}, &ValidationError{Fields: []FieldError{{Path: "amount", Type: "too_small",
			Message: fmt.Sprintf("amount must be at least %s %s%s: a smaller amount is too small to credit the merchant anything",
				FormatAmount(least, cur), cur.Code, at)}}}
	}
	lifetime := m.InvoiceLifetime
	if lifetime <= 0 {
		lifetime = DefaultInvoiceLifetime
	}
	at := meta.Time.UTC()
	return InvoiceCreated{
		InvoiceID:         UUID(id),
		MerchantID:        m.ID,
		Amount:            amount,
		Currency:          cur.Code,
		ConversionRate:    conv.Rate,
		CommissionPercent: m.CommissionPercent,
		GrossUSDT:         conv.GrossUSDT,
		FeeUSDT:           conv.FeeUSDT,
		MerchantUSDT:      conv.MerchantUSDT,
		CreatedAt:         at,
		ExpiresAt:         at.Add(lifetime),
	}, nil
}

// checkInvoiceCurrency checks a currency code's form; ok is false for a
// well-formed code that is not a known currency (CURRENCY_INVALID, not a field error).
func checkInvoiceCurrency(code, field string, v *ValidationError) (Currency, bool) {
	switch {
	case code == "":
		v.Add(field, "missing", field+" is required")
		return Currency{Code: code, MinorUnits: 2}, false
	case !currencyCodeRE.MatchString(code):
		v.Add(field, "invalid", field+" must be an ISO 4217 code of 3 upper-case letters")
		return Currency{Code: code, MinorUnits: 2}, false
	}
	cur, ok := LookupCurrency(code)
	if !ok || cur.Crypto {
		return Currency{Code: code, MinorUnits: 2}, false
	}
	return cur, true
}

func checkAmount(field, s string, cur Currency, v *ValidationError) decimal.Decimal {
	if s == "" {
		v.Add(field, "missing", field+" is required")
		return decimal.Zero
	}
	d, ferr := ParseAmount(field, s, cur)
	if ferr != nil {
		v.Fields = append(v.Fields, *ferr)
		return decimal.Zero
	}
	return d
}

func checkText(field, s string, maxLen int, v *ValidationError) {
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > maxLen || strings.ContainsAny(s, "\x00") {
		v.Add(field, "invalid", fmt.Sprintf("%s must be at most %d characters of text", field, maxLen))
	}
}

func checkOptionalURL(field, s string, httpsOnly bool, v *ValidationError) {
	if s == "" {
		return
	}
	if msg := checkURL(s, httpsOnly); msg != "" {
		v.Add(field, "invalid", field+" "+msg)
	}
}

// CancelInvoice is the merchant's command to cancel a pending invoice.
type CancelInvoice struct {
	Meta
	MerchantID string
	InvoiceID  string
	Reason     string
}

// CancelInvoice appends invoice.cancelled.
//
// Errors: ErrNotFound, ErrInvalidTransition (not pending), ErrConflict.
func (s *Service) CancelInvoice(ctx context.Context, c CancelInvoice) (*Invoice, error) {
	if err := checkMeta(c.Meta); err != nil {
		return nil, err
	}
	return s.invoiceEvent(ctx, c.Meta, c.MerchantID, c.InvoiceID, func(inv *Invoice) (string, any, error) {
		if _, ok := NextInvoiceStatus(inv.Status, TypeInvoiceCancelled); !ok {
			return "", nil, fmt.Errorf("cancel invoice %s in status %s: %w", inv.InvoiceID, inv.Status, ErrInvalidTransition)
		}
		return TypeInvoiceCancelled, InvoiceCancelled{Reason: c.Reason, CancelledAt: c.Time.UTC()}, nil
	})
}

// ExpireInvoice is the scheduler's command to expire a pending invoice at
// its expires_at.
type ExpireInvoice struct {
	Meta
	InvoiceID string
}

// ErrNotDue means an expiry command came before the invoice's or widget's expiry time.
var ErrNotDue = errors.New("not due yet")

// ExpireInvoice appends invoice.expired.
//
// Errors: ErrNotFound, ErrInvalidTransition (not pending), ErrNotDue, ErrConflict.
func (s *Service) ExpireInvoice(ctx context.Context, c ExpireInvoice) (*Invoice, error) {
	if err := checkMeta(c.Meta); err != nil {
		return nil, err
	}
	return s.invoiceEvent(ctx, c.Meta, "", c.InvoiceID, func(inv *Invoice) (string, any, error) {
		if _, ok := NextInvoiceStatus(inv.Status, TypeInvoiceExpired); !ok {
			return "", nil, fmt.Errorf("expire invoice %s in status %s: %w", inv.InvoiceID, inv.Status, ErrInvalidTransition)
		}
		if c.Time.Before(inv.ExpiresAt) {
			return "", nil, fmt.Errorf("expire invoice %s before %s: %w", inv.InvoiceID, inv.ExpiresAt.Format(time.RFC3339), ErrNotDue)
		}
		return TypeInvoiceExpired, InvoiceExpired{ExpiredAt: c.Time.UTC()}, nil
	})
}

func (s *Service) invoiceEvent(ctx context.Context, meta Meta, merchantID, invoiceID string, decide func(*Invoice) (string, any, error)) (*Invoice, error) {
	var out *Invoice
	evs, err := s.run(ctx, func() (decision, error) {
		inv, err := s.LoadInvoice(ctx, merchantID, invoiceID)
		if err != nil {
			return decision{}, err
		}
		typ, data, err := decide(inv)
		if err != nil {
			return decision{}, err
		}
		out = inv
		return single(meta, StreamID(StreamInvoice, inv.InvoiceID), inv.MerchantID, inv.Version, typ, data), nil
	})
	if err != nil {
		return nil, err
	}
	// Fold the appended event rather than read the stream again.
	if err := out.apply(evs[0]); err != nil {
		return nil, err
	}
	return out, nil
}

// CreateEInvoice is seed 001's e-invoice request, after JSON decoding.
type CreateEInvoice struct {
	Meta
	InvoiceID   ulid.ULID
	MerchantID  string
	PaymentID   string // the merchant's invoice number
	Method      string // seed 001's "currency": a method code
	Amount      string
	Description string
	Account     string
	Sender      string
	SuccessURL  string
	FailURL     string
	StatusURL   string
	ExtraFields map[string]string
	// Rate is the method currency's current rate per USDT (zero: none set;
	// USDT's is 1 whatever is given).
	Rate decimal.Decimal
	// RequestKey: see Service.requestClaim.
	RequestKey string
}

var senderRE = regexp.MustCompile(`^[0-9A-Za-z]{1,64}$`)

// CreateEInvoice decides and appends an e-invoice's invoice.created, with a
// tracking number in seed 001's form.
//
// Errors: *ValidationError, ErrNotFound (merchant), ErrMerchantDisabled,
// ErrDealsDisabled, ErrMethodInvalid, ErrNoGateway (no enabled gateway
// serves the method; it wraps ErrMethodInvalid), ErrCurrencyInvalid,
// ErrDuplicatePaymentID, ErrConflict, *RepeatedError (ErrRepeated).
func (s *Service) CreateEInvoice(ctx context.Context, c CreateEInvoice) (*Invoice, error) {
	if err := checkMeta(c.Meta); err != nil {
		return nil, err
	}
	v := &ValidationError{}
	switch {
	case c.PaymentID == "":
		v.Add("payment_id", "missing", "payment_id is required")
	case len(c.PaymentID) > maxIDLen || !externalIDRE.MatchString(c.PaymentID):
		v.Add("payment_id", "invalid", fmt.Sprintf("payment_id must be 1 to %d printable characters without spaces", maxIDLen))
	}
	method, methodOK := LookupMethod(c.Method)
	if c.Method == "" {
		v.Add("currency", "missing", "currency (a payment method code) is required")
	}
	cur := Currency{Code: "", MinorUnits: 2}
	if methodOK {
		cur, _ = LookupCurrency(method.Currency)
		method.ValidateExtra(c.ExtraFields, v)
	}
	amount := checkAmount("amount", c.Amount, cur, v)
	checkText("description", c.Description, maxPurposeLen, v)
	checkText("account", c.Account, maxIDLen, v)
	if c.Sender != "" && !senderRE.MatchString(c.Sender) {
		v.Add("sender", "invalid", "sender must be a wallet number without spaces or separators")
	}
	checkOptionalURL("success_url", c.SuccessURL, false, v)
	checkOptionalURL("fail_url", c.FailURL, false, v)
	checkTarget("status_url", c.StatusURL, s.allowPrivate, v)
	if err := v.Err(); err != nil {
		return nil, err
	}
	claims, err := s.requestClaim(c.MerchantID, c.RequestKey)
	if err != nil {
		return nil, err
	}
	var d InvoiceCreated
	for attempt := 0; ; attempt++ {
		tracking := Tracking(c.InvoiceID, attempt)
		evs, err := s.run(ctx, func() (decision, error) {
			m, err := s.payableMerchant(ctx, c.MerchantID)
			if err != nil {
				return decision{}, err
			}
			if !methodOK || !m.MethodEnabled(method.Code) {
				return decision{}, fmt.Errorf("method %q: %w", c.Method, ErrMethodInvalid)
			}
			rate := settlementRate(method.Currency, c.Rate)
			if !rate.IsPositive() {
				return decision{}, fmt.Errorf("currency %q: %w", method.Currency, ErrCurrencyInvalid)
			}
			if d, err = newInvoice(c.Meta, c.InvoiceID, m, amount, cur, rate); err != nil {
				return decision{}, err
			}
			d.Source = SourceEInvoice
			d.PaymentID, d.Method, d.Purpose = c.PaymentID, method.Code, c.Description
			d.Account, d.Sender, d.StatusURL, d.ExtraFields = c.Account, c.Sender, c.StatusURL, c.ExtraFields
			d.SuccessURL, d.FailURL = c.SuccessURL, c.FailURL
			d.Tracking = tracking
			// The method is fixed: with no enabled gateway serving it, the
			// invoice could never be paid.
			sw, err := s.GatewaySwitches(ctx)
			if err != nil {
				return decision{}, err
			}
			if _, ok := s.gateways.For(method, sw); !ok {
				return decision{}, fmt.Errorf("method %q: %w", method.Code, ErrNoGateway)
			}
			ids := &eventIDs{meta: c.Meta}
			ev := ids.event(TypeInvoiceCreated, m.ID, d, append(claims[:len(claims):len(claims)], PaymentIDClaim(m.ID, c.PaymentID), TrackingClaim(d.Tracking))...)
			return decision{writes: []ledger.Write{
				{Stream: StreamID(StreamInvoice, d.InvoiceID), Expected: ledger.NoStream, Events: []ledger.NewEvent{ev}},
				// A gateway disabled since the check: decide again.
				{Stream: StreamGateways, Expected: ledger.Exactly(sw.Version)},
				m.asRead(),
			}}, nil
		})
		err = s.repeated(err, claims)
		var ce *ledger.ClaimError
		switch {
		case err == nil:
			s.created()
			return &Invoice{InvoiceCreated: d, Status: InvoiceStatusPending, Version: evs[0].Version}, nil
		case errors.Is(err, ErrRepeated):
			return nil, err
		case errors.As(err, &ce) && strings.HasPrefix(ce.Key, "tracking/") && attempt < 8:
			continue // a tracking number collision (1 in 2^48): derive the next
		case errors.As(err, &ce):
			return nil, fmt.Errorf("payment_id %q: %w", c.PaymentID, ErrDuplicatePaymentID)
		default:
			return nil, fmt.Errorf("create e-invoice: %w", err) // run made a version conflict ErrConflict
		}
	}
}

// Tracking derives seed 001's tracking number (12 upper-case hex digits in
// three groups, "79DF-60B0-17F6") from the invoice id.
func Tracking(invoiceID ulid.ULID, attempt int) string {
	sum := sha256.Sum256(append(invoiceID[:], byte(attempt)))
	const hexd = "0123456789ABCDEF"
	var b [14]byte
	j := 0
	for i := 0; i < 6; i++ {
		if i == 2 || i == 4 {
			b[j] = '-'
			j++
		}
		b[j], b[j+1] = hexd[sum[i]>>4], hexd[sum[i]&0xf]
		j += 2
	}
	return string(b[:])
}
