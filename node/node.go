// Package node assembles one payledger process: the bbolt log with its inline
// projections, the domain service, the expiry scheduler, the NATS relay, the
// webhook dispatcher and the HTTP server, started and stopped in the order
// that loses nothing. `payledger serve` and the tests that run a whole node
// use it.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.etcd.io/bbolt"
	"golang.org/x/time/rate"

	"github.com/payledger/payledger/audit"
	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/http/api"
	"github.com/payledger/payledger/http/pages"
	"github.com/payledger/payledger/keyring"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
	"github.com/payledger/payledger/stream"
	"github.com/payledger/payledger/webhooks"
)

// File names inside the data directory.
const (
	LogFile         = "ledger.db"
	MasterKeyFile   = "master.key"
	NATSDir         = "nats"
	IdempotencyFile = "idempotency.db"
	WebhooksFile    = "webhooks.db"
)

// Config configures a node. The zero value of each field is its default.
type Config struct {
	// DataDir holds the log, the master key and the embedded NATS store. Default ./data.
	DataDir string
	// Addr is the HTTP listen address. Default 127.0.0.1:8080.
	Addr string
	// BaseURL is the public URL of the node, used in payment links. Default
	// http://<Addr>, with localhost as the host when Addr listens on every
	// interface (":8080", "0.0.0.0:8080", "[::]:8080").
	BaseURL string
	// AdminToken is the admin API's bearer token. Empty: the admin API
	// refuses every request.
	AdminToken string
	// NATS is where events are published (URL empty: an embedded JetStream
	// server storing under DataDir/nats).
	NATS stream.Config
	// NoNATS runs without publishing events (tests, or a node whose stream
	// is not wanted). The log stays the source of truth either way.
	NoNATS bool
	// NoWebhooks runs no webhook dispatcher (and opens no webhooks.db): the
	// webhooks and status_url calls are left to `payledger worker webhooks`
	// processes, which keep the delivery records, so the merchant's
	// delivery routes answer webhooks.ErrDeliveriesElsewhere (503).
	NoWebhooks bool
	// AllowPrivateWebhooks lets webhooks and status_url calls reach loopback
	// and private addresses over plain http (development and tests).
	AllowPrivateWebhooks bool
	// KeyRate and CustomerRate are the API's rate limits: requests per
	// second per API key, and invoices per second per merchant and
	// customer_id. Zero: api.DefaultKeyRate and api.DefaultCustomerRate;
	// negative: no limit.
	KeyRate, CustomerRate rate.Limit
	// AuthFailRate bounds the failed authentications (wrong API keys and
	// admin tokens) a second per client address (api.Config.AuthFailRate):
	// zero api.DefaultAuthFailRate, negative no limit.
	AuthFailRate rate.Limit
	// TrustedProxies are the load balancers and reverse proxies whose
	// X-Forwarded-For names the client (api.Config.TrustedProxies; serve's
	// --trusted-proxies). Empty: the connection's remote address is the
	// client's.
	TrustedProxies []netip.Prefix
	// WidgetRate bounds the invoices a widget page's form starts per widget
	// and second (pages.Config.WidgetRate): zero pages.DefaultWidgetRate,
	// negative no limit.
	WidgetRate rate.Limit
	// PayRate bounds the POSTs a payment page takes per invoice and second
	// (pages.Config.PayRate): zero pages.DefaultPayRate, negative no limit.
	PayRate rate.Limit
	// RedirectDelay is how long a payment page shows its final status before
	// it sends the customer back to the shop (pages.Config.RedirectDelay):
	// zero 3 s.
	RedirectDelay time.Duration
	// Demo creates a demo merchant on an empty data dir and prints its API key.
	Demo bool
	// Out receives the demo banner. Default os.Stdout.
	Out io.Writer
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
	// Clock drives the expiry scheduler and command times. Default the system clock.
	Clock commands.Clock
	// ShutdownTimeout bounds a graceful shutdown. Default 30s. A fifth of
	// it, at most 5 s, is kept for closing the files: the requests in
	// flight, the background goroutines and the relay's flush get the
	// rest. What has not finished by then is logged and left running.
	ShutdownTimeout time.Duration
	// Checkpoints configures the signed checkpoints of the log (checkpoint.go).
	Checkpoints CheckpointConfig
}

