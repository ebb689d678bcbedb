package projections

import (
	"reflect"
	"strings"

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

// fastDecode decodes data into v (a pointer to one of the structs above)
// and reports whether it managed to.
func fastDecode(data []byte, v any) bool {
	l := newLexer(data)
	switch d := v.(type) {
	case *commands.InvoiceCreated:
		l.object(func(k []byte) bool {
			switch string(k) {
			case "invoice_id":
				return l.str(&d.InvoiceID)
			case "merchant_id":
				return l.str(&d.MerchantID)
			case "source":
				return l.str(&d.Source)
			case "external_id":
				return l.str(&d.ExternalID)
			case "amount":
				return l.dec(&d.Amount)
			case "currency":
				return l.str(&d.Currency)
			case "customer_id":
				return l.str(&d.CustomerID)
			case "purpose":
				return l.str(&d.Purpose)
			case "callback_url":
				return l.str(&d.CallbackURL)
			case "success_url":
				return l.str(&d.SuccessURL)
			case "fail_url":
				return l.str(&d.FailURL)
			case "conversion_rate":
				return l.dec(&d.ConversionRate)
			case "commission_percent":
				return l.dec(&d.CommissionPercent)
			case "gross_usdt":
				return l.dec(&d.GrossUSDT)
			case "fee_usdt":
				return l.dec(&d.FeeUSDT)
			case "merchant_usdt":
				return l.dec(&d.MerchantUSDT)
			case "created_at":
				return l.tm(&d.CreatedAt)
			case "expires_at":
				return l.tm(&d.ExpiresAt)
			case "payment_id":
				return l.str(&d.PaymentID)
			case "tracking":
				return l.str(&d.Tracking)
			case "method":
				return l.str(&d.Method)
			case "account":
				return l.str(&d.Account)
			case "sender":
				return l.str(&d.Sender)
			case "status_url":
				return l.str(&d.StatusURL)
			case "extra_fields":
				return l.stringMap(&d.ExtraFields)
			case "widget_id":
				return l.str(&d.WidgetID)
			case "merchant_external_id":
				return l.str(&d.MerchantExternalID)
			}
			return l.unknown(k, namesInvoiceCreated)
		})
	case *commands.InvoiceCancelled:
		l.object(func(k []byte) bool {
			switch string(k) {
			case "reason":
				return l.str(&d.Reason)
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
	case *commands.InvoicePaid:
		l.object(func(k []byte) bool {
			switch string(k) {
			case "payment_id":
				return l.str(&d.PaymentID)
			case "paid_at":
				return l.tm(&d.PaidAt)
			case "late":
				return l.boolean(&d.Late)
			case "paid_amount":
				return l.dec(&d.PaidAmount)
			case "overpaid":
				return l.dec(&d.Overpaid)
			}
			return l.unknown(k, namesInvoicePaid)
		})
	case *commands.PaymentCreated:
		l.object(func(k []byte) bool {
			switch string(k) {
			case "payment_id":
				return l.str(&d.PaymentID)
			case "invoice_id":
				return l.str(&d.InvoiceID)
			case "merchant_id":
				return l.str(&d.MerchantID)
			case "method":
				return l.str(&d.Method)
			case "gateway_id":
				return l.str(&d.GatewayID)
			case "extra":
				// A repeated object merges, as encoding/json does.
				return l.object(func(k []byte) bool {
					switch string(k) {
					case "accountNumber":
						return l.str(&d.Extra.AccountNumber)
					case "accountName":
						return l.str(&d.Extra.AccountName)
					case "bankName":
						return l.str(&d.Extra.BankName)
					}
					return l.unknown(k, namesPaymentExtra)
				})
			case "payment_currency":
				return l.str(&d.PaymentCurrency)
			case "payment_amount":
				return l.dec(&d.PaymentAmount)
			case "destination_currency":
				return l.str(&d.DestinationCurrency)
			case "destination_amount":
				return l.dec(&d.DestinationAmount)
			case "created_at":
				return l.tm(&d.CreatedAt)
			}
			return l.unknown(k, namesPaymentCreated)
		})
	case *commands.PaymentStatusChanged:
		l.object(func(k []byte) bool {
			switch string(k) {
			case "status":
				return l.str(&d.Status)
			case "reason":
				return l.str(&d.Reason)
			case "at":
				return l.tm(&d.At)
			}
			return l.unknown(k, namesPaymentStatus)
		})
	case *commands.PaymentProcessed:
		seenPostings := false
		l.object(func(k []byte) bool {
			switch string(k) {
			case "at":
				return l.tm(&d.At)
			case "paid_amount":
				return l.dec(&d.PaidAmount)
			case "allocation":
				return l.str(&d.Allocation)
			case "late":
				return l.boolean(&d.Late)
			case "postings":
				// encoding/json would decode a repeated array into the
				// first one's elements: leave that to it.
				if seenPostings {
					return l.fail()
				}
				seenPostings = true
				ps := []commands.Posting{}
				null := l.array(func() bool {
					var p commands.Posting
					ok := l.object(func(k []byte) bool {
						switch string(k) {
						case "account":
							return l.str(&p.Account)
						case "currency":
							return l.str(&p.Currency)
						case "amount":
							return l.dec(&p.Amount)
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
	case *commands.WidgetCreated:
		l.object(func(k []byte) bool {
			switch string(k) {
			case "widget_id":
				return l.str(&d.WidgetID)
			case "merchant_id":
				return l.str(&d.MerchantID)
			case "kind":
				return l.str(&d.Kind)
			case "currencies":
				return l.strings(&d.Currencies)
			case "description":
				return l.str(&d.Description)
			case "logo_url":
				return l.str(&d.LogoURL)
			case "return_url":
				return l.str(&d.ReturnURL)
			case "support_url":
				return l.str(&d.SupportURL)
			case "merchant_external_id":
				return l.str(&d.MerchantExternalID)
			case "fiat_currency":
				return l.str(&d.FiatCurrency)
			case "fiat_amount":
				return l.dec(&d.FiatAmount)
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
				return l.str(&d.Status)
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
