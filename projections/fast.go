package projections

import (
	"reflect"
	"strings"
	"time"

	"github.com/payledger/payledger/commands"
)

// Fast decoders of the hot event types: the ones a replay meets per invoice
// and payment. Each returns false when it gives up (see lexer), and the
// caller then runs encoding/json. The known-key lists come from the structs'
// tags, so a field added to a struct but not here makes the fast path give
// up rather than drop it.

// jsonNames returns the JSON names of a struct's fields.
func jsonNames(v any) []string {
	t := reflect.TypeOf(v)
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		out = append(out, name)
	}
	return out
}

var (
	namesInvoiceCreated  = jsonNames(commands.InvoiceCreated{})
	namesInvoiceCanceled = jsonNames(commands.InvoiceCancelled{})
	namesInvoiceExpired  = jsonNames(commands.InvoiceExpired{})
	namesInvoicePaid     = jsonNames(commands.InvoicePaid{})
	namesPaymentCreated  = jsonNames(commands.PaymentCreated{})
	namesPaymentExtra    = jsonNames(commands.PaymentExtra{})
	namesPaymentStatus   = jsonNames(commands.PaymentStatusChanged{})
	namesPaymentProc     = jsonNames(commands.PaymentProcessed{})
	namesPosting         = jsonNames(commands.Posting{})
	namesWidgetCreated   = jsonNames(commands.WidgetCreated{})
	namesWidgetStatus    = jsonNames(commands.WidgetStatusChanged{})
)

// Mirrors of the event structs that carry decimals, with num for
// decimal.Decimal: what the hot path decodes into, sparing a big.Int per
// amount. mirror converts the commands struct that encoding/json decoded.
type (
	mInvoiceCreated struct {
		InvoiceID, MerchantID, Source, ExternalID                           string
		Amount                                                              num
		Currency, CustomerID, Purpose, CallbackURL, SuccessURL, FailURL     string
		ConversionRate, CommissionPercent, GrossUSDT, FeeUSDT, MerchantUSDT num
		CreatedAt, ExpiresAt                                                time.Time
		PaymentID, Tracking, Method, Account, Sender, StatusURL             string
		ExtraFields                                                         map[string]string
		WidgetID, MerchantExternalID                                        string
	}
	mInvoicePaid struct {
		PaymentID            string
		PaidAt               time.Time
		Late                 bool
		PaidAmount, Overpaid num
	}
	mPaymentCreated struct {
		PaymentID, InvoiceID, MerchantID, Method, GatewayID string
		Extra                                               commands.PaymentExtra
		PaymentCurrency                                     string
		PaymentAmount                                       num
		DestinationCurrency                                 string
		DestinationAmount                                   num
		CreatedAt                                           time.Time
	}
	mPaymentProcessed struct {
		At         time.Time
		PaidAmount num
		Allocation string
		Late       bool
		Postings   []mPosting
	}
	mPosting struct {
		Account, Currency string
		Amount            num
	}
	// mReceiptHeld: payment.receipt_held, decoded by encoding/json
	// (mirror); it is rare enough.
	mReceiptHeld struct {
		PaidAmount num
		Postings   []mPosting
	}
	mWidgetCreated struct {
		WidgetID, MerchantID, Kind                                      string
		Currencies                                                      []string
		Description, LogoURL, ReturnURL, SupportURL, MerchantExternalID string
		FiatCurrency                                                    string
		FiatAmount                                                      num
		CreatedAt, ExpiresAt                                            time.Time
	}
)

// newFast returns what the fast path decodes an event type into: a mirror
// or, for structs without decimals, the commands struct itself.
func newFast(typ string) any {
	switch typ {
	case commands.TypeInvoiceCreated:
		return new(mInvoiceCreated)
	case commands.TypeInvoicePaid:
		return new(mInvoicePaid)
	case commands.TypePaymentCreated:
		return new(mPaymentCreated)
	case commands.TypePaymentProcessed:
		return new(mPaymentProcessed)
	case commands.TypeWidgetCreated:
		return new(mWidgetCreated)
	case commands.TypeInvoiceCancelled:
		return new(commands.InvoiceCancelled)
	case commands.TypeInvoiceExpired:
		return new(commands.InvoiceExpired)
	case commands.TypePaymentConfirmed, commands.TypePaymentRejected,
		commands.TypePaymentCancelled, commands.TypePaymentFailed:
		return new(commands.PaymentStatusChanged)
	case commands.TypeWidgetStatusChanged, commands.TypeWidgetExpired:
		return new(commands.WidgetStatusChanged)
	}
	return nil
}

