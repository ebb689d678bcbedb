package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/internal/ids"
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
	id := invoiceID(c)
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
		Meta: c.meta, PaymentID: ids.New(), InvoiceID: id, MerchantID: c.merchantID,
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
	p, err := s.merchantPayment(c)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, p.Body(), nil
}

// merchantPayment reads the payment the path's {id} names, if the
// request's merchant owns it (else projections.ErrNotFound).
func (s *Server) merchantPayment(c *call) (projections.PaymentView, error) {
	n, ok := paymentNumber(c.r.PathValue("id"))
	if !ok {
		return projections.PaymentView{}, projections.ErrNotFound
	}
	return s.views.Payment(c.merchantID, n)
}

// cancelPayment is POST /api/v1/payments/{id}/cancel: the merchant drops
// a PENDING payment (CANCELLED, seed 002: "rejected by the user or
// merchant"); 200 with seed 002's body. Another merchant's payment is
// NOT_FOUND; a payment in a status the transition table does not let
// become CANCELLED is 409 INVALID_STATUS_TRANSITION, appending nothing.
func (s *Server) cancelPayment(c *call) (int, any, error) {
	reason, err := decodeCancel(c)
	if err != nil {
		return 0, nil, err
	}
	p, err := s.merchantPayment(c)
	if err != nil {
		return 0, nil, err
	}
	if err := s.transition(c, p, commands.PaymentTransition{MerchantID: c.merchantID,
		Status: commands.PaymentStatusCancelled, Reason: reason, By: commands.ByMerchant}); err != nil {
		return 0, nil, err
	}
	after, err := s.views.PaymentByStream(p.Stream)
	if err != nil {
		return 0, nil, fmt.Errorf("read payment %s: %w", p.Stream, err)
	}
	return http.StatusOK, after.Body(), nil
}

// listInvoicePayments is GET /api/v1/invoices/{invoice_id}/payments.
func (s *Server) listInvoicePayments(c *call) (int, any, error) {
	id := invoiceID(c)
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

// transition moves payment p as t says (its Meta and PaymentID are the
// call's and p's).
func (s *Server) transition(c *call, p projections.PaymentView, t commands.PaymentTransition) error {
	pid, err := paymentStream(p)
	if err != nil {
		return err
	}
	t.Meta, t.PaymentID = c.meta, pid
	_, err = s.svc.TransitionPayment(c.ctx, t)
	return err
}

// paymentStream returns the ULID a payment's stream is named by.
func paymentStream(p projections.PaymentView) (string, error) {
	id, ok := strings.CutPrefix(p.Stream, commands.StreamPayment+"-")
	if !ok {
		return "", fmt.Errorf("payment %s: stream %q: %w", p.ID, p.Stream, projections.ErrCorrupt)
	}
	return id, nil
}
