package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
	"github.com/payledger/payledger/webhooks"
)

// ErrIdempotencyRecord means a stored idempotency record does not decode
// (unknown version, bad seal): it is treated as absent and overwritten.
var ErrIdempotencyRecord = errors.New("api: malformed idempotency record")

// ErrTrustedProxy means a trusted proxy (Config.TrustedProxies, serve's
// --trusted-proxies) is not a CIDR prefix or an IP address.
var ErrTrustedProxy = errors.New("api: bad trusted proxy")

// Stable error codes of the merchant and admin APIs (seed 003's envelope).
// Persisted in clients' code: add, never rename or reuse one.
const (
	CodeValidation          = "VALIDATION_ERROR"
	CodeBodyTooLarge        = "BODY_TOO_LARGE"
	CodeAPIKeyMissing       = "API_KEY_MISSING"
	CodeAPIKeyInvalid       = "API_KEY_INVALID"
	CodeAdminTokenMissing   = "ADMIN_TOKEN_MISSING"
	CodeAdminTokenInvalid   = "ADMIN_TOKEN_INVALID"
	CodeSignatureInvalid    = "SIGNATURE_INVALID"
	CodeSignatureReplayed   = "SIGNATURE_REPLAYED"
	CodeSignatureExpired    = "SIGNATURE_TIMESTAMP_INVALID"
	CodeSignatureRequired   = "SIGNATURE_REQUIRED"
	CodeTimestampInvalid    = "TIMESTAMP_INVALID"
	CodeNotFound            = "NOT_FOUND"
	CodeMethodNotAllowed    = "METHOD_NOT_ALLOWED"
	CodeDuplicateExternalID = "DUPLICATE_EXTERNAL_ID"
	CodeDuplicatePaymentID  = "DUPLICATE_PAYMENT_ID"
	CodeCurrencyInvalid     = "CURRENCY_INVALID"
	CodeMethodInvalid       = "METHOD_INVALID"
	CodeDealsDisabled       = "DEALS_SYSTEM_DISABLED"
	CodeMerchantDisabled    = "MERCHANT_DISABLED"
	CodeInvalidTransition   = "INVALID_STATUS_TRANSITION"
	CodeInvoiceNotPayable   = "INVOICE_NOT_PAYABLE"
	CodeTooManyPayments     = "TOO_MANY_PAYMENTS"
	CodeWidgetNotActive     = "WIDGET_NOT_ACTIVE"
	CodeDuplicateWidget     = "DUPLICATE_WIDGET"
	CodeKeyNotFound         = "API_KEY_NOT_FOUND"
	CodeNotDue              = "NOT_DUE"
	CodeConflict            = "CONFLICT"
	CodeIdempotencyReused   = "IDEMPOTENCY_KEY_REUSED"
	CodeIdempotencyKeyBad   = "IDEMPOTENCY_KEY_INVALID"
	CodeRateLimited         = "RATE_LIMITED"
	CodeUnavailable         = "SERVICE_UNAVAILABLE"
	CodeStorageFull         = "STORAGE_FULL"
	// CodeDeliveriesElsewhere: the node runs with webhook workers, which
	// keep the delivery records (503, no Retry-After: retrying cannot help).
	CodeDeliveriesElsewhere = "WEBHOOK_DELIVERIES_ELSEWHERE"
	CodeInternal            = "INTERNAL_ERROR"
	// CodeStorageDamaged: a page of the data file the request reads is
	// damaged (boltlog.ErrDamaged); logged, naming the damage, with the
	// request id. Retrying cannot help: the operator restores a backup.
	CodeStorageDamaged = "STORAGE_DAMAGED"
)

// E-invoice error codes (seed 001's {"error": {"code": N, "message"}}).
// Persisted in clients' code: add, never renumber or reuse one. Code 0 is
// seed 001's own "Transaction already exists".
const (
	EInvoiceDuplicate    = 0  // payment_id already used by this merchant
	EInvoiceInvalid      = 1  // malformed request: a field is missing or bad (details name it)
	EInvoiceAuth         = 2  // API key missing or invalid, bad or replayed signature
	EInvoiceMethod       = 3  // currency (the payment method code) unknown or not enabled
	EInvoiceRate         = 4  // no conversion rate for the method's currency
	EInvoiceDisabled     = 5  // invoicing switched off, or merchant disabled
	EInvoiceRateLimited  = 6  // too many requests
	EInvoiceIdempotency  = 7  // Idempotency-Key reused with another request
	EInvoiceNotFound     = 8  // no such route or resource
	EInvoiceTooLarge     = 9  // body over the size limit
	EInvoiceUnavailable  = 10 // server shutting down or log unavailable; retry
	EInvoiceInternal     = 99 // unexpected server error, logged with the request id
	EInvoiceConflictCode = 11 // concurrent modification; retry
)

