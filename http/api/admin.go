package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/internal/ids"
	"github.com/payledger/payledger/keyring"
	"github.com/payledger/payledger/projections"
)

// merchantRequest is the body of POST and PATCH /admin/v1/merchants. Absent
// fields keep their value (their default on creation).
type merchantRequest struct {
	Name                   *string   `json:"name"`
	WebhookURL             *string   `json:"webhook_url"`
	CommissionPercent      *string   `json:"commission_percent"`
	InvoiceLifetimeSeconds *int64    `json:"invoice_lifetime_seconds"`
	Methods                *[]string `json:"methods"`
	InvoicingEnabled       *bool     `json:"invoicing_enabled"`
}

type merchantPatch struct {
	merchantRequest
	Disabled *bool `json:"disabled"`
}

func (m merchantRequest) settings() commands.MerchantSettings {
	st := commands.MerchantSettings{
		Name: m.Name, WebhookURL: m.WebhookURL, CommissionPercent: m.CommissionPercent,
		InvoicingEnabled: m.InvoicingEnabled, Methods: m.Methods,
	}
	if m.InvoiceLifetimeSeconds != nil {
		secs := *m.InvoiceLifetimeSeconds
		d := time.Duration(secs) * time.Second
		if secs < 0 || secs > 100*365*24*3600 {
			d = -time.Second // out of range either way; the command names the field
		}
		st.InvoiceLifetime = &d
	}
	return st
}

// newMerchantResponse shows the API key and signing secret once.
type newMerchantResponse struct {
	MerchantID    string `json:"merchant_id"`
	APIKey        string `json:"api_key"`
	KeyID         string `json:"key_id"`
	SigningSecret string `json:"signing_secret"`
}

// merchantBody is a merchant as the admin API answers it: merchant_id,
// the name every other admin answer gives it, and the view's fields,
// whose id is the same value, kept for the scripts that read it.
type merchantBody struct {
	MerchantID string `json:"merchant_id"`
	projections.MerchantView
}

func newMerchantBody(m projections.MerchantView) merchantBody {
	return merchantBody{MerchantID: m.ID, MerchantView: m}
}

// merchantList is a page of merchants, by id, with seed 000's page details.
type merchantList struct {
	Merchants   []merchantBody          `json:"merchants"`
	PageDetails projections.PageDetails `json:"page_details"`
}

// adminCreateMerchant is POST /admin/v1/merchants: 201 with the merchant's
// first API key and signing secret, shown once.
func (s *Server) adminCreateMerchant(c *call) (int, any, error) {
	var req merchantRequest
	if err := decode(c.body, &req, false); err != nil {
		return 0, nil, err
	}
	id := commands.UUID(ids.New())
	key, err := keyring.NewAPIKey()
	if err != nil {
		return 0, nil, err
	}
	secret := s.kr.SigningSecret(id, 1)
	err = s.svc.RegisterMerchant(c.ctx, commands.RegisterMerchant{
		Meta: c.meta, MerchantID: id, Settings: req.settings(),
		Key:        commands.APIKeyIssued{KeyID: key.ID, KeyHash: key.Hash, Prefix: key.Prefix, Label: "default"},
		Secret:     commands.SecretMaterial{SecretHash: keyring.SecretHash(secret)},
		RequestKey: c.requestKey,
	})
	if err != nil {
		return 0, nil, alreadyCreated(c, err, "registered merchant %s; its API key and signing secret were shown only in the first response: issue a key (POST /admin/v1/merchants/%[1]s/keys) and rotate the secret")
	}
	return http.StatusCreated, newMerchantResponse{MerchantID: id, APIKey: key.Key, KeyID: key.ID, SigningSecret: secret}, nil
}

