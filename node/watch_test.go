package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/payledger/payledger/stream"
)

// TestDivergedRelayIsNotRestarted: the embedded stream holds another log's
// events (the log was replaced), so the relay stops with ErrDiverged.
// Restarting the embedded server cannot fix that; the node must leave it
// stopped for /readyz to report, not restart it at every look.
func TestDivergedRelayIsNotRestarted(t *testing.T) {
	defer func(d time.Duration) { watchEvery = d }(watchEvery)
	watchEvery = 10 * time.Millisecond
	dir := t.TempDir()
	ctx := context.Background()
	cfg := Config{DataDir: dir, Addr: "127.0.0.1:0", Demo: true, Out: io.Discard, Logger: slog.New(slog.DiscardHandler)}
	n, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := gaugeValue(t, n, "payledger_relay_stopped"); got != 0 {
		t.Fatalf("payledger_relay_stopped %v while the relay runs, want 0", got)
	}
	if err := n.Close(); err != nil { // flushes the relay: the stream holds the log
		t.Fatal(err)
	}
	// Another log: a new demo merchant, other events at the same sequences.
	for _, f := range []string{LogFile, WebhooksFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	n, err = Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	deadline := time.Now().Add(20 * time.Second)
	var sn *stream.Node
	for sn = n.Stream(); sn == nil || !errors.Is(sn.Err(), stream.ErrDiverged); sn = n.Stream() {
		if time.Now().After(deadline) {
			t.Fatal("the relay did not stop with ErrDiverged")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Fifty looks later: the same stopped relay, and no restart. (What is
	// checked is that something does not happen, so it takes a while.)
	time.Sleep(50 * watchEvery)
	if got := n.Stream(); got != sn {
		t.Fatal("the embedded NATS server was restarted after the relay diverged")
	}
	var m dto.Metric
	if err := n.metrics.natsRestarts.Write(&m); err != nil || m.GetCounter().GetValue() != 0 {
		t.Fatalf("%v restarts (%v)", m.GetCounter().GetValue(), err)
	}
	if err := n.ready(ctx); !errors.Is(err, stream.ErrDiverged) {
		t.Fatalf("ready = %v, want the divergence", err)
	}
	// /metrics says so too, for an alert.
	if got := gaugeValue(t, n, "payledger_relay_stopped"); got != 1 {
		t.Fatalf("payledger_relay_stopped %v, want 1", got)
	}
}

// gaugeValue reads a gauge of the node's registry (-1: not registered).
func gaugeValue(t *testing.T, n *Node, name string) float64 {
	t.Helper()
	mfs, err := n.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}
