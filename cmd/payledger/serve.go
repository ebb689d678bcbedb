package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/payledger/payledger/http/api"
	"github.com/payledger/payledger/internal/durable"
	"github.com/payledger/payledger/node"
)

func init() {
	register(&command{name: "serve", summary: "run the node: HTTP API, hosted pages, log, NATS relay, webhooks", run: runServe})
}

// adminTokenFile holds the generated admin token when none is configured.
const adminTokenFile = "admin.token"

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	var cfg node.Config
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "HTTP listen address, HOST:PORT (port 0: any free one)")
	fs.StringVar(&cfg.DataDir, "data-dir", "./data", "data directory")
	fs.StringVar(&cfg.BaseURL, "base-url", "", "public http or https URL for payment links, with no query or fragment (default http://<addr>, with localhost for an address on every interface)")
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "admin API bearer token (default: generated into <data-dir>/admin.token)")
	fs.BoolVar(&cfg.AllowPrivateWebhooks, "allow-private-webhooks", false, "let webhooks reach loopback/private addresses over plain http")
	noDemo := fs.Bool("no-demo", false, "do not create a demo merchant on an empty data dir")
	fs.BoolVar(&cfg.NoNATS, "no-nats", false, "do not publish events to NATS")
	webhooksOn := fs.Bool("webhooks", true, "run the webhook dispatcher in this process; false when payledger worker webhooks processes deliver (then the merchant API's delivery routes answer 503)")
	fs.StringVar(&cfg.NATS.URL, "nats-url", "", "external NATS URL(s), comma separated (default: embedded JetStream)")
	natsAuthFlags(fs, &cfg.NATS)
	fs.StringVar(&cfg.NATS.Host, "nats-host", "127.0.0.1", "embedded NATS listen host")
	natsPort := fs.Int("nats-port", 4222, "embedded NATS client port (-1: random)")
	replicas := fs.Int("nats-replicas", 1, "event stream replicas (3 on a cluster)")
	fs.BoolVar(&cfg.Checkpoints.Disabled, "no-checkpoints", false, "do not sign checkpoints of the log")
	checkpointEvery := fs.Int("checkpoint-every", 10000, "sign a checkpoint after this many events")
	fs.DurationVar(&cfg.Checkpoints.Interval, "checkpoint-interval", time.Minute, "sign a checkpoint this long (positive) after the last, if anything was appended")
	checkpointKeyFlag(fs, &cfg.Checkpoints.KeyFile)
	keyRate := fs.Float64("key-rate", 0, "requests per second allowed per API key (0: 20000; negative: no limit)")
	customerRate := fs.Float64("customer-rate", 0, "invoices per second allowed per merchant and customer_id (0: 5; negative: no limit)")
	widgetRate := fs.Float64("widget-rate", 0, "invoices per second a widget page's form may start, per widget, in bursts of 30 (0: 5; negative: no limit)")
	payRate := fs.Float64("pay-rate", 0, "requests per second a payment page takes per invoice (choose a method, I have paid, cancel), in bursts of 10 (0: 0.2; negative: no limit)")
	fs.DurationVar(&cfg.RedirectDelay, "redirect-delay", 3*time.Second, "how long a payment page shows its final status before it sends the customer back to the shop (positive; WCAG 2.2.1 asks for 20s, or a way to stop it, which the page offers)")
	authFailRate := fs.Float64("auth-fail-rate", 0, "failed authentications (wrong API key or admin token) per second allowed per client address, in bursts of 30; past them the address is refused 429 (0: 1; negative: no limit, e.g. behind a proxy that limits them)")
	fs.Var(&prefixesFlag{to: &cfg.TrustedProxies}, "trusted-proxies", "load balancers and reverse proxies whose X-Forwarded-For names the client: comma-separated CIDR `prefixes` or addresses (default none: the connection's address is the client's)")
	logFormat, logLevel := logFlags(fs)
	fs.bindEnv(map[string]string{
		"addr":                   "PAYLEDGER_ADDR",
		"data-dir":               "PAYLEDGER_DATA_DIR",
		"base-url":               "PAYLEDGER_BASE_URL",
		"admin-token":            "PAYLEDGER_ADMIN_TOKEN",
		"nats-url":               "PAYLEDGER_NATS_URL",
		"nats-host":              "PAYLEDGER_NATS_HOST",
		"allow-private-webhooks": "PAYLEDGER_ALLOW_PRIVATE_WEBHOOKS",
		"no-demo":                "PAYLEDGER_NO_DEMO",
		"no-nats":                "PAYLEDGER_NO_NATS",
		"webhooks":               "PAYLEDGER_WEBHOOKS",
		"nats-port":              "PAYLEDGER_NATS_PORT",
		"nats-replicas":          "PAYLEDGER_NATS_REPLICAS",
		"no-checkpoints":         "PAYLEDGER_NO_CHECKPOINTS",
		"checkpoint-every":       "PAYLEDGER_CHECKPOINT_EVERY",
		"checkpoint-interval":    "PAYLEDGER_CHECKPOINT_INTERVAL",
		"key-rate":               "PAYLEDGER_KEY_RATE",
		"customer-rate":          "PAYLEDGER_CUSTOMER_RATE",
		"widget-rate":            "PAYLEDGER_WIDGET_RATE",
		"pay-rate":               "PAYLEDGER_PAY_RATE",
		"redirect-delay":         "PAYLEDGER_REDIRECT_DELAY",
		"auth-fail-rate":         "PAYLEDGER_AUTH_FAIL_RATE",
		"trusted-proxies":        "PAYLEDGER_TRUSTED_PROXIES",
	})
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: payledger serve [--addr HOST:PORT] [--data-dir D] [flags]")
		fmt.Fprintln(stderr, "\nRuns the node: the HTTP API and hosted pages, the event log (bbolt, under")
		fmt.Fprintln(stderr, "--data-dir), the NATS relay (an embedded JetStream server unless --nats-url),")
		fmt.Fprintln(stderr, "the webhook dispatcher (unless --webhooks=false, for webhook workers), the expiry")
		fmt.Fprintln(stderr, "scheduler and the checkpointer. On an empty data dir it creates a demo merchant")
		fmt.Fprintln(stderr, "and prints its API key once. SIGTERM or SIGINT shut it down gracefully; it exits")
		fmt.Fprintln(stderr, "0, or 1 naming what failed.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	// Every value is checked before anything is opened or made: a value
	// that fails later would leave a data dir behind, and one taken as it
	// is (a base URL that is not one) would go into every payment link.
	if err := checkListenAddr(cfg.Addr); err != nil {
		return fs.valueError("addr", err)
	}
	if *natsPort < -1 || *natsPort > 65535 {
		return fs.valueError("nats-port", errors.New("want a port, 0 to 65535, or -1 for a random one"))
	}
	if err := checkBaseURL(cfg.BaseURL); err != nil {
		return fs.valueError("base-url", err)
	}
	if *checkpointEvery <= 0 {
		return fs.valueError("checkpoint-every", errors.New("must be positive"))
	}
	if cfg.Checkpoints.Interval <= 0 {
		return fs.valueError("checkpoint-interval", errors.New("must be positive"))
	}
	if cfg.RedirectDelay <= 0 {
		return fs.valueError("redirect-delay", errors.New("must be positive"))
	}
	if *replicas < 1 || *replicas > 5 {
		// JetStream's own bounds for a stream's replicas.
		return fs.valueError("nats-replicas", errors.New("must be 1 to 5"))
	}
	// Before anything is made: an embedded server open to other machines
	// with no authentication would let anyone read and write the stream.
	if !cfg.NoNATS {
		if err := cfg.NATS.CheckExposure(); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--nats-host: %w (--nats-user and --nats-password, or --nats-token)", err)}
		}
	}
	cfg.Checkpoints.Every = uint64(*checkpointEvery)
	cfg.NATS.Port = *natsPort
	cfg.NATS.Replicas = *replicas
	cfg.KeyRate, cfg.CustomerRate, cfg.WidgetRate = rate.Limit(*keyRate), rate.Limit(*customerRate), rate.Limit(*widgetRate)
	cfg.AuthFailRate, cfg.PayRate = rate.Limit(*authFailRate), rate.Limit(*payRate)
	cfg.Demo = !*noDemo
	cfg.NoWebhooks = !*webhooksOn
	if cfg.NoWebhooks && cfg.NoNATS {
		// Webhook workers read the stream: with neither, no webhook or
		// status_url call would ever be sent, and nothing would say so.
		return &exitError{code: 2, err: fmt.Errorf("--webhooks=false with --no-nats: webhook workers read the NATS stream, so no webhook would ever be sent")}
	}
	cfg.Out = stdout
	logger, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	cfg.Logger = logger
	if cfg.AdminToken == "" {
		tok, created, err := loadOrCreateToken(filepath.Join(cfg.DataDir, adminTokenFile), logger)
		if err != nil {
			return err
		}
		cfg.AdminToken = tok
		if created {
			fmt.Fprintf(stdout, "payledger: generated an admin token in %s\n", filepath.Join(cfg.DataDir, adminTokenFile))
		}
	}
	n, err := node.Open(ctx, cfg)
	if err != nil {
		return err
	}
	return n.Serve(ctx)
}

