package webhooks

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrNotFound means no such delivery, or one of another merchant.
	ErrNotFound = errors.New("webhooks: delivery not found")
	// ErrInvalidQuery means a list or redelivery request with a bad
	// parameter (an unknown status, a zero time): a *QueryError names them.
	ErrInvalidQuery = errors.New("webhooks: invalid query")
	// ErrDeliveriesElsewhere means this process keeps no delivery records:
	// serve runs with its dispatcher off (--webhooks=false) and webhook
	// workers deliver, each recording its deliveries in its own
	// webhooks.db, so the merchant's delivery routes cannot answer.
	ErrDeliveriesElsewhere = errors.New("webhooks: deliveries are recorded by the webhook workers")
	// ErrConfig means a Config that cannot work (no signing keys).
	ErrConfig = errors.New("webhooks: invalid config")
	// ErrClosed means the dispatcher has been closed.
	ErrClosed = errors.New("webhooks: dispatcher closed")
	// ErrRunning means Run was called while the dispatcher was already running.
	ErrRunning = errors.New("webhooks: dispatcher already running")
	// ErrSequenceGap means a source passed an event that does not follow
	// the dispatcher's checkpoint: events were skipped.
	ErrSequenceGap = errors.New("webhooks: sequence gap")
	// ErrCorrupt means a stored record of webhooks.db does not decode.
	ErrCorrupt = errors.New("webhooks: corrupt record")
	// ErrUnsupportedVersion means webhooks.db was written by a newer format.
	ErrUnsupportedVersion = errors.New("webhooks: unsupported format version")
	// ErrRefused means a target the SSRF policy refuses: plain http, or an
	// address that is loopback, private, link-local, CGNAT, multicast,
	// unspecified or otherwise not public (without Config.AllowPrivate).
	ErrRefused = errors.New("webhooks: target refused")

	// ErrMissingHeader means a webhook without webhook-id,
	// webhook-timestamp or webhook-signature.
	ErrMissingHeader = errors.New("webhooks: missing signature header")
	// ErrTimestamp means a webhook-timestamp that does not parse or lies
	// outside the tolerance (a replay, or a badly set clock).
	ErrTimestamp = errors.New("webhooks: timestamp outside tolerance")
	// ErrSignature means no signature of the webhook matches the secret.
	ErrSignature = errors.New("webhooks: no matching signature")
	// ErrSecret means a signing secret that is not "whsec_" and base64.
	ErrSecret = errors.New("webhooks: malformed signing secret")
)

// QueryError names every bad field of a list or redelivery request. It
// unwraps to ErrInvalidQuery.
type QueryError struct {
	Fields []QueryField
}

// QueryField is one bad field: Path is a query parameter (page, page_size,
// status), a body field (since, status, an unknown field's name) or "body"
// for the body as a whole; Type is machine-readable (int_parsing, enum,
// missing, datetime_parsing, extra_forbidden, json_invalid...); Message
// says what is wrong to a person.
type QueryField struct {
	Path    string
	Type    string
	Message string
}

func (e *QueryError) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalidQuery.Error())
	sep := ": "
	for _, f := range e.Fields {
		b.WriteString(sep + f.Path + ": " + f.Message)
		sep = "; "
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrInvalidQuery) true.
func (e *QueryError) Unwrap() error { return ErrInvalidQuery }

// add records a bad field.
func (e *QueryError) add(path, typ, msg string) {
	e.Fields = append(e.Fields, QueryField{Path: path, Type: typ, Message: msg})
}

// err returns e if it names a field, else nil.
func (e *QueryError) err() error {
	if len(e.Fields) == 0 {
		return nil
	}
	return e
}

// RefusedError says which target was refused and why.
type RefusedError struct {
	Target string // a URL or an address
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("webhooks: target %s refused: %s", e.Target, e.Reason)
}

// Unwrap makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Unwrap() error { return ErrRefused }

// RedeliverError is a bulk redelivery (RedeliverSince) that failed part
// way: Redelivered deliveries were redelivered, in transactions that
// committed, before Err, and stay redelivered (a retry of the same range
// redelivers them again, a new round each). It unwraps to Err.
type RedeliverError struct {
	Redelivered int
	Err         error
}

func (e *RedeliverError) Error() string {
	return fmt.Sprintf("webhooks: redelivery failed after %d redelivered: %v", e.Redelivered, e.Err)
}

// Unwrap returns the failure.
func (e *RedeliverError) Unwrap() error { return e.Err }

// Done says, for a client, how many were redelivered before the failure.
func (e *RedeliverError) Done() string {
	return fmt.Sprintf("%d deliveries were redelivered before the failure; they stay redelivered", e.Redelivered)
}
