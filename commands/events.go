package commands

import (
	"time"

	"github.com/shopspring/decimal"
)

// Event types. Persisted: append only, never rename or reuse one. Each type's
// data is the struct named beside it; docs/events.md is the catalogue.
const (
	TypeMerchantRegistered   = "merchant.registered"       // MerchantRegistered
	TypeMerchantSettings     = "merchant.settings_changed" // MerchantSettingsChanged
	TypeAPIKeyIssued         = "merchant.api_key_issued"   // APIKeyIssued
	TypeAPIKeyRevoked        = "merchant.api_key_revoked"  // APIKeyRevoked
	TypeSigningSecretRotated = "merchant.secret_rotated"   // SigningSecretRotated
	TypeRateSet              = "rate.set"                  // RateSet
	TypeInvoiceCreated       = "invoice.created"           // InvoiceCreated
	TypeInvoiceCancelled     = "invoice.cancelled"         // InvoiceCancelled
	TypeInvoiceExpired       = "invoice.expired"           // InvoiceExpired
	TypeInvoicePaid          = "invoice.paid"              // InvoicePaid
	TypePaymentCreated       = "payment.created"           // PaymentCreated
	TypePaymentConfirmed     = "payment.confirmed"         // PaymentStatusChanged
	TypePaymentProcessed     = "payment.processed"         // PaymentProcessed
	TypePaymentRejected      = "payment.rejected"          // PaymentStatusChanged
	TypePaymentCancelled     = "payment.cancelled"         // PaymentStatusChanged
	TypePaymentFailed        = "payment.failed"            // PaymentStatusChanged (status ERROR)
	TypeWidgetCreated        = "widget.created"            // WidgetCreated
	TypeWidgetStatusChanged  = "widget.status_changed"     // WidgetStatusChanged
	TypeWidgetExpired        = "widget.expired"            // WidgetStatusChanged (status expired)
	TypeGatewayEnabled       = "gateway.enabled"           // GatewaySwitched
	TypeGatewayDisabled      = "gateway.disabled"          // GatewaySwitched
	TypePaymentReceiptHeld   = "payment.receipt_held"      // PaymentReceiptHeld
	TypeInvoicePaymentAdded  = "invoice.payment_added"     // InvoicePaymentAdded
)

// Stream id prefixes: a stream is "<prefix>-<id>".
const (
	StreamMerchant = "merchant"
	StreamInvoice  = "invoice"
	StreamPayment  = "payment"
	StreamWidget   = "widget"
	StreamRates    = "rates"    // one stream for every rate
	StreamGateways = "gateways" // one stream for every gateway's switches
)

// Invoice statuses (seed 003).
const (
	InvoiceStatusPending   = "pending"
	InvoiceStatusSuccess   = "success"
	InvoiceStatusExpired   = "expired"
	InvoiceStatusCancelled = "cancelled"
)

// Payment statuses (seed 002).
const (
	PaymentStatusPending   = "PENDING"
	PaymentStatusConfirmed = "CONFIRMED"
	PaymentStatusProcessed = "PROCESSED"
	PaymentStatusRejected  = "REJECTED"
	PaymentStatusCancelled = "CANCELLED"
	PaymentStatusError     = "ERROR"
)

// Widget kinds and statuses (seed 000).
const (
	WidgetUnlimited = "unlimited"
	WidgetSingle    = "single"

	WidgetStatusActive   = "active"
	WidgetStatusDisabled = "disabled"
	WidgetStatusExpired  = "expired"
)

// Invoice sources.
const (
	SourceAPI      = "api"      // POST /api/v1/create-invoice
	SourceEInvoice = "einvoice" // POST /api/einvoice/create
	SourceWidget   = "widget"   // an invoice made from a payment widget
)

// Allocations of a processed payment: where its money went.
const (
	// AllocInvoice: the payment paid its invoice (on time, or late after expiry).
	AllocInvoice = "invoice"
	// AllocDuplicate: the invoice was already paid by another payment; funds held in suspense.
	AllocDuplicate = "duplicate"
	// AllocCancelled: the invoice had been cancelled; funds held in suspense.
	AllocCancelled = "cancelled_invoice"
	// AllocUnderpaid: less than the expected amount arrived; funds held in suspense, invoice stays pending.
	AllocUnderpaid = "underpaid"
)

// MerchantRegistered starts a merchant's stream.
type MerchantRegistered struct {
	MerchantID        string          `json:"merchant_id"`
	Name              string          `json:"name"`
	WebhookURL        string          `json:"webhook_url,omitempty"`
	CommissionPercent decimal.Decimal `json:"commission_percent"`
	InvoiceLifetime   int64           `json:"invoice_lifetime_seconds"`
	InvoicingEnabled  bool            `json:"invoicing_enabled"`
	Methods           []string        `json:"methods,omitempty"` // enabled method codes; empty: all
	RegisteredAt      time.Time       `json:"registered_at"`
}

