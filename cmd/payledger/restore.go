package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
	"github.com/payledger/payledger/stream"
)

func init() {
	register(&command{name: "restore", summary: "rebuild a node's log from the NATS stream, checking the hash chain", run: runRestore})
}

func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("restore", stderr)
	ncfg := natsClientFlags(fs)
	dataDir := fs.String("data-dir", "./data", "data directory to restore into")
	fs.bindEnv(map[string]string{"data-dir": "PAYLEDGER_DATA_DIR"})
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: payledger restore --nats-url URL --data-dir D")
		fmt.Fprintln(stderr, "\nCopies the events of the NATS stream into the data dir's log, checking every")
		fmt.Fprintln(stderr, "event's hash and the chain, and builds the projections as it goes. Into a data")
		fmt.Fprintln(stderr, "dir without events it restores all or nothing; a log that has events is")
		fmt.Fprintln(stderr, "continued from its head. A broken chain stops it, naming the sequence.")
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	conn, err := openNATS(ctx, ncfg)
	if err != nil {
		return err
	}
	defer conn.Close()

	last := time.Now()
	progress := func(h ledger.Head) {
		if time.Since(last) >= time.Second {
			last = time.Now()
			fmt.Fprintf(stderr, "payledger restore: at sequence %d\n", h.Seq)
		}
	}
	path, before, head, err := fillLog(ctx, *dataDir, "restore", "restored", "no events to restore", func(st *boltlog.Store) (ledger.Head, error) {
		return stream.Restore(ctx, conn, st, progress)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %d events into %s: head %d %s\n", head.Seq-before.Seq, path, head.Seq, head.Hash)
	return nil
}

// openReplicaLog opens a log that takes events from the stream (restore,
// worker projections), with the projections inline as serve has them.
func openReplicaLog(path string) (*boltlog.Store, error) {
	// A file another process holds fails with boltlog.ErrLocked after the
	// timeout, its message naming the file.
	return boltlog.Open(path, &boltlog.Options{
		OpenTimeout: time.Second,
		Projectors:  []boltlog.Projector{&projections.Projector{}},
	})
}
