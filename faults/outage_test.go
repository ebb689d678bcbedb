package faults

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/payledger/payledger/internal/syncbuf"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/node"
	"github.com/payledger/payledger/stream"
)

// TestNATSAndReceiverOutage runs a node in this process against an external
// NATS server (a JetStream server the test starts on a port fixed at its
// first start, and a store directory) and a webhook receiver on a fixed
// address, under create-invoice load. Each round takes NATS away, then the receiver,
// brings NATS back, then the receiver, with acknowledged creates between
// every step. Then: the relay catches up and the stream equals the log
// sequence by sequence and hash by hash (nothing lost, nothing doubled),
// every acknowledged invoice is there, and every webhook arrives signed,
// with no delivery left failed or pending.
func TestNATSAndReceiverOutage(t *testing.T) {
	t.Parallel()
	// The first start listens where the kernel picks; every later one
	// must listen there again, and waits for another process that took
	// the port while NATS was away (a connection's ephemeral port, say)
	// to let go, rather than fail.
	natsCfg := stream.Config{StoreDir: t.TempDir(), Port: -1}
	startNATS := func() *server.Server {
		var srv *server.Server
		err := retryPortTaken(portWait, nil, func() (err error) {
			srv, err = stream.StartServer(natsCfg)
			return err
		})
		if err != nil {
			t.Fatalf("NATS (port %d): %v", natsCfg.Port, err)
		}
		natsCfg.Port = srv.Addr().(*net.TCPAddr).Port
		return srv
	}
	var natsMu sync.Mutex
	srv := startNATS()
	stopNATS := func() {
		natsMu.Lock()
		defer natsMu.Unlock()
		if srv != nil {
			srv.Shutdown()
			srv.WaitForShutdown()
			srv = nil
		}
	}
	t.Cleanup(stopNATS)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsCfg.Port)
	recv := newReceiver(t)

	var logs syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dataDir := t.TempDir()
	n, err := node.Open(ctx, node.Config{
		DataDir: dataDir, Addr: "127.0.0.1:0", AdminToken: adminToken,
		NATS:                 stream.Config{URL: natsURL},
		AllowPrivateWebhooks: true, Out: io.Discard,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- n.Serve(ctx) }()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-served
		}
		if t.Failed() {
			t.Logf("node log:\n%s", logs.String())
		}
	}()

	a := newClient(n.BaseURL())
	m := setupMerchant(t, a, recv.url())
	recv.setSecret(m.Secret)
	a.key = m.APIKey
	bk := newBook()
	lctx, stopLoad := context.WithCancel(context.Background())
	wait := load(lctx, a, prof.Loaders, "o", bk)
	step := func(what string) {
		t.Helper()
		want := bk.nAcked.Load() + int64(prof.OutageAcks)
		err := poll(2*time.Minute, func() error {
			if got := bk.nAcked.Load(); got < want {
				return fmt.Errorf("%d of %d creates acknowledged", got, want)
			}
			return nil
		})
		if err != nil {
			stopLoad()
			wait()
			t.Fatalf("before %s: %v", what, err)
		}
	}
	var failedAttempts uint64
	for round := range prof.OutageRounds {
		step("NATS goes away")
		stopNATS()
		counts.add("NATS outages", 1)
		step("the receiver goes away")
		recv.close()
		counts.add("webhook receiver outages", 1)
		step("NATS comes back")
		if lag := n.Log.Head().Seq - n.Stream().Relay().Position(); lag == 0 {
			t.Errorf("round %d: NATS was away and the relay is not behind the log: the outage did not bite", round+1)
		} else {
			t.Logf("round %d: the relay is %d events behind while NATS is away", round+1, lag)
		}
		natsMu.Lock()
		srv = startNATS()
		natsMu.Unlock()
		step("the receiver comes back")
		if st := n.Webhooks.Stats(); st.Attempts == st.Delivered {
			t.Errorf("round %d: the receiver was away and no attempt failed: the outage did not bite", round+1)
		} else {
			failedAttempts = st.Attempts - st.Delivered
		}
		recv.open()
		t.Logf("round %d: NATS and the receiver were away and are back; %d creates acknowledged so far", round+1, bk.nAcked.Load())
	}
	step("the load stops")
	stopLoad()
	wait()
	if refused := bk.nRefused.Load(); refused > 0 {
		t.Errorf("%d creates refused while NATS or the receiver was away (appends must not wait for either): %s", refused, bk.statusSummary())
	}
	committed := resolveAmbiguous(t, a, bk)

	// The relay catches up with the log while the node runs.
	waitFor(t, time.Minute, "the relay to catch up", func() error {
		if p, h := n.Stream().Relay().Position(), n.Log.Head().Seq; p != h {
			return fmt.Errorf("relay at %d, log at %d", p, h)
		}
		return nil
	})
	counts.add("stream checks (stream caught up with the log head)", 1)

	acked := bk.ackedSnapshot()
	checkAcked(t, a, acked)
	counts.add("invoices acknowledged (2xx)", int64(len(acked)))

	// Every webhook arrives, retried after the outage (the first retry
	// comes 10 s after a failed attempt, +-20%).
	recv.waitAll(t, 2*time.Minute, append(keys(acked), committed...))
	noDeliveriesLeft(t, a)
	recv.record(t)

	cancel()
	stopped = true
	if err := <-served; err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}
	counts.add("graceful stops", 1)

	// Nothing lost, nothing doubled: stopped, the log verifies and the
	// stream (its server still up) is the log, sequence by sequence.
	st, err := boltlog.Open(filepath.Join(dataDir, node.LogFile), &boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	head, err := st.Verify(context.Background())
	if err != nil {
		t.Fatalf("verify after the outages: %v", err)
	}
	compareStreamWithLog(t, natsURL, st.Events(context.Background(), 1), head)
	counts.add("webhook attempts that failed while the receiver was away", int64(failedAttempts))
	t.Logf("%d rounds; %d invoices acknowledged, %d creates refused; %d events, stream = log; %d attempts failed while the receiver was away, all delivered since",
		prof.OutageRounds, len(acked), bk.nRefused.Load(), head.Seq, failedAttempts)
}
