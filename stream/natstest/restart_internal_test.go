package natstest

import (
	"fmt"
	"net"
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