func (c *Config) defaults() {
	if c.DataDir == "" {
		c.DataDir = "data"
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8080"
	}
	// As the API and the webhooks trim it: the demo banner's curl line
	// must not post to "//api/...", which the router redirects.
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = commands.SystemClock{}
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.NATS.URL == "" && c.NATS.StoreDir == "" {
		c.NATS.StoreDir = filepath.Join(c.DataDir, NATSDir)
	}
	if c.NATS.Logger == nil {
		c.NATS.Logger = c.Logger
	}
}

// ErrAhead means a store kept beside the log has seen more of the log than
// the log holds.
var ErrAhead = errors.New("node: a store is ahead of the log")

// ErrShutdownTimeout means a part of the node had not finished when the
// shutdown timeout ran out; the error names it.
var ErrShutdownTimeout = errors.New("node: shutdown timed out")

// Node is a running payledger process.
type Node struct {
	cfg       Config
	Log       *boltlog.Store
	Views     *projections.Views
	Service   *commands.Service
	Keyring   *keyring.Keyring
	Registry  *prometheus.Registry
	Scheduler *commands.Scheduler
	// Webhooks is the webhook dispatcher (nil with Config.NoWebhooks).
	Webhooks *webhooks.Dispatcher
	// Checkpoints signs the log's head (nil when Config.Checkpoints.Disabled).
	Checkpoints *audit.Checkpointer

	API *api.Server

	natsMu  sync.Mutex
	nats    *stream.Node // nil while an embedded server is being restarted
	natsCfg stream.Config

	relayStall   stall
	webhookStall stall

	metrics        *metrics
	webhookHandler http.Handler
	listener       net.Listener
	server         *http.Server
	handler        http.Handler

	bgCancel context.CancelFunc
	bg       tasks
	// The checkpointer: stopped after bg, so its last checkpoint covers
	// everything bg appended.
	lastCancel context.CancelFunc
	last       tasks
	closers    []closer
}

// closer closes one part of the node; name is what the shutdown's log
// calls it when it does not finish.
type closer struct {
	name  string
	close func(context.Context) error
}