// checkListenAddr refuses a listen address that is not HOST:PORT with a
// port number (0: any free port); HOST may be empty, for every interface.
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want HOST:PORT, such as 127.0.0.1:8080 or :8080: %w", err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(n, 10) != port {
		return fmt.Errorf("port %q: want a number, 0 to 65535", port)
	}
	return nil
}

// checkBaseURL refuses a public URL that payment links cannot start with:
// it must be absolute, http or https, with a host, and no query, fragment
// or user; a path (behind a proxy's prefix) is kept. Empty is the default.
func checkBaseURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("want an absolute http or https URL: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("want an absolute http or https URL, such as https://pay.example.com")
	case u.Host == "" || u.Opaque != "":
		return errors.New("the URL has no host")
	case u.User != nil:
		return errors.New("the URL has a user: payment links must not carry one")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		return errors.New("the URL has a query or a fragment: payment links are appended to it")
	}
	return nil
}

// prefixesFlag is --trusted-proxies, parsed as it is set: a bad prefix, on
// the command line or in the variable, stops serve with exit status 2,
// naming it, before anything is opened.
type prefixesFlag struct {
	text string
	to   *[]netip.Prefix
}

func (f *prefixesFlag) String() string { return f.text }

func (f *prefixesFlag) Set(s string) error {
	p, err := api.ParseTrustedProxies(s)
	if err != nil {
		return err
	}
	f.text, *f.to = s, p
	return nil
}