// Detail is one bad field of a request: seed 003's pydantic-style detail.
type Detail struct {
	Path    string `json:"path"`
	Type    string `json:"type"`
	Message string `json:"message"`
}

// apiError is an error already classified: status, stable code, message and
// details. Handlers return one for refusals they decide themselves (auth,
// decoding, limits); domain errors are classified by classify.
type apiError struct {
	Status  int
	Code    string
	Message string
	Details []Detail
	// RetryAfter, in seconds, is sent as the Retry-After header when > 0.
	RetryAfter int
	// Allow is sent as the Allow header on 405.
	Allow string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// codeStatus is the HTTP status of every code: the one table that maps the
// adapter's own refusals (the domain's are in domainErrors below).
var codeStatus = map[string]int{
	CodeValidation:        http.StatusBadRequest,
	CodeBodyTooLarge:      http.StatusRequestEntityTooLarge,
	CodeAPIKeyMissing:     http.StatusUnauthorized,
	CodeAPIKeyInvalid:     http.StatusUnauthorized,
	CodeAdminTokenMissing: http.StatusUnauthorized,
	CodeAdminTokenInvalid: http.StatusUnauthorized,
	CodeSignatureInvalid:  http.StatusUnauthorized,
	CodeSignatureReplayed: http.StatusUnauthorized,
	CodeSignatureExpired:  http.StatusUnauthorized,
	CodeSignatureRequired: http.StatusUnauthorized,
	CodeTimestampInvalid:  http.StatusBadRequest,
	CodeNotFound:          http.StatusNotFound,
	CodeMethodNotAllowed:  http.StatusMethodNotAllowed,
	CodeIdempotencyReused: http.StatusConflict,
	CodeIdempotencyKeyBad: http.StatusBadRequest,
	CodeRateLimited:       http.StatusTooManyRequests,
	CodeUnavailable:       http.StatusServiceUnavailable,
	CodeInternal:          http.StatusInternalServerError,
}

// newError is a refusal the adapter decides itself; its status comes from
// codeStatus.
func newError(code, msg string, details ...Detail) *apiError {
	status, ok := codeStatus[code]
	if !ok {
		panic("api: no status for error code " + code) // a bug: every code is in the table
	}
	return &apiError{Status: status, Code: code, Message: msg, Details: details}
}

// fieldError wraps a domain error with the request field it concerns, so a
// CURRENCY_INVALID or METHOD_INVALID answer names the field in its details.
type fieldError struct {
	err  error
	path string
}

func (e *fieldError) Error() string { return e.path + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

// withField names the request field a domain error concerns when err is
// (or wraps) target; any other error is returned as is.
func withField(err, target error, path string) error {
	if err == nil || !errors.Is(err, target) {
		return err
	}
	var fe *fieldError
	if errors.As(err, &fe) {
		return err
	}
	return &fieldError{err: err, path: path}
}

// Retry-After, in seconds, of the answers that ask to be retried: a 503,
// and a 409 CONFLICT (the resource changed concurrently).
const (
	unavailableRetryAfter = 5
	conflictRetryAfter    = 1
)

// domainErrors maps the domain's sentinels to status, code and message: the
// one table of the package. Order matters only where one error wraps another.
var domainErrors = []struct {
	err     error
	status  int
	code    string
	message string
	einv    int
}{
	{commands.ErrDuplicateExternalID, http.StatusConflict, CodeDuplicateExternalID, "External ID for this merchant is already exists, try to generate another External ID", EInvoiceDuplicate},
	{commands.ErrDuplicatePaymentID, http.StatusConflict, CodeDuplicatePaymentID, "Transaction already exists", EInvoiceDuplicate},
	{commands.ErrNoPayableMethod, http.StatusBadRequest, CodeCurrencyInvalid, "Currency is disabled: no payment method in it that you accept is served by an enabled gateway", EInvoiceRate},
	{commands.ErrCurrencyInvalid, http.StatusBadRequest, CodeCurrencyInvalid, "Currency not found or disabled", EInvoiceRate},
	{commands.ErrRateMissing, http.StatusBadRequest, CodeCurrencyInvalid, "Currency not found or disabled", EInvoiceRate},
	{commands.ErrNoGateway, http.StatusBadRequest, CodeMethodInvalid, "Payment method is disabled: no enabled gateway serves it", EInvoiceMethod},
	{commands.ErrMethodInvalid, http.StatusBadRequest, CodeMethodInvalid, "Payment method not found or disabled", EInvoiceMethod},
	{commands.ErrDealsDisabled, http.StatusForbidden, CodeDealsDisabled, "Deals system is disabled", EInvoiceDisabled},
	{commands.ErrMerchantDisabled, http.StatusForbidden, CodeMerchantDisabled, "Merchant account is disabled", EInvoiceDisabled},
	{commands.ErrInvoiceNotPayable, http.StatusConflict, CodeInvoiceNotPayable, "Invoice cannot be paid: it is not pending or has expired", EInvoiceInvalid},
	// Not 429: waiting does not help, the invoice takes no more payments.
	{commands.ErrTooManyPayments, http.StatusConflict, CodeTooManyPayments, "Invoice has the most payments it may have: no more can be created for it", EInvoiceInvalid},
	{commands.ErrWidgetNotActive, http.StatusConflict, CodeWidgetNotActive, "Payment widget is disabled or expired", EInvoiceInvalid},
	{commands.ErrDuplicateWidget, http.StatusConflict, CodeDuplicateWidget, "A payment widget with this external_id already exists", EInvoiceInvalid},
	{commands.ErrInvalidTransition, http.StatusConflict, CodeInvalidTransition, "The resource's status does not allow this action", EInvoiceInvalid},
	{commands.ErrNotDue, http.StatusConflict, CodeNotDue, "Not due yet", EInvoiceInvalid},
	{commands.ErrKeyNotFound, http.StatusNotFound, CodeKeyNotFound, "API key not found or already revoked", EInvoiceNotFound},
	{commands.ErrNotFound, http.StatusNotFound, CodeNotFound, "Resource not found", EInvoiceNotFound},
	{projections.ErrNotFound, http.StatusNotFound, CodeNotFound, "Resource not found", EInvoiceNotFound},
	{webhooks.ErrNotFound, http.StatusNotFound, CodeNotFound, "Resource not found", EInvoiceNotFound},
	{webhooks.ErrInvalidQuery, http.StatusBadRequest, CodeValidation, "The request contains invalid parameters or malformed data", EInvoiceInvalid},
	{webhooks.ErrDeliveriesElsewhere, http.StatusServiceUnavailable, CodeDeliveriesElsewhere, "Webhook deliveries are sent and recorded by this deployment's webhook workers, not by the API server: they cannot be listed or redelivered here", EInvoiceUnavailable},
	{commands.ErrRepeated, http.StatusConflict, CodeIdempotencyReused, "This request was already applied; read the resource it made", EInvoiceIdempotency},
	{commands.ErrConflict, http.StatusConflict, CodeConflict, "The resource changed concurrently; retry the request", EInvoiceConflictCode},
	// A damaged page: the views and the log are read guarded, so bbolt's
	// panic arrives here as an error. Not 503: retrying cannot help.
	{boltlog.ErrDamaged, http.StatusInternalServerError, CodeStorageDamaged, "A page of the server's data file is damaged and cannot be read; quote the request id to support", EInvoiceInternal},
	{ledger.ErrStorageFull, http.StatusServiceUnavailable, CodeStorageFull, "The server cannot store anything right now; nothing was recorded, retry later", EInvoiceUnavailable},
	{ledger.ErrClosed, http.StatusServiceUnavailable, CodeUnavailable, "The server is shutting down; retry the request", EInvoiceUnavailable},
	{ledger.ErrFailed, http.StatusServiceUnavailable, CodeUnavailable, "The server could not confirm a write to its event log and must be restarted; until then it serves nothing. Whether a request answered this way was recorded is known only after the restart: read the resource then, before retrying", EInvoiceUnavailable},
	{context.Canceled, http.StatusServiceUnavailable, CodeUnavailable, "The request was cancelled", EInvoiceUnavailable},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, CodeUnavailable, "The request timed out; retry the request", EInvoiceUnavailable},
}

// classify turns any error into the answer the client gets. It reports
// internal=true for errors it does not know: those are answered 500
// INTERNAL_ERROR and logged once by the caller. A bulk webhook redelivery
// that failed part way (*webhooks.RedeliverError) is answered as its
// failure, with a detail saying how many it redelivered first.
func classify(err error) (e *apiError, internal bool) {
	e, internal = classifyCause(err)
	var re *webhooks.RedeliverError
	if errors.As(err, &re) {
		c := *e
		c.Details = append(append([]Detail(nil), e.Details...), Detail{Path: "redelivered", Type: "partial", Message: re.Done()})
		e = &c
	}
	return e, internal
}

func classifyCause(err error) (e *apiError, internal bool) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae, false
	}
	var ve *commands.ValidationError
	if errors.As(err, &ve) {
		return validationError(ve.Fields), false
	}
	var qe *webhooks.QueryError
	if errors.As(err, &qe) {
		return validationError(qe.Fields), false
	}
	for _, m := range domainErrors {
		if errors.Is(err, m.err) {
			out := &apiError{Status: m.status, Code: m.code, Message: m.message}
			switch {
			case m.status == http.StatusServiceUnavailable && m.code != CodeDeliveriesElsewhere:
				out.RetryAfter = unavailableRetryAfter
			case m.code == CodeConflict:
				out.RetryAfter = conflictRetryAfter
			}
			var fe *fieldError
			if errors.As(err, &fe) {
				out.Details = []Detail{{Path: fe.path, Type: detailType(m.code), Message: m.message}}
			}
			return out, false
		}
	}
	return newError(CodeInternal, "Internal server error; quote the request id to support"), true
}

