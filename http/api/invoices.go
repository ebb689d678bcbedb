package api

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/internal/ids"
	"github.com/payledger/payledger/projections"
)

// createInvoiceRequest is seed 003's create-invoice body.
type createInvoiceRequest struct {
	Amount       string `json:"amount"`
	CurrencyCode string `json:"currency_code"`
	CustomerID   string `json:"customer_id"`
	ExternalID   string `json:"external_id"`
	Purpose      string `json:"purpose"`
	CallbackURL  string `json:"callback_url"`
	SuccessURL   string `json:"success_url"`
	FailURL      string `json:"fail_url"`
}

// invoiceList is a page of seed 003 bodies with seed 000's page details.
type invoiceList struct {
	Items       []projections.InvoiceBody `json:"items"`
	PageDetails projections.PageDetails   `json:"page_details"`
}

// createInvoice is POST /api/v1/create-invoice: 201 with seed 003's body.
func (s *Server) createInvoice(c *call) (int, any, error) {
	var req createInvoiceRequest
	if err := decode(c.body, &req, false); err != nil {
		return 0, nil, err
	}
	if err := s.limitCustomer(c, req.CustomerID); err != nil {
		return 0, nil, err
	}
	rate, err := s.rateFor(req.CurrencyCode)
	if err != nil {
		return 0, nil, err
	}
	inv, err := s.svc.CreateInvoice(c.ctx, commands.CreateInvoice{
		Meta: c.meta, InvoiceID: ids.New(), MerchantID: c.merchantID,
		Amount: req.Amount, Currency: req.CurrencyCode, CustomerID: req.CustomerID, ExternalID: req.ExternalID,
		Purpose: req.Purpose, CallbackURL: req.CallbackURL, SuccessURL: req.SuccessURL, FailURL: req.FailURL,
		Rate: rate, RequestKey: c.requestKey,
	})
	if v, ok, rerr := s.repeatedInvoice(c, err); ok || rerr != nil {
		if rerr != nil {
			return 0, nil, rerr
		}
		return http.StatusCreated, v.Body(s.paymentLink(v.InvoiceID)), nil
	}
	if err != nil {
		err = withField(err, commands.ErrCurrencyInvalid, "currency_code")
		return 0, nil, withField(err, commands.ErrDuplicateExternalID, "external_id")
	}
	return s.createdInvoice(c, inv)
}

// createdInvoice answers an invoice creation (201, seed 003's body) from
// what the command decided: the view the same append stored, built again
// rather than read back and decoded.
func (s *Server) createdInvoice(c *call, inv *commands.Invoice) (int, any, error) {
	v, err := projections.CreatedInvoiceView(&inv.InvoiceCreated, inv.Version, c.meta.Time)
	if err != nil {
		return 0, nil, fmt.Errorf("invoice %s: %w", inv.InvoiceID, err)
	}
	return http.StatusCreated, v.Body(s.paymentLink(inv.InvoiceID)), nil
}

// repeatedInvoice answers a creation the log says is a retry
// (commands.RepeatedError, see idempotency.go): the invoice the first attempt
// made, as it is now. ok is false when err is not a retry.
func (s *Server) repeatedInvoice(c *call, err error) (v projections.InvoiceView, ok bool, _ error) {
	id, ok, err := repeated(c, err, commands.StreamInvoice)
	if !ok || err != nil {
		return v, false, err
	}
	if v, err = s.views.Invoice(c.merchantID, id); err != nil {
		return v, false, fmt.Errorf("invoice of a repeated request %s: %w", id, err)
	}
	return v, true, nil
}

// invoiceBody reads an invoice back from the views (read-your-writes).
func (s *Server) invoiceBody(c *call, id string, status int) (int, any, error) {
	v, err := s.views.Invoice(c.merchantID, id)
	if err != nil {
		return 0, nil, fmt.Errorf("read invoice %s: %w", id, err)
	}
	return status, v.Body(s.paymentLink(id)), nil
}

func (s *Server) paymentLink(invoiceID string) string {
	return s.cfg.BaseURL + "/pay/" + url.PathEscape(invoiceID)
}

// limitCustomer applies the per-customer_id rate limit (seed 003), under
// the id's customerKey. An id that is empty, or becomes empty so, is not
// limited per customer: leaving it out gets the same, and the per-key limit
// still holds.
func (s *Server) limitCustomer(c *call, customerID string) error {
	customerID = customerKey(customerID)
	if customerID == "" {
		return nil
	}
	key := c.merchantID + "\x00" + customerID
	if len(customerID) > 64 {
		// Validation counts characters, so an id it accepts may run to
		// hundreds of bytes: a long one is limited under its hash, which
		// keeps the buckets small whatever the body holds.
		sum := sha256.Sum256([]byte(customerID))
		key = c.merchantID + "\x01" + string(sum[:])
	}
	if wait, ok := s.custLimit.Allow(key, s.now()); !ok {
		return rateLimited(wait, "Too many invoices for this customer_id")
	}
	return nil
}

