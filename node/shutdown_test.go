package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/internal/syncbuf"
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

	start := time.Now()
	cancel()
	select {
	case a := <-polled:
		if a.err != nil || a.code != http.StatusOK {
			t.Fatalf("poll at shutdown: %d %s %v", a.code, a.body, a.err)
		}
		if err := json.Unmarshal(a.body, &page); err != nil || len(page.Items) != 0 {
			t.Errorf("poll at shutdown: %s (%v)", a.body, err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the long poll held the shutdown")
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("shutdown took %v with a long poll parked", took)
	}
	// The operator's last line says the node stopped cleanly, and where.
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "level=INFO msg=stopped head=") {
		t.Errorf("last log line %q, want the node's stopped line", last)
	}
}