// Open opens the data directory and starts every component but the HTTP
// server (Serve starts it). On error nothing is left running.
func Open(ctx context.Context, cfg Config) (_ *Node, err error) {
	cfg.defaults()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	n := &Node{cfg: cfg, Registry: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			// Bounded like any shutdown: a relay that cannot publish (a
			// JetStream refusing writes) must not keep Open from returning
			// its error. What it did not publish, the next start does.
			cctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
			defer cancel()
			n.closeAll(cctx)
		}
	}()
	n.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.metrics = newMetrics(n.Registry)

	if n.Keyring, err = keyring.Open(filepath.Join(cfg.DataDir, MasterKeyFile), &keyring.Options{Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	n.Log, err = boltlog.Open(filepath.Join(cfg.DataDir, LogFile), &boltlog.Options{
		Projectors: []boltlog.Projector{&projections.Projector{}},
		OnCommit:   n.metrics.observeCommit,
	})
	if err != nil {
		return nil, err
	}
	n.closers = append(n.closers, closer{"log", func(context.Context) error { return n.Log.Close() }})
	// What the log holds, not whether the file exists: a first start that
	// failed after creating ledger.db (its address taken, say), or halfway
	// through the demo setup, made no demo merchant that anyone has a key of.
	demo := false
	if cfg.Demo {
		if demo, err = n.demoPending(ctx); err != nil {
			return nil, fmt.Errorf("demo merchant: %w", err)
		}
	}
	n.Views = projections.NewViews(n.Log.DB())
	n.Service = commands.NewService(n.Log, commands.Config{AllowPrivateWebhooks: cfg.AllowPrivateWebhooks})
	n.Scheduler = commands.NewScheduler(n.Service, dueSource{n.Views}, cfg.Clock, cfg.Logger.With("component", "scheduler"))
	registerSchedulerMetrics(n.Registry, n.Scheduler.Stats)

	if !cfg.NoNATS {
		n.natsCfg = cfg.NATS
		n.natsCfg.Relay.OnAck = n.metrics.observePublish
		sn, err := stream.Start(ctx, n.natsCfg, n.Log)
		if err != nil {
			return nil, fmt.Errorf("nats: %w", err)
		}
		n.setStream(sn)
		registerRelayMetrics(n.Registry, func() bool {
			sn := n.Stream()
			return sn != nil && sn.Err() != nil
		}, n.relayBacklog)
		// Stop the relay (flushing it) before the log closes; close the
		// connection and the embedded server after.
		n.closers = append(n.closers[:len(n.closers)-1],
			closer{"nats", func(context.Context) error {
				if sn := n.Stream(); sn != nil {
					sn.Close()
				}
				return nil
			}},
			closer{"log", func(context.Context) error { return n.Log.Close() }},
			closer{"relay", func(ctx context.Context) error {
				if sn := n.Stream(); sn != nil {
					return sn.StopRelay(ctx)
				}
				return nil
			}},
		)
	}
	if n.listener, err = net.Listen("tcp", cfg.Addr); err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	ln := n.listener
	n.closers = append(n.closers, closer{"listener", func(context.Context) error { ln.Close(); return nil }})
	if cfg.NoWebhooks {
		// The workers keep the records; an empty list here would look like
		// nothing was sent.
		n.webhookHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.API.WriteError(w, r, webhooks.ErrDeliveriesElsewhere)
		})
	} else if err := n.openWebhooks(); err != nil {
		return nil, err
	}
	if err := n.buildHTTP(); err != nil {
		return nil, err
	}
	if demo {
		if err := n.createDemo(ctx); err != nil {
			return nil, fmt.Errorf("demo merchant: %w", err)
		}
	}
	bgctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.bgCancel = cancel
	if !cfg.NoNATS && cfg.NATS.URL == "" {
		n.bg.Go("nats watcher", func() { n.watchEmbeddedNATS(bgctx) })
	}
	n.bg.Go("scheduler", func() { _ = n.Scheduler.Run(bgctx) })
	if n.Webhooks != nil {
		n.bg.Go("webhook dispatcher", func() { n.superviseWebhooks(bgctx) })
	}
	if err := n.startCheckpoints(bgctx); err != nil {
		return nil, err
	}
	return n, nil
}

// buildHTTP assembles the API, the admin API and the hosted pages.
func (n *Node) buildHTTP() error {
	cfg := n.cfg
	idem, err := bbolt.Open(filepath.Join(cfg.DataDir, IdempotencyFile), 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("idempotency store: %w", err)
	}
	n.closers = append(n.closers, closer{"idempotency store", func(context.Context) error { return idem.Close() }})
	pg, err := pages.New(pages.Config{
		Service: n.Service, Views: n.Views, Now: cfg.Clock.Now,
		Logger: cfg.Logger.With("component", "pages"), CSRFKey: n.Keyring.Derive("pages-csrf"),
		WidgetRate: cfg.WidgetRate, PayRate: cfg.PayRate, Failed: n.Log.Failed,
		RedirectDelay: cfg.RedirectDelay,
	})
	if err != nil {
		return err
	}
	adminHash := ""
	if cfg.AdminToken != "" {
		adminHash = keyring.HashAPIKey(cfg.AdminToken)
	}
	srv, err := api.New(api.Config{
		Service: n.Service, Views: n.Views, Log: n.Log, Keyring: n.Keyring,
		AdminTokenHash: adminHash, BaseURL: n.BaseURL(), Pages: pg, Webhooks: n.webhookHandler,
		IdempotencyDB: idem, Now: cfg.Clock.Now, Logger: cfg.Logger.With("component", "http"),
		Metrics: api.NewMetrics(n.Registry),
		Ready:   n.ready,
		KeyRate: cfg.KeyRate, CustomerRate: cfg.CustomerRate, AuthFailRate: cfg.AuthFailRate,
		TrustedProxies: cfg.TrustedProxies,
	})
	if err != nil {
		return err
	}
	n.API = srv
	n.handler = srv.Handler()
	return nil
}

