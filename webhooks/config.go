package webhooks

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// Defaults of Config.
const (
	DefaultAttemptTimeout     = 15 * time.Second
	DefaultBackoffBase        = 10 * time.Second
	DefaultBackoffMax         = 6 * time.Hour
	DefaultMaxAttempts        = 23
	DefaultJitter             = 0.2
	DefaultMaxRetryAfter      = 6 * time.Hour
	DefaultMaxRedirects       = 3
	DefaultConcurrency        = 256
	DefaultPerHostConcurrency = 16
	DefaultMaxBatch           = 1024
	DefaultBaseURL            = "http://127.0.0.1:8080"
	DefaultUserAgent          = "payledger-webhooks/1"
	DefaultOpenTimeout        = 5 * time.Second
	DefaultShutdownGrace      = 2 * time.Second
)

// Keys gives merchants' HMAC signing keys by secret version;
// *keyring.Keyring satisfies it.
type Keys interface {
	SigningKey(merchantID string, version int) []byte
}

// Config configures a Dispatcher. The zero value is the default except for
// Keys, which is required.
type Config struct {
	// Keys signs every attempt with the merchant's current secret (and the
	// previous one while a rotation overlaps). Required.
	Keys Keys
	// BaseURL is the public URL of the hosted pages: an invoice webhook's
	// payment_link is BaseURL + "/pay/" + invoice_id. Default
	// "http://127.0.0.1:8080".
	BaseURL string
	// AllowPrivate lets targets use plain http and resolve to loopback,
	// private, link-local and other non-public addresses: the operator's
	// --allow-private-webhooks, for development and tests.
	AllowPrivate bool

	// AttemptTimeout bounds one attempt: connecting, sending, and reading
	// the status and up to 64 KiB of the response. Default 15s.
	AttemptTimeout time.Duration
	// BackoffBase is the wait after the first failed attempt; each later
	// wait doubles, up to BackoffMax. Defaults 10s and 6h.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// MaxAttempts is how many attempts a delivery gets (counting from its
	// creation or its last redelivery) before it fails. Default 23, which
	// with the default backoff spans about 72 hours (docs/webhooks.md).
	MaxAttempts int
	// Jitter spreads each wait uniformly over ±Jitter of itself, so a
	// receiver that comes back is not hit by every delivery at once.
	// Default 0.2; negative means none.
	Jitter float64
	// MaxRetryAfter caps the Retry-After of a 429 or 503 answer. Default 6h.
	MaxRetryAfter time.Duration
	// MaxRedirects is how many 307/308 redirects an attempt follows, each
	// re-checked against the SSRF policy. Default 3; negative means none.
	MaxRedirects int

	// Concurrency bounds the attempts in flight. Default 256.
	Concurrency int
	// PerHostConcurrency bounds the attempts in flight to one host:port,
	// so a slow receiver takes at most this many. Default 16.
	PerHostConcurrency int
	// MaxBatch bounds how many events one ingest transaction takes.
	// Default 1024.
	MaxBatch int

	// TLSConfig is the client TLS configuration (tests add their CA).
	// Default: the system roots.
	TLSConfig *tls.Config
	// UserAgent is sent with every attempt. Default "payledger-webhooks/1".
	UserAgent string
	// OpenTimeout bounds the wait for webhooks.db's file lock. Default 5s.
	OpenTimeout time.Duration
	// ShutdownGrace is how long Run, once its context ends, lets the
	// attempts under way finish (each still within AttemptTimeout) before
	// it aborts them. One that ends within the grace is recorded as any
	// other; one aborted is not recorded at all, and the next Run makes it
	// again. It bounds how much longer than its context Run lives. Default
	// 2s; negative means none.
	ShutdownGrace time.Duration
	// ShardCount and ShardIndex split merchants between dispatchers that
	// each have their own webhooks.db: this one delivers only for merchants
	// whose FNV-1a hash modulo ShardCount is ShardIndex. Default 1 and 0:
	// every merchant.
	ShardCount int
	ShardIndex int
	// Logger receives failures and refusals. Default: discard.
	Logger *slog.Logger
	// OnAttempt, if set, is called after every attempt (for metrics and
	// benchmarks); it must be quick.
	OnAttempt func(AttemptEvent)
}

// AttemptEvent describes one finished attempt, for Config.OnAttempt.
type AttemptEvent struct {
	DeliveryID string
	MerchantID string
	Attempt    int           // 1 for the first
	Start      time.Time     // when the request was sent
	StatusCode int           // 0 when no response
	Latency    time.Duration // to the response (or the error)
	Err        error
}

func (c Config) withDefaults() (Config, error) {
	if c.Keys == nil {
		return c, fmt.Errorf("%w: no signing keys", ErrConfig)
	}
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = DefaultAttemptTimeout
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = DefaultBackoffBase
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.BackoffMax < c.BackoffBase {
		c.BackoffMax = c.BackoffBase
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	switch {
	case c.Jitter == 0:
		c.Jitter = DefaultJitter
	case c.Jitter < 0:
		c.Jitter = 0
	case c.Jitter > 1:
		c.Jitter = 1
	}
	if c.MaxRetryAfter <= 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}
	switch {
	case c.MaxRedirects == 0:
		c.MaxRedirects = DefaultMaxRedirects
	case c.MaxRedirects < 0:
		c.MaxRedirects = 0
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.PerHostConcurrency <= 0 {
		c.PerHostConcurrency = DefaultPerHostConcurrency
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	if c.OpenTimeout <= 0 {
		c.OpenTimeout = DefaultOpenTimeout
	}
	switch {
	case c.ShutdownGrace == 0:
		c.ShutdownGrace = DefaultShutdownGrace
	case c.ShutdownGrace < 0:
		c.ShutdownGrace = 0
	}
	if c.ShardCount <= 0 {
		c.ShardCount = 1
	}
	if c.ShardIndex < 0 || c.ShardIndex >= c.ShardCount {
		return c, fmt.Errorf("%w: shard %d of %d", ErrConfig, c.ShardIndex, c.ShardCount)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Backoff is the nominal wait after the n-th failed attempt of a round
// (n >= 1): BackoffBase * 2^(n-1), capped at BackoffMax, before jitter.
func (c Config) Backoff(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	d := float64(c.BackoffBase) * math.Pow(2, float64(n-1))
	if d > float64(c.BackoffMax) {
		return c.BackoffMax
	}
	return time.Duration(d)
}

// jittered spreads d over ±Jitter.
func (c Config) jittered(d time.Duration) time.Duration {
	if c.Jitter == 0 {
		return d
	}
	f := 1 + c.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}

// Schedule is the nominal time of each attempt after the first, from the
// delivery's creation (or redelivery), when every attempt fails: what
// docs/webhooks.md tabulates.
func (c Config) Schedule() []time.Duration {
	c, _ = c.withDefaultsNoKeys()
	out := make([]time.Duration, 0, c.MaxAttempts)
	var at time.Duration
	out = append(out, 0)
	for n := 1; n < c.MaxAttempts; n++ {
		at += c.Backoff(n)
		out = append(out, at)
	}
	return out
}

func (c Config) withDefaultsNoKeys() (Config, error) {
	if c.Keys == nil {
		c.Keys = noKeys{}
	}
	return c.withDefaults()
}

type noKeys struct{}

func (noKeys) SigningKey(string, int) []byte { return nil }
