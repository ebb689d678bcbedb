package stream_test

import (
	"errors"
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

// TestStartServerRefusesOpenHost: an embedded server that would listen on
// a host other machines reach, with no authentication, is refused with
// ErrConfig and never listens; a loopback host, a user with a password, a
// token, or an external URL are accepted.
func TestStartServerRefusesOpenHost(t *testing.T) {
	for _, host := range []string{"0.0.0.0", "::", "[::]", "192.0.2.7", "nats.internal"} {
		srv, err := stream.StartServer(stream.Config{Host: host, Port: -1, StoreDir: t.TempDir()})
		if srv != nil {
			srv.Shutdown()
			srv.WaitForShutdown()
			t.Errorf("host %q with no authentication: the server started", host)
		}
		if !errors.Is(err, stream.ErrConfig) || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("host %q: %v, want ErrConfig naming it", host, err)
		}
	}
	for _, c := range []stream.Config{
		{Host: "0.0.0.0", User: "payledger"},     // a user without a password
		{Host: "0.0.0.0", Password: "secret"},    // a password without a user
		{Host: "10.0.0.1", CredsFile: "x.creds"}, // a client credential the server does not take
	} {
		if err := c.CheckExposure(); !errors.Is(err, stream.ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", c, err)
		}
	}
	for _, c := range []stream.Config{
		{}, {Host: "127.0.0.1"}, {Host: "127.0.0.2"}, {Host: "::1"}, {Host: "[::1]"}, {Host: "localhost"}, {Host: "LocalHost"},
		{Host: "0.0.0.0", User: "payledger", Password: "secret"},
		{Host: "0.0.0.0", Token: "secret"},
		{Host: "0.0.0.0", URL: "nats://nats.internal:4222"}, // not embedded: Host is not used
	} {
		if err := c.CheckExposure(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	// Authenticated, it starts, and takes only its user.
	srv, err := stream.StartServer(stream.Config{Host: "0.0.0.0", Port: -1, StoreDir: t.TempDir(), User: "payledger", Password: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	port := srv.Addr().(*net.TCPAddr).Port
	if _, err := stream.Open(t.Context(), stream.Config{URL: "nats://127.0.0.1:" + strconv.Itoa(port)}); err == nil {
		t.Error("a connection without the user was accepted")
	}
	c, err := stream.Open(t.Context(), stream.Config{URL: "nats://127.0.0.1:" + strconv.Itoa(port), User: "payledger", Password: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
