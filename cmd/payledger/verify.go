package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/payledger/payledger/ledger"
)

func init() {
	register(&command{name: "verify", summary: "verify the event log's hash chain, sequence, stream versions and index", run: runVerify})
}

// runVerify walks the whole log read-only. Exit status: 0 when it verifies,
// 1 when it does not (the error names the first bad sequence) or cannot be
// opened, 2 on bad usage.
func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify", stderr)
	dataDir := dataDirFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: payledger verify [--data-dir D]")
		fmt.Fprintln(stderr, "\nRecomputes every record's hash and the chain, and checks sequence continuity,")
		fmt.Fprintln(stderr, "per-stream versions, the stream index and the head. Exits 1 naming the first bad")
		fmt.Fprintln(stderr, "sequence. The log must not be open in a running server.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	s, path, err := openLogReadOnly(*dataDir)
	if err != nil {
		return err
	}
	defer s.Close()
	start := time.Now()
	h, err := s.Verify(ctx)
	took := time.Since(start)
	var ve *ledger.VerifyError
	if errors.As(err, &ve) {
		fmt.Fprintf(stdout, "%s: FAILED at sequence %d: %s\n", path, ve.Seq, ve.Reason)
		fmt.Fprintf(stdout, "the %d events before it verify; last good head %d %s\n", h.Seq, h.Seq, h.Hash)
		return fmt.Errorf("%s: first bad sequence %d: %w", path, ve.Seq, err)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	rate := ""
	if s := took.Seconds(); s > 0 && h.Seq > 0 {
		rate = fmt.Sprintf(", %.0f events/s", float64(h.Seq)/s)
	}
	fmt.Fprintf(stdout, "%s: ok: %d events verified in %s%s\n", path, h.Seq, took.Round(time.Millisecond), rate)
	fmt.Fprintf(stdout, "head: seq %d hash %s\n", h.Seq, h.Hash)
	return nil
}
