package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/internal/ids"
	"github.com/payledger/payledger/projections"
)

// accountStamp is what seed 000's requests carry besides their own fields:
// the merchant account id and a millisecond timestamp. Both are optional
// here (the API key already names the merchant); when given they are checked.
// (Request structs repeat the two fields rather than embed this one, so
// that decoding errors name "timestamp", not a Go type.)
type accountStamp struct {
	AccountID string
	Timestamp *int64
}

// checkStamp refuses an account_id other than the caller's (404, as for any
// other merchant's resource) and a timestamp off by more than the window.
func (s *Server) checkStamp(c *call, st accountStamp) error {
	if st.AccountID != "" && commands.CanonicalUUID(st.AccountID) != c.merchantID {
		return newError(CodeNotFound, "Account not found",
			Detail{Path: "account_id", Type: "not_found", Message: "account_id is not the account of this API key"})
	}
	if st.Timestamp != nil {
		at := time.UnixMilli(*st.Timestamp)
		if d := s.now().Sub(at); d > s.cfg.SignatureWindow || d < -s.cfg.SignatureWindow {
			msg := fmt.Sprintf("timestamp must be the current Unix time in milliseconds, within %s of the server's time", s.cfg.SignatureWindow)
			return newError(CodeTimestampInvalid, msg, Detail{Path: "timestamp", Type: "timestamp_invalid", Message: msg})
		}
	}
	return nil
}

// queryStamp reads seed 000's account_id and timestamp from a GET's query.
func queryStamp(q url.Values) (accountStamp, error) {
	st := accountStamp{AccountID: q.Get("account_id")}
	if v := q.Get("timestamp"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return st, newError(CodeTimestampInvalid, "timestamp must be Unix time in milliseconds",
				Detail{Path: "timestamp", Type: "int_parsing", Message: "timestamp must be Unix time in milliseconds"})
		}
		st.Timestamp = &n
	}
	return st, nil
}

type createWidgetRequest struct {
	AccountID          string   `json:"account_id"`
	Timestamp          *int64   `json:"timestamp"`
	ExternalID         string   `json:"external_id"`
	Type               string   `json:"type"`
	Currencies         []string `json:"currencies"`
	Description        string   `json:"description"`
	LogoURL            string   `json:"logo_url"`
	ReturnURL          string   `json:"return_url"`
	SupportURL         string   `json:"support_url"`
	MerchantExternalID string   `json:"merchant_external_id"`
	FiatCurrency       string   `json:"fiat_currency"`
	FiatAmount         string   `json:"fiat_amount"`
	ExpiresAt          string   `json:"expires_at"`
}

// widgetBody is a payment widget as the API shows it (seed 000's fields).
type widgetBody struct {
	ExternalID         string   `json:"external_id"`
	Type               string   `json:"type"`
	Status             string   `json:"status"`
	Currencies         []string `json:"currencies"`
	Description        string   `json:"description"`
	LogoURL            string   `json:"logo_url"`
	ReturnURL          string   `json:"return_url"`
	SupportURL         string   `json:"support_url"`
	MerchantExternalID string   `json:"merchant_external_id"`
	FiatCurrency       string   `json:"fiat_currency,omitempty"`
	FiatAmount         string   `json:"fiat_amount,omitempty"`
	WidgetLink         string   `json:"widget_link"`
	CreatedAt          string   `json:"created_at"`
	ExpiresAt          *string  `json:"expires_at"`
}

type widgetList struct {
	Items       []widgetBody            `json:"items"`
	PageDetails projections.PageDetails `json:"page_details"`
}

func (s *Server) widgetBody(v projections.WidgetView) widgetBody {
	b := widgetBody{
		ExternalID: v.ID, Type: v.Type, Status: v.Status, Currencies: v.Currencies, Description: v.Description,
		LogoURL: v.LogoURL, ReturnURL: v.ReturnURL, SupportURL: v.SupportURL, MerchantExternalID: v.MerchantExternalID,
		FiatCurrency: v.FiatCurrency, FiatAmount: v.FiatAmount,
		WidgetLink: s.cfg.BaseURL + "/w/" + url.PathEscape(v.ID),
		CreatedAt:  v.CreatedAt.UTC().Format(time.RFC3339),
	}
	if b.Currencies == nil {
		b.Currencies = []string{}
	}
	if v.ExpiresAt != nil {
		t := v.ExpiresAt.UTC().Format(time.RFC3339)
		b.ExpiresAt = &t
	}
	return b
}

func (s *Server) readWidget(c *call, id string, status int) (int, any, error) {
	v, err := s.views.Widget(c.merchantID, id)
	if err != nil {
		return 0, nil, err
	}
	return status, s.widgetBody(v), nil
}

// createWidget is POST /api/v1/widgets: 201 with the widget.
func (s *Server) createWidget(c *call) (int, any, error) {
	var req createWidgetRequest
	if err := decode(c.body, &req, false); err != nil {
		return 0, nil, err
	}
	if err := s.checkStamp(c, accountStamp{req.AccountID, req.Timestamp}); err != nil {
		return 0, nil, err
	}
	var expires time.Time
	if req.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339, req.ExpiresAt)
		if err != nil {
			return 0, nil, badField("expires_at", "datetime_parsing", "expires_at must be an RFC 3339 time such as 2026-02-25T12:20:00Z")
		}
		expires = t
	}
	w, err := s.svc.CreateWidget(c.ctx, commands.CreateWidget{
		Meta: c.meta, MerchantID: c.merchantID, WidgetID: req.ExternalID, NewID: ids.New(),
		Kind: req.Type, Currencies: req.Currencies, Description: req.Description,
		LogoURL: req.LogoURL, ReturnURL: req.ReturnURL, SupportURL: req.SupportURL,
		MerchantExternalID: req.MerchantExternalID, FiatCurrency: req.FiatCurrency, FiatAmount: req.FiatAmount,
		ExpiresAt: expires, RequestKey: c.requestKey,
	})
	if id, ok, rerr := repeated(c, err, commands.StreamWidget); ok || rerr != nil {
		if rerr != nil {
			return 0, nil, rerr
		}
		return s.readWidget(c, id, http.StatusCreated) // the widget the first attempt made
	}
	if err != nil {
		return 0, nil, withField(err, commands.ErrDuplicateWidget, "external_id")
	}
	return s.readWidget(c, w.WidgetID, http.StatusCreated)
}

