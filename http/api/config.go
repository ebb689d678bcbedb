package api

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/time/rate"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/keyring"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
)

// Config configures a Server. Service, Views, Log and Keyring are required;
// every other field's zero value means its default.
type Config struct {
	// Service executes the domain's commands.
	Service *commands.Service
	// Views reads the projections (run inline in the log's transaction, so a
	// read right after a command reflects it).
	Views *projections.Views
	// Log is the event log: /readyz reads its head and database. Once it
	// has failed (Failed), every route but /healthz, /readyz, /metrics,
	// /openapi.json and Pages (which checks it itself) answers 503.
	Log *boltlog.Store
	// Keyring derives merchants' signing secrets (and the key that seals
	// stored idempotent responses).
	Keyring *keyring.Keyring

	// AdminTokenHash is the hex SHA-256 of the operator's bearer token for
	// /admin/v1/. Compared in constant time. Empty: every admin request is
	// refused with 401 ADMIN_TOKEN_INVALID.
	AdminTokenHash string
	// BaseURL is the public origin of the hosted pages, without a trailing
	// slash: payment_link = BaseURL + "/pay/" + invoice_id. Default
	// "http://127.0.0.1:8080".
	BaseURL string
	// Pages serves the hosted payment and widget pages, mounted for every
	// method under "/pay/" and "/w/" (it answers the methods a path does
	// not take itself, 405 in HTML). nil: not mounted (404).
	Pages http.Handler
	// Webhooks serves the merchant's webhook delivery routes
	// (webhooks.Dispatcher.Handler, with HandlerConfig.Merchant = MerchantID):
	// GET /api/v1/webhooks/deliveries, GET .../deliveries/{id}, POST
	// .../deliveries/{id}/redeliver and POST /api/v1/webhooks/redeliver,
	// mounted behind X-Api-Key, the limits, signatures and Idempotency-Key.
	// nil: not mounted (404).
	Webhooks http.Handler

	// IdempotencyDB keeps Idempotency-Key records: its own bbolt file, apart
	// from the log, opened and closed by the caller. New creates its buckets.
	// nil: records are kept in memory and lost on restart.
	IdempotencyDB *bbolt.DB
	// IdempotencyTTL is how long an Idempotency-Key is remembered. Default 24h.
	IdempotencyTTL time.Duration

	// Now is the clock for commands, timestamps and limits. Default time.Now.
	Now func() time.Time

	// MaxBodyBytes bounds a request body; a larger one is refused with 413
	// BODY_TOO_LARGE. Default 64 KiB.
	MaxBodyBytes int64
	// KeyRate is the sustained requests per second allowed per API key (and
	// for the admin token). Default 20000; a negative value disables the limit.
	KeyRate rate.Limit
	// KeyBurst is the burst allowed per API key. Default 2 * KeyRate, at least 1.
	KeyBurst int
	// CustomerRate is the sustained invoices per second allowed per merchant
	// and customer_id (seed 003: customer_id is "used for rate limiting"; an
	// e-invoice's account counts as its customer).
	// Default 5; a negative value disables the limit.
	CustomerRate rate.Limit
	// CustomerBurst is the burst allowed per customer_id. Default 20.
	CustomerBurst int
	// FeedRate is the sustained event-feed requests per second allowed per
	// merchant (burst 2 * FeedRate): a request may read 10,000 log records,
	// so the feed gets a limit of its own. Default 20; negative: no limit.
	FeedRate rate.Limit
	// AuthFailRate is the sustained failed authentications (a wrong or
	// revoked X-Api-Key, a wrong admin bearer token) per second allowed per
	// client address: the connection's remote IP, or behind TrustedProxies
	// the client X-Forwarded-For names; an IPv6 one by its /64. Past
	// AuthFailBurst, every request with credentials from that address, good
	// ones too, is refused 429 RATE_LIMITED with Retry-After before its
	// credentials are looked at, until a token refills. Successful
	// authentications take no token. Default 1; a negative value disables
	// the limit.
	AuthFailRate rate.Limit
	// AuthFailBurst is the failed authentications allowed at once per client
	// address. Default 30.
	AuthFailBurst int
	// TrustedProxies are the load balancers and reverse proxies in front of
	// the server (ParseTrustedProxies reads them). A request whose
	// connection comes from inside one of these prefixes has the client
	// address X-Forwarded-For gives: its entries (every header line, in
	// order) from the right, the first not itself in a trusted prefix; the
	// remote address when the header is missing, has an entry that is not an
	// IP address before that one, or names trusted addresses only.
	// Addresses are compared unmapped (::ffff:10.0.0.1 is in 10.0.0.0/8).
	// Empty (the default): X-Forwarded-For is never read, and behind a proxy
	// every client has the proxy's address. An invalid prefix fails New.
	TrustedProxies []netip.Prefix

	// SignatureWindow is how far X-Timestamp (and seed 000's body timestamp)
	// may be from the server's clock, either way. Default 3 minutes.
	SignatureWindow time.Duration
	// RequireSignatures refuses merchant requests without X-Signature (401
	// SIGNATURE_REQUIRED). Default false: signatures are optional.
	RequireSignatures bool
	// MaxSignaturesPerMerchant bounds the accepted signatures one merchant
	// has in the replay cache (each is kept until its timestamp leaves the
	// window). A signed request that would pass it is refused 429
	// RATE_LIMITED with Retry-After until one expires: none is forgotten
	// early. Default 100,000 (some 550 signed requests a second, sustained).
	MaxSignaturesPerMerchant int
	// MaxSignatures bounds the replay cache across merchants: past it a new
	// signed request is refused 503 SERVICE_UNAVAILABLE with Retry-After.
	// Default 1,000,000 (some 70 MB).
	MaxSignatures int
	// SecretOverlap is how long a rotated-out signing secret stays valid.
	// Default 24h.
	SecretOverlap time.Duration

	// Logger receives request logs (debug), failures (error) and recovered
	// panics, each with the request id. Default slog.Default().
	Logger *slog.Logger
	// Metrics holds the Prometheus collectors served at /metrics. Default
	// NewMetrics(nil): a fresh registry.
	Metrics *Metrics
	// Ready is an extra readiness check for /readyz (NATS, relay lag...).
	// nil: only the log and the idempotency store are checked.
	Ready func(ctx context.Context) error
}

