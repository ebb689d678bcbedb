package projections

import (
	"time"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/commands"
)

// InvoiceView is an invoice as the API shows it. The fields up to PaidAt are
// seed 003's GET body, with the same JSON names (payment_link is left to the
// HTTP layer, which knows its base URL); the rest are internal.
// Amounts are decimal strings at their display precision.
type InvoiceView struct {
	InvoiceID      string     `json:"invoice_id"`
	ExternalID     string     `json:"external_id"`
	Amount         string     `json:"amount"`          // at the currency's minor units: "1500.00"
	Currency       string     `json:"currency"`        // ISO 4217 code (or method currency for e-invoices)
	ConversionRate string     `json:"conversion_rate"` // at least two places: "41.50"
	MerchantUSDT   string     `json:"merchant_usdt"`   // after commission: "35.42"
	Status         string     `json:"status"`          // pending, success, expired, cancelled
	CustomerID     string     `json:"customer_id"`
	Purpose        string     `json:"purpose"`
	CallbackURL    string     `json:"callback_url"`
	SuccessURL     string     `json:"success_url"`
	FailURL        string     `json:"fail_url"`
	CreatedAt      time.Time  `json:"created_at"`
	ExpiresAt      time.Time  `json:"expires_at"`
	PaidAt         *time.Time `json:"paid_at"` // null until paid

	MerchantID         string            `json:"merchant_id"`
	Source             string            `json:"source"`  // api, einvoice, widget
	Version            uint64            `json:"version"` // the invoice stream's version at its last event the view shows (not invoice.payment_added)
	Method             string            `json:"method,omitempty"`
	Tracking           string            `json:"tracking,omitempty"`   // e-invoice tracking number
	PaymentID          string            `json:"payment_id,omitempty"` // e-invoice payment_id (the merchant's)
	StatusURL          string            `json:"status_url,omitempty"`
	Account            string            `json:"account,omitempty"`
	Sender             string            `json:"sender,omitempty"`
	ExtraFields        map[string]string `json:"extra_fields,omitempty"`
	WidgetID           string            `json:"widget_id,omitempty"`
	MerchantExternalID string            `json:"merchant_external_id,omitempty"`
	CommissionPercent  string            `json:"commission_percent"`
	GrossUSDT          string            `json:"gross_usdt"`
	FeeUSDT            string            `json:"fee_usdt"`
	Late               bool              `json:"late"`                  // paid after expires_at
	PaidBy             string            `json:"paid_by,omitempty"`     // stream id of the payment that paid it
	PaidAmount         string            `json:"paid_amount,omitempty"` // in the paying payment's currency
	Overpaid           string            `json:"overpaid,omitempty"`    // excess over the expected amount
	CancelReason       string            `json:"cancel_reason,omitempty"`
	UpdatedAt          time.Time         `json:"updated_at"` // time of the last event
}

// InvoiceBody is exactly seed 003's GET body (and invoice webhook body),
// its fields in the order of the seed's example response: alphabetical,
// with paid_at (absent from the example) in its alphabetical place.
//
// An e-invoice's body (seed 001) also carries account, payment_id and
// tracking, in their alphabetical places, so its webhook can be matched to
// the merchant's payment_id; for any other invoice they are nil and left
// out, and the body is seed 003's alone. payment_id is a string even when
// the merchant sent a number: the log keeps its text (123 and "123" are
// one id), not its JSON type.
type InvoiceBody struct {
	Account        *string `json:"account,omitempty"` // e-invoices only; "" when none was given
	Amount         string  `json:"amount"`
	CallbackURL    string  `json:"callback_url"`
	ConversionRate string  `json:"conversion_rate"`
	CreatedAt      string  `json:"created_at"`
	Currency       string  `json:"currency"`
	CustomerID     string  `json:"customer_id"`
	ExpiresAt      string  `json:"expires_at"`
	ExternalID     string  `json:"external_id"`
	FailURL        string  `json:"fail_url"`
	InvoiceID      string  `json:"invoice_id"`
	MerchantUSDT   string  `json:"merchant_usdt"`
	PaidAt         *string `json:"paid_at"`
	PaymentID      *string `json:"payment_id,omitempty"` // e-invoices only
	PaymentLink    string  `json:"payment_link"`
	Purpose        string  `json:"purpose"`
	Status         string  `json:"status"`
	SuccessURL     string  `json:"success_url"`
	Tracking       *string `json:"tracking,omitempty"` // e-invoices only
}

