package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	domain "github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/internal/syncbuf"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/stream"
	"github.com/payledger/payledger/stream/natstest"
)

// sourceLog is a write node's log in a temporary data dir, with the
// projections inline.
func sourceLog(t *testing.T) *boltlog.Store {
	t.Helper()
	st, err := openReplicaLog(filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// appendTestEvents appends n events: every 50th a rate set through the
// commands (which the projections build a view of), the others of types the
// projections ignore, across three merchants, in appends of up to 49.
func appendTestEvents(t *testing.T, st *boltlog.Store, n int) {
	t.Helper()
	ctx := context.Background()
	svc := domain.NewService(st, domain.Config{})
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	merchants := []string{"m-1", "m-2", ""}
	var batch []ledger.NewEvent
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if _, err := st.Append(ctx, fmt.Sprintf("test-%d", st.Head().Seq%7), ledger.Any, batch...); err != nil {
			t.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := 0; i < n; i++ {
		seq := st.Head().Seq + uint64(len(batch)) + 1
		at := base.Add(time.Duration(seq) * time.Second)
		if seq%50 == 0 {
			flush()
			if _, err := svc.SetRate(ctx, domain.SetRate{
				Meta:     domain.Meta{CommandID: ulid.Make(), Time: at, Correlation: "req-rate"},
				Currency: "UAH", Rate: fmt.Sprintf("41.%02d", seq%100),
			}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		batch = append(batch, ledger.NewEvent{
			ID: ulid.Make(), Type: []string{"test.noted", "test.checked"}[seq%2], Time: at,
			Merchant: merchants[seq%3], Data: json.RawMessage(fmt.Sprintf(`{"i": %d}`, seq)),
		})
	}
	flush()
}

// openStream connects to the NATS server at url and makes sure the event
// stream exists; the connection closes when the test ends.
func openStream(ctx context.Context, t *testing.T, url string) *stream.Conn {
	t.Helper()
	conn, err := stream.Open(ctx, stream.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	if _, err := conn.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	return conn
}

// publishTo relays st to the NATS server at url until the stream has it all.
func publishTo(t *testing.T, url string, st *boltlog.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := openStream(ctx, t, url)
	r, err := stream.NewRelay(conn, st, stream.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	ferr := r.Flush(ctx)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ferr != nil {
		t.Fatal(ferr)
	}
}

// publishAltered publishes st's events to conn's stream as the relay
// would, each at its own sequence, but for event seq, which alter changes
// first.
func publishAltered(ctx context.Context, t *testing.T, conn *stream.Conn, st *boltlog.Store, seq uint64, alter func(*nats.Msg)) {
	t.Helper()
	for e, err := range st.Events(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		m := stream.Message(stream.DefaultSubjectPrefix, &e)
		if e.Seq == seq {
			alter(m)
		}
		if _, err := conn.JetStream().PublishMsg(ctx, m, jetstream.WithExpectLastSequence(e.Seq-1)); err != nil {
			t.Fatal(err)
		}
	}
}

// run runs a payledger command and returns its exit code, stdout and stderr.
func run(ctx context.Context, args ...string) (int, string, string) {
	var out, errb syncbuf.Buffer
	code := runMain(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

// tailEvents parses tail's output.
func tailEvents(t *testing.T, out string) []ledger.Event {
	t.Helper()
	var evs []ledger.Event
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var e ledger.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("tail printed %q: %v", line, err)
		}
		evs = append(evs, e)
	}
	return evs
}

func TestTailPrintsEvents(t *testing.T) {
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	st := sourceLog(t)
	appendTestEvents(t, st, 120)
	publishTo(t, url, st)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Everything from the start: the same events as the log, in order.
	code, out, errs := run(ctx, "tail", "--nats-url", url, "--from", "1", "--count", "120")
	if code != 0 {
		t.Fatalf("tail exit %d: %s", code, errs)
	}
	got := tailEvents(t, out)
	if len(got) != 120 {
		t.Fatalf("tail printed %d events", len(got))
	}
	for i, e := range got {
		want, err := st.Get(uint64(i + 1))
		if err != nil || e.Seq != want.Seq || e.Hash != want.Hash {
			t.Fatalf("line %d: sequence %d hash %s, want %d %s", i, e.Seq, e.Hash, want.Seq, want.Hash)
		}
	}

	// One merchant's events of one type, by --subject and by --merchant/--type.
	for _, args := range [][]string{
		{"--subject", "payledger.events.m-2.test.noted"},
		{"--merchant", "m-2", "--type", "test.noted"},
	} {
		code, out, errs = run(ctx, append([]string{"tail", "--nats-url", url, "--from", "1", "--count", "19"}, args...)...)
		if code != 0 {
			t.Fatalf("tail %v exit %d: %s", args, code, errs)
		}
		for _, e := range tailEvents(t, out) {
			if e.Merchant != "m-2" || e.Type != "test.noted" {
				t.Fatalf("tail %v printed %s %s", args, e.Merchant, e.Type)
			}
		}
	}

	// Live: a tail waiting after the head prints events as they come.
	var out2, err2 syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- runMain(ctx, []string{"tail", "--nats-url", url, "--from", "121", "--count", "30"}, &out2, &err2)
	}()
	appendTestEvents(t, st, 30)
	publishTo(t, url, st)
	if code := <-done; code != 0 {
		t.Fatalf("live tail exit %d: %s", code, err2.String())
	}
	live := tailEvents(t, out2.String())
	if len(live) != 30 || live[0].Seq != 121 || live[29].Seq != 150 {
		t.Fatalf("live tail printed %d events", len(live))
	}

	// --since: events at or after a time (event times are 1s apart).
	since := got[99].Time.Format(time.RFC3339Nano)
	code, out, errs = run(ctx, "tail", "--nats-url", url, "--since", since, "--count", "51")
	if code != 0 {
		t.Fatalf("tail --since exit %d: %s", code, errs)
	}
	if s := tailEvents(t, out); len(s) != 51 || s[0].Seq != 100 {
		t.Fatalf("tail --since printed %d events from %d", len(s), s[0].Seq)
	}

	// Bad flags.
	if code, _, _ := run(ctx, "tail", "--nats-url", url, "--from", "1", "--since", "1h"); code != 2 {
		t.Errorf("--from with --since: exit %d", code)
	}
	if code, _, _ := run(ctx, "tail", "--nats-url", url, "--since", "yesterday"); code != 2 {
		t.Errorf("bad --since: exit %d", code)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2025-03-01T11:00:00Z": now.Add(-time.Hour),
		"15m":                  now.Add(-15 * time.Minute),
		"1740826800":           time.Unix(1740826800, 0),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

// TestTailRefusesNegativeCount: --count below zero is a bad flag value
// (exit 2, nothing opened), not a tail that prints nothing and succeeds.
func TestTailRefusesNegativeCount(t *testing.T) {
	code, _, errs := runCmd(t, "tail", "--nats-url", "nats://127.0.0.1:1", "--count", "-1")
	if code != 2 || !strings.Contains(errs, "--count") {
		t.Fatalf("tail --count -1 = %d: %s", code, errs)
	}
}

// TestTailRefusesForeignSubject: a --subject that no event subject can
// match (outside payledger.events.>) or that is no subject at all is a
// usage error (exit 2, nothing opened), not a tail that waits forever
// without a word.
func TestTailRefusesForeignSubject(t *testing.T) {
	for _, subject := range []string{"foo.>", "payledger.events", "payledger.*", "payledger.events.>.x", "payledger..events.>",
		"payledger.events.*", "payledger.events.m-1"} { // a merchant token alone names no event
		code, _, errs := runCmd(t, "tail", "--nats-url", "nats://127.0.0.1:1", "--subject", subject)
		if code != 2 || !strings.Contains(errs, "payledger.events.>") {
			t.Errorf("tail --subject %q = %d: %s", subject, code, errs)
		}
	}
	// Wildcards that reach into the stream are fine: these get as far as
	// connecting (to nothing), not a usage error.
	for _, subject := range []string{">", "payledger.>", "*.events.*.invoice.>", "payledger.events.m-1.rate.set"} {
		if code, _, errs := runCmd(t, "tail", "--nats-url", "nats://127.0.0.1:1", "--subject", subject); code == 2 {
			t.Errorf("tail --subject %q refused: %s", subject, errs)
		}
	}
}

// TestTailSkipsBadMessages: a stream message that is not a valid event (here
// event 4 with its data altered, so its hash no longer matches) is not
// printed as if it were one: tail reports it on stderr with its stream
// sequence and the reason, goes on with the next, and exits 1 at the end,
// whether --count ends it or an interrupt does.
func TestTailSkipsBadMessages(t *testing.T) {
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	st := sourceLog(t)
	appendTestEvents(t, st, 6)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	publishAltered(ctx, t, openStream(ctx, t, url), st, 4, func(m *nats.Msg) {
		m.Data = bytes.Replace(m.Data, []byte(`"i":`), []byte(`"j":`), 1)
	})
	check := func(code int, out, errs string) {
		t.Helper()
		var seqs []uint64
		for _, e := range tailEvents(t, out) {
			seqs = append(seqs, e.Seq)
		}
		if fmt.Sprint(seqs) != "[1 2 3 5 6]" {
			t.Errorf("tail printed events %v, want [1 2 3 5 6]:\n%s", seqs, out)
		}
		if !strings.Contains(errs, "stream sequence 4 skipped") || !strings.Contains(errs, "hash does not match") {
			t.Errorf("stderr does not name the bad message and why:\n%s", errs)
		}
		if code != 1 || !strings.Contains(errs, "1 message skipped") {
			t.Errorf("tail exit %d, want 1 with the count of skipped messages:\n%s", code, errs)
		}
	}
	check(run(ctx, "tail", "--nats-url", url, "--from", "1", "--count", "5"))

	// Interrupted after the last event: the exit status still says so.
	var out, errb syncbuf.Buffer
	tctx, stop := context.WithCancel(ctx)
	done := make(chan int, 1)
	go func() { done <- runMain(tctx, []string{"tail", "--nats-url", url, "--from", "1"}, &out, &errb) }()
	natstest.WaitFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if n := strings.Count(out.String(), "\n"); n < 5 {
			return fmt.Errorf("%d lines printed", n)
		}
		return nil
	})
	stop()
	check(<-done, out.String(), errb.String())
}
