package stream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/internal/syncbuf"
	"github.com/payledger/payledger/stream"
	"github.com/payledger/payledger/stream/natstest"
)

// A NATS URL may carry a token as its userinfo (nats://TOKEN@host): it
// reaches neither the log nor a connection's error.
func TestNATSURLTokenNotLogged(t *testing.T) {
	const token = "NATSTOKEN-s3cr3t"
	opts := natstest.Options(t)
	opts.Authorization = token
	srv := natstest.RunServerOptions(t, opts)
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx := context.Background()

	url := fmt.Sprintf("nats://%s@%s", token, srv.Addr())
	conn, err := stream.Open(ctx, stream.Config{URL: url, Logger: log})
	if err != nil {
		t.Fatalf("open %s: %v", srv.Addr(), err)
	}
	defer conn.Close()
	natstest.WaitFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !strings.Contains(logs.String(), "nats connected") {
			return errors.New("no \"nats connected\" logged yet")
		}
		return nil
	})

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := l.Addr().String()
	l.Close()
	_, err = stream.Open(ctx, stream.Config{URL: "nats://" + token + "@" + free + ",nats://user:" + token + "@" + free, Logger: log})
	if err == nil {
		t.Fatal("connected to nothing")
	}
	if !strings.Contains(err.Error(), free) || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("connection error: %v", err)
	}
	if out := logs.String(); strings.Contains(out, "s3cr3t") {
		t.Errorf("the log holds the token:\n%s", out)
	}
}
