package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/payledger/payledger/audit"
	"github.com/payledger/payledger/internal/durable"
	"github.com/payledger/payledger/stream"
)

func init() {
	register(&command{name: "export", summary: "write the log's events as JSON Lines", run: runExport})
}

// runExport writes one event per line, in sequence order, in the JSON form
// the stream publishes (stream.AppendJSON: encoding/json's form of
// ledger.Event, with data byte for byte as logged, so each line's hash can
// be recomputed), and nothing else: scripts read every line as an event.
// It reads in chunks, so memory stays constant however long the log. On a
// bad record it stops, having written every event before it, and fails
// naming the sequence. With --manifest it writes, once the last event is
// out, the export's manifest (audit.Manifest), which verify and import
// check the file against to tell one cut short; a failed export leaves no
// manifest, not even the one a previous export left at that path.
func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", stderr)
	dataDir := dataDirFlag(fs)
	from := fs.Uint64("from", 1, "first sequence to export")
	manifest := fs.String("manifest", "", "once every event is written, write the export's manifest to this file (its events' count, first and last sequence and hash, last checkpoint) for verify --manifest and import --manifest")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: payledger export [--data-dir D] [--from SEQ] [--manifest FILE] > events.jsonl")
		fmt.Fprintln(stderr, "\nWrites one JSON line per event, in sequence order, and nothing else. A file cut at a")
		fmt.Fprintln(stderr, "line boundary (a truncated download, a full disk) is still a valid, shorter log: keep")
		fmt.Fprintln(stderr, "the --manifest file with the export, and verify and import refuse a copy that does not")
		fmt.Fprintln(stderr, "match it. A failed export writes no manifest and removes one already at FILE.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *manifest != "" {
		// A manifest left by an earlier export must not sit next to this
		// one's output if this one fails: it could match the events this
		// one got out before failing.
		if err := os.Remove(*manifest); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove the old manifest: %w", err)
		}
	}
	s, path, err := openLogReadOnly(*dataDir)
	if err != nil {
		return err
	}
	defer s.Close()
	w := bufio.NewWriterSize(stdout, 256<<10)
	var (
		line  []byte
		tally audit.ExportTally
	)
	n := 0
	for e, err := range s.Events(ctx, *from) {
		if err != nil {
			if ferr := w.Flush(); ferr != nil {
				return ferr
			}
			return fmt.Errorf("%s: after %d events: %w", path, n, err)
		}
		line = append(stream.AppendJSON(line[:0], &e), '\n')
		if _, err := w.Write(line); err != nil {
			return err
		}
		tally.Add(&e)
		n++
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if *manifest != "" {
		m := tally.Manifest(*from)
		if err := durable.Create(*manifest, m.Marshal(), 0o644); err != nil {
			return fmt.Errorf("write the manifest: %w", err)
		}
	}
	return nil
}
