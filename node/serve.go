package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// HTTP server timeouts: a slow client cannot hold a connection or a handler
// forever.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 120 * time.Second
)

// Addr is the address the node listens on.
func (n *Node) Addr() string { return n.listener.Addr().String() }

// Handler is the node's HTTP handler (API, admin API, hosted pages, health, metrics).
func (n *Node) Handler() http.Handler { return n.handler }

// Serve serves HTTP until ctx ends, then shuts down gracefully: it stops
// accepting requests and waits for those in flight, stops the scheduler and
// the webhook dispatcher, flushes the relay, closes the log and stops NATS.
// An acknowledged request is never lost: its events were fsynced before the
// response was written.
func (n *Node) Serve(ctx context.Context) error {
	n.server = &http.Server{
		Handler:           n.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          nil,
	}
	n.server.RegisterOnShutdown(n.API.Stopping) // the event feed's long polls end
	errc := make(chan error, 1)
	go func() { errc <- n.server.Serve(n.listener) }()
	n.cfg.Logger.Info("serving", "addr", n.Addr(), "base_url", n.BaseURL(), "data_dir", n.cfg.DataDir)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
	defer cancel()
	dctx, dcancel := n.drainContext(sctx) // the files' close keeps the rest
	defer dcancel()
	n.cfg.Logger.Info("shutting down")
	if err := n.server.Shutdown(dctx); err != nil {
		n.cfg.Logger.Error("http shutdown", "err", err)
	}
	closeErr := n.closeAll(sctx)
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		n.cfg.Logger.Error("stopped", "err", serveErr)
		return fmt.Errorf("serve: %w", serveErr)
	}
	if closeErr != nil {
		n.cfg.Logger.Error("stopped", "err", closeErr)
		return closeErr
	}
	// The last line: every acknowledged request is in the closed log.
	n.cfg.Logger.Info("stopped", "head", n.Log.Head().Seq)
	return nil
}

// Close stops a node that is not serving (tests, or an Open that is not
// followed by Serve).
func (n *Node) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
	defer cancel()
	if n.server != nil {
		dctx, dcancel := n.drainContext(ctx)
		defer dcancel()
		_ = n.server.Shutdown(dctx)
	}
	return n.closeAll(ctx)
}