// widgetID is the {id} of a widget route. A widget's id is a UUID, kept in
// lower case (CreateWidget lowers a merchant's own); the same UUID in upper
// or mixed case, as the merchant may have generated it, names it too.
func widgetID(c *call) string { return strings.ToLower(c.r.PathValue("id")) }

// getWidget is GET /api/v1/widgets/{id}.
func (s *Server) getWidget(c *call) (int, any, error) {
	st, err := queryStamp(c.r.URL.Query())
	if err != nil {
		return 0, nil, err
	}
	if err := s.checkStamp(c, st); err != nil {
		return 0, nil, err
	}
	return s.readWidget(c, widgetID(c), http.StatusOK)
}

// listWidgets is GET /api/v1/widgets?page=&page_size=.
func (s *Server) listWidgets(c *call) (int, any, error) {
	q := c.r.URL.Query()
	st, err := queryStamp(q)
	if err != nil {
		return 0, nil, err
	}
	if err := s.checkStamp(c, st); err != nil {
		return 0, nil, err
	}
	page, size, err := pageParams(q)
	if err != nil {
		return 0, nil, err
	}
	p, err := s.views.ListWidgets(c.merchantID, page, size)
	if err != nil {
		return 0, nil, err
	}
	out := widgetList{Items: make([]widgetBody, 0, len(p.Items)), PageDetails: p.Details}
	for _, v := range p.Items {
		out.Items = append(out.Items, s.widgetBody(v))
	}
	return http.StatusOK, out, nil
}

type widgetStatusRequest struct {
	AccountID string `json:"account_id"`
	Timestamp *int64 `json:"timestamp"`
	Status    string `json:"status"`
}

// changeWidgetStatus is POST /api/v1/widgets/{id}/status: active or disabled.
func (s *Server) changeWidgetStatus(c *call) (int, any, error) {
	var req widgetStatusRequest
	if err := decode(c.body, &req, false); err != nil {
		return 0, nil, err
	}
	if err := s.checkStamp(c, accountStamp{req.AccountID, req.Timestamp}); err != nil {
		return 0, nil, err
	}
	switch req.Status {
	case commands.WidgetStatusActive, commands.WidgetStatusDisabled:
	case "":
		return 0, nil, badField("status", "missing", "status is required: active or disabled")
	default:
		return 0, nil, badField("status", "enum", "status must be active or disabled")
	}
	id := widgetID(c)
	if _, err := s.svc.ChangeWidgetStatus(c.ctx, commands.ChangeWidgetStatus{Meta: c.meta, MerchantID: c.merchantID, WidgetID: id, Status: req.Status}); err != nil {
		return 0, nil, err
	}
	return s.readWidget(c, id, http.StatusOK)
}

type widgetInvoiceRequest struct {
	AccountID  string `json:"account_id"`
	Timestamp  *int64 `json:"timestamp"`
	Amount     string `json:"amount"`
	Method     string `json:"method"`
	CustomerID string `json:"customer_id"`
}

// createWidgetInvoice is POST /api/v1/widgets/{id}/invoices: an invoice made
// from the merchant's widget, 201 with seed 003's body.
func (s *Server) createWidgetInvoice(c *call) (int, any, error) {
	var req widgetInvoiceRequest
	if err := decode(c.body, &req, true); err != nil {
		return 0, nil, err
	}
	if err := s.checkStamp(c, accountStamp{req.AccountID, req.Timestamp}); err != nil {
		return 0, nil, err
	}
	id := widgetID(c)
	w, err := s.svc.LoadWidget(c.ctx, c.merchantID, id)
	if err != nil {
		return 0, nil, err
	}
	if err := s.limitCustomer(c, req.CustomerID); err != nil {
		return 0, nil, err
	}
	rate, err := s.rateFor(commands.WidgetInvoiceCurrency(w, req.Method))
	if err != nil {
		return 0, nil, err
	}
	inv, err := s.svc.CreateWidgetInvoice(c.ctx, commands.CreateWidgetInvoice{
		Meta: c.meta, InvoiceID: ids.New(), WidgetID: w.WidgetID,
		Amount: req.Amount, Method: req.Method, CustomerID: req.CustomerID, Rate: rate,
		MerchantID: c.merchantID, RequestKey: c.requestKey,
	})
	if v, ok, rerr := s.repeatedInvoice(c, err); ok || rerr != nil {
		if rerr != nil {
			return 0, nil, rerr
		}
		return http.StatusCreated, v.Body(s.paymentLink(v.InvoiceID)), nil
	}
	if err != nil {
		err = withField(err, commands.ErrMethodInvalid, "method")
		// A single widget's currency is its own, not the request's: with
		// no payable method in it, the choice missing is the method.
		err = withField(err, commands.ErrNoPayableMethod, "method")
		if w.Kind == commands.WidgetUnlimited {
			err = withField(err, commands.ErrCurrencyInvalid, "method")
		}
		return 0, nil, err
	}
	return s.createdInvoice(c, inv)
}