// customerKey is the form of a customer_id its rate limit is kept under,
// so that one customer cannot get a fresh bucket by writing the id another
// way: format characters (unicode.Cf: zero-width spaces and joiners, the
// byte order mark, bidirectional marks) dropped, spaces around trimmed,
// letters lower-cased. The invoice keeps the id as sent.
func customerKey(id string) string {
	id = strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, id)
	return strings.ToLower(strings.TrimSpace(id))
}

// rateFor reads the operator's current rate for a currency (zero when none
// is set, which the commands refuse as CURRENCY_INVALID).
func (s *Server) rateFor(currency string) (decimal.Decimal, error) {
	if currency == "" || len(currency) > 16 {
		return decimal.Zero, nil
	}
	r, err := s.views.Rate(currency)
	if errors.Is(err, projections.ErrNotFound) {
		return decimal.Zero, nil
	}
	if err != nil {
		return decimal.Zero, fmt.Errorf("read rate %s: %w", currency, err)
	}
	d, err := decimal.NewFromString(r.Rate)
	if err != nil {
		return decimal.Zero, fmt.Errorf("rate %s %q: %w", currency, r.Rate, projections.ErrCorrupt)
	}
	return d, nil
}

// invoiceID is the {invoice_id} of an invoice route. An invoice's id is
// UUID text in lower case (commands.UUID); the same UUID in upper or mixed
// case names it too.
func invoiceID(c *call) string { return commands.CanonicalUUID(c.r.PathValue("invoice_id")) }

// getInvoice is GET /api/v1/invoices/{invoice_id}.
func (s *Server) getInvoice(c *call) (int, any, error) {
	return s.invoiceBody(c, invoiceID(c), http.StatusOK)
}

// listInvoices is GET /api/v1/invoices?status=&page=&page_size=.
func (s *Server) listInvoices(c *call) (int, any, error) {
	q := c.r.URL.Query()
	status := q.Get("status")
	switch status {
	case "", commands.InvoiceStatusPending, commands.InvoiceStatusSuccess, commands.InvoiceStatusExpired, commands.InvoiceStatusCancelled:
	default:
		return 0, nil, badField("status", "enum", "status must be one of pending, success, expired, cancelled")
	}
	page, size, err := pageParams(q)
	if err != nil {
		return 0, nil, err
	}
	p, err := s.views.ListInvoices(c.merchantID, status, page, size)
	if err != nil {
		return 0, nil, err
	}
	out := invoiceList{Items: make([]projections.InvoiceBody, 0, len(p.Items)), PageDetails: p.Details}
	for i := range p.Items {
		out.Items = append(out.Items, p.Items[i].Body(s.paymentLink(p.Items[i].InvoiceID)))
	}
	return http.StatusOK, out, nil
}

// pageParams reads page (default 1) and page_size (default 20, at most 100).
func pageParams(q url.Values) (page, size int, err error) {
	p, err := uintParam(q, "page", 1, 1, 1_000_000)
	if err != nil {
		return 0, 0, err
	}
	n, err := uintParam(q, "page_size", projections.DefaultPageSize, 1, projections.MaxPageSize)
	if err != nil {
		return 0, 0, err
	}
	return int(p), int(n), nil
}

type cancelRequest struct {
	Reason string `json:"reason"`
}

// decodeCancel reads a cancel's optional body, {"reason"}, and returns
// the reason (at most 1024 bytes).
func decodeCancel(c *call) (string, error) {
	var req cancelRequest
	if err := decode(c.body, &req, true); err != nil {
		return "", err
	}
	if len(req.Reason) > 1024 {
		return "", badField("reason", "string_too_long", "reason must be at most 1024 characters")
	}
	return req.Reason, nil
}

// cancelInvoice is POST /api/v1/invoices/{invoice_id}/cancel.
func (s *Server) cancelInvoice(c *call) (int, any, error) {
	reason, err := decodeCancel(c)
	if err != nil {
		return 0, nil, err
	}
	id := invoiceID(c)
	if _, err := s.svc.CancelInvoice(c.ctx, commands.CancelInvoice{Meta: c.meta, MerchantID: c.merchantID, InvoiceID: id, Reason: reason}); err != nil {
		return 0, nil, err
	}
	return s.invoiceBody(c, id, http.StatusOK)
}