// openWebhooks opens the webhook dispatcher's store and its merchant
// routes.
//
// Errors: ErrAhead when webhooks.db has handled events past the log's
// head, or the store's own.
func (n *Node) openWebhooks() error {
	var err error
	n.Webhooks, err = webhooks.Open(filepath.Join(n.cfg.DataDir, WebhooksFile), webhooks.Config{
		Keys: n.Keyring, BaseURL: n.BaseURL(), AllowPrivate: n.cfg.AllowPrivateWebhooks,
		Logger: n.cfg.Logger.With("component", "webhooks"),
	})
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	n.closers = append(n.closers, closer{"webhook store", func(context.Context) error { return n.Webhooks.Close() }})
	if cp, head := n.Webhooks.Checkpoint(), n.Log.Head().Seq; cp > head {
		// The log was restored from an older backup: the dispatcher would
		// take new events at reused sequences for ones it already handled.
		return fmt.Errorf("%w: %s has handled events up to %d but the log ends at %d (restored from an older backup? move %s aside, see docs/operations.md)",
			ErrAhead, WebhooksFile, cp, head, WebhooksFile)
	}
	registerWebhookMetrics(n.Registry, n.Webhooks.Stats)
	n.webhookHandler = n.Webhooks.Handler(webhooks.HandlerConfig{
		Merchant: api.MerchantID,
		// One error envelope for every merchant route (n.API is built next).
		WriteError: func(w http.ResponseWriter, r *http.Request, err error) { n.API.WriteError(w, r, err) },
	})
	return nil
}