// Body returns seed 003's body for the invoice, with the payment link the
// HTTP layer computed. Times are RFC 3339 in UTC to the second, as the seed.
// An e-invoice's account, payment_id and tracking point into v.
func (v *InvoiceView) Body(paymentLink string) InvoiceBody {
	b := InvoiceBody{
		InvoiceID: v.InvoiceID, ExternalID: v.ExternalID, Amount: v.Amount, Currency: v.Currency,
		ConversionRate: v.ConversionRate, MerchantUSDT: v.MerchantUSDT, PaymentLink: paymentLink,
		Status: v.Status, CustomerID: v.CustomerID, Purpose: v.Purpose, CallbackURL: v.CallbackURL,
		SuccessURL: v.SuccessURL, FailURL: v.FailURL,
		CreatedAt: v.CreatedAt.UTC().Format(time.RFC3339),
		ExpiresAt: v.ExpiresAt.UTC().Format(time.RFC3339),
	}
	if v.PaidAt != nil {
		s := v.PaidAt.UTC().Format(time.RFC3339)
		b.PaidAt = &s
	}
	if v.Source == commands.SourceEInvoice {
		b.Account, b.PaymentID, b.Tracking = &v.Account, &v.PaymentID, &v.Tracking
	}
	return b
}

// PaymentExtra is seed 002's "extra": where the customer sends the money.
type PaymentExtra struct {
	AccountNumber string `json:"accountNumber"`
	AccountName   string `json:"accountName"`
	BankName      string `json:"bankName"`
}

// PaymentView is a payment as the API shows it. The fields up to CreatedAt
// are seed 002's GET body with its JSON names; the rest are internal.
type PaymentView struct {
	ID                  string       `json:"id"` // the global sequence of payment.created, in decimal
	GatewayID           string       `json:"gatewayId"`
	Status              string       `json:"status"` // PENDING, CONFIRMED, PROCESSED, REJECTED, CANCELLED, ERROR
	Extra               PaymentExtra `json:"extra"`
	PaymentCurrency     string       `json:"paymentCurrency"`
	PaymentAmount       string       `json:"paymentAmount"`
	DestinationCurrency string       `json:"destinationCurrency"` // USDT
	DestinationAmount   string       `json:"destinationAmount"`
	CreatedAt           time.Time    `json:"createdAt"`

	Stream     string    `json:"stream"` // "payment-<ulid>"
	InvoiceID  string    `json:"invoice_id"`
	MerchantID string    `json:"merchant_id"`
	Method     string    `json:"method"`
	Allocation string    `json:"allocation,omitempty"` // where a processed payment's money went
	Late       bool      `json:"late"`
	PaidAmount string    `json:"paid_amount,omitempty"` // what arrived, in the payment currency
	Reason     string    `json:"reason,omitempty"`      // of the last status change
	UpdatedAt  time.Time `json:"updated_at"`
	Version    uint64    `json:"version"`
	// HeldReceipts counts the payment's payment.receipt_held events: money
	// that arrived after it ended CANCELLED, REJECTED or ERROR, or after
	// the arrival its payment.processed recorded, held in the merchant's
	// suspense account; HeldAmount is their sum, in the payment currency
	// at its minor units ("" when none).
	HeldReceipts uint64 `json:"held_receipts,omitempty"`
	HeldAmount   string `json:"held_amount,omitempty"`
}

// PaymentBody is exactly seed 002's GET body (and payment webhook body).
type PaymentBody struct {
	ID                  string       `json:"id"`
	GatewayID           string       `json:"gatewayId"`
	Status              string       `json:"status"`
	Extra               PaymentExtra `json:"extra"`
	PaymentCurrency     string       `json:"paymentCurrency"`
	PaymentAmount       string       `json:"paymentAmount"`
	DestinationCurrency string       `json:"destinationCurrency"`
	DestinationAmount   string       `json:"destinationAmount"`
	CreatedAt           string       `json:"createdAt"`
}

// Body returns seed 002's body for the payment; createdAt is RFC 3339 in UTC
// with milliseconds, as the seed ("2023-09-26T13:29:34.172Z").
func (v *PaymentView) Body() PaymentBody {
	return PaymentBody{
		ID: v.ID, GatewayID: v.GatewayID, Status: v.Status, Extra: v.Extra,
		PaymentCurrency: v.PaymentCurrency, PaymentAmount: v.PaymentAmount,
		DestinationCurrency: v.DestinationCurrency, DestinationAmount: v.DestinationAmount,
		CreatedAt: v.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
	}
}

