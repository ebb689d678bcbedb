package main

import (
	"bufio"
	"context"
	"fmt"
	"io"

	"github.com/payledger/payledger/stream"
)

func init() {
	register(&command{name: "export", summary: "write the log's events as JSON Lines", run: runExport})
}

// runExport writes one event per line, in sequence order, in the JSON form
// the stream publishes (stream.AppendJSON: encoding/json's form of
// ledger.Event, with data byte for byte as logged, so each line's hash can
// be recomputed). It reads in chunks, so memory stays constant however long
// the log. On a bad record it stops, having written every event before it,
// and fails naming the sequence.
func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", stderr)
	dataDir := dataDirFlag(fs)
	from := fs.Uint64("from", 1, "first sequence to export")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: payledger export [--data-dir D] [--from SEQ] > events.jsonl")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	s, path, err := openLogReadOnly(*dataDir)
	if err != nil {
		return err
	}
	defer s.Close()
	w := bufio.NewWriterSize(stdout, 256<<10)
	var line []byte
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
		n++
	}
	return w.Flush()
}
