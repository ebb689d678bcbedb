// Package api is payledger's HTTP adapter for merchants and the operator: the
// merchant API of the seed documents (create-invoice, invoices, payments,
// widgets, e-invoices, methods, balance) behind X-Api-Key, the admin API
// behind a bearer token, health and metrics endpoints, and the OpenAPI
// description of all of them. It decodes and checks requests, turns them into
// commands, and reads answers back from the projections; it never decides
// anything the domain decides.
package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/internal/ratelimit"
	"github.com/payledger/payledger/keyring"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
)

// Server is the HTTP API. Build it with New; it is safe for concurrent use.
type Server struct {
	cfg     Config
	svc     *commands.Service
	views   *projections.Views
	store   *boltlog.Store
	kr      *keyring.Keyring
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time

	mux     *http.ServeMux
	routes  []string
	handler http.Handler

	idem      idemStore
	inflight  inflight
	stopping  chan struct{} // closed by Stopping: long polls answer at once
	stopOnce  sync.Once
	keyLimits *ratelimit.Set
	custLimit *ratelimit.Set
	feedLimit *ratelimit.Set
	authFails *ratelimit.Set // failed authentications per client address
	// authLogLimit bounds the "failed authentications limited" log lines.
	authLogLimit *ratelimit.Set
	replays      *replayCache
	// started is the clock when New built the server: a signed request
	// stamped earlier may have been accepted by an earlier process, whose
	// replay memory is gone, so it is refused (see verifySignature).
	started time.Time
}

// auth says who may call a route.
type auth int

const (
	authNone     auth = iota // health, metrics, OpenAPI, hosted pages
	authMerchant             // X-Api-Key
	authAdmin                // Authorization: Bearer
)

// handler is a JSON route: it returns the status and body of a success, or
// an error that writeError classifies.
type handler func(c *call) (status int, body any, err error)

// New builds the server and its routes.
//
// Errors: a required Config field is nil; ErrTrustedProxy for an invalid
// Config.TrustedProxies prefix; the idempotency database cannot be prepared.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Service == nil:
		return nil, errors.New("api: Config.Service is required")
	case cfg.Views == nil:
		return nil, errors.New("api: Config.Views is required")
	case cfg.Log == nil:
		return nil, errors.New("api: Config.Log is required")
	case cfg.Keyring == nil:
		return nil, errors.New("api: Config.Keyring is required")
	}
	cfg = cfg.withDefaults()
	proxies := make([]netip.Prefix, len(cfg.TrustedProxies))
	for i, p := range cfg.TrustedProxies {
		np, err := normalPrefix(p)
		if err != nil {
			return nil, fmt.Errorf("%w %v: %w", ErrTrustedProxy, p, err)
		}
		proxies[i] = np
	}
	cfg.TrustedProxies = proxies
	s := &Server{
		cfg: cfg, svc: cfg.Service, views: cfg.Views, store: cfg.Log, kr: cfg.Keyring,
		log: cfg.Logger, metrics: cfg.Metrics, now: cfg.Now,
		mux:          http.NewServeMux(),
		keyLimits:    ratelimit.New(cfg.KeyRate, cfg.KeyBurst),
		custLimit:    ratelimit.New(cfg.CustomerRate, cfg.CustomerBurst),
		feedLimit:    ratelimit.New(cfg.FeedRate, max(1, int(2*cfg.FeedRate))),
		authFails:    ratelimit.New(cfg.AuthFailRate, cfg.AuthFailBurst),
		authLogLimit: ratelimit.New(1, 5),
		replays:      newReplayCache(cfg.MaxSignaturesPerMerchant, cfg.MaxSignatures),
		stopping:     make(chan struct{}),
		started:      cfg.Now(),
	}
	seal := newSealer(cfg.Keyring)
	if cfg.IdempotencyDB != nil {
		st, err := newBoltIdem(cfg.IdempotencyDB, seal)
		if err != nil {
			return nil, err
		}
		s.idem = st
	} else {
		s.idem = newMemIdem(seal)
	}
	s.register()
	sort.Strings(s.routes)
	s.handler = s.outer(s.mux)
	return s, nil
}

// Stopping tells the server that its HTTP server is shutting down: waiting
// requests (the event feed's long polls) answer at once instead of holding
// the shutdown. Register it with http.Server.RegisterOnShutdown.
func (s *Server) Stopping() {
	s.stopOnce.Do(func() { close(s.stopping) })
}

// Handler is the server's root handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Routes lists every registered "METHOD pattern", sorted.
func (s *Server) Routes() []string { return append([]string(nil), s.routes...) }