// validationError is a 400 VALIDATION_ERROR with a detail per bad field,
// whose message is the field's when there is one.
func validationError[F commands.FieldError | webhooks.QueryField](fields []F) *apiError {
	out := newError(CodeValidation, "The request contains invalid parameters or malformed data")
	for _, f := range fields {
		out.Details = append(out.Details, Detail(f))
	}
	if len(out.Details) == 1 {
		out.Message = out.Details[0].Message
	}
	return out
}

// detailType is the detail type of a field-named domain refusal.
func detailType(code string) string {
	switch code {
	case CodeCurrencyInvalid:
		return "currency_invalid"
	case CodeMethodInvalid:
		return "method_invalid"
	case CodeNotFound:
		return "not_found"
	default:
		return "invalid"
	}
}

// einvoiceCode is the numeric seed 001 code for a classified error.
func einvoiceCode(code string) int {
	for _, m := range domainErrors {
		if m.code == code {
			return m.einv
		}
	}
	switch code {
	case CodeValidation, CodeTimestampInvalid, CodeIdempotencyKeyBad:
		return EInvoiceInvalid
	case CodeAPIKeyMissing, CodeAPIKeyInvalid, CodeSignatureInvalid, CodeSignatureReplayed, CodeSignatureExpired, CodeSignatureRequired:
		return EInvoiceAuth
	case CodeRateLimited:
		return EInvoiceRateLimited
	case CodeIdempotencyReused:
		return EInvoiceIdempotency
	case CodeNotFound, CodeMethodNotAllowed:
		return EInvoiceNotFound
	case CodeBodyTooLarge:
		return EInvoiceTooLarge
	case CodeUnavailable:
		return EInvoiceUnavailable
	}
	return EInvoiceInternal
}