// adminListMerchants is GET /admin/v1/merchants?page=&page_size=.
func (s *Server) adminListMerchants(c *call) (int, any, error) {
	page, size, err := pageParams(c.r.URL.Query())
	if err != nil {
		return 0, nil, err
	}
	p, err := s.views.ListMerchants(page, size)
	if err != nil {
		return 0, nil, err
	}
	out := merchantList{Merchants: make([]merchantBody, 0, len(p.Items)), PageDetails: p.Details}
	for _, m := range p.Items {
		out.Merchants = append(out.Merchants, newMerchantBody(m))
	}
	return http.StatusOK, out, nil
}

// merchantPathID is the {id} of a merchant route. A merchant's id is UUID
// text in lower case (commands.UUID); the same UUID in upper or mixed case
// names it too.
func merchantPathID(c *call) string { return commands.CanonicalUUID(c.r.PathValue("id")) }

// adminGetMerchant is GET /admin/v1/merchants/{id}.
func (s *Server) adminGetMerchant(c *call) (int, any, error) {
	m, err := s.views.Merchant(merchantPathID(c))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, newMerchantBody(m), nil
}

// adminPatchMerchant is PATCH /admin/v1/merchants/{id}: change settings.
func (s *Server) adminPatchMerchant(c *call) (int, any, error) {
	var req merchantPatch
	if err := decode(c.body, &req, false); err != nil {
		return 0, nil, err
	}
	st := req.settings()
	st.Disabled = req.Disabled
	if st == (commands.MerchantSettings{}) {
		return 0, nil, badBody("missing", "body must change at least one setting")
	}
	id := merchantPathID(c)
	if err := s.svc.ChangeMerchantSettings(c.ctx, commands.ChangeMerchantSettings{Meta: c.meta, MerchantID: id, Settings: st}); err != nil {
		return 0, nil, err
	}
	m, err := s.views.Merchant(id)
	if err != nil {
		return 0, nil, fmt.Errorf("read merchant %s: %w", id, err)
	}
	return http.StatusOK, newMerchantBody(m), nil
}

type issueKeyRequest struct {
	Label string `json:"label"`
}

type newKeyResponse struct {
	MerchantID string `json:"merchant_id"`
	KeyID      string `json:"key_id"`
	APIKey     string `json:"api_key"`
	Prefix     string `json:"prefix"`
}

// adminIssueKey is POST /admin/v1/merchants/{id}/keys: 201 with a new API
// key, shown once.
func (s *Server) adminIssueKey(c *call) (int, any, error) {
	var req issueKeyRequest
	if err := decode(c.body, &req, true); err != nil {
		return 0, nil, err
	}
	if utf8.RuneCountInString(req.Label) > 100 || !utf8.ValidString(req.Label) {
		return 0, nil, badField("label", "string_too_long", "label must be at most 100 characters")
	}
	id := merchantPathID(c)
	key, err := keyring.NewAPIKey()
	if err != nil {
		return 0, nil, err
	}
	err = s.svc.IssueAPIKey(c.ctx, commands.IssueAPIKey{Meta: c.meta, MerchantID: id,
		Key:        commands.APIKeyIssued{KeyID: key.ID, KeyHash: key.Hash, Prefix: key.Prefix, Label: req.Label},
		RequestKey: c.requestKey})
	if err != nil {
		return 0, nil, alreadyCreated(c, err, "issued an API key to merchant %s; the key was shown only in the first response: revoke the one you did not get and issue another")
	}
	return http.StatusCreated, newKeyResponse{MerchantID: id, KeyID: key.ID, APIKey: key.Key, Prefix: key.Prefix}, nil
}

type revokedKeyResponse struct {
	MerchantID string `json:"merchant_id"`
	KeyID      string `json:"key_id"`
	Revoked    bool   `json:"revoked"`
}

