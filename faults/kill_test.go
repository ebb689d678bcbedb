package faults

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/stream"
)

// TestKillServeUnderLoad runs `payledger serve` as a child process (embedded
// NATS on a fixed port, webhooks to a receiver on loopback) under
// create-invoice load from several clients, and kills it with SIGKILL
// several times, each time after a random number of acknowledged creates
// (every third time soon after the start). After each kill:
//
//   - the log verifies (`payledger verify` and a read-only Verify);
//   - restarted on the same data dir, every invoice acknowledged so far is
//     there (GET); each create the kill left without an answer is sent again
//     and must be either a duplicate (it was committed) or created now;
//   - the stream catches up with the log head, every new message checked
//     (hash, headers, sequence, chain), and holds the killed log's head hash
//     at its sequence;
//   - a signed webhook arrives for every committed invoice.
//
// At the end serve stops gracefully, the log verifies, and the whole stream
// (read from the embedded store) equals the log sequence by sequence.
func TestKillServeUnderLoad(t *testing.T) {
	t.Parallel()
	r := rng(t)
	dir := t.TempDir()
	sh := startShop(t, dir)
	sv, a, recv := sh.sv, sh.a, sh.recv
	bk := newBook()
	var unanswered []string // committed creates whose answer the kill cut off
	f := &follower{url: fmt.Sprintf("nats://127.0.0.1:%d", sv.natsPort)}

	for cycle := range prof.Kills {
		lo, hi := prof.KillAcks[0], prof.KillAcks[1]
		if cycle%3 == 2 {
			lo, hi = 1, 20
		}
		target := int64(lo + r.IntN(hi-lo+1))
		before := bk.nAcked.Load()
		ctx, cancel := context.WithCancel(context.Background())
		wait := load(ctx, a, prof.Loaders, fmt.Sprintf("k%d", cycle), bk)
		err := poll(2*time.Minute, func() error {
			if n := bk.nAcked.Load() - before; n < target {
				return fmt.Errorf("%d of %d creates acknowledged", n, target)
			}
			return nil
		})
		if err != nil {
			cancel()
			wait()
			t.Fatal(err)
		}
		sv.kill()
		cancel()
		wait()
		a.hc.CloseIdleConnections()
		killed := sv.verifyOffline()
		t.Logf("kill %d: after %d acknowledged creates this cycle (target %d); the log verifies, head %d",
			cycle+1, bk.nAcked.Load()-before, target, killed.Seq)

		sv.start()
		acked := bk.ackedSnapshot()
		checkAcked(t, a, acked)
		unanswered = append(unanswered, resolveAmbiguous(t, a, bk)...)

		// The stream catches up with the log, and holds the head the
		// killed process had committed.
		f.catchUp(t, sv.base(), killed)

		// Every committed invoice's webhook arrives, signed.
		owed := append(keys(bk.ackedSnapshot()), unanswered...)
		recv.waitAll(t, 2*time.Minute, owed)
	}

	// Those committed without an answer are readable by the id their
	// webhook carried.
	var ids = map[string]string{}
	for _, ext := range unanswered {
		id, _ := recv.invoiceOf(ext)
		ids[ext] = id
	}
	checkAcked(t, a, ids)
	noDeliveriesLeft(t, a)

	took, err := sv.stop(45 * time.Second)
	if err != nil {
		t.Fatalf("graceful stop after the kills: %v (after %s)", err, took)
	}
	counts.add("graceful stops", 1)
	final := sv.verifyOffline()

	// The stream as the embedded store kept it equals the log.
	n := compareStored(t, dir, final)

	recv.record(t)
	acked := bk.ackedSnapshot()
	counts.add("invoices acknowledged (2xx)", int64(len(acked)))
	t.Logf("%d kills; %d invoices acknowledged, all found after every restart; %d creates committed without an answer; %d events, stream = log; %s",
		prof.Kills, len(acked), len(unanswered), n, bk.statusSummary())
}

// compareStored starts a NATS server on a stopped node's embedded store
// (dataDir/nats) and compares its stream with the node's log.
func compareStored(t *testing.T, dataDir string, head ledger.Head) int {
	t.Helper()
	srv, err := stream.StartServer(stream.Config{StoreDir: filepath.Join(dataDir, "nats"), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	st, err := boltlog.Open(filepath.Join(dataDir, "ledger.db"), &boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	return compareStreamWithLog(t, srv.ClientURL(), st.Events(context.Background(), 1), head)
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