// superviseWebhooks runs the dispatcher until ctx ends, starting it again
// with backoff when it stops on an error (a full disk, say): it resumes from
// its checkpoint, so a restart loses and duplicates nothing.
func (n *Node) superviseWebhooks(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for {
		start := time.Now()
		err := n.Webhooks.Run(ctx, webhooks.FromLog(n.Log, 0, webhooks.DefaultLinger))
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		n.cfg.Logger.Error("webhook dispatcher stopped; restarting", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// Stream is the node's NATS connection, event stream and relay (nil with
// Config.NoNATS, or for a moment while an embedded server restarts).
func (n *Node) Stream() *stream.Node {
	n.natsMu.Lock()
	defer n.natsMu.Unlock()
	return n.nats
}

// relayBacklog is how many committed events the stream does not have yet.
// While no relay knows its position (an embedded server restarting, a new
// relay before it first reaches the stream) it counts from the last
// sequence acknowledged in this process.
func (n *Node) relayBacklog() uint64 {
	head, pos := n.Log.Head().Seq, n.metrics.published.Load()
	if sn := n.Stream(); sn != nil {
		if p := sn.Relay().Position(); p > 0 {
			return sn.Relay().Backlog()
		}
	}
	if head <= pos {
		return 0
	}
	return head - pos
}

func (n *Node) setStream(sn *stream.Node) {
	n.natsMu.Lock()
	n.nats = sn
	n.natsMu.Unlock()
}

// restartAfter is how long the relay may make no progress behind the log
// before the node restarts its embedded NATS server; watchEvery is how
// often the node looks (a variable for tests).
const restartAfter = 5 * time.Second

var watchEvery = time.Second

// watchEmbeddedNATS restarts the embedded NATS server when the relay has
// been stuck behind the log for restartAfter: a JetStream store that hit a
// write error (a full disk) refuses every write until its server restarts.
// The relay of the new server resumes from the stream's last message, so a
// restart loses and duplicates nothing. A relay that stopped on its own (the
// stream diverged from the log, or NATS refuses an event as too large) is
// not restarted: it would stop again; /readyz and payledger_relay_stopped
// report it, for an operator. An external cluster is not
// ours to restart: there /readyz reports the stall.
func (n *Node) watchEmbeddedNATS(ctx context.Context) {
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	var watch stall
	var stopped error // the relay's own stop, logged once
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sn := n.Stream()
		if sn != nil {
			if err := sn.Err(); err != nil {
				if stopped == nil {
					stopped = err
					n.cfg.Logger.Error("relay stopped; not restarting the embedded NATS server, which would not help", "err", err)
				}
				continue
			}
			pos, head := sn.Relay().Position(), n.Log.Head().Seq
			if watch.stalledFor(pos, head, time.Now()) < restartAfter {
				continue
			}
			n.metrics.natsRestarts.Inc()
			n.cfg.Logger.Warn("relay stuck behind the log: restarting the embedded NATS server", "position", pos, "head", head)
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_ = sn.StopRelay(sctx) // it cannot publish: do not wait long for it
			cancel()
			n.setStream(nil)
			sn.Close()
		}
		started, err := stream.Start(ctx, n.natsCfg, n.Log)
		if err != nil {
			n.cfg.Logger.Error("restart the embedded NATS server", "err", err)
			continue // try again at the next tick
		}
		n.setStream(started)
		watch = stall{}
	}
}

// stallLimit is how long a follower of the log (relay, webhook dispatcher)
// may lag behind the head without progress before the node says it is not
// ready.
const stallLimit = 30 * time.Second

// ready fails while the relay has stopped on its own (the stream diverged
// from the log, NATS refuses an event as too large, or the log closed), or while the relay or the webhook
// dispatcher has been behind the log without progress for stallLimit (a
// JetStream store that hit a write error, say): an orchestrator restarts the
// node, which resumes both from their checkpoints. Each failure is an
// api.CheckError: /readyz names its check (relay, webhooks) and reason
// (restarting, stopped, stalled) and logs the error.
func (n *Node) ready(context.Context) error {
	head := n.Log.Head().Seq
	var errs []error
	if !n.cfg.NoNATS {
		if sn := n.Stream(); sn == nil {
			errs = append(errs, &api.CheckError{Check: "relay", Reason: "restarting",
				Err: errors.New("relay: the embedded NATS server is restarting")})
		} else if err := sn.Err(); err != nil {
			errs = append(errs, &api.CheckError{Check: "relay", Reason: "stopped", Err: fmt.Errorf("relay stopped: %w", err)})
		} else if err := n.relayStall.check(sn.Relay().Position(), head); err != nil {
			errs = append(errs, &api.CheckError{Check: "relay", Reason: "stalled", Err: fmt.Errorf("relay: %w", err)})
		}
	}
	if n.Webhooks != nil {
		if err := n.webhookStall.check(n.Webhooks.Checkpoint(), head); err != nil {
			errs = append(errs, &api.CheckError{Check: "webhooks", Reason: "stalled", Err: fmt.Errorf("webhook dispatcher: %w", err)})
		}
	}
	return errors.Join(errs...)
}

// stall remembers when a follower's position last moved.
type stall struct {
	mu    sync.Mutex
	pos   uint64
	since time.Time
}

// stalledFor records a position and says how long it has been behind head
// without moving.
func (s *stall) stalledFor(pos, head uint64, now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pos != s.pos || s.since.IsZero() || pos >= head {
		s.pos, s.since = pos, now
		return 0
	}
	return now.Sub(s.since)
}

func (s *stall) check(pos, head uint64) error {
	if d := s.stalledFor(pos, head, time.Now()); d > stallLimit {
		return fmt.Errorf("at %d, %d events behind the log, no progress for %s", pos, head-pos, d.Round(time.Second))
	}
	return nil
}

// closeReserve is the part of the shutdown timeout kept for closing the
// files (the log above all) once the drain (requests in flight, background
// goroutines, the relay's flush) is over: a fifth, at most 5 s. Closing
// the files is local I/O: it needs little of it unless a disk hangs.
func (n *Node) closeReserve() time.Duration {
	return min(n.cfg.ShutdownTimeout/5, 5*time.Second)
}

// drainContext is ctx ending closeReserve before ctx's deadline.
func (n *Node) drainContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok {
		return context.WithDeadline(ctx, d.Add(-n.closeReserve()))
	}
	return context.WithCancel(ctx)
}

// closeAll stops the background goroutines, then the checkpointer, until
// the drain context ends, then runs the closers in reverse order of
// registration until ctx ends. What has not finished by then is logged
// and named in an ErrShutdownTimeout, and left running: a goroutine that
// does not return must not hold the process past its timeout. That is
// safe for the log: Log.Close waits for the append under way (it is never
// closed under a write) and refuses later ones, and an acknowledged event
// was fsynced before it was acknowledged. If the close itself waits past
// ctx for a write that does not finish, the log is left to the process's
// exit, which bbolt survives at its last commit.
func (n *Node) closeAll(ctx context.Context) error {
	drain, cancel := n.drainContext(ctx)
	defer cancel()
	var late []string
	if n.bgCancel != nil {
		n.bgCancel()
		late = append(late, n.bg.wait(drain)...)
	}
	if n.lastCancel != nil {
		n.lastCancel()
		late = append(late, n.last.wait(drain)...)
	}
	var errs []error
	for _, name := range late {
		n.cfg.Logger.Error("shutdown timed out: still running", "part", name)
		errs = append(errs, fmt.Errorf("%w: %s still running", ErrShutdownTimeout, name))
	}

	closers := n.closers
	n.closers = nil
	var (
		mu      sync.Mutex
		closing string
	)
	closed := make(chan error, 1)
	go func() {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			mu.Lock()
			closing = closers[i].name
			mu.Unlock()
			// The relay's flush is part of the drain: the log's close
			// keeps its reserve.
			if err := closers[i].close(drain); err != nil {
				errs = append(errs, err)
			}
		}
		closed <- errors.Join(errs...)
	}()
	select {
	case err := <-closed:
		errs = append(errs, err)
	case <-ctx.Done():
		select {
		case err := <-closed:
			errs = append(errs, err)
		default:
			mu.Lock()
			name := closing
			mu.Unlock()
			n.cfg.Logger.Error("shutdown timed out: not closed", "part", name)
			errs = append(errs, fmt.Errorf("%w: %s not closed", ErrShutdownTimeout, name))
		}
	}
	return errors.Join(errs...)
}