// alreadyCreated answers an operator's creation that the log says is a
// retry (commands.RepeatedError, see idempotency.go) whose stored answer is
// lost: the first attempt made the resource, but its API key or secret was
// shown once and is kept nowhere, so the answer is 409
// IDEMPOTENCY_KEY_REUSED naming the merchant (what, with one %s for the
// merchant id, says what the first attempt did). Other errors pass through.
func alreadyCreated(c *call, err error, what string) error {
	id, ok, rerr := repeated(c, err, commands.StreamMerchant)
	if rerr != nil || !ok {
		return errors.Join(rerr, err)
	}
	c.replayed = false // an error, not the first response again
	msg := "This Idempotency-Key already " + fmt.Sprintf(what, id)
	return newError(CodeIdempotencyReused, msg, Detail{Path: "Idempotency-Key", Type: "already_applied", Message: msg})
}

// adminRevokeKey is DELETE /admin/v1/merchants/{id}/keys/{key_id}.
func (s *Server) adminRevokeKey(c *call) (int, any, error) {
	id, keyID := merchantPathID(c), c.r.PathValue("key_id")
	if err := s.svc.RevokeAPIKey(c.ctx, commands.RevokeAPIKey{Meta: c.meta, MerchantID: id, KeyID: keyID}); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, revokedKeyResponse{MerchantID: id, KeyID: keyID, Revoked: true}, nil
}

type rotatedSecretResponse struct {
	MerchantID         string    `json:"merchant_id"`
	SigningSecret      string    `json:"signing_secret"`
	Version            int       `json:"version"`
	PreviousValidUntil time.Time `json:"previous_valid_until"`
}

// adminRotateSecret is POST /admin/v1/merchants/{id}/secret/rotate: the new
// signing secret, shown once; the previous one stays valid for
// Config.SecretOverlap.
func (s *Server) adminRotateSecret(c *call) (int, any, error) {
	if err := decode(c.body, &struct{}{}, true); err != nil {
		return 0, nil, err
	}
	id := merchantPathID(c)
	// The command decides the version (again after a concurrent rotation
	// took one), so the secret is derived for the version it decides.
	rot, err := s.svc.RotateSigningSecret(c.ctx, commands.RotateSigningSecret{Meta: c.meta, MerchantID: id,
		Secret: func(version int) commands.SecretMaterial {
			return commands.SecretMaterial{SecretHash: keyring.SecretHash(s.kr.SigningSecret(id, version))}
		},
		Overlap: s.cfg.SecretOverlap, RequestKey: c.requestKey})
	if _, ok, rerr := repeated(c, err, commands.StreamMerchant); rerr != nil || !ok {
		if err = errors.Join(rerr, err); err != nil {
			return 0, nil, err
		}
	}
	// A repeated request (its stored answer lost) gets the first answer
	// again: the secret is derived, so nothing shown once is lost.
	until := rot.RotatedAt
	if !rot.PreviousValidUntil.IsZero() {
		until = rot.PreviousValidUntil
	}
	return http.StatusOK, rotatedSecretResponse{MerchantID: id, SigningSecret: s.kr.SigningSecret(id, rot.Version), Version: rot.Version,
		PreviousValidUntil: until}, nil
}

type rateRequest struct {
	Currency string `json:"currency"`
	Rate     string `json:"rate"`
}

type rateList struct {
	Rates []projections.Rate `json:"rates"`
}

// adminSetRate is POST /admin/v1/rates: units of currency per 1 USDT.
func (s *Server) adminSetRate(c *call) (int, any, error) {
	var req rateRequest
	if err := decode(c.body, &req, false); err != nil {
		return 0, nil, err
	}
	d, err := s.svc.SetRate(c.ctx, commands.SetRate{Meta: c.meta, Currency: req.Currency, Rate: req.Rate, RequestKey: c.requestKey})
	var rep *commands.RepeatedError
	if errors.As(err, &rep) && rep.Stream == commands.StreamRates {
		// A repeated request (its stored answer lost) gets the first
		// answer again, from the rate it recorded; nothing is appended.
		c.replayed, err = true, nil
	}
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, projections.Rate{Currency: d.Currency, Rate: commands.FormatRate(d.Rate), SetAt: d.SetAt.UTC()}, nil
}

// adminListRates is GET /admin/v1/rates.
func (s *Server) adminListRates(c *call) (int, any, error) {
	rs, err := s.views.Rates()
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, rateList{Rates: rs}, nil
}