// mirror converts a commands struct encoding/json decoded into what the
// fast path would have decoded (the struct itself when it has no mirror).
func mirror(v any) any {
	switch d := v.(type) {
	case *commands.InvoiceCreated:
		return &mInvoiceCreated{
			InvoiceID: d.InvoiceID, MerchantID: d.MerchantID, Source: d.Source, ExternalID: d.ExternalID,
			Amount: numOf(d.Amount), Currency: d.Currency, CustomerID: d.CustomerID, Purpose: d.Purpose,
			CallbackURL: d.CallbackURL, SuccessURL: d.SuccessURL, FailURL: d.FailURL,
			ConversionRate: numOf(d.ConversionRate), CommissionPercent: numOf(d.CommissionPercent),
			GrossUSDT: numOf(d.GrossUSDT), FeeUSDT: numOf(d.FeeUSDT), MerchantUSDT: numOf(d.MerchantUSDT),
			CreatedAt: d.CreatedAt, ExpiresAt: d.ExpiresAt, PaymentID: d.PaymentID, Tracking: d.Tracking,
			Method: d.Method, Account: d.Account, Sender: d.Sender, StatusURL: d.StatusURL,
			ExtraFields: d.ExtraFields, WidgetID: d.WidgetID, MerchantExternalID: d.MerchantExternalID,
		}
	case *commands.InvoicePaid:
		return &mInvoicePaid{PaymentID: d.PaymentID, PaidAt: d.PaidAt, Late: d.Late,
			PaidAmount: numOf(d.PaidAmount), Overpaid: numOf(d.Overpaid)}
	case *commands.PaymentCreated:
		return &mPaymentCreated{
			PaymentID: d.PaymentID, InvoiceID: d.InvoiceID, MerchantID: d.MerchantID, Method: d.Method,
			GatewayID: d.GatewayID, Extra: d.Extra, PaymentCurrency: d.PaymentCurrency,
			PaymentAmount: numOf(d.PaymentAmount), DestinationCurrency: d.DestinationCurrency,
			DestinationAmount: numOf(d.DestinationAmount), CreatedAt: d.CreatedAt,
		}
	case *commands.PaymentProcessed:
		return &mPaymentProcessed{At: d.At, PaidAmount: numOf(d.PaidAmount), Allocation: d.Allocation, Late: d.Late,
			Postings: mirrorPostings(d.Postings)}
	case *commands.PaymentReceiptHeld:
		return &mReceiptHeld{PaidAmount: numOf(d.PaidAmount), Postings: mirrorPostings(d.Postings)}
	case *commands.WidgetCreated:
		return &mWidgetCreated{
			WidgetID: d.WidgetID, MerchantID: d.MerchantID, Kind: d.Kind, Currencies: d.Currencies,
			Description: d.Description, LogoURL: d.LogoURL, ReturnURL: d.ReturnURL, SupportURL: d.SupportURL,
			MerchantExternalID: d.MerchantExternalID, FiatCurrency: d.FiatCurrency,
			FiatAmount: numOf(d.FiatAmount), CreatedAt: d.CreatedAt, ExpiresAt: d.ExpiresAt,
		}
	}
	return v
}

// mirrorPostings converts postings as mirror does (nil stays nil).
func mirrorPostings(ps []commands.Posting) []mPosting {
	if ps == nil {
		return nil
	}
	out := make([]mPosting, len(ps))
	for i, p := range ps {
		out[i] = mPosting{Account: p.Account, Currency: p.Currency, Amount: numOf(p.Amount)}
	}
	return out
}

