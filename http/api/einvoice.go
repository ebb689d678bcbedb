package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/internal/ids"
)

// einvoiceRequest is seed 001's body. payment_id and amount may each be a
// JSON number or a string; both are kept as their raw JSON text so a number
// is never read through float64.
type einvoiceRequest struct {
	PaymentID   json.RawMessage   `json:"payment_id"`
	Currency    string            `json:"currency"` // a payment method code, e.g. "visamaster.uah"
	Amount      json.RawMessage   `json:"amount"`
	Description string            `json:"description"`
	Account     string            `json:"account"`
	Sender      string            `json:"sender"`
	SuccessURL  string            `json:"success_url"`
	FailURL     string            `json:"fail_url"`
	StatusURL   string            `json:"status_url"`
	ExtraFields map[string]string `json:"extra_fields"`
}

// einvoiceResponse is seed 001's success body, with the invoice id and its
// payment link added (the customer pays there).
type einvoiceResponse struct {
	Tracking    string          `json:"tracking"`
	PaymentID   json.RawMessage `json:"payment_id"` // echoed as given: number or string
	InvoiceID   string          `json:"invoice_id"`
	PaymentLink string          `json:"payment_link"`
}

// parsePaymentID reads payment_id from a JSON string or integer. It
// returns the id's text and the JSON to echo.
func parsePaymentID(raw json.RawMessage) (string, json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", json.RawMessage(`""`), nil
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", nil, badField("payment_id", "string_type", "payment_id must be a string or an integer")
		}
		echo, _ := json.Marshal(s)
		return s, echo, nil
	case isJSONInteger(raw):
		return string(raw), append(json.RawMessage(nil), raw...), nil
	}
	return "", nil, badField("payment_id", "int_type", "payment_id must be a string or a whole number (no sign, fraction or exponent)")
}

// parseAmountText reads amount from a JSON string or number as its decimal
// text; commands.ParseAmount then checks the text's form and precision.
// number says it was a JSON number.
func parseAmountText(raw json.RawMessage) (text string, number bool, _ error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", false, nil
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false, badField("amount", "decimal_type", "amount must be a decimal string or number")
		}
		return s, false, nil
	case raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'):
		return string(raw), true, nil
	}
	return "", false, badField("amount", "decimal_type", "amount must be a decimal string or number such as 100.00")
}

// trimNumberZeros drops the trailing zeros of a JSON number's decimal
// places beyond places, and the dot if none are left: "1500.00" is 1500
// for XOF (0 places), "100.000" is "100.00" for UAH. Seed 001 sends the
// amount as a number ("amount": 100.00), and a number's trailing zeros
// say nothing of its precision: many JSON encoders write them, or drop
// them, as they please. A nonzero digit beyond places ("1500.50" for XOF)
// is kept, for ParseAmount to refuse; text that is not plain digits with
// one dot (an exponent, a sign) is returned unchanged.
func trimNumberZeros(text string, places int32) string {
	whole, frac, ok := strings.Cut(text, ".")
	if !ok || !isJSONInteger([]byte(whole)) || !isJSONInteger([]byte(frac)) {
		return text
	}
	for len(frac) > int(places) && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	if frac == "" {
		return whole
	}
	return whole + "." + frac
}

func isJSONInteger(b []byte) bool {
	if len(b) == 0 || len(b) > 64 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// createEInvoice is POST /api/einvoice/create (seed 001): 200 with the
// tracking number.
func (s *Server) createEInvoice(c *call) (int, any, error) {
	var req einvoiceRequest
	if err := decode(c.body, &req, false); err != nil {
		return 0, nil, err
	}
	paymentID, echo, err := parsePaymentID(req.PaymentID)
	if err != nil {
		return 0, nil, err
	}
	amount, number, err := parseAmountText(req.Amount)
	if err != nil {
		return 0, nil, err
	}
	// account is seed 001's customer: limited as create-invoice's customer_id.
	if err := s.limitCustomer(c, req.Account); err != nil {
		return 0, nil, err
	}
	var rate decimal.Decimal
	if m, ok := commands.LookupMethod(req.Currency); ok {
		if rate, err = s.rateFor(m.Currency); err != nil {
			return 0, nil, err
		}
		if cur, ok := commands.LookupCurrency(m.Currency); ok && number {
			amount = trimNumberZeros(amount, cur.MinorUnits)
		}
	}
	inv, err := s.svc.CreateEInvoice(c.ctx, commands.CreateEInvoice{
		Meta: c.meta, InvoiceID: ids.New(), MerchantID: c.merchantID,
		PaymentID: paymentID, Method: req.Currency, Amount: amount, Description: req.Description,
		Account: req.Account, Sender: req.Sender, SuccessURL: req.SuccessURL, FailURL: req.FailURL,
		StatusURL: req.StatusURL, ExtraFields: req.ExtraFields, Rate: rate, RequestKey: c.requestKey,
	})
	if v, ok, rerr := s.repeatedInvoice(c, err); ok || rerr != nil {
		if rerr != nil {
			return 0, nil, rerr
		}
		return http.StatusOK, einvoiceResponse{Tracking: v.Tracking, PaymentID: echo, InvoiceID: v.InvoiceID, PaymentLink: s.paymentLink(v.InvoiceID)}, nil
	}
	if err != nil {
		err = withField(err, commands.ErrMethodInvalid, "currency")
		err = withField(err, commands.ErrCurrencyInvalid, "currency")
		return 0, nil, withField(err, commands.ErrDuplicatePaymentID, "payment_id")
	}
	return http.StatusOK, einvoiceResponse{Tracking: inv.Tracking, PaymentID: echo, InvoiceID: inv.InvoiceID, PaymentLink: s.paymentLink(inv.InvoiceID)}, nil
}
