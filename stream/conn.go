package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Conn is a connection to NATS JetStream, with the embedded server it
// started (if any) and the stream settings of its Config. Safe for
// concurrent use.
type Conn struct {
	cfg Config
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

// Open connects to cfg.URL, or, when it is empty, starts an embedded NATS
// server with JetStream storing under cfg.StoreDir and connects to it.
//
// Errors: ErrConfig for an invalid config, or the server's or the
// connection's error.
func Open(ctx context.Context, cfg Config) (*Conn, error) {
	return open(ctx, cfg, false)
}

// open is Open; with retry, an external server that cannot be reached yet
// does not fail it: the connection keeps trying in the background.
func open(ctx context.Context, cfg Config, retry bool) (*Conn, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Conn{cfg: cfg}
	target := cfg.URL
	if target == "" {
		c.srv, err = StartServer(cfg)
		if err != nil {
			return nil, err
		}
		target = c.srv.ClientURL()
	}
	c.nc, err = connect(ctx, target, cfg, retry && c.srv == nil)
	if err != nil {
		c.shutdownServer()
		return nil, err
	}
	c.js, err = jetstream.New(c.nc)
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// StartServer starts a NATS server with JetStream as cfg describes (Host,
// Port, StoreDir, ServerName, MaxStore, SyncAlways, User and Password or
// Token) and waits until it accepts connections. Its log goes to
// cfg.Logger. The caller shuts it down (Shutdown, then WaitForShutdown).
//
// Errors: ErrConfig without a store directory, or the server's error.
func StartServer(cfg Config) (*server.Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.StoreDir == "" {
		return nil, fmt.Errorf("%w: an embedded server needs a store directory", ErrConfig)
	}
	opts := &server.Options{
		ServerName:        cfg.ServerName,
		Host:              cfg.Host,
		Port:              cfg.Port,
		JetStream:         true,
		StoreDir:          cfg.StoreDir,
		JetStreamMaxStore: cfg.MaxStore,
		SyncAlways:        cfg.SyncAlways,
		Username:          cfg.User,
		Password:          cfg.Password,
		Authorization:     cfg.Token,
		NoSigs:            true, // the embedding process owns its signals
		MaxPayload:        EmbeddedMaxPayload,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats server: %w", err)
	}
	fatal := make(chan string, 1)
	srv.SetLoggerV2(slogLogger{l: cfg.Logger, fatal: fatal}, false, false, false)
	srv.Start()
	// A server that cannot listen (its port taken) logs a fatal error and
	// never becomes ready: report that at once, not after the wait.
	deadline := time.Now().Add(30 * time.Second)
	for !srv.ReadyForConnections(25 * time.Millisecond) {
		var err error
		select {
		case msg := <-fatal:
			if strings.Contains(msg, "address already in use") {
				msg += " (another process, perhaps a NATS server, holds the port: choose another, or -1 for a free one)"
			}
			err = fmt.Errorf("embedded nats server on %s:%d: %s", cfg.Host, cfg.Port, msg)
		default:
			if time.Now().After(deadline) {
				err = fmt.Errorf("embedded nats server on %s:%d did not become ready", cfg.Host, cfg.Port)
			}
		}
		if err != nil {
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil, err
		}
	}
	return srv, nil
}

func connect(ctx context.Context, urls string, cfg Config, retry bool) (*nats.Conn, error) {
	log := cfg.Logger
	opts := []nats.Option{
		nats.Name(cfg.ConnName),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// Fail publishes while disconnected instead of buffering them: the
		// relay retries from the log, which is a better buffer.
		nats.ReconnectBufSize(-1),
		nats.RetryOnFailedConnect(retry),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", redact(nc.ConnectedUrl()))
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("nats connected", "url", redact(nc.ConnectedUrl()))
		}),
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.User != "" || cfg.Password != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCAFile))
	}
	if cfg.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCertFile, cfg.TLSKeyFile))
	}
	if d, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(time.Until(d)))
	}
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", redact(urls), err)
	}
	return nc, nil
}

// redact hides the credentials in a comma-separated list of URLs: a
// password, and a user without one, which is how a NATS URL carries a
// token (nats://TOKEN@host). url.URL.Redacted hides only the first.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		switch {
		case err != nil && strings.Contains(p, "@"):
			parts[i] = "(unparsable URL)"
		case err != nil || u.User == nil:
		case hasPassword(u.User):
			parts[i] = u.Redacted()
		default:
			u.User = url.User("xxxxx")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

func hasPassword(u *url.Userinfo) bool {
	_, ok := u.Password()
	return ok
}

// Close closes the connection and, if Open started a server, shuts the
// server down and waits for it (JetStream flushes its files).
func (c *Conn) Close() {
	if c.nc != nil {
		c.nc.Close()
	}
	c.shutdownServer()
}

