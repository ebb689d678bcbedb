package stream

import (
	"context"
	"fmt"
)

// Node is what `payledger serve` runs of NATS: the embedded server (or the
// connection to an external one), the event stream, and the relay that
// publishes the log to it.
//
// Shutdown order (docs/operations): stop HTTP, drain consumers, StopRelay
// (flushes the relay), close the log, then Close (closes the connection
// and stops the embedded server).
type Node struct {
	conn   *Conn
	relay  *Relay
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Start opens cfg's connection (starting the embedded server when cfg.URL
// is empty), ensures the event stream, and runs a relay from log with
// cfg.Relay in its own goroutine until StopRelay. ctx bounds only the
// start.
//
// An external server that cannot be reached does not stop the node: appends
// never wait for NATS. The connection keeps trying, and the relay creates
// the stream and catches up once it gets through.
//
// Errors: ErrConfig, and the embedded server's and JetStream API's errors
// (a stream that cannot be created on a reachable server). On error
// nothing is left running.
func Start(ctx context.Context, cfg Config, log Log) (*Node, error) {
	conn, err := open(ctx, cfg, true)
	if err != nil {
		return nil, err
	}
	if !conn.nc.IsConnected() {
		conn.cfg.Logger.Warn("nats unreachable; the relay will publish once it connects", "url", redact(conn.cfg.URL))
	} else if _, err := conn.EnsureStream(ctx); err != nil {
		conn.Close()
		return nil, err
	} else if mp := conn.nc.MaxPayload(); mp < MaxMessageSize {
		conn.cfg.Logger.Warn("nats max_payload is below the largest event message the log accepts: the relay would stop at such an event until max_payload is raised",
			"max_payload", mp, "largest_event_message", MaxMessageSize)
	}
	relay, err := NewRelay(conn, log, cfg.Relay)
	if err != nil {
		conn.Close()
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n := &Node{conn: conn, relay: relay, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		n.err = relay.Run(rctx)
	}()
	return n, nil
}

// Conn is the node's NATS connection (for consumers in the same process).
func (n *Node) Conn() *Conn { return n.conn }

// Relay is the node's relay (for its position and Flush).
func (n *Node) Relay() *Relay { return n.relay }

// Done is closed when the relay stops: after StopRelay, or on its own when
// it cannot go on (then Err says why, and the process should stop
// appending or fail its readiness check).
func (n *Node) Done() <-chan struct{} { return n.done }

// Err is the relay's error once Done is closed: nil after StopRelay,
// ErrDiverged, ErrTooLarge or ledger.ErrClosed when it stopped on its own.
func (n *Node) Err() error {
	select {
	case <-n.done:
		return n.err
	default:
		return nil
	}
}

// StopRelay flushes the relay (publishes everything committed, until ctx
// ends), stops it, and waits for the acknowledgements in flight. Call it
// after the last append and before closing the log. With NATS unreachable
// it does not wait for a flush that cannot happen: the events stay in the
// log, and the next start publishes them.
//
// Errors: the flush's (ctx.Err() if it did not finish) or the relay's own.
func (n *Node) StopRelay(ctx context.Context) error {
	var ferr error
	if n.conn.nc.IsConnected() {
		ferr = n.relay.Flush(ctx)
	} else {
		n.conn.cfg.Logger.Warn("nats unreachable at shutdown; the next start publishes the rest",
			"position", n.relay.Position())
	}
	n.cancel()
	<-n.done
	if n.err != nil {
		return n.err
	}
	if ferr != nil {
		return fmt.Errorf("flush relay at %d: %w", n.relay.Position(), ferr)
	}
	return nil
}

// Close stops the relay if it still runs (without flushing), closes the
// connection and shuts the embedded server down.
func (n *Node) Close() {
	n.cancel()
	<-n.done
	n.conn.Close()
}
