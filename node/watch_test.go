package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/payledger/payledger/internal/syncbuf"
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
	var logs syncbuf.Buffer
	cfg := Config{DataDir: dir, Addr: "127.0.0.1:0", Demo: true, Out: io.Discard, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	n, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := gaugeValue(t, n, "payledger_relay_stopped"); got != 0 {
		t.Fatalf("payledger_relay_stopped %v while the relay runs, want 0", got)
	}
	deadline := time.Now().Add(20 * time.Second)
	for gaugeValue(t, n, "payledger_relay_backlog_events") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("payledger_relay_backlog_events %v, want 0 once the relay caught up", gaugeValue(t, n, "payledger_relay_backlog_events"))
		}
		time.Sleep(5 * time.Millisecond)
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
	deadline = time.Now().Add(20 * time.Second)
	var sn *stream.Node
	for sn = n.Stream(); sn == nil || !errors.Is(sn.Err(), stream.ErrDiverged); sn = n.Stream() {
		if time.Now().After(deadline) {
			t.Fatal("the relay did not stop with ErrDiverged")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The watcher's next look decides, and says so once: it logs that it
	// leaves the stopped relay alone, or it restarts the server (the bug).
	// Wait for either. Its later looks take the same branch (only the log
	// line is not repeated), so there is nothing more to wait for.
	restarts := func() float64 {
		var m dto.Metric
		if err := n.metrics.natsRestarts.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	deadline = time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "relay stopped; not restarting") && n.Stream() == sn && restarts() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the watcher did not look at the stopped relay:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := n.Stream(); got != sn {
		t.Fatalf("the embedded NATS server was restarted after the relay diverged:\n%s", logs.String())
	}
	if got := restarts(); got != 0 {
		t.Fatalf("%v restarts", got)
	}
	if err := n.ready(ctx); !errors.Is(err, stream.ErrDiverged) {
		t.Fatalf("ready = %v, want the divergence", err)
	}
	// /metrics says so too, for an alert.
	if got := gaugeValue(t, n, "payledger_relay_stopped"); got != 1 {
		t.Fatalf("payledger_relay_stopped %v, want 1", got)
	}
	// And that nothing of the new log reached the stream.
	if got, want := gaugeValue(t, n, "payledger_relay_backlog_events"), float64(n.Log.Head().Seq); got != want || want == 0 {
		t.Fatalf("payledger_relay_backlog_events %v, want the whole log, %v", got, want)
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
