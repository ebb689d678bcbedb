package projections

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound means the resource does not exist, or belongs to another merchant.
	ErrNotFound = errors.New("projections: not found")
	// ErrCorrupt means a stored view record does not decode.
	ErrCorrupt = errors.New("projections: corrupt view record")
	// ErrUnsupportedVersion means the views were written by a newer view format.
	ErrUnsupportedVersion = errors.New("projections: unsupported view format version")
	// ErrMalformedEvent means a known event type carries data that does not decode or is inconsistent with its stream.
	ErrMalformedEvent = errors.New("projections: malformed event")
	// ErrInconsistent means an event refers to an aggregate the views do not hold, or to one not its own (an invoice paid by another invoice's payment, or by one whose payment.processed with allocation invoice is not the event right before), or creates one they already hold; or an invoice.paid has another paid_at or paid_amount than its payment.processed; or, in an append (Projector.ApplyAppend), a payment.processed with allocation invoice is followed by an event other than its invoice.paid, or ends the append.
	ErrInconsistent = errors.New("projections: event inconsistent with the views")
	// ErrIllegalTransition means an event moves an invoice, payment or widget out of a status the commands never move it from, creates a payment for an invoice in a status that takes none, or processes a payment that pays its invoice, or pays an invoice, with a late flag the commands would not set (commands.NextInvoiceStatus and its kin, commands.PaymentCreationAllowed, commands.PaidLate).
	ErrIllegalTransition = errors.New("projections: illegal status transition")
	// ErrUnbalanced means an event's postings do not sum to zero in some currency.
	ErrUnbalanced = errors.New("projections: postings do not balance")
	// ErrSequenceGap means an event's sequence does not follow the views' checkpoint.
	ErrSequenceGap = errors.New("projections: sequence gap")
	// ErrDueKind means a Due given as a position in the due index has a kind other than DueInvoice or DueWidget.
	ErrDueKind = errors.New("projections: unknown due kind")
	// ErrMismatch means two sets of views differ; *DiffError says where.
	ErrMismatch = errors.New("projections: views differ")
)

// DiffError names the first view key at which two databases differ. A nil A
// or B means the key is missing on that side.
type DiffError struct {
	Bucket string
	Key    []byte
	A, B   []byte
}

func (e *DiffError) Error() string {
	switch {
	case e.Key == nil:
		return fmt.Sprintf("projections: views differ: bucket %s present on one side only", e.Bucket)
	case e.A == nil:
		return fmt.Sprintf("projections: views differ: %s key %q missing in a (b has %q)", e.Bucket, e.Key, e.B)
	case e.B == nil:
		return fmt.Sprintf("projections: views differ: %s key %q missing in b (a has %q)", e.Bucket, e.Key, e.A)
	default:
		return fmt.Sprintf("projections: views differ: %s key %q: a %q, b %q", e.Bucket, e.Key, e.A, e.B)
	}
}

// Unwrap makes errors.Is(err, ErrMismatch) true.
func (e *DiffError) Unwrap() error { return ErrMismatch }
