package node_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/audit"
	"github.com/payledger/payledger/internal/syncbuf"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/node"
)

// TestServeEndsLongPolls: Serve registers the API's Stopping with its HTTP
// server, so a shutdown answers a parked event feed long poll at once (200,
// no items) instead of waiting out its 20 s, and the node stops well within
// its shutdown timeout.
func TestServeEndsLongPolls(t *testing.T) {
	var out, logs syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, err := node.Open(ctx, node.Config{DataDir: t.TempDir(), Addr: "127.0.0.1:0", NoNATS: true, Demo: true,
		Out: &out, ShutdownTimeout: time.Minute, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- n.Serve(ctx) }()
	key := regexp.MustCompile(`api_key:\s+(\S+)`).FindStringSubmatch(out.String())[1]
	base := "http://" + n.Addr()
	get := func(path string) (*http.Response, []byte, error) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("X-Api-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp, body, err
	}
	_, body, err := get("/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Items []json.RawMessage `json:"items"`
		Head  uint64            `json:"head"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatalf("feed: %v: %s", err, body)
	}

	type answer struct {
		code int
		body []byte
		err  error
	}
	polled := make(chan answer, 1)
	go func() {
		resp, body, err := get(fmt.Sprintf("/api/v1/events?after=%d&wait=20", page.Head))
		if err != nil {
			polled <- answer{err: err}
			return
		}
		polled <- answer{code: resp.StatusCode, body: body}
	}()
	// Shut down only once the poll is parked, as the metric says.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, metrics, err := get("/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(metrics), "\npayledger_http_feed_waiting 1\n") {
			if !strings.Contains(string(metrics), "\npayledger_scheduler_expire_failures_total 0\n") {
				t.Error("metrics lack the scheduler's failed expiries")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the long poll never parked")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// One deadline bounds the whole shutdown: well under the poll's
	// 20 s wait, so a shutdown that waits the poll out misses it.
	stopped := time.NewTimer(10 * time.Second)
	defer stopped.Stop()
	cancel()
	select {
	case a := <-polled:
		if a.err != nil || a.code != http.StatusOK {
			t.Fatalf("poll at shutdown: %d %s %v", a.code, a.body, a.err)
		}
		if err := json.Unmarshal(a.body, &page); err != nil || len(page.Items) != 0 {
			t.Errorf("poll at shutdown: %s (%v)", a.body, err)
		}
	case <-stopped.C:
		t.Fatal("the long poll held the shutdown")
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-stopped.C:
		t.Fatal("serve did not return with a long poll parked")
	}
	// The operator's last line says the node stopped cleanly, and where.
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "level=INFO msg=stopped head=") {
		t.Errorf("last log line %q, want the node's stopped line", last)
	}
}

// TestServeHonoursShutdownTimeout: a shutdown whose last append cannot
// commit (the log's disk hangs; here the test holds ledger.db's write
// transaction, so the checkpointer's last checkpoint waits for it) returns
// within the shutdown timeout instead of waiting for it forever, names
// what did not finish, and does not close the log under the append: once
// the write goes through, the log closes with every acknowledged event
// and the last checkpoint after them.
func TestServeHonoursShutdownTimeout(t *testing.T) {
	var logs syncbuf.Buffer
	n, dir := openTimingOut(t, &logs, node.CheckpointConfig{Every: 1 << 30, Interval: time.Hour})
	ctx := context.Background()
	m, err := n.CreateMerchant(ctx, "stuck", "2")
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	acked := n.Log.Head().Seq // every event up to here was acknowledged
	pub := n.Checkpoints.PublicKey()
	tx, err := n.Log.DB().Begin(true)
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	serveTimingOut(t, n, func() { tx.Rollback() })
	for _, part := range []string{"checkpointer", "log"} {
		if !regexp.MustCompile(`level=ERROR msg="shutdown timed out.*" part=` + part + `\b`).MatchString(logs.String()) {
			t.Errorf("no error line names %s as unfinished:\n%s", part, logs.String())
		}
	}
	// The log is still open under the append; it closes once the append
	// commits, and then holds it after every acknowledged event.
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	s, err := boltlog.Open(filepath.Join(dir, node.LogFile), &boltlog.Options{ReadOnly: true, OpenTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("the log did not close once its write went through: %v", err)
	}
	defer s.Close()
	last, err := s.Get(s.Head().Seq)
	if err != nil {
		t.Fatal(err)
	}
	r, err := audit.Run(context.Background(), s, audit.Options{PublicKeys: []ed25519.PublicKey{pub}, ScratchDir: t.TempDir()})
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	if last.Seq != acked+1 || last.Type != audit.TypeCheckpointSigned || r.Uncovered != 1 {
		t.Fatalf("log ends at %d with %s (%d not covered by a checkpoint), want the merchant %s's events to %d and a checkpoint after them",
			last.Seq, last.Type, r.Uncovered, m.MerchantID, acked)
	}
}

// TestShutdownClosesTheLogPastAStuckDispatcher: a background goroutine
// that does not return (the webhook dispatcher, its store's disk hanging;
// here the test holds webhooks.db's write transaction) does not hold the
// shutdown past its timeout, is named, and the log is still closed before
// Serve returns, with every acknowledged event.
func TestShutdownClosesTheLogPastAStuckDispatcher(t *testing.T) {
	var logs syncbuf.Buffer
	n, dir := openTimingOut(t, &logs, node.CheckpointConfig{})
	ctx := context.Background()
	tx, err := n.Webhooks.DB().Begin(true)
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			tx.Rollback()
		}
	}
	defer release()
	if _, err := n.CreateMerchant(ctx, "stuck", "2"); err != nil {
		release()
		n.Close()
		t.Fatal(err)
	}
	acked := n.Log.Head().Seq
	// Wait until the dispatcher is blocked recording the new events.
	deadline := time.Now().Add(10 * time.Second)
	for buf := make([]byte, 1<<20); !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "webhooks.(*Dispatcher).Ingest"); {
		if time.Now().After(deadline) {
			release()
			n.Close()
			t.Fatal("the dispatcher never took the new events")
		}
		time.Sleep(5 * time.Millisecond)
	}

	serveTimingOut(t, n, release)
	if !strings.Contains(logs.String(), `msg="shutdown timed out: still running" part="webhook dispatcher"`) {
		t.Errorf("no error line names the webhook dispatcher:\n%s", logs.String())
	}
	// Closed already: the file's lock is free while the dispatcher is
	// still stuck.
	s, err := boltlog.Open(filepath.Join(dir, node.LogFile), &boltlog.Options{ReadOnly: true, OpenTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("the log is not closed: %v", err)
	}
	defer s.Close()
	if head := s.Head().Seq; head < acked {
		t.Fatalf("the log ends at %d, before the acknowledged %d", head, acked)
	}
	if _, err := audit.Run(context.Background(), s, audit.Options{ScratchDir: t.TempDir()}); err != nil {
		t.Fatalf("audit: %v", err)
	}
}

// shortTimeout is the shutdown timeout of the nodes that time out.
const shortTimeout = 2 * time.Second

// openTimingOut opens a node with a data dir of its own and a shutdown
// timeout of shortTimeout, logging into logs.
func openTimingOut(t *testing.T, logs *syncbuf.Buffer, cp node.CheckpointConfig) (*node.Node, string) {
	t.Helper()
	dir := t.TempDir()
	n, err := node.Open(context.Background(), node.Config{DataDir: dir, Addr: "127.0.0.1:0", NoNATS: true, Demo: true, Out: io.Discard,
		ShutdownTimeout: shortTimeout, Logger: slog.New(slog.NewTextHandler(logs, nil)), Checkpoints: cp})
	if err != nil {
		t.Fatal(err)
	}
	return n, dir
}

// serveTimingOut serves n and stops it at once, and checks that Serve
// gives up with ErrShutdownTimeout rather than waiting out the blocked
// work: the work never ends on its own, so a Serve that waits for it
// is still running at the select's deadline. unblock then lets the
// node finish before the test ends.
func serveTimingOut(t *testing.T, n *node.Node, unblock func()) {
	timeout := shortTimeout
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- n.Serve(ctx) }()
	start := time.Now()
	cancel()
	var err error
	select {
	case err = <-served:
	case <-time.After(timeout + 10*time.Second):
		unblock()
		<-served
		t.Fatalf("serve still running %v after a shutdown with a %v timeout", time.Since(start).Round(time.Millisecond), timeout)
	}
	if !errors.Is(err, node.ErrShutdownTimeout) {
		t.Errorf("serve: %v, want ErrShutdownTimeout", err)
	}
}