// fastDecode decodes data into v (from newFast) and reports whether it
// managed to; c (nil: none) interns repeated strings.
func fastDecode(data []byte, v any, c *cache) bool {
	l := newLexer(data)
	l.c = c
	switch d := v.(type) {
	case *mInvoiceCreated:
		l.object(func(k []byte) bool {
			switch string(k) {
			case "invoice_id":
				return l.str(&d.InvoiceID)
			case "merchant_id":
				return l.istr(&d.MerchantID)
			case "source":
				return l.istr(&d.Source)
			case "external_id":
				return l.str(&d.ExternalID)
			case "amount":
				return l.num(&d.Amount)
			case "currency":
				return l.istr(&d.Currency)
			case "customer_id":
				return l.str(&d.CustomerID)
			case "purpose":
				return l.istr(&d.Purpose)
			case "callback_url":
				return l.istr(&d.CallbackURL)
			case "success_url":
				return l.istr(&d.SuccessURL)
			case "fail_url":
				return l.istr(&d.FailURL)
			case "conversion_rate":
				return l.num(&d.ConversionRate)
			case "commission_percent":
				return l.num(&d.CommissionPercent)
			case "gross_usdt":
				return l.num(&d.GrossUSDT)
			case "fee_usdt":
				return l.num(&d.FeeUSDT)
			case "merchant_usdt":
				return l.num(&d.MerchantUSDT)
			case "created_at":
				return l.tm(&d.CreatedAt)
			case "expires_at":
				return l.tm(&d.ExpiresAt)
			case "payment_id":
				return l.str(&d.PaymentID)
			case "tracking":
				return l.str(&d.Tracking)
			case "method":
				return l.istr(&d.Method)
			case "account":
				return l.str(&d.Account)
			case "sender":
				return l.str(&d.Sender)
			case "status_url":
				return l.istr(&d.StatusURL)
			case "extra_fields":
				return l.stringMap(&d.ExtraFields)
			case "widget_id":
				return l.str(&d.WidgetID)
			case "merchant_external_id":
				return l.istr(&d.MerchantExternalID)
			}
			return l.unknown(k, namesInvoiceCreated)
		})
	case *commands.InvoiceCancelled:
		l.object(func(k []byte) bool {
			switch string(k) {
			case "reason":
				return l.istr(&d.Reason)
			case "cancelled_at":
				return l.tm(&d.CancelledAt)
			}
			return l.unknown(k, namesInvoiceCanceled)
		})
	case *commands.InvoiceExpired:
		l.object(func(k []byte) bool {
			if string(k) == "expired_at" {
				return l.tm(&d.ExpiredAt)
			}
			return l.unknown(k, namesInvoiceExpired)
		})
	case *mInvoicePaid:
		l.object(func(k []byte) bool {
			switch string(k) {
			case "payment_id":
				return l.str(&d.PaymentID)
			case "paid_at":
				return l.tm(&d.PaidAt)
			case "late":
				return l.boolean(&d.Late)
			case "paid_amount":
				return l.num(&d.PaidAmount)
			case "overpaid":
				return l.num(&d.Overpaid)
			}
			return l.unknown(k, namesInvoicePaid)
		})
	case *mPaymentCreated:
		l.object(func(k []byte) bool {
			switch string(k) {
			case "payment_id":
				return l.str(&d.PaymentID)
			case "invoice_id":
				return l.str(&d.InvoiceID)
			case "merchant_id":
				return l.istr(&d.MerchantID)
			case "method":
				return l.istr(&d.Method)
			case "gateway_id":
				return l.istr(&d.GatewayID)
			case "extra":
				// A repeated object merges, as encoding/json does.
				return l.object(func(k []byte) bool {
					switch string(k) {
					case "accountNumber":
						return l.istr(&d.Extra.AccountNumber)
					case "accountName":
						return l.istr(&d.Extra.AccountName)
					case "bankName":
						return l.istr(&d.Extra.BankName)
					}
					return l.unknown(k, namesPaymentExtra)
				})
			case "payment_currency":
				return l.istr(&d.PaymentCurrency)
			case "payment_amount":
				return l.num(&d.PaymentAmount)
			case "destination_currency":
				return l.istr(&d.DestinationCurrency)
			case "destination_amount":
				return l.num(&d.DestinationAmount)
			case "created_at":
				return l.tm(&d.CreatedAt)
			}
			return l.unknown(k, namesPaymentCreated)
		})
	case *commands.PaymentStatusChanged:
		l.object(func(k []byte) bool {
			switch string(k) {
			case "status":
				return l.istr(&d.Status)
			case "reason":
				return l.istr(&d.Reason)
			case "by":
				return l.istr(&d.By)
			case "at":
				return l.tm(&d.At)
			}
			return l.unknown(k, namesPaymentStatus)
		})
	case *mPaymentProcessed:
		seenPostings := false
		l.object(func(k []byte) bool {
			switch string(k) {
			case "at":
				return l.tm(&d.At)
			case "paid_amount":
				return l.num(&d.PaidAmount)
			case "allocation":
				return l.istr(&d.Allocation)
			case "late":
				return l.boolean(&d.Late)
			case "postings":
				// encoding/json would decode a repeated array into the
				// first one's elements: leave that to it.
				if seenPostings {
					return l.fail()
				}
				seenPostings = true
				ps := make([]mPosting, 0, 8)
				null := l.array(func() bool {
					var p mPosting
					ok := l.object(func(k []byte) bool {
						switch string(k) {
						case "account":
							return l.istr(&p.Account)
						case "currency":
							return l.istr(&p.Currency)
						case "amount":
							return l.num(&p.Amount)
						}
						return l.unknown(k, namesPosting)
					})
					ps = append(ps, p)
					return ok
				})
				if null {
					ps = nil
				}
				d.Postings = ps
				return l.ok
			}
			return l.unknown(k, namesPaymentProc)
		})
	case *mWidgetCreated:
		l.object(func(k []byte) bool {
			switch string(k) {
			case "widget_id":
				return l.str(&d.WidgetID)
			case "merchant_id":
				return l.istr(&d.MerchantID)
			case "kind":
				return l.istr(&d.Kind)
			case "currencies":
				return l.strings(&d.Currencies)
			case "description":
				return l.istr(&d.Description)
			case "logo_url":
				return l.istr(&d.LogoURL)
			case "return_url":
				return l.istr(&d.ReturnURL)
			case "support_url":
				return l.istr(&d.SupportURL)
			case "merchant_external_id":
				return l.istr(&d.MerchantExternalID)
			case "fiat_currency":
				return l.istr(&d.FiatCurrency)
			case "fiat_amount":
				return l.num(&d.FiatAmount)
			case "created_at":
				return l.tm(&d.CreatedAt)
			case "expires_at":
				return l.tm(&d.ExpiresAt)
			}
			return l.unknown(k, namesWidgetCreated)
		})
	case *commands.WidgetStatusChanged:
		l.object(func(k []byte) bool {
			switch string(k) {
			case "status":
				return l.istr(&d.Status)
			case "at":
				return l.tm(&d.At)
			}
			return l.unknown(k, namesWidgetStatus)
		})
	default:
		return false
	}
	return l.end()
}