// MerchantSettingsChanged carries only the settings that changed (nil: unchanged).
type MerchantSettingsChanged struct {
	Name              *string          `json:"name,omitempty"`
	WebhookURL        *string          `json:"webhook_url,omitempty"`
	CommissionPercent *decimal.Decimal `json:"commission_percent,omitempty"`
	InvoiceLifetime   *int64           `json:"invoice_lifetime_seconds,omitempty"`
	InvoicingEnabled  *bool            `json:"invoicing_enabled,omitempty"`
	Methods           *[]string        `json:"methods,omitempty"`
	Disabled          *bool            `json:"disabled,omitempty"`
	ChangedAt         time.Time        `json:"changed_at"`
}

// APIKeyIssued records a new API key by its SHA-256 hash: the key itself is
// shown once to the operator and never stored.
type APIKeyIssued struct {
	KeyID    string    `json:"key_id"`
	KeyHash  string    `json:"key_hash"` // hex SHA-256 of the whole key
	Prefix   string    `json:"prefix"`   // the key's first characters, to tell keys apart
	Label    string    `json:"label,omitempty"`
	IssuedAt time.Time `json:"issued_at"`
}

// APIKeyRevoked disables a key.
type APIKeyRevoked struct {
	KeyID     string    `json:"key_id"`
	RevokedAt time.Time `json:"revoked_at"`
}

// SigningSecretRotated records a new version of the merchant's signing
// secret. The secret is derived from the node's master key and the version
// (see http/api's keyring), so only its hash is recorded. The previous version
// stays valid for signatures until PreviousValidUntil.
type SigningSecretRotated struct {
	Version            int       `json:"version"`
	SecretHash         string    `json:"secret_hash"`
	PreviousValidUntil time.Time `json:"previous_valid_until,omitzero"`
	RotatedAt          time.Time `json:"rotated_at"`
}

// RateSet sets the fiat (or crypto) per USDT rate: Rate units of Currency buy 1 USDT.
type RateSet struct {
	Currency string          `json:"currency"`
	Rate     decimal.Decimal `json:"rate"`
	SetAt    time.Time       `json:"set_at"`
}

// InvoiceCreated starts an invoice's stream. Amounts are decimal strings.
type InvoiceCreated struct {
	InvoiceID         string          `json:"invoice_id"` // ULID rendered as UUID text
	MerchantID        string          `json:"merchant_id"`
	Source            string          `json:"source"`
	ExternalID        string          `json:"external_id,omitempty"`
	Amount            decimal.Decimal `json:"amount"`
	Currency          string          `json:"currency"`
	CustomerID        string          `json:"customer_id,omitempty"`
	Purpose           string          `json:"purpose,omitempty"`
	CallbackURL       string          `json:"callback_url,omitempty"`
	SuccessURL        string          `json:"success_url,omitempty"`
	FailURL           string          `json:"fail_url,omitempty"`
	ConversionRate    decimal.Decimal `json:"conversion_rate"`
	CommissionPercent decimal.Decimal `json:"commission_percent"`
	GrossUSDT         decimal.Decimal `json:"gross_usdt"`
	FeeUSDT           decimal.Decimal `json:"fee_usdt"`
	MerchantUSDT      decimal.Decimal `json:"merchant_usdt"`
	CreatedAt         time.Time       `json:"created_at"`
	ExpiresAt         time.Time       `json:"expires_at"`
	// E-invoice (seed 001) fields.
	PaymentID   string            `json:"payment_id,omitempty"`
	Tracking    string            `json:"tracking,omitempty"`
	Method      string            `json:"method,omitempty"` // fixed payment method, if any
	Account     string            `json:"account,omitempty"`
	Sender      string            `json:"sender,omitempty"`
	StatusURL   string            `json:"status_url,omitempty"`
	ExtraFields map[string]string `json:"extra_fields,omitempty"`
	// Widget (seed 000) fields.
	WidgetID           string `json:"widget_id,omitempty"`
	MerchantExternalID string `json:"merchant_external_id,omitempty"`
}

// InvoiceStatusCancelled ends a pending invoice at the merchant's request.
type InvoiceCancelled struct {
	Reason      string    `json:"reason,omitempty"`
	CancelledAt time.Time `json:"cancelled_at"`
}

// InvoiceStatusExpired ends a pending invoice at its expires_at.
type InvoiceExpired struct {
	ExpiredAt time.Time `json:"expired_at"`
}

// InvoicePaid marks an invoice success: at most once per invoice.
type InvoicePaid struct {
	PaymentID  string          `json:"payment_id"` // the payment's stream id
	PaidAt     time.Time       `json:"paid_at"`
	Late       bool            `json:"late,omitempty"`    // processed after expires_at
	PaidAmount decimal.Decimal `json:"paid_amount"`       // in the payment's currency
	Overpaid   decimal.Decimal `json:"overpaid,omitzero"` // excess over the expected amount, held for refund
}

// InvoicePaymentAdded records on an invoice's stream that a payment of it
// was created: appended with that payment's payment.created, right after
// it, so that the invoice counts its payments from its own stream
// (MaxPaymentsPerInvoice). Invoices whose payments were created before it
// was written have fewer of them than payments.
type InvoicePaymentAdded struct {
	PaymentID string    `json:"payment_id"` // the payment's stream id
	AddedAt   time.Time `json:"added_at"`   // its payment.created's created_at
}