// Defaults.
const (
	DefaultBaseURL                  = "http://127.0.0.1:8080"
	DefaultMaxBodyBytes             = 64 << 10
	DefaultKeyRate                  = 20000
	DefaultCustomerRate             = 5
	DefaultCustomerBurst            = 20
	DefaultFeedRate                 = 20
	DefaultAuthFailRate             = 1
	DefaultAuthFailBurst            = 30
	DefaultMaxSignaturesPerMerchant = 100_000
	DefaultMaxSignatures            = 1_000_000
	DefaultSignatureWindow          = 3 * time.Minute
	DefaultIdempotencyTTL           = 24 * time.Hour
	DefaultSecretOverlap            = 24 * time.Hour
)

func (c Config) withDefaults() Config {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	for len(c.BaseURL) > 0 && c.BaseURL[len(c.BaseURL)-1] == '/' {
		c.BaseURL = c.BaseURL[:len(c.BaseURL)-1]
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	c.KeyRate = limitOr(c.KeyRate, DefaultKeyRate)
	if c.KeyBurst <= 0 {
		c.KeyBurst = int(2 * c.KeyRate)
		if c.KeyRate == rate.Inf || c.KeyBurst < 1 {
			c.KeyBurst = 1
		}
	}
	c.CustomerRate = limitOr(c.CustomerRate, DefaultCustomerRate)
	if c.CustomerBurst <= 0 {
		c.CustomerBurst = DefaultCustomerBurst
	}
	c.FeedRate = limitOr(c.FeedRate, DefaultFeedRate)
	c.AuthFailRate = limitOr(c.AuthFailRate, DefaultAuthFailRate)
	if c.AuthFailBurst <= 0 {
		c.AuthFailBurst = DefaultAuthFailBurst
	}
	if c.MaxSignaturesPerMerchant <= 0 {
		c.MaxSignaturesPerMerchant = DefaultMaxSignaturesPerMerchant
	}
	if c.MaxSignatures <= 0 {
		c.MaxSignatures = DefaultMaxSignatures
	}
	if c.SignatureWindow <= 0 {
		c.SignatureWindow = DefaultSignatureWindow
	}
	if c.IdempotencyTTL <= 0 {
		c.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if c.SecretOverlap <= 0 {
		c.SecretOverlap = DefaultSecretOverlap
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	return c
}

// Timeouts are the recommended net/http server timeouts for the API: short
// enough that a slow client cannot hold a connection, long enough for a
// durable append under load.
type Timeouts struct {
	ReadHeader time.Duration
	Read       time.Duration
	Write      time.Duration
	Idle       time.Duration
}

// ServerTimeouts are the values HTTPServer uses.
var ServerTimeouts = Timeouts{
	ReadHeader: 5 * time.Second,
	Read:       15 * time.Second,
	Write:      30 * time.Second,
	Idle:       120 * time.Second,
}

// HTTPServer returns an *http.Server for addr serving s with ServerTimeouts,
// a 1 MiB header limit and the server's logger for net/http's own errors.
// The caller runs ListenAndServe (or Serve) and Shutdown.
func (s *Server) HTTPServer(addr string) *http.Server {
	srv := &http.Server{
		Addr:              addr,
		Handler:           s.Handler(),
		ReadHeaderTimeout: ServerTimeouts.ReadHeader,
		ReadTimeout:       ServerTimeouts.Read,
		WriteTimeout:      ServerTimeouts.Write,
		IdleTimeout:       ServerTimeouts.Idle,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(s.Stopping)
	return srv
}

// limitOr is a configured rate limit: 0 means def, a negative one no limit.
func limitOr(l, def rate.Limit) rate.Limit {
	switch {
	case l == 0:
		return def
	case l < 0:
		return rate.Inf
	}
	return l
}