func (c *Conn) shutdownServer() {
	if c.srv != nil {
		c.srv.Shutdown()
		c.srv.WaitForShutdown()
	}
}

// Config is the connection's config, defaults filled in.
func (c *Conn) Config() Config { return c.cfg }

// NATS is the underlying connection.
func (c *Conn) NATS() *nats.Conn { return c.nc }

// JetStream is the JetStream API on the connection.
func (c *Conn) JetStream() jetstream.JetStream { return c.js }

// Server is the embedded server, or nil when connected to an external URL.
func (c *Conn) Server() *server.Server { return c.srv }

// ClientURL is the URL others can connect to: the embedded server's, or
// the configured one.
func (c *Conn) ClientURL() string {
	if c.srv != nil {
		return c.srv.ClientURL()
	}
	return c.cfg.URL
}

// Subject is the subject of an event of this merchant and type.
func (c *Conn) Subject(merchant, eventType string) string {
	return Subject(c.cfg.SubjectPrefix, merchant, eventType)
}

// Filter is the subject filter for a merchant and event type pattern (see
// the package function Filter).
func (c *Conn) Filter(merchant, types string) string {
	return Filter(c.cfg.SubjectPrefix, merchant, types)
}

// AllSubjects is the filter that selects every event ("payledger.events.>").
func (c *Conn) AllSubjects() string { return c.cfg.SubjectPrefix + ".>" }

// StreamConfig is the JetStream configuration of the event stream.
//
// File storage, no limits (the stream is the node's backup and the
// analysts' history), deletes and purges denied so that stream sequence N
// keeps holding log sequence N, and direct gets for fast reads of single
// messages.
func (c *Conn) StreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        c.cfg.Stream,
		Description: "payledger events, stream sequence = log sequence",
		Subjects:    []string{c.AllSubjects()},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.cfg.Replicas,
		Duplicates:  c.cfg.DuplicateWindow,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		MaxAge:      0,
		Discard:     jetstream.DiscardNew,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
	}
}

// EnsureStream creates the event stream, or updates an existing one whose
// subjects, replicas, duplicate window or protections differ from
// StreamConfig (keeping any other setting an operator made).
//
// Errors: the JetStream API's.
func (c *Conn) EnsureStream(ctx context.Context) (jetstream.Stream, error) {
	want := c.StreamConfig()
	s, err := c.js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = c.js.CreateStream(ctx, want)
		if err != nil {
			return nil, fmt.Errorf("create stream %s: %w", want.Name, err)
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	if slices.Contains(have.Subjects, want.Subjects[0]) && have.Replicas == want.Replicas &&
		have.Duplicates == want.Duplicates && have.DenyDelete && have.DenyPurge && have.AllowDirect {
		return s, nil
	}
	upd := have
	if !slices.Contains(upd.Subjects, want.Subjects[0]) {
		upd.Subjects = append(slices.Clone(upd.Subjects), want.Subjects[0])
	}
	upd.Replicas, upd.Duplicates = want.Replicas, want.Duplicates
	upd.DenyDelete, upd.DenyPurge, upd.AllowDirect = true, true, true
	s, err = c.js.UpdateStream(ctx, upd)
	if err != nil {
		return nil, fmt.Errorf("update stream %s: %w", want.Name, err)
	}
	return s, nil
}

// Stream returns the event stream, which must exist.
//
// Errors: jetstream.ErrStreamNotFound, or the JetStream API's.
func (c *Conn) Stream(ctx context.Context) (jetstream.Stream, error) {
	s, err := c.js.Stream(ctx, c.cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", c.cfg.Stream, err)
	}
	return s, nil
}

// slogLogger adapts slog to nats-server's logger.
// slogLogger writes the embedded server's log to slog. Its fatal errors
// (failing to listen) also go to fatal, when set, if nothing is waiting
// there yet.
type slogLogger struct {
	l     *slog.Logger
	fatal chan<- string
}

func (s slogLogger) Noticef(format string, v ...any) {
	s.l.Info(fmt.Sprintf(format, v...), "component", "nats")
}
func (s slogLogger) Warnf(format string, v ...any) {
	s.l.Warn(fmt.Sprintf(format, v...), "component", "nats")
}
func (s slogLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	s.l.Error(msg, "component", "nats", "fatal", true)
	if s.fatal != nil {
		select {
		case s.fatal <- msg:
		default:
		}
	}
}
func (s slogLogger) Errorf(format string, v ...any) {
	s.l.Error(fmt.Sprintf(format, v...), "component", "nats")
}
func (s slogLogger) Debugf(format string, v ...any) {
	s.l.Debug(fmt.Sprintf(format, v...), "component", "nats")
}
func (s slogLogger) Tracef(format string, v ...any) {
	s.l.Debug(fmt.Sprintf(format, v...), "component", "nats", "trace", true)
}
