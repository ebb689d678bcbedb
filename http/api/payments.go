package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/projections"
)

type createPaymentRequest struct {
	Method string `json:"method"`
}

// paymentList is an invoice's payments, oldest first.
type paymentList struct {
	Items []projections.PaymentBody `json:"items"`
}

// createPayment is POST /api/v1/invoices/{invoice_id}/payments: 201 with
// seed 002's body.
func (s *Server) createPayment(c *call) (int, any, error) {
	var req createPaymentRequest
	if err := decode(c.body, &req, false); err != nil {
		return 0, nil, err
	}
	id := c.r.PathValue("invoice_id")
	inv, err := s.views.Invoice(c.merchantID, id)
	if err != nil {
		return 0, nil, err
	}
	var methodRate decimal.Decimal
	if m, ok := commands.LookupMethod(req.Method); ok && m.Currency != inv.Currency {
		if methodRate, err = s.rateFor(m.Currency); err != nil {
			return 0, nil, err
		}
	}
	_, seq, err := s.svc.CreatePayment(c.ctx, commands.CreatePayment{
		Meta: c.meta, PaymentID: ulid.Make(), InvoiceID: id, MerchantID: c.merchantID,
		Method: req.Method, MethodRate: methodRate, RequestKey: c.requestKey,
	})
	if pid, ok, rerr := repeated(c, err, commands.StreamPayment); ok || rerr != nil {
		if rerr != nil {
			return 0, nil, rerr
		}
		// The payment the first attempt made, as it is now.
		stream := commands.StreamID(commands.StreamPayment, pid)
		p, err := s.views.PaymentByStream(stream)
		if err != nil || p.MerchantID != c.merchantID {
			return 0, nil, fmt.Errorf("payment of a repeated request %s: %w", stream, errors.Join(err, projections.ErrNotFound))
		}
		return http.StatusCreated, p.Body(), nil
	}
	if err != nil {
		err = withField(err, commands.ErrMethodInvalid, "method")
		return 0, nil, withField(err, commands.ErrCurrencyInvalid, "method")
	}
	p, err := s.views.Payment(c.merchantID, seq)
	if err != nil {
		return 0, nil, fmt.Errorf("read payment %d: %w", seq, err)
	}
	return http.StatusCreated, p.Body(), nil
}

// getPayment is GET /api/v1/payments/{id}: seed 002's body exactly.
func (s *Server) getPayment(c *call) (int, any, error) {
	n, ok := paymentNumber(c.r.PathValue("id"))
	if !ok {
		return 0, nil, projections.ErrNotFound
	}
	p, err := s.views.Payment(c.merchantID, n)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, p.Body(), nil
}

// listInvoicePayments is GET /api/v1/invoices/{invoice_id}/payments.
func (s *Server) listInvoicePayments(c *call) (int, any, error) {
	id := c.r.PathValue("invoice_id")
	if _, err := s.views.Invoice(c.merchantID, id); err != nil {
		return 0, nil, err
	}
	ps, err := s.views.PaymentsForInvoice(id)
	if err != nil {
		return 0, nil, err
	}
	out := paymentList{Items: make([]projections.PaymentBody, 0, len(ps))}
	for i := range ps {
		out.Items = append(out.Items, ps[i].Body())
	}
	return http.StatusOK, out, nil
}

// paymentNumber parses a public payment id: a decimal integer, no sign.
func paymentNumber(s string) (uint64, bool) {
	if s == "" || len(s) > 20 || s[0] == '+' {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil && n > 0
}

// paymentStream returns the ULID a payment's stream is named by.
func paymentStream(p projections.PaymentView) (string, error) {
	id, ok := strings.CutPrefix(p.Stream, commands.StreamPayment+"-")
	if !ok {
		return "", fmt.Errorf("payment %s: stream %q: %w", p.ID, p.Stream, projections.ErrCorrupt)
	}
	return id, nil
}