// loadOrCreateToken reads a token file, or writes a new random token to it
// (synced: the token is printed and handed out at once). A token file that
// holds no token is refused rather than leaving the admin API locked, as is
// one others may write (durable.CheckSecret).
func loadOrCreateToken(path string, log *slog.Logger) (tok string, created bool, err error) {
	b, created, err := durable.ReadOrCreate(path, 0o600, func() ([]byte, error) {
		var raw [24]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return nil, err
		}
		return []byte(hex.EncodeToString(raw[:]) + "\n"), nil
	})
	if err != nil {
		return "", false, err
	}
	if err := durable.CheckSecret(path, "admin token", log); err != nil {
		return "", false, err
	}
	if tok = strings.TrimSpace(string(b)); tok == "" {
		return "", false, fmt.Errorf("admin token file %s is empty: remove it to make a new token, or write one into it", path)
	}
	return tok, created, nil
}

// logFlags adds --log-format and --log-level, which serve and worker
// webhooks share.
func logFlags(fs *flagSet) (format, level *string) {
	format = fs.String("log-format", "text", "log format: text or json")
	level = fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.bindEnv(map[string]string{"log-format": "PAYLEDGER_LOG_FORMAT", "log-level": "PAYLEDGER_LOG_LEVEL"})
	return format, level
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}
