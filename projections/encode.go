package projections

import (
	"encoding/json"
	"strconv"
	"time"
)

// Hand-written JSON encoders for the views a replay writes most: invoices,
// payments and widgets. Their output is byte for byte json.Marshal's (field
// order, omitempty, HTML escaping, RFC 3339 times): anything unusual (a
// string that needs escaping, a map, a time outside years 0-9999) is handed
// to encoding/json. encode_test.go checks the equality on generated views,
// all fields set, so a field added to a view but not here fails the test.

// jsonEnc appends JSON to b; fallback is set when a value needs encoding/json.
type jsonEnc struct {
	b        []byte
	start    int // where the object's '{' is in b
	fallback bool
}

func (w *jsonEnc) key(k string) {
	if len(w.b) > w.start+1 {
		w.b = append(w.b, ',')
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
}

// safe reports whether json.Marshal writes s as is between quotes.
func safe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

func (w *jsonEnc) str(k, s string) {
	w.key(k)
	w.strVal(s)
}

func (w *jsonEnc) strVal(s string) {
	if safe(s) {
		w.b = append(w.b, '"')
		w.b = append(w.b, s...)
		w.b = append(w.b, '"')
		return
	}
	raw, err := json.Marshal(s)
	if err != nil {
		w.fallback = true
		return
	}
	w.b = append(w.b, raw...)
}

func (w *jsonEnc) strOmit(k, s string) {
	if s != "" {
		w.str(k, s)
	}
}

func (w *jsonEnc) boolean(k string, v bool) {
	w.key(k)
	w.b = strconv.AppendBool(w.b, v)
}

func (w *jsonEnc) uint(k string, v uint64) {
	w.key(k)
	w.b = strconv.AppendUint(w.b, v, 10)
}

func (w *jsonEnc) time(k string, t time.Time) {
	w.key(k)
	w.timeVal(t)
}

func (w *jsonEnc) timeVal(t time.Time) {
	if y := t.Year(); y < 0 || y > 9999 {
		w.fallback = true
		return
	}
	w.b = append(w.b, '"')
	w.b = t.AppendFormat(w.b, time.RFC3339Nano)
	w.b = append(w.b, '"')
}

func (w *jsonEnc) timePtr(k string, t *time.Time) {
	w.key(k)
	if t == nil {
		w.b = append(w.b, "null"...)
		return
	}
	w.timeVal(*t)
}

func (w *jsonEnc) strings(k string, s []string) {
	w.key(k)
	if s == nil {
		w.b = append(w.b, "null"...)
		return
	}
	w.b = append(w.b, '[')
	for i, e := range s {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.strVal(e)
	}
	w.b = append(w.b, ']')
}

func (w *jsonEnc) mapOmit(k string, m map[string]string) {
	if len(m) == 0 {
		return
	}
	w.key(k)
	raw, err := json.Marshal(m) // sorted keys, as encoding/json writes maps
	if err != nil {
		w.fallback = true
		return
	}
	w.b = append(w.b, raw...)
}

// encodeView returns v's JSON, exactly as json.Marshal(v) would.
func encodeView(dst []byte, v any) ([]byte, error) {
	w := jsonEnc{b: append(dst, '{'), start: len(dst)}
	switch v := v.(type) {
	case *InvoiceView:
		w.str("invoice_id", v.InvoiceID)
		w.str("external_id", v.ExternalID)
		w.str("amount", v.Amount)
		w.str("currency", v.Currency)
		w.str("conversion_rate", v.ConversionRate)
		w.str("merchant_usdt", v.MerchantUSDT)
		w.str("status", v.Status)
		w.str("customer_id", v.CustomerID)
		w.str("purpose", v.Purpose)
		w.str("callback_url", v.CallbackURL)
		w.str("success_url", v.SuccessURL)
		w.str("fail_url", v.FailURL)
		w.time("created_at", v.CreatedAt)
		w.time("expires_at", v.ExpiresAt)
		w.timePtr("paid_at", v.PaidAt)
		w.str("merchant_id", v.MerchantID)
		w.str("source", v.Source)
		w.uint("version", v.Version)
		w.strOmit("method", v.Method)
		w.strOmit("tracking", v.Tracking)
		w.strOmit("payment_id", v.PaymentID)
		w.strOmit("status_url", v.StatusURL)
		w.strOmit("account", v.Account)
		w.strOmit("sender", v.Sender)
		w.mapOmit("extra_fields", v.ExtraFields)
		w.strOmit("widget_id", v.WidgetID)
		w.strOmit("merchant_external_id", v.MerchantExternalID)
		w.str("commission_percent", v.CommissionPercent)
		w.str("gross_usdt", v.GrossUSDT)
		w.str("fee_usdt", v.FeeUSDT)
		w.boolean("late", v.Late)
		w.strOmit("paid_by", v.PaidBy)
		w.strOmit("paid_amount", v.PaidAmount)
		w.strOmit("overpaid", v.Overpaid)
		w.strOmit("cancel_reason", v.CancelReason)
		w.time("updated_at", v.UpdatedAt)
	case *PaymentView:
		w.str("id", v.ID)
		w.str("gatewayId", v.GatewayID)
		w.str("status", v.Status)
		w.key("extra")
		w.b = append(w.b, '{')
		w.b = append(w.b, `"accountNumber":`...)
		w.strVal(v.Extra.AccountNumber)
		w.b = append(w.b, `,"accountName":`...)
		w.strVal(v.Extra.AccountName)
		w.b = append(w.b, `,"bankName":`...)
		w.strVal(v.Extra.BankName)
		w.b = append(w.b, '}')
		w.str("paymentCurrency", v.PaymentCurrency)
		w.str("paymentAmount", v.PaymentAmount)
		w.str("destinationCurrency", v.DestinationCurrency)
		w.str("destinationAmount", v.DestinationAmount)
		w.time("createdAt", v.CreatedAt)
		w.str("stream", v.Stream)
		w.str("invoice_id", v.InvoiceID)
		w.str("merchant_id", v.MerchantID)
		w.str("method", v.Method)
		w.strOmit("allocation", v.Allocation)
		w.boolean("late", v.Late)
		w.strOmit("paid_amount", v.PaidAmount)
		w.strOmit("reason", v.Reason)
		w.time("updated_at", v.UpdatedAt)
		w.uint("version", v.Version)
	case *WidgetView:
		w.str("id", v.ID)
		w.str("type", v.Type)
		w.str("status", v.Status)
		w.strings("currencies", v.Currencies)
		w.str("description", v.Description)
		w.str("logo_url", v.LogoURL)
		w.str("return_url", v.ReturnURL)
		w.str("support_url", v.SupportURL)
		w.str("merchant_external_id", v.MerchantExternalID)
		w.strOmit("fiat_currency", v.FiatCurrency)
		w.strOmit("fiat_amount", v.FiatAmount)
		w.time("created_at", v.CreatedAt)
		w.timePtr("expires_at", v.ExpiresAt)
		w.str("merchant_id", v.MerchantID)
		w.uint("version", v.Version)
		w.time("updated_at", v.UpdatedAt)
	default:
		w.fallback = true
	}
	if w.fallback {
		raw, err := json.Marshal(v)
		return append(dst, raw...), err
	}
	return append(w.b, '}'), nil
}
