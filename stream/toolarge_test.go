package stream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/stream"
	"github.com/payledger/payledger/stream/natstest"
)

// fileLogger logs JSON to a file under t.TempDir() (an *os.File takes
// concurrent writes); the returned function reads what was logged.
func fileLogger(t *testing.T) (*slog.Logger, func() string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log.json")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return slog.New(slog.NewJSONHandler(f, nil)), func() string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
}

// An event whose message NATS refuses for its size (over the server's
// max_payload, or over the stream's maximum message size) is not retried
// for ever behind a relay that looks alive: Run stops with ErrTooLarge
// naming its sequence and size, logged once, with every event before it in
// the stream and nothing after it (no gap).
func TestRelayStopsOnTooLargeEvent(t *testing.T) {
	const limit = 4096
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) *stream.Conn
		limit string
	}{
		{"server max_payload", func(t *testing.T) *stream.Conn {
			opts := natstest.Options(t)
			opts.MaxPayload = limit
			srv := natstest.RunServerOptions(t, opts)
			return openConn(t, srv.ClientURL(), stream.Config{})
		}, "max_payload of 4096 bytes"},
		{"stream max message size", func(t *testing.T) *stream.Conn {
			srv := natstest.RunServer(t)
			conn := openConn(t, srv.ClientURL(), stream.Config{})
			reconfigureStream(t, conn, func(c *jetstream.StreamConfig) { c.MaxMsgSize = limit })
			return conn
		}, "maximum message size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := tc.setup(t)
			log := openLog(t)
			appendEvents(t, log, 0, 10, 5)
			big := ledger.NewEvent{
				ID: ulid.Make(), Type: "invoice.created", Time: baseTime, Merchant: "m-1",
				Data: json.RawMessage(`{"note":"` + strings.Repeat("x", 2*limit) + `"}`),
			}
			if _, err := log.Append(context.Background(), "invoice-big", ledger.Any, big); err != nil {
				t.Fatal(err)
			}
			appendEvents(t, log, 11, 5, 5)

			logger, logged := fileLogger(t)
			r, err := stream.NewRelay(conn, log, stream.RelayConfig{
				MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, Logger: logger,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = r.Run(ctx)
			var te *stream.TooLargeError
			if !errors.Is(err, stream.ErrTooLarge) || !errors.As(err, &te) {
				t.Fatalf("Run = %v, want ErrTooLarge (still retrying after 10s?)", err)
			}
			if te.Seq != 11 || te.Size <= 2*limit || !strings.Contains(te.Limit, tc.limit) {
				t.Fatalf("refusal %+v: want sequence 11, over %d bytes, by the %s", te, 2*limit, tc.limit)
			}
			if p := r.Position(); p != 10 {
				t.Fatalf("position %d, want 10", p)
			}
			s, err := conn.Stream(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st := s.CachedInfo().State; st.Msgs != 10 || st.LastSeq != 10 {
				t.Fatalf("stream holds %d messages up to %d, want 1..10", st.Msgs, st.LastSeq)
			}
			want := fmt.Sprintf("sequence 11, a %d-byte message", te.Size)
			if n := strings.Count(logged(), want); n != 1 {
				t.Fatalf("the refusal (%q) is logged %d times:\n%s", want, n, logged())
			}
		})
	}
}

// The largest event the log accepts (data at its limit, every string at its
// limit in bytes JSON escapes six to one) makes a message within
// MaxMessageSize, which the embedded server takes: its relay publishes it.
func TestLargestEventFitsEmbeddedServer(t *testing.T) {
	if stream.MaxMessageSize > stream.EmbeddedMaxPayload {
		t.Fatalf("MaxMessageSize %d is over the embedded max_payload %d", stream.MaxMessageSize, stream.EmbeddedMaxPayload)
	}
	worst := strings.Repeat("\x01", ledger.MaxStringLen)
	claims := make([]string, ledger.MaxClaims)
	for i := range claims {
		claims[i] = worst[:ledger.MaxStringLen-2] + fmt.Sprintf("%02d", i)
	}
	e := ledger.NewEvent{
		ID: ulid.Make(), Type: worst, Time: baseTime, Merchant: worst, Correlation: worst, Claims: claims,
		Data: json.RawMessage(`"` + strings.Repeat("x", ledger.MaxDataLen-2) + `"`),
	}
	if err := ledger.ValidateNew(worst, &e); err != nil {
		t.Fatal(err)
	}
	log := openLog(t)
	appendEvents(t, log, 0, 3, 3)
	if _, err := log.Append(context.Background(), worst, ledger.Any, e); err != nil {
		t.Fatal(err)
	}
	got, err := log.Get(4)
	if err != nil {
		t.Fatal(err)
	}
	m := stream.Message(stream.DefaultSubjectPrefix, &got)
	m.Header.Set("Nats-Expected-Last-Sequence", "3")
	if size := m.Size() - len(m.Subject); size > stream.MaxMessageSize || size < ledger.MaxDataLen+100_000 {
		t.Fatalf("the largest event makes a %d-byte message; MaxMessageSize is %d", size, stream.MaxMessageSize)
	}

	logger, logged := fileLogger(t)
	node, err := stream.Start(context.Background(), stream.Config{StoreDir: t.TempDir(), Port: -1, Logger: logger}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := node.StopRelay(ctx); err != nil {
		t.Fatal(err)
	}
	requireStreamEqualsLog(t, node.Conn(), log)
	if strings.Contains(logged(), "max_payload") {
		t.Fatalf("the embedded server's max_payload is warned of:\n%s", logged())
	}
}

// A node on a NATS server whose max_payload is below MaxMessageSize says so
// when it starts, before an event that large stops its relay.
func TestStartWarnsOfSmallMaxPayload(t *testing.T) {
	opts := natstest.Options(t)
	opts.MaxPayload = 1 << 20 // nats-server's default
	srv := natstest.RunServerOptions(t, opts)
	logger, logged := fileLogger(t)
	node, err := stream.Start(context.Background(), stream.Config{URL: srv.ClientURL(), Logger: logger}, openLog(t))
	if err != nil {
		t.Fatal(err)
	}
	node.Close()
	if want := fmt.Sprintf(`"max_payload":%d,"largest_event_message":%d`, 1<<20, stream.MaxMessageSize); !strings.Contains(logged(), want) {
		t.Fatalf("no warning with %s:\n%s", want, logged())
	}
}