// adminPaymentBody is seed 002's body plus what the operator needs.
type adminPaymentBody struct {
	projections.PaymentBody
	InvoiceID  string `json:"invoice_id"`
	MerchantID string `json:"merchant_id"`
	Method     string `json:"method"`
	Allocation string `json:"allocation,omitempty"`
	PaidAmount string `json:"paid_amount,omitempty"`
	Late       bool   `json:"late"`
	Reason     string `json:"reason,omitempty"`
	// HeldReceipts and HeldAmount: money recorded after the payment ended
	// CANCELLED, REJECTED or ERROR, or after a PROCESSED payment's first
	// arrival (POST .../receipt), held in the merchant's suspense account.
	HeldReceipts uint64 `json:"held_receipts"`
	HeldAmount   string `json:"held_amount,omitempty"`
}

func adminPayment(p projections.PaymentView) adminPaymentBody {
	return adminPaymentBody{PaymentBody: p.Body(), InvoiceID: p.InvoiceID, MerchantID: p.MerchantID, Method: p.Method,
		Allocation: p.Allocation, PaidAmount: p.PaidAmount, Late: p.Late, Reason: p.Reason,
		HeldReceipts: p.HeldReceipts, HeldAmount: p.HeldAmount}
}

func (s *Server) adminPaymentView(c *call) (projections.PaymentView, error) {
	n, ok := paymentNumber(c.r.PathValue("id"))
	if !ok {
		return projections.PaymentView{}, projections.ErrNotFound
	}
	return s.views.PaymentByNumber(n)
}

// adminGetPayment is GET /admin/v1/payments/{id}: any merchant's payment.
func (s *Server) adminGetPayment(c *call) (int, any, error) {
	p, err := s.adminPaymentView(c)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, adminPayment(p), nil
}

type transitionRequest struct {
	Reason string `json:"reason"`
}

// adminTransition drives a sandbox payment to CONFIRMED, REJECTED or ERROR.
func (s *Server) adminTransition(status string) handler {
	return func(c *call) (int, any, error) {
		var req transitionRequest
		if err := decode(c.body, &req, true); err != nil {
			return 0, nil, err
		}
		p, err := s.adminPaymentView(c)
		if err != nil {
			return 0, nil, err
		}
		if err := s.transition(c, p, commands.PaymentTransition{Status: status, Reason: req.Reason, By: commands.ByOperator}); err != nil {
			return 0, nil, err
		}
		return s.adminPaymentAfter(p.Stream)
	}
}

type processRequest struct {
	PaidAmount string `json:"paid_amount"`
}

// adminProcess is POST /admin/v1/payments/{id}/process: the sandbox gateway
// received paid_amount (default: exactly the amount due).
func (s *Server) adminProcess(c *call) (int, any, error) {
	var req processRequest
	return s.adminPaymentCommand(c, &req, true, func(p projections.PaymentView, pid string) error {
		_, err := s.svc.ProcessPayment(c.ctx, commands.ProcessPayment{Meta: c.meta, PaymentID: pid, PaidAmount: req.PaidAmount})
		return err
	})
}

// adminPaymentCommand decodes an admin payment route's body into req (an
// empty body is refused unless emptyOK), finds the payment the path
// names, runs the command on it (pid: its stream's ULID) and answers the
// payment as it is afterwards.
func (s *Server) adminPaymentCommand(c *call, req any, emptyOK bool, run func(p projections.PaymentView, pid string) error) (int, any, error) {
	if err := decode(c.body, req, emptyOK); err != nil {
		return 0, nil, err
	}
	p, err := s.adminPaymentView(c)
	if err != nil {
		return 0, nil, err
	}
	pid, err := paymentStream(p)
	if err != nil {
		return 0, nil, err
	}
	if err := run(p, pid); err != nil {
		return 0, nil, err
	}
	return s.adminPaymentAfter(p.Stream)
}

