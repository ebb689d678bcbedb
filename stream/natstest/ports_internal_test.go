package natstest

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
)

// TestRestartWaitsForItsPort: another process holding the port when
// Restart starts the server again delays the restart, not fail it.
func TestRestartWaitsForItsPort(t *testing.T) {
	s := RunServer(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port(t, s.ClientURL()))
	Shutdown(s)
	held, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(func() { held.Close() }) }
	t.Cleanup(release)
	// Let go only once Restart has found the port taken.
	restartPortBusy = release
	t.Cleanup(func() { restartPortBusy = nil })
	s = Restart(t, s)
	Connect(t, s.ClientURL()).Close()
}

// TestRunClusterRouteTakenPort: another process taking a route port between
// RunCluster finding it free and its server listening on it makes RunCluster
// start the cluster on other ports, not fail (or wait 30 s for a server
// that cannot become ready).
func TestRunClusterRouteTakenPort(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	var (
		once  sync.Once
		taken int
	)
	clusterPortsPicked = func(ports []int) {
		once.Do(func() {
			taken = ports[1]
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", taken))
			if err != nil {
				t.Errorf("take port %d: %v", taken, err)
				return
			}
			t.Cleanup(func() { l.Close() })
		})
	}
	t.Cleanup(func() { clusterPortsPicked = nil })
	c := RunCluster(t, 3)
	var got []int
	for _, s := range c.Servers {
		got = append(got, s.ClusterAddr().Port)
	}
	if slices.Contains(got, taken) {
		t.Fatalf("route ports %v include the taken %d", got, taken)
	}
	Connect(t, c.URLs()).Close()
}
