package stream_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/stream"
)

// TestStartServerPortTaken: an embedded server whose port another process
// holds fails at once, saying why, instead of after the 30 s readiness
// wait with only "did not become ready" (payledger serve's first start next
// to a local nats-server on 4222).
func TestStartServerPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	done := make(chan error, 1)
	go func() {
		srv, err := stream.StartServer(stream.Config{Host: "127.0.0.1", Port: port, StoreDir: t.TempDir()})
		if srv != nil {
			srv.Shutdown()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("StartServer on a taken port succeeded")
		}
		if msg := err.Error(); !strings.Contains(msg, strconv.Itoa(port)) || !strings.Contains(msg, "address already in use") {
			t.Fatalf("error %q: want the port and the reason", msg)
		}
	case <-time.After(20 * time.Second): // well short of the 30 s readiness wait
		t.Fatal("StartServer on a taken port did not fail before the readiness wait ran out")
	}
}