type receiptRequest struct {
	PaidAmount string `json:"paid_amount"`
	Reason     string `json:"reason"`
}

// adminReceipt is POST /admin/v1/payments/{id}/receipt: the gateway
// received paid_amount for a payment that ended CANCELLED, REJECTED or
// ERROR, or again for a PROCESSED one; it is held in the merchant's
// suspense account and the payment's status stays (docs/payments.md).
func (s *Server) adminReceipt(c *call) (int, any, error) {
	var req receiptRequest
	return s.adminPaymentCommand(c, &req, false, func(p projections.PaymentView, pid string) error {
		_, err := s.svc.HoldReceipt(c.ctx, commands.HoldReceipt{Meta: c.meta, PaymentID: pid, PaidAmount: req.PaidAmount,
			Reason: req.Reason, RequestKey: c.requestKey})
		var rep *commands.RepeatedError
		if errors.As(err, &rep) && rep.Stream == p.Stream {
			// A repeated request (its stored answer lost) recorded its
			// receipt the first time: nothing is appended, and it gets
			// the payment as it is now.
			c.replayed, err = true, nil
		}
		return err
	})
}

func (s *Server) adminPaymentAfter(stream string) (int, any, error) {
	p, err := s.views.PaymentByStream(stream)
	if err != nil {
		return 0, nil, fmt.Errorf("read payment %s: %w", stream, err)
	}
	return http.StatusOK, adminPayment(p), nil
}

// gatewayBody is a configured gateway as the operator sees it.
type gatewayBody struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
	// ChangedAt is the operator's last switch; nil: never switched (enabled).
	ChangedAt *time.Time `json:"changed_at"`
	Methods   []string   `json:"methods"` // the catalogue's codes it serves, in catalogue order
}

type gatewayList struct {
	Gateways []gatewayBody `json:"gateways"`
}

// gateways returns the configured gateways, in routing order, with their
// switches as the views hold them.
func (s *Server) gateways() ([]gatewayBody, error) {
	switched, err := s.views.Gateways()
	if err != nil {
		return nil, err
	}
	last := make(map[string]projections.GatewayView, len(switched))
	for _, g := range switched {
		last[g.ID] = g
	}
	out := []gatewayBody{}
	for _, g := range s.svc.Gateways().All() {
		b := gatewayBody{ID: g.ID(), Name: g.Name(), Enabled: true, Methods: []string{}}
		if v, ok := last[g.ID()]; ok {
			at := v.ChangedAt
			b.Enabled, b.ChangedAt = v.Enabled, &at
		}
		for _, m := range commands.Methods() {
			if g.Supports(m) {
				b.Methods = append(b.Methods, m.Code)
			}
		}
		out = append(out, b)
	}
	return out, nil
}

// adminListGateways is GET /admin/v1/gateways.
func (s *Server) adminListGateways(c *call) (int, any, error) {
	gs, err := s.gateways()
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, gatewayList{Gateways: gs}, nil
}

// adminSwitchGateway is POST /admin/v1/gateways/{id}/enable and /disable:
// the gateway as it is after the switch. A switch to the state it is in
// appends nothing and answers the same.
func (s *Server) adminSwitchGateway(enabled bool) handler {
	return func(c *call) (int, any, error) {
		if err := decode(c.body, &struct{}{}, true); err != nil {
			return 0, nil, err
		}
		id := c.r.PathValue("id")
		if _, err := s.svc.SwitchGateway(c.ctx, commands.SwitchGateway{Meta: c.meta, GatewayID: id, Enabled: enabled}); err != nil {
			return 0, nil, err
		}
		gs, err := s.gateways()
		if err != nil {
			return 0, nil, fmt.Errorf("read gateway %s: %w", id, err)
		}
		for _, g := range gs {
			if g.ID == id {
				return http.StatusOK, g, nil
			}
		}
		return 0, nil, fmt.Errorf("read gateway %s: %w", id, projections.ErrNotFound)
	}
}