// Error bodies.

// errorBody is seed 003's error envelope.
type errorBody struct {
	Successful bool        `json:"successful"`
	RequestID  string      `json:"request_id"`
	Error      errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Details []Detail `json:"details"`
}

// einvoiceErrorBody is seed 001's error body, with details added for
// validation errors.
type einvoiceErrorBody struct {
	Error einvoiceError `json:"error"`
}

type einvoiceError struct {
	Code      int      `json:"code"`
	Message   string   `json:"message"`
	Details   []Detail `json:"details,omitempty"`
	RequestID string   `json:"request_id,omitempty"`
}

// WriteError answers err in seed 003's envelope with the status and code of
// the one error table, for handlers mounted beside the API (the webhook
// delivery routes).
func (s *Server) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	s.writeError(w, r, err)
}

// writeError answers err in the envelope of the request's API family, logs
// unknown errors and every other 500 (a damaged page) once with the request
// id, and counts nothing twice.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e, internal := classify(err)
	rid := requestID(r.Context())
	if internal || e.Status == http.StatusInternalServerError {
		s.log.ErrorContext(r.Context(), "request failed", "request_id", rid, "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(e.RetryAfter))
	}
	if e.Allow != "" {
		w.Header().Set("Allow", e.Allow)
	}
	if familyOf(r.Context()) == familyEInvoice {
		writeJSON(w, e.Status, einvoiceErrorBody{Error: einvoiceError{
			Code: einvoiceCode(e.Code), Message: e.Message, Details: e.Details, RequestID: rid,
		}})
		return
	}
	details := e.Details
	if details == nil {
		details = []Detail{}
	}
	writeJSON(w, e.Status, errorBody{RequestID: rid, Error: errorDetail{Code: e.Code, Message: e.Message, Details: details}})
}
