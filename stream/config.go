package stream

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"
)

// Defaults of Config and RelayConfig.
const (
	DefaultStream          = "PAYLEDGER"
	DefaultSubjectPrefix   = "payledger.events"
	DefaultDuplicateWindow = 24 * time.Hour
	DefaultHost            = "127.0.0.1"
	DefaultPort            = 4222
	DefaultServerName      = "payledger"
	DefaultConnName        = "payledger"

	DefaultMaxInFlight = 4096
	DefaultAckTimeout  = 5 * time.Second
	DefaultMinBackoff  = 50 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Second
)

// Config says where the NATS server is (or how to embed one) and what the
// event stream looks like. The zero value, with StoreDir set, embeds a
// loopback-only JetStream server on port 4222.
type Config struct {
	// URL is an external NATS server or cluster, several URLs separated by
	// commas. Empty means embed a NATS server with JetStream in this process.
	URL string
	// CredsFile is a NATS credentials file (user JWT and NKey seed) for URL.
	CredsFile string
	// User and Password authenticate the connection. With an embedded
	// server they are also the one user the server accepts; without them
	// (or a Token) the embedded server has no authentication, which is why
	// it listens on loopback by default and refuses any other Host
	// (CheckExposure).
	User     string
	Password string
	// Token authenticates the connection with a token; with an embedded
	// server it is also the token the server requires.
	Token string
	// TLSCAFile is a PEM file of the CAs that sign the server's certificate.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are a PEM client certificate and its key,
	// for servers that verify clients.
	TLSCertFile string
	TLSKeyFile  string
	// ConnName is the connection name the server shows in its monitoring.
	// Default "payledger".
	ConnName string

	// StoreDir is where the embedded server keeps JetStream's files.
	// Required when URL is empty; ignored otherwise.
	StoreDir string
	// Host is the address the embedded server listens on. Default
	// 127.0.0.1: only processes on this machine can connect. Any host but
	// a loopback one needs User and Password, or Token (CheckExposure).
	Host string
	// Port is the embedded server's client port. 0 means 4222 (so the nats
	// CLI and payledger tail find it without flags); -1 picks a free port.
	Port int
	// ServerName names the embedded server. Default "payledger".
	ServerName string
	// MaxStore bounds the embedded JetStream's file storage in bytes.
	// Default: nats-server's own (most of the free disk).
	MaxStore int64
	// SyncAlways makes the embedded JetStream fsync every message. By default
	// it syncs periodically, and after a crash the relay republishes the
	// tail that JetStream lost, so the log's fsync is the only one an append
	// waits for.
	SyncAlways bool

	// Stream is the JetStream stream that holds every event. Default
	// "PAYLEDGER".
	Stream string
	// SubjectPrefix heads every event subject. Default "payledger.events".
	SubjectPrefix string
	// Replicas is the stream's replication factor: 1 for an embedded server,
	// 3 on a cluster. Default 1.
	Replicas int
	// DuplicateWindow is how long JetStream remembers message ids
	// (Nats-Msg-Id = event id) to drop a re-sent event. Default 24h. The
	// relay does not depend on it for exactly-once (it publishes with the
	// expected last sequence); the window is a second guard for anyone
	// re-publishing events. JetStream keeps every id of the window in
	// memory and rebuilds them on restart, about 100 bytes an event
	// (measured): at 100 events/s a 24h window costs about 0.9 GB. Lower
	// it on busy nodes.
	DuplicateWindow time.Duration

	// Logger receives the embedded server's log (at its levels) and the
	// relay's warnings. Default: discard.
	Logger *slog.Logger

	// Relay configures the relay Start runs.
	Relay RelayConfig
}

// RelayConfig tunes the relay. The zero value is the default.
type RelayConfig struct {
	// MaxInFlight bounds the events published and not yet acknowledged.
	// Default 4096.
	MaxInFlight int
	// AckTimeout is how long one publish waits for its acknowledgement, and
	// bounds each request the relay makes. Default 5s.
	AckTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts while NATS
	// is unreachable; it doubles from the first to the second. Defaults 50ms
	// and 5s.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// OnAck, if set, is called for every acknowledged event, in sequence
	// order, with the publish lag: the time from the event's commit to its
	// acknowledgement, a NATS outage included. The log keeps no commit
	// time, so the lag starts at the event's Time, the command's time
	// (taken by the HTTP layer when the request arrives): it adds the
	// request's own handling and commit wait (usually milliseconds), and
	// counts an event imported or
	// committed before a long stop from its original time. It runs on the
	// relay's ack path, so it must be quick (a histogram Observe).
	OnAck func(seq uint64, lag time.Duration)
	// Logger receives retries and failures. Default: Config.Logger, or
	// discard.
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.ConnName == "" {
		c.ConnName = DefaultConnName
	}
	if c.Host == "" {
		c.Host = DefaultHost
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.ServerName == "" {
		c.ServerName = DefaultServerName
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.URL == "" && c.StoreDir == "":
		return c, fmt.Errorf("%w: an embedded server needs a store directory", ErrConfig)
	case c.Replicas < 1 || c.Replicas > 5:
		return c, fmt.Errorf("%w: replicas %d (1 to 5)", ErrConfig, c.Replicas)
	case c.DuplicateWindow < 0:
		return c, fmt.Errorf("%w: negative duplicate window", ErrConfig)
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		return c, fmt.Errorf("%w: a TLS client certificate needs both cert and key files", ErrConfig)
	case c.Port < -1 || c.Port > 65535:
		return c, fmt.Errorf("%w: port %d", ErrConfig, c.Port)
	}
	if err := c.CheckExposure(); err != nil {
		return c, err
	}
	return c, nil
}

// CheckExposure refuses an embedded server (URL empty) that would listen
// on a Host other than a loopback address with no authentication: anyone
// who reaches it could read every event and publish into the stream that
// workers and restores consume. A User with a Password, or a Token, makes
// it safe to open. An empty Host is the default, 127.0.0.1.
//
// Errors: ErrConfig, naming the host.
func (c Config) CheckExposure() error {
	if c.URL != "" || c.User != "" && c.Password != "" || c.Token != "" || loopbackHost(c.Host) {
		return nil
	}
	return fmt.Errorf("%w: the embedded NATS server would listen on %q, which is not a loopback address, "+
		"with no authentication: set a user and password, or a token, or listen on 127.0.0.1", ErrConfig, c.Host)
}

// loopbackHost reports whether an embedded server listening on host can be
// reached only from this machine: "" (DefaultHost), "localhost", or a
// loopback IP address. A name is not resolved: any other is taken as
// reachable.
func loopbackHost(host string) bool {
	if host == "" || strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return err == nil && a.IsLoopback()
}

func (r RelayConfig) withDefaults(logger *slog.Logger) RelayConfig {
	if r.MaxInFlight <= 0 {
		r.MaxInFlight = DefaultMaxInFlight
	}
	if r.AckTimeout <= 0 {
		r.AckTimeout = DefaultAckTimeout
	}
	if r.MinBackoff <= 0 {
		r.MinBackoff = DefaultMinBackoff
	}
	if r.MaxBackoff <= 0 {
		r.MaxBackoff = DefaultMaxBackoff
	}
	if r.MaxBackoff < r.MinBackoff {
		r.MaxBackoff = r.MinBackoff
	}
	if r.Logger == nil {
		r.Logger = logger
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r
}
