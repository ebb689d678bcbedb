package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/node"
	"github.com/payledger/payledger/stream"
)

// worker is one kind of `payledger worker`: a process that consumes the
// NATS stream with a durable consumer, so that a write node only appends.
// A kind lives in its own file and adds itself from init with
// registerWorker, as subcommands do with register.
type worker struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var workers = map[string]*worker{}

func registerWorker(w *worker) {
	if _, dup := workers[w.name]; dup {
		panic("payledger: worker registered twice: " + w.name)
	}
	workers[w.name] = w
}

func init() {
	register(&command{name: "worker", summary: "consume the NATS stream in another process (projections, ...)", run: runWorker})
	registerWorker(&worker{name: "projections", summary: "keep a local copy of the log and its projections (a read node)", run: runProjectionsWorker})
}

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		workerUsage(stderr)
		if len(args) == 0 {
			return &exitError{code: 2, err: errors.New("which worker?")}
		}
		return nil
	}
	w, ok := workers[args[0]]
	if !ok {
		workerUsage(stderr)
		return &exitError{code: 2, err: fmt.Errorf("unknown worker %q", args[0])}
	}
	return w.run(ctx, args[1:], stdout, stderr)
}

func workerUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: payledger worker <kind> --nats-url URL [flags]")
	fmt.Fprintln(w)
	names := make([]string, 0, len(workers))
	for n := range workers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, workers[n].summary)
	}
}

// runProjectionsWorker imports the stream's events into a local log, whose
// inline projections build the same views the write node has: a read node
// fed by NATS. The local log's head is the checkpoint; the durable
// consumer's position only spares the server a replay.
func runProjectionsWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("worker projections", stderr)
	ncfg := natsClientFlags(fs)
	dataDir := fs.String("data-dir", "./data", "data directory of the local copy")
	host, _ := os.Hostname()
	durable := fs.String("durable", "projections-"+durableToken(host), "durable consumer name: one per read node")
	batch := fs.Int("batch", 1024, "events fetched and imported at once")
	fs.bindEnv(map[string]string{"data-dir": "PAYLEDGER_DATA_DIR", "durable": "PAYLEDGER_WORKER_DURABLE"})
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: payledger worker projections --nats-url URL --data-dir D [--durable NAME] [flags]")
		fmt.Fprintln(stderr, "\nA read node: keeps a local copy of the log in <data-dir>/ledger.db, with the")
		fmt.Fprintln(stderr, "projections serve builds, fed by the NATS stream. It catches up with an ordered")
		fmt.Fprintln(stderr, "read, then follows a durable consumer (one name per read node), carrying on from")
		fmt.Fprintln(stderr, "its own log when restarted. Progress is logged to stderr; SIGTERM or SIGINT stop it.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return err
	}
	logger, err := newLogger(stderr, "text", "info")
	if err != nil {
		return err
	}
	ncfg.Logger = logger
	st, err := openReplicaLog(filepath.Join(*dataDir, node.LogFile))
	if err != nil {
		return err
	}
	defer st.Close()
	conn, err := openNATS(ctx, ncfg)
	if err != nil {
		return err
	}
	defer conn.Close()

	head := st.Head()
	// Catch up with an ordered read first: it checks the stream against
	// the local head and is faster than a durable consumer.
	if head, err = stream.Restore(ctx, conn, st, nil); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("catch up from the stream: %w", err)
	}
	logger.Info("worker projections: caught up", "head", head.Seq)

	ccfg := stream.ConsumerConfig{Durable: *durable, Batch: *batch, Logger: logger}
	for ctx.Err() == nil {
		err := followStream(ctx, conn, st, ccfg)
		if ctx.Err() != nil {
			break // stopped: whatever it was doing, nothing is lost
		}
		if errors.Is(err, errGap) || errors.Is(err, stream.ErrConsumerGone) {
			// Start a consumer afresh from the local log's head.
			logger.Warn("worker projections: restarting the consumer", "err", err)
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	logger.Info("worker projections: stopped", "head", st.Head().Seq)
	return nil
}

// errGap means the consumer handed an event past the one the local log
// needs next (events in flight at a crash come back only after AckWait).
var errGap = errors.New("the stream skipped ahead of the local log")

// followStream imports the events a durable consumer hands over until ctx
// ends, the chain breaks (a *ledger.VerifyError), or a gap (errGap).
func followStream(ctx context.Context, conn *stream.Conn, st *boltlog.Store, cfg stream.ConsumerConfig) error {
	cons, err := startAfter(ctx, conn, cfg, st.Head().Seq)
	if err != nil {
		return err
	}
	rctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	err = cons.RunBatch(rctx, func(ctx context.Context, events []ledger.Event) error {
		h := st.Head()
		for len(events) > 0 && events[0].Seq <= h.Seq {
			events = events[1:] // imported already
		}
		if len(events) == 0 {
			return nil
		}
		if events[0].Seq != h.Seq+1 {
			err := fmt.Errorf("%w: local log at %d, stream handed %d", errGap, h.Seq, events[0].Seq)
			stop(err)
			return err
		}
		if err := st.Import(ctx, events); err != nil {
			var ve *ledger.VerifyError
			if errors.As(err, &ve) {
				stop(err) // the stream breaks the chain: retrying will not help
			}
			return err
		}
		cfg.Logger.Info("worker projections: imported", "from", events[0].Seq, "head", events[len(events)-1].Seq)
		return nil
	})
	if err != nil {
		return err
	}
	if cause := context.Cause(rctx); ctx.Err() == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

// startAfter takes up the durable consumer, or creates it, so that it hands
// over the events after seq. A consumer whose acknowledged position is not
// seq (the local copy was removed, or caught up faster by an ordered read),
// or that still waits for acknowledgements (a previous run died), is
// created anew: the local log is the checkpoint. It waits as long as ctx
// lives (each JetStream request is bounded by the client's own timeout):
// the server may take a while to close a consumer deleted under it, and
// NewConsumer retries until then (docs/streams.md), as the webhooks
// worker's does.
func startAfter(ctx context.Context, conn *stream.Conn, cfg stream.ConsumerConfig, seq uint64) (*stream.Consumer, error) {
	cfg.StartSeq = seq + 1
	cons, err := stream.NewConsumer(ctx, conn, cfg)
	if err != nil {
		return nil, err
	}
	info, err := cons.Info(ctx)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		// Deleted on the server since NewConsumer found or made it (by an
		// operator, or with its stream): made anew below.
	case err != nil:
		return nil, err
	case info.AckFloor.Stream == seq && info.NumAckPending == 0:
		return cons, nil
	}
	s, err := conn.Stream(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.DeleteConsumer(ctx, cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	return stream.NewConsumer(ctx, conn, cfg)
}

// durableToken makes a host name fit a consumer name.
func durableToken(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '-'
	}, s)
	if s == "" {
		return "local"
	}
	return s
}
