package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/payledger/payledger/stream"
)

func init() {
	register(&command{name: "tail", summary: "print events from the NATS stream as JSON lines", run: runTail})
}

// natsClientFlags adds the flags of a NATS client (tail, restore, worker)
// and returns the config they fill.
func natsClientFlags(fs *flagSet) *stream.Config {
	cfg := &stream.Config{}
	fs.StringVar(&cfg.URL, "nats-url", "nats://127.0.0.1:4222", "NATS URL(s), comma separated")
	natsAuthFlags(fs, cfg)
	fs.StringVar(&cfg.Stream, "nats-stream", stream.DefaultStream, "JetStream stream of the events")
	fs.bindEnv(map[string]string{"nats-url": "PAYLEDGER_NATS_URL", "nats-stream": "PAYLEDGER_NATS_STREAM"})
	return cfg
}

// natsAuthFlags adds the flags of a NATS connection's credentials and TLS,
// which serve and the NATS clients share.
func natsAuthFlags(fs *flagSet, cfg *stream.Config) {
	fs.StringVar(&cfg.CredsFile, "nats-creds", "", "NATS credentials file")
	fs.StringVar(&cfg.User, "nats-user", "", "NATS user")
	fs.StringVar(&cfg.Password, "nats-password", "", "NATS password")
	fs.StringVar(&cfg.Token, "nats-token", "", "NATS token")
	fs.StringVar(&cfg.TLSCAFile, "nats-tls-ca", "", "PEM CA file for NATS TLS")
	fs.StringVar(&cfg.TLSCertFile, "nats-tls-cert", "", "PEM client certificate for NATS TLS")
	fs.StringVar(&cfg.TLSKeyFile, "nats-tls-key", "", "PEM client key for NATS TLS")
	fs.bindEnv(map[string]string{
		"nats-creds":    "PAYLEDGER_NATS_CREDS",
		"nats-user":     "PAYLEDGER_NATS_USER",
		"nats-password": "PAYLEDGER_NATS_PASSWORD",
		"nats-token":    "PAYLEDGER_NATS_TOKEN",
		"nats-tls-ca":   "PAYLEDGER_NATS_TLS_CA",
		"nats-tls-cert": "PAYLEDGER_NATS_TLS_CERT",
		"nats-tls-key":  "PAYLEDGER_NATS_TLS_KEY",
	})
}

// openNATS connects to cfg.URL, which a client command requires.
func openNATS(ctx context.Context, cfg *stream.Config) (*stream.Conn, error) {
	if cfg.URL == "" {
		return nil, &exitError{code: 2, err: errors.New("--nats-url is required")}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return stream.Open(cctx, *cfg)
}

func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("tail", stderr)
	ncfg := natsClientFlags(fs)
	subject := fs.String("subject", "", "subject filter, NATS wildcards allowed (default: every event)")
	merchant := fs.String("merchant", "", `only this merchant's events ("_" for events without a merchant); not with --subject`)
	types := fs.String("type", "", `only these event types, e.g. "invoice.>" or "payment.processed"; not with --subject`)
	from := fs.Uint64("from", 0, "start at this log sequence (1: everything)")
	since := fs.String("since", "", "start at events since this time: RFC 3339, or a duration ago such as 15m")
	count := fs.Int("count", 0, "exit after printing this many events (0: run until interrupted)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: payledger tail [--nats-url URL] [--subject S | --merchant M --type T] [--from SEQ | --since T] [--count N]")
		fmt.Fprintln(stderr, "\nPrints events from the NATS stream, one JSON object a line, live until interrupted.")
		fmt.Fprintln(stderr, "Without --from or --since it starts with the next event published.")
		fmt.Fprintln(stderr, "A message that is not a valid event (altered, or not payledger's) is not printed:")
		fmt.Fprintln(stderr, "stderr names its stream sequence and why, tail goes on with the next, and the exit")
		fmt.Fprintln(stderr, "status is 1 when it ends (--count reached, or interrupted) if it skipped any.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *count < 0 {
		return &exitError{code: 2, err: fmt.Errorf("--count %d: want 0 (no limit) or more", *count)}
	}
	if *from > 0 && *since != "" {
		return &exitError{code: 2, err: errors.New("--from and --since exclude each other")}
	}
	if *subject != "" && (*merchant != "" || *types != "") {
		return &exitError{code: 2, err: errors.New("--subject excludes --merchant and --type")}
	}
	if *subject != "" {
		// Tail reads the stream under the default prefix (Conn.AllSubjects).
		if err := stream.CheckFilter(stream.DefaultSubjectPrefix, *subject); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--subject: %w", err)}
		}
	}
	var sinceT time.Time
	if *since != "" {
		var err error
		if sinceT, err = parseSince(*since, time.Now()); err != nil {
			return &exitError{code: 2, err: err}
		}
	}

	conn, err := openNATS(ctx, ncfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	filter := conn.AllSubjects()
	switch {
	case *subject != "":
		filter = *subject
	case *merchant != "" || *types != "":
		m := *merchant
		switch m {
		case "":
			m = "*"
		case "_":
			m = ""
		}
		filter = conn.Filter(m, *types)
	}
	occ := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverNewPolicy}
	switch {
	case *from > 0:
		occ.DeliverPolicy, occ.OptStartSeq = jetstream.DeliverByStartSequencePolicy, *from
	case !sinceT.IsZero():
		// Stream time is publish time, never before commit time: start
		// there and drop the events committed earlier.
		occ.DeliverPolicy, occ.OptStartTime = jetstream.DeliverByStartTimePolicy, &sinceT
	}
	s, err := conn.Stream(ctx)
	if err != nil {
		return err
	}
	cons, err := s.OrderedConsumer(ctx, occ)
	if err != nil {
		return fmt.Errorf("consumer on %s: %w", filter, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()

	w := bufio.NewWriter(stdout)
	defer w.Flush()
	printed := 0
	var skipped, firstSkipped uint64
	for *count == 0 || printed < *count {
		m, err := nextMessage(ctx, it, w)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return fmt.Errorf("read stream: %w", err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		e, err := stream.DecodeMessage(m.Headers(), m.Data(), meta.Sequence.Stream)
		if err != nil {
			// Printed, it would pass for an event on stdout.
			if skipped++; skipped == 1 {
				firstSkipped = meta.Sequence.Stream
			}
			w.Flush() // stderr after the events before it
			fmt.Fprintf(stderr, "payledger tail: stream sequence %d skipped, not a valid event: %v\n", meta.Sequence.Stream, err)
			continue
		}
		if !sinceT.IsZero() && e.Time.Before(sinceT) {
			continue
		}
		w.Write(m.Data())
		w.WriteByte('\n')
		printed++
	}
	if skipped > 0 {
		return fmt.Errorf("%d message%s skipped as not valid events, the first at stream sequence %d", skipped, plural(skipped), firstSkipped)
	}
	return nil
}

func plural(n uint64) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// nextMessage returns the next message, flushing w first if none is
// waiting so that a live tail prints each event as it comes.
func nextMessage(ctx context.Context, it jetstream.MessagesContext, w *bufio.Writer) (jetstream.Msg, error) {
	if w.Buffered() > 0 {
		qctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		m, err := it.Next(jetstream.NextContext(qctx))
		cancel()
		if err == nil {
			return m, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err := w.Flush(); err != nil {
			return nil, err
		}
	}
	return it.Next(jetstream.NextContext(ctx))
}

// parseSince reads an RFC 3339 time or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time (2025-03-01T12:00:00Z), a duration (15m) or Unix seconds", s)
}