// register declares every route: the one table of the API.
func (s *Server) register() {
	// Operations.
	s.ops("GET /healthz", http.HandlerFunc(s.healthz))
	s.ops("GET /readyz", http.HandlerFunc(s.readyz))
	s.ops("GET /metrics", s.metrics.handler())
	s.ops("GET /openapi.json", http.HandlerFunc(serveOpenAPI))

	// Merchant API (seeds 000, 002, 003).
	s.json("POST /api/v1/create-invoice", authMerchant, s.createInvoice)
	s.json("GET /api/v1/invoices", authMerchant, s.listInvoices)
	s.json("GET /api/v1/invoices/{invoice_id}", authMerchant, s.getInvoice)
	s.json("POST /api/v1/invoices/{invoice_id}/cancel", authMerchant, s.cancelInvoice)
	s.json("POST /api/v1/invoices/{invoice_id}/payments", authMerchant, s.createPayment)
	s.json("GET /api/v1/invoices/{invoice_id}/payments", authMerchant, s.listInvoicePayments)
	s.json("GET /api/v1/payments/{id}", authMerchant, s.getPayment)
	s.json("POST /api/v1/payments/{id}/cancel", authMerchant, s.cancelPayment)
	s.json("POST /api/v1/widgets", authMerchant, s.createWidget)
	s.json("GET /api/v1/widgets", authMerchant, s.listWidgets)
	s.json("GET /api/v1/widgets/{id}", authMerchant, s.getWidget)
	s.json("POST /api/v1/widgets/{id}/status", authMerchant, s.changeWidgetStatus)
	s.json("POST /api/v1/widgets/{id}/invoices", authMerchant, s.createWidgetInvoice)
	s.json("GET /api/v1/methods", authMerchant, s.listMethods)
	s.json("GET /api/v1/balance", authMerchant, s.balance)
	s.json("GET /api/v1/events", authMerchant, s.listEvents)

	// E-invoice API (seed 001).
	s.json("POST /api/einvoice/create", authMerchant, s.createEInvoice)
	s.json("GET /api/extrafields/list", authMerchant, s.extraFields)

	// Admin API (SPEC §8).
	s.json("POST /admin/v1/merchants", authAdmin, s.adminCreateMerchant)
	s.json("GET /admin/v1/merchants", authAdmin, s.adminListMerchants)
	s.json("GET /admin/v1/merchants/{id}", authAdmin, s.adminGetMerchant)
	s.json("PATCH /admin/v1/merchants/{id}", authAdmin, s.adminPatchMerchant)
	s.json("POST /admin/v1/merchants/{id}/keys", authAdmin, s.adminIssueKey)
	s.json("DELETE /admin/v1/merchants/{id}/keys/{key_id}", authAdmin, s.adminRevokeKey)
	s.json("POST /admin/v1/merchants/{id}/secret/rotate", authAdmin, s.adminRotateSecret)
	s.json("POST /admin/v1/rates", authAdmin, s.adminSetRate)
	s.json("GET /admin/v1/rates", authAdmin, s.adminListRates)
	s.json("GET /admin/v1/gateways", authAdmin, s.adminListGateways)
	s.json("POST /admin/v1/gateways/{id}/enable", authAdmin, s.adminSwitchGateway(true))
	s.json("POST /admin/v1/gateways/{id}/disable", authAdmin, s.adminSwitchGateway(false))
	s.json("GET /admin/v1/payments/{id}", authAdmin, s.adminGetPayment)
	s.json("POST /admin/v1/payments/{id}/confirm", authAdmin, s.adminTransition(commands.PaymentStatusConfirmed))
	s.json("POST /admin/v1/payments/{id}/process", authAdmin, s.adminProcess)
	s.json("POST /admin/v1/payments/{id}/reject", authAdmin, s.adminTransition(commands.PaymentStatusRejected))
	s.json("POST /admin/v1/payments/{id}/fail", authAdmin, s.adminTransition(commands.PaymentStatusError))
	s.json("POST /admin/v1/payments/{id}/receipt", authAdmin, s.adminReceipt)
	s.raw("GET /admin/v1/backup", http.HandlerFunc(s.adminBackup)) // admin auth inside; backup.go

	// Webhook deliveries (webhooks.Dispatcher.Handler), behind merchant auth.
	if s.cfg.Webhooks != nil {
		h := s.merchantHandler(s.cfg.Webhooks)
		for _, p := range []string{
			"GET /api/v1/webhooks/deliveries",
			"GET /api/v1/webhooks/deliveries/{id}",
			"POST /api/v1/webhooks/deliveries/{id}/redeliver",
			"POST /api/v1/webhooks/redeliver",
		} {
			s.raw(p, h)
		}
	}

	// Hosted pages (http/pages), HTML. They refuse requests themselves
	// once the log has failed (pages.Config.Failed), in HTML. Mounted for
	// every method: the pages answer a method a path does not take with
	// their own HTML 405 and that path's Allow (a PUT on /pay/{id} is
	// "GET, HEAD", not the mount's methods), and a path they do not serve
	// with their 404.
	if s.cfg.Pages != nil {
		for _, p := range []string{"/pay/", "/w/"} {
			s.ops(p, s.cfg.Pages)
		}
	}
}

// ops registers a route served whatever the log's state: health, metrics,
// the OpenAPI document, and the hosted pages, which check it themselves.
func (s *Server) ops(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
	s.routes = append(s.routes, pattern)
}

// raw registers a route that serves the log's state, refused once the log
// has failed (unlessFailed).
func (s *Server) raw(pattern string, h http.Handler) {
	s.ops(pattern, s.unlessFailed(h))
}

func (s *Server) json(pattern string, a auth, h handler) {
	s.raw(pattern, s.endpoint(a, h))
}