// tasks are goroutines the node owns, by name.
type tasks struct {
	mu   sync.Mutex
	list []task
}

type task struct {
	name string
	done chan struct{}
}

// Go runs f in a goroutine named name.
func (ts *tasks) Go(name string, f func()) {
	t := task{name, make(chan struct{})}
	ts.mu.Lock()
	ts.list = append(ts.list, t)
	ts.mu.Unlock()
	go func() {
		defer close(t.done)
		f()
	}()
}

// wait waits for the goroutines until ctx ends and returns the names of
// those still running.
func (ts *tasks) wait(ctx context.Context) []string {
	ts.mu.Lock()
	list := ts.list
	ts.mu.Unlock()
	var running []string
	for _, t := range list {
		select {
		case <-t.done:
		case <-ctx.Done():
			select {
			case <-t.done:
			default:
				running = append(running, t.name)
			}
		}
	}
	return running
}

// dueSource adapts the projections' due index to the scheduler.
type dueSource struct{ v *projections.Views }

func (d dueSource) Due(t time.Time, after commands.Due, limit int) ([]commands.Due, error) {
	items, err := d.v.Due(t, projections.Due(after), limit)
	if err != nil {
		return nil, err
	}
	out := make([]commands.Due, len(items))
	for i, it := range items {
		out[i] = commands.Due(it)
	}
	return out, nil
}

func (d dueSource) NextDue() (time.Time, bool) { return d.v.NextDue() }
