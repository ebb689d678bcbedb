package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/stream"
	"github.com/payledger/payledger/stream/natstest"
)

// The example builds as a program of its own.
func TestBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("go build")
	}
	out, err := exec.Command("go", "build", "-o", filepath.Join(t.TempDir(), "analyst"), ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
}

// The example reads what a relay published and counts it.
func TestAnalystCounts(t *testing.T) {
	srv := natstest.RunServer(t)
	log, err := boltlog.Open(filepath.Join(t.TempDir(), "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 30 {
		_, err := log.Append(ctx, fmt.Sprintf("inv-%d", i), ledger.NoStream, ledger.NewEvent{
			ID: ulid.Make(), Type: []string{"invoice.created", "payment.processed", "invoice.paid"}[i%3],
			Time: time.Now(), Merchant: []string{"m-1", "m-2"}[i%2], Data: json.RawMessage(`{}`),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	conn, err := stream.Open(ctx, stream.Config{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := stream.NewRelay(conn, log, stream.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	var out strings.Builder
	if err := run(ctx, []string{"--nats-url", srv.ClientURL(), "--from", "1", "--count", "30", "--every", "100"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"30 events", "m-1 invoice.created", "m-2 payment.processed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := run(ctx, []string{"--nats-url", srv.ClientURL(), "--subject", "payledger.events.m-1.invoice.>", "--from", "1", "--count", "10"}, &out); err != nil {
		t.Fatal(err)
	}
	// m-1 has the even events: of those, 5 invoice.created and 5
	// invoice.paid (the other 5 are payment.processed), and nothing else.
	want := fmt.Sprintf("10 events\n  %-40s 5\n  %-40s 5\n", "m-1 invoice.created", "m-1 invoice.paid")
	if out.String() != want {
		t.Errorf("filtered output:\n%s\nwant:\n%s", out.String(), want)
	}
}
