package stream_test

import (
	"context"
	"testing"
	"time"

	"github.com/payledger/payledger/stream"
	"github.com/payledger/payledger/stream/natstest"
)

// A three-node JetStream cluster with an R3 stream: the stream's leader is
// shut down while the relay publishes, and the stream still equals the log.
func TestRelayClusterLosesLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := natstest.RunCluster(t, 3)
	log := openLog(t)
	cfg := stream.Config{Replicas: 3}
	conn := openConn(t, c.URLs(), cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := conn.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	leader := c.WaitForStreamLeader(stream.DefaultStream)

	relay, stop := startRelay(t, conn, log, stream.RelayConfig{
		MaxInFlight: 256, AckTimeout: 2 * time.Second, MaxBackoff: 250 * time.Millisecond,
	})
	app := startAppender(log, 20, time.Millisecond)
	waitPosition(t, relay, 500)
	natstest.Shutdown(leader)
	t.Logf("shut down stream leader %s at log head %d, relay at %d", leader.Name(), log.Head().Seq, relay.Position())
	newLeader := c.WaitForStreamLeader(stream.DefaultStream)
	waitPosition(t, relay, log.Head().Seq+300)
	app.stop(t)
	flush(t, relay, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("new leader %s; log head %d", newLeader.Name(), log.Head().Seq)

	// Read back through a survivor.
	check := openConn(t, c.URLs(), cfg)
	requireStreamEqualsLog(t, check, log)
	s, err := check.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Replicas; got != 3 {
		t.Fatalf("stream has %d replicas", got)
	}
}
