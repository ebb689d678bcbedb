package commands

import "time"

// The status machines of invoices, payments and widgets (docs/payments.md,
// docs/events.md), in one place: the commands decide with them, and the
// projector (projections) and the auditor (audit) refuse a log that holds
// an event the commands would never have appended.

// invoiceTransitions maps an invoice event type to the statuses it may
// follow and the status it leads to.
var invoiceTransitions = map[string]struct {
	from []string
	to   string
}{
	TypeInvoiceCancelled: {[]string{InvoiceStatusPending}, InvoiceStatusCancelled},
	TypeInvoiceExpired:   {[]string{InvoiceStatusPending}, InvoiceStatusExpired},
	// Expired -> success: a late payment (docs/payments.md).
	TypeInvoicePaid: {[]string{InvoiceStatusPending, InvoiceStatusExpired}, InvoiceStatusSuccess},
}

// NextInvoiceStatus returns the status an invoice in status from takes on
// an event of type typ (invoice.cancelled, invoice.expired, invoice.paid),
// and false when the commands never append that event to an invoice in
// that status: an invoice is cancelled or expires only while pending, and
// is paid only while pending or expired, so at most once.
func NextInvoiceStatus(from, typ string) (string, bool) {
	t, ok := invoiceTransitions[typ]
	if !ok {
		return "", false
	}
	for _, f := range t.from {
		if f == from {
			return t.to, true
		}
	}
	return "", false
}

// PaidLate reports whether the commands flag late a payment processed at
// time at for an invoice in status from (its status before the processing)
// whose expires_at is expiresAt: the money came at or after expires_at, or
// the invoice was already expired (which the scheduler marks only at or
// after expires_at, though a processing command may carry an earlier
// time). A pending invoice is thus paid late or not by its expires_at
// alone, which may pass before the scheduler marks it expired.
// ProcessPayment flags with it every payment.processed, whatever its
// allocation, and the invoice.paid it may lead to; the projector and the
// audit refuse a payment.processed with allocation invoice, or an
// invoice.paid, flagged otherwise. (They do not check the other
// allocations: logs written before every payment.processed was flagged
// left a late duplicate or underpayment unflagged.)
func PaidLate(from string, at, expiresAt time.Time) bool {
	return from == InvoiceStatusExpired || !at.Before(expiresAt)
}

// PaymentCreationAllowed reports whether the commands create a payment for
// an invoice in status st: only a pending one. An expired invoice takes no
// new payment; a payment created while it was pending may still be
// processed after it expired, and pays it late (NextInvoiceStatus).
// (Whether the invoice's expires_at has passed is the command's to check.)
func PaymentCreationAllowed(st string) bool { return st == InvoiceStatusPending }

// paymentTransitions maps a payment status to the event types that may
// follow it and the status each leads to (SPEC §3). The statuses it does
// not list (PROCESSED, REJECTED, CANCELLED, ERROR) are final.
var paymentTransitions = map[string]map[string]string{
	PaymentStatusPending: {
		TypePaymentConfirmed: PaymentStatusConfirmed,
		TypePaymentProcessed: PaymentStatusProcessed,
		TypePaymentRejected:  PaymentStatusRejected,
		TypePaymentCancelled: PaymentStatusCancelled,
		TypePaymentFailed:    PaymentStatusError,
	},
	PaymentStatusConfirmed: {
		TypePaymentProcessed: PaymentStatusProcessed,
		TypePaymentRejected:  PaymentStatusRejected,
		TypePaymentFailed:    PaymentStatusError,
	},
}

// NextPaymentStatus returns the status a payment in status from takes on
// an event of type typ (payment.confirmed, .processed, .rejected,
// .cancelled, .failed), and false when the commands never append that
// event to a payment in that status.
func NextPaymentStatus(from, typ string) (string, bool) {
	to, ok := paymentTransitions[from][typ]
	return to, ok
}

// ReceiptHoldAllowed reports whether the commands record a
// payment.receipt_held for a payment in status st: money that arrived for
// a payment in a final status, which no payment.processed can take any
// more. That is a payment that ended CANCELLED, REJECTED or ERROR, or a
// further arrival for a PROCESSED one (a customer who pays twice to the
// same details, a gateway that delivers a transfer twice): its
// payment.processed recorded the first arrival only. A PENDING or
// CONFIRMED payment's money is processed (payment.processed allocates it).
func ReceiptHoldAllowed(st string) bool {
	switch st {
	case PaymentStatusCancelled, PaymentStatusRejected, PaymentStatusError, PaymentStatusProcessed:
		return true
	}
	return false
}

// WidgetStatusAllowed reports whether a widget in status from may move to
// status to: active <-> disabled, and either to expired, which is final.
// (Whether the widget's expiry time allows it is the command's to check.)
func WidgetStatusAllowed(from, to string) bool {
	switch from {
	case WidgetStatusActive, WidgetStatusDisabled:
		return to != from && (to == WidgetStatusActive || to == WidgetStatusDisabled || to == WidgetStatusExpired)
	}
	return false
}
