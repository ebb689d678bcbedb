package commands

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/payledger/payledger/ledger"
)

// Business rejections: the command was understood and refused. The HTTP
// adapter maps each to a status and a stable error code in one place.
var (
	// ErrValidation means the command's input is malformed; *ValidationError lists the fields.
	ErrValidation = errors.New("invalid input")
	// ErrNotFound means the aggregate does not exist (or belongs to another merchant).
	ErrNotFound = errors.New("not found")
	// ErrDuplicateExternalID means the merchant already has an invoice with this external_id.
	ErrDuplicateExternalID = errors.New("external id already exists for this merchant")
	// ErrDuplicatePaymentID means the merchant already has an e-invoice with this payment_id.
	ErrDuplicatePaymentID = errors.New("transaction already exists")
	// ErrCurrencyInvalid means the currency is unknown, has no rate, or is disabled.
	ErrCurrencyInvalid = errors.New("currency not found or disabled")
	// ErrMethodInvalid means the payment method is unknown or not enabled for the merchant.
	ErrMethodInvalid = errors.New("payment method not found or disabled")
	// ErrNoGateway means no enabled gateway serves the payment method (the
	// operator disabled them all). It wraps ErrMethodInvalid: to the payer,
	// the method is disabled.
	ErrNoGateway = fmt.Errorf("no enabled gateway serves the payment method: %w", ErrMethodInvalid)
	// ErrNoPayableMethod means no method in an invoice's currency can be
	// paid: the merchant accepts none of them, or no enabled gateway serves
	// those it accepts. It wraps ErrCurrencyInvalid: to the merchant, the
	// currency is disabled.
	ErrNoPayableMethod = fmt.Errorf("no payment method in the currency is accepted by the merchant and served by an enabled gateway: %w", ErrCurrencyInvalid)
	// ErrDealsDisabled means the merchant's invoicing switch is off.
	ErrDealsDisabled = errors.New("deals system is disabled")
	// ErrMerchantDisabled means the merchant account is suspended.
	ErrMerchantDisabled = errors.New("merchant is disabled")
	// ErrInvalidTransition means the aggregate's status does not allow the command.
	ErrInvalidTransition = errors.New("invalid status transition")
	// ErrInvoiceNotPayable means the invoice is not pending (paid, expired or cancelled) or past expires_at.
	ErrInvoiceNotPayable = errors.New("invoice cannot be paid")
	// ErrTooManyPayments means the invoice already has MaxPaymentsPerInvoice payments.
	ErrTooManyPayments = errors.New("invoice has too many payments")
	// ErrWidgetNotActive means the widget is disabled or expired.
	ErrWidgetNotActive = errors.New("widget is not active")
	// ErrDuplicateWidget means a widget with this external id already exists.
	ErrDuplicateWidget = errors.New("widget already exists")
	// ErrRateMissing means the operator has set no rate for the currency.
	ErrRateMissing = errors.New("no conversion rate for currency")
	// ErrKeyNotFound means the API key does not exist or is already revoked.
	ErrKeyNotFound = errors.New("api key not found")
	// ErrConflict means the aggregate changed concurrently too many times to apply the command; retry.
	ErrConflict = errors.New("concurrent modification")
	// ErrRepeated means a command carried the request key of a command
	// already applied: it is a retry, and decided nothing (see RepeatedError).
	ErrRepeated = errors.New("request already applied")
)

// refusals are the business rejections above but ErrRepeated (an answer,
// not a refusal): what refusal recognises.
var refusals = []error{
	ErrValidation, ErrNotFound, ErrDuplicateExternalID, ErrDuplicatePaymentID,
	ErrCurrencyInvalid, ErrMethodInvalid, ErrNoGateway, ErrNoPayableMethod,
	ErrDealsDisabled, ErrMerchantDisabled, ErrInvalidTransition,
	ErrInvoiceNotPayable, ErrTooManyPayments, ErrWidgetNotActive,
	ErrDuplicateWidget, ErrRateMissing, ErrKeyNotFound, ErrConflict,
}

// refusal reports whether err is a command's refusal: a business
// rejection (refusals) or the log's version or claim conflict. An error
// that also carries the context's end is not: the request is going away,
// and its end is what it is told.
func refusal(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, ledger.ErrVersionConflict) || errors.Is(err, ledger.ErrClaimed) {
		return true
	}
	for _, r := range refusals {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

// RepeatedError names the stream the first command with a request key
// created. It unwraps to ErrRepeated.
type RepeatedError struct {
	Stream string
}

func (e *RepeatedError) Error() string {
	return fmt.Sprintf("request already applied: it made %s", e.Stream)
}

// Unwrap makes errors.Is(err, ErrRepeated) true.
func (e *RepeatedError) Unwrap() error { return ErrRepeated }

// FieldError is one bad field of a request.
type FieldError struct {
	Path    string `json:"path"`    // JSON path of the field, e.g. "amount" or "extra_fields.phone"
	Type    string `json:"type"`    // machine-readable kind: missing, invalid, too_long, too_precise, ...
	Message string `json:"message"` // human-readable explanation
}

// ValidationError lists every bad field of a command. It unwraps to ErrValidation.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid input: ")
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.Path)
		b.WriteString(": ")
		b.WriteString(f.Message)
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrValidation) true.
func (e *ValidationError) Unwrap() error { return ErrValidation }

// Add records a bad field.
func (e *ValidationError) Add(path, typ, msg string) {
	e.Fields = append(e.Fields, FieldError{Path: path, Type: typ, Message: msg})
}

// Err returns e if any field was added, else nil.
func (e *ValidationError) Err() error {
	if e == nil || len(e.Fields) == 0 {
		return nil
	}
	return e
}
