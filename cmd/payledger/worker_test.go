package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/internal/syncbuf"
	"github.com/payledger/payledger/stream"
	"github.com/payledger/payledger/stream/natstest"
)

var workerAtRE = regexp.MustCompile(`msg="worker projections: (?:caught up|imported)".* head=(\d+)`)

// workerAt is the highest sequence the worker has reported.
func workerAt(out string) uint64 {
	var at uint64
	for _, m := range workerAtRE.FindAllStringSubmatch(out, -1) {
		if n, _ := strconv.ParseUint(m[1], 10, 64); n > at {
			at = n
		}
	}
	return at
}

// startWorker runs `payledger worker projections` until stop, and returns
// what it logs (stderr). Its stdout, kept for machine-readable output,
// must stay empty: its progress is logged.
func startWorker(t *testing.T, url, dir, durable string) (log *syncbuf.Buffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncbuf.Buffer{}
	errs := &syncbuf.Buffer{}
	done := make(chan int, 1)
	go func() {
		done <- runMain(ctx, []string{"worker", "projections", "--nats-url", url, "--data-dir", dir, "--durable", durable, "--batch", "100"}, out, errs)
	}()
	code, stopped := 0, false
	stop = func() int {
		if !stopped {
			stopped = true
			cancel()
			code = <-done
			if code != 0 {
				t.Errorf("worker exit %d: %s", code, errs.String())
			}
			if out.String() != "" {
				t.Errorf("worker projections wrote to stdout:\n%s", out.String())
			}
			if !strings.Contains(errs.String(), `msg="worker projections: stopped"`) {
				t.Errorf("worker projections logged no stop:\n%s", errs.String())
			}
		}
		return code
	}
	t.Cleanup(func() { stop() })
	return errs, stop
}

func waitWorker(t *testing.T, out *syncbuf.Buffer, seq uint64) {
	t.Helper()
	natstest.WaitFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if at := workerAt(out.String()); at < seq {
			return fmt.Errorf("worker at %d, want %d", at, seq)
		}
		return nil
	})
}

// A read node fed by the stream: `payledger worker projections` keeps a
// local log and its views equal to the write node's, across restarts, with
// a fresh data dir, and after its durable consumer is deleted.
func TestWorkerProjections(t *testing.T) {
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	src := sourceLog(t)
	appendTestEvents(t, src, 500)
	publishTo(t, url, src)
	dir := filepath.Join(t.TempDir(), "read")

	out, stop := startWorker(t, url, dir, "read-1")
	waitWorker(t, out, 500)
	// Live: events published while the worker runs reach it through the
	// durable consumer.
	appendTestEvents(t, src, 300)
	publishTo(t, url, src)
	waitWorker(t, out, 800)
	stop()
	requireSameLog(t, filepath.Join(dir, "ledger.db"), src)

	// Restarted after more events: it carries on from its own log.
	appendTestEvents(t, src, 200)
	publishTo(t, url, src)
	out, stop = startWorker(t, url, dir, "read-1")
	waitWorker(t, out, 1000)
	appendTestEvents(t, src, 100)
	publishTo(t, url, src)
	waitWorker(t, out, 1100)
	stop()
	requireSameLog(t, filepath.Join(dir, "ledger.db"), src)

	// A new data dir under the same durable name starts from the first
	// event (the consumer, ahead of the empty log, is made anew).
	fresh := filepath.Join(t.TempDir(), "read2")
	out, stop = startWorker(t, url, fresh, "read-1")
	waitWorker(t, out, 1100)

	// Its consumer deleted on the server (by an operator, or with its
	// stream), it makes it anew from its head: it neither spins on the
	// deleted one nor stops.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := stream.Open(ctx, stream.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.JetStream().DeleteConsumer(ctx, conn.Config().Stream, "read-1"); err != nil {
		t.Fatal(err)
	}
	appendTestEvents(t, src, 100)
	publishTo(t, url, src)
	waitWorker(t, out, 1200)
	stop()
	requireSameLog(t, filepath.Join(fresh, "ledger.db"), src)
}

func TestWorkerUnknownKind(t *testing.T) {
	code, _, errs := run(context.Background(), "worker", "nope")
	if code != 2 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	code, _, _ = run(context.Background(), "worker")
	if code != 2 {
		t.Fatalf("no kind: exit %d", code)
	}
}
