// Command analyst is an example of consuming payledger's event stream with
// nats.go: it reads events from JetStream with an ordered consumer, checks
// each one's hash (and, reading everything from the start, the hash chain),
// and prints a running count by merchant and event type.
//
//	go run ./examples/analyst --nats-url nats://127.0.0.1:4222 \
//	    --subject 'payledger.events.*.invoice.>' --from 1
//
// See docs/streams.md for the subjects and the message schema.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/stream"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "analyst:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("analyst", flag.ContinueOnError)
	url := fs.String("nats-url", nats.DefaultURL, "NATS server URL")
	creds := fs.String("creds", "", "NATS credentials file")
	subject := fs.String("subject", "payledger.events.>", "subject filter")
	from := fs.Uint64("from", 0, "first sequence (0: only new events)")
	count := fs.Int("count", 0, "stop after this many events (0: until interrupted)")
	every := fs.Int("every", 1000, "print the counts every this many events")
	if err := fs.Parse(args); err != nil {
		return err
	}

	opts := []nats.Option{nats.Name("payledger-analyst")}
	if *creds != "" {
		opts = append(opts, nats.UserCredentials(*creds))
	}
	nc, err := nats.Connect(*url, opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{*subject},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	}
	if *from > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, *from
	}
	cons, err := js.OrderedConsumer(ctx, stream.DefaultStream, cfg)
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()

	// With no filter, from sequence 1, every event's previous hash must be
	// the hash of the event before it: nothing altered, dropped or reordered.
	checkChain := *from == 1 && *subject == "payledger.events.>"
	var prev ledger.Hash
	counts := map[string]int{}
	n := 0
	for *count == 0 || n < *count {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		meta, err := msg.Metadata()
		if err != nil {
			return err
		}
		e, err := stream.DecodeMessage(msg.Headers(), msg.Data(), meta.Sequence.Stream)
		if err != nil {
			return err // the event does not match its hash
		}
		if checkChain {
			if e.PrevHash != prev {
				return fmt.Errorf("hash chain broken at sequence %d", e.Seq)
			}
			prev = e.Hash
		}
		merchant := e.Merchant
		if merchant == "" {
			merchant = "-"
		}
		counts[merchant+" "+e.Type]++
		n++
		if n%*every == 0 {
			printCounts(out, n, e.Time, counts)
		}
	}
	if n%*every != 0 {
		printCounts(out, n, time.Time{}, counts)
	}
	return nil
}

func printCounts(w io.Writer, n int, at time.Time, counts map[string]int) {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if at.IsZero() {
		fmt.Fprintf(w, "%d events\n", n)
	} else {
		fmt.Fprintf(w, "%d events, up to %s\n", n, at.Format(time.RFC3339))
	}
	for _, k := range keys {
		fmt.Fprintf(w, "  %-40s %d\n", k, counts[k])
	}
}