// WidgetView is a payment widget (seed 000).
type WidgetView struct {
	ID                 string     `json:"id"`         // the widget's external id (UUID)
	Type               string     `json:"type"`       // unlimited or single
	Status             string     `json:"status"`     // active, disabled, expired
	Currencies         []string   `json:"currencies"` // settlement currencies, in the order given
	Description        string     `json:"description"`
	LogoURL            string     `json:"logo_url"`
	ReturnURL          string     `json:"return_url"`
	SupportURL         string     `json:"support_url"`
	MerchantExternalID string     `json:"merchant_external_id"`    // given to every invoice made from the widget
	FiatCurrency       string     `json:"fiat_currency,omitempty"` // single only
	FiatAmount         string     `json:"fiat_amount,omitempty"`   // single only, at the currency's minor units
	CreatedAt          time.Time  `json:"created_at"`
	ExpiresAt          *time.Time `json:"expires_at"` // null: never

	MerchantID string    `json:"merchant_id"`
	Version    uint64    `json:"version"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// APIKeyInfo is an API key as a merchant's key list shows it: never its hash.
type APIKeyInfo struct {
	KeyID     string     `json:"key_id"`
	Prefix    string     `json:"prefix"`
	Label     string     `json:"label,omitempty"`
	IssuedAt  time.Time  `json:"issued_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

// MerchantView is a merchant's settings, keys and signing secret version.
type MerchantView struct {
	ID                     string       `json:"id"`
	Name                   string       `json:"name"`
	WebhookURL             string       `json:"webhook_url"`
	CommissionPercent      string       `json:"commission_percent"`
	InvoiceLifetimeSeconds int64        `json:"invoice_lifetime_seconds"`
	InvoicingEnabled       bool         `json:"invoicing_enabled"`
	Methods                []string     `json:"methods"` // enabled method codes; empty: all
	Disabled               bool         `json:"disabled"`
	APIKeys                []APIKeyInfo `json:"api_keys"`
	SecretVersion          int          `json:"signing_secret_version"`
	PreviousSecretVersion  int          `json:"previous_secret_version,omitempty"`
	PreviousValidUntil     *time.Time   `json:"previous_valid_until"`
	RegisteredAt           time.Time    `json:"registered_at"`
	UpdatedAt              time.Time    `json:"updated_at"`
	Version                uint64       `json:"version"`
}

// APIKey is the API key index entry for a key hash.
type APIKey struct {
	MerchantID string `json:"merchant_id"`
	KeyID      string `json:"key_id"`
	Revoked    bool   `json:"revoked"`
}

// Rate is the operator's rate for a currency: Rate units buy 1 USDT.
type Rate struct {
	Currency string    `json:"currency"`
	Rate     string    `json:"rate"`
	SetAt    time.Time `json:"set_at"`
}

// GatewayView is the operator's last switch of a gateway. A gateway with no
// view was never switched, and is enabled.
type GatewayView struct {
	ID        string    `json:"id"`
	Enabled   bool      `json:"enabled"`
	ChangedAt time.Time `json:"changed_at"`
}

// Balance is the sum of one account's postings in one currency. Debits are
// positive, credits negative (commands.Posting).
type Balance struct {
	Account  string          `json:"account"`
	Currency string          `json:"currency"`
	Amount   decimal.Decimal `json:"amount"`
}

// Due is an invoice or widget the expiry scheduler must expire at At.
type Due struct {
	Kind       string    `json:"kind"` // "invoice" or "widget"
	ID         string    `json:"id"`
	MerchantID string    `json:"merchant_id"`
	At         time.Time `json:"at"`
}

// Due kinds.
const (
	DueInvoice = "invoice"
	DueWidget  = "widget"
)

// PageDetails is seed 000's page object.
type PageDetails struct {
	PageNumber   int `json:"page_number"`
	PageSize     int `json:"page_size"`
	TotalPages   int `json:"total_pages"`
	TotalObjects int `json:"total_objects"`
}

// Page is one page of a list, newest first.
type Page[T any] struct {
	Items   []T         `json:"items"`
	Details PageDetails `json:"page_details"`
}

// Summary describes a set of views: what replay prints.
type Summary struct {
	Events        uint64                     `json:"events"`     // events applied, ignored types included
	Checkpoint    uint64                     `json:"checkpoint"` // last applied sequence
	Merchants     int                        `json:"merchants"`
	Invoices      map[string]uint64          `json:"invoices"` // by status
	Payments      map[string]uint64          `json:"payments"` // by status
	Widgets       map[string]uint64          `json:"widgets"`  // by status
	Balances      map[string][]Balance       `json:"balances"` // by merchant ("_": system accounts)
	PostingTotals map[string]decimal.Decimal `json:"posting_totals"`
}