// PaymentCreated starts a payment's stream: a customer's attempt to pay an
// invoice with one method through one gateway.
type PaymentCreated struct {
	PaymentID           string          `json:"payment_id"` // stream id suffix (ULID)
	InvoiceID           string          `json:"invoice_id"`
	MerchantID          string          `json:"merchant_id"`
	Method              string          `json:"method"`
	GatewayID           string          `json:"gateway_id"`
	Extra               PaymentExtra    `json:"extra"`
	PaymentCurrency     string          `json:"payment_currency"`
	PaymentAmount       decimal.Decimal `json:"payment_amount"`
	DestinationCurrency string          `json:"destination_currency"`
	DestinationAmount   decimal.Decimal `json:"destination_amount"`
	CreatedAt           time.Time       `json:"created_at"`
}

// PaymentExtra is seed 002's "extra": the details the customer pays to.
type PaymentExtra struct {
	AccountNumber string `json:"accountNumber"`
	AccountName   string `json:"accountName"`
	BankName      string `json:"bankName"`
}

// PaymentStatusChanged records CONFIRMED, REJECTED, CANCELLED and ERROR.
type PaymentStatusChanged struct {
	Status string    `json:"status"`
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by,omitempty"` // who asked: ByMerchant, ByCustomer, ByOperator; omitted: not recorded
	At     time.Time `json:"at"`
}

// Who asked for a payment's status change (PaymentStatusChanged.By).
const (
	ByMerchant = "merchant" // the merchant API (POST /api/v1/payments/{id}/cancel)
	ByCustomer = "customer" // the hosted payment page
	ByOperator = "operator" // the admin API (the sandbox gateway's routes)
)

// PaymentStatusProcessed records money received for a payment, where it was
// allocated, and the balanced postings it made.
type PaymentProcessed struct {
	At         time.Time       `json:"at"`
	PaidAmount decimal.Decimal `json:"paid_amount"` // in the payment currency
	Allocation string          `json:"allocation"`
	Late       bool            `json:"late,omitempty"`
	Postings   []Posting       `json:"postings"`
}

// PaymentReceiptHeld records money the gateway received for a payment in
// a final status (CANCELLED, REJECTED, ERROR, or PROCESSED: an arrival
// after the one its payment.processed recorded): it is held in the
// merchant's suspense account, as a suspense allocation of
// payment.processed is, and the payment's status does not change (SPEC §3:
// those statuses are final). A payment may hold several: money can arrive
// twice.
type PaymentReceiptHeld struct {
	At         time.Time       `json:"at"`
	PaidAmount decimal.Decimal `json:"paid_amount"` // in the payment currency
	Reason     string          `json:"reason,omitempty"`
	By         string          `json:"by,omitempty"` // who recorded it: ByOperator
	Postings   []Posting       `json:"postings"`
}

// Posting is one double-entry line. Debits are positive, credits negative;
// the postings of one event sum to zero in every currency.
type Posting struct {
	Account  string          `json:"account"`
	Currency string          `json:"currency"`
	Amount   decimal.Decimal `json:"amount"`
}

// Ledger accounts. Merchant accounts end with ":<merchant id>".
const (
	AccountClearing    = "gateway_clearing"     // fiat received by a gateway: "gateway_clearing:<gateway id>"
	AccountConversion  = "conversion"           // fiat turned into USDT
	AccountAvailable   = "merchant_available"   // USDT the merchant can withdraw
	AccountSuspense    = "merchant_suspense"    // money received but not allocated to an invoice
	AccountOverpayment = "merchant_overpayment" // excess owed back to customers
	AccountFeeIncome   = "fee_income"           // the operator's commission
)

// WidgetCreated starts a payment widget's stream.
type WidgetCreated struct {
	WidgetID           string          `json:"widget_id"` // UUID
	MerchantID         string          `json:"merchant_id"`
	Kind               string          `json:"kind"`
	Currencies         []string        `json:"currencies"` // settlement currencies, in the order given
	Description        string          `json:"description,omitempty"`
	LogoURL            string          `json:"logo_url,omitempty"`
	ReturnURL          string          `json:"return_url,omitempty"`
	SupportURL         string          `json:"support_url,omitempty"`
	MerchantExternalID string          `json:"merchant_external_id,omitempty"`
	FiatCurrency       string          `json:"fiat_currency,omitempty"` // single only
	FiatAmount         decimal.Decimal `json:"fiat_amount,omitzero"`    // single only
	CreatedAt          time.Time       `json:"created_at"`
	ExpiresAt          time.Time       `json:"expires_at,omitzero"` // zero: never
}

// WidgetStatusChanged records active, disabled and expired.
type WidgetStatusChanged struct {
	Status string    `json:"status"`
	At     time.Time `json:"at"`
}

// GatewaySwitched records the operator enabling (gateway.enabled) or
// disabling (gateway.disabled) a configured gateway. A gateway with no such
// event is enabled.
type GatewaySwitched struct {
	GatewayID string    `json:"gateway_id"`
	At        time.Time `json:"at"`
}
