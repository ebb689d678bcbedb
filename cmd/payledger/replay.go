package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/internal/durable"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
)

func init() {
	register(&command{name: "replay", summary: "rebuild every projection from the log into a scratch file and print a summary", run: runReplay})
}

// replayGCPercent is the garbage collector's target while replaying: a
// replay is a batch job that allocates a few kilobytes per event and keeps
// little, so trading memory for CPU is worth it (about a quarter fewer CPU
// seconds than the default 100, see docs/benchmarks.md).
const replayGCPercent = 400

// runReplay rebuilds the views from the log, read-only, into a scratch bbolt
// file, prints what they hold, and (for a full replay) compares them with
// the views the server maintained inline. Exit status: 0 when the replay
// succeeds, posting totals are zero and the live views (if any) are
// identical; 1 otherwise; 2 on bad usage.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("replay", stderr)
	dataDir := dataDirFlag(fs)
	untilFlag := fs.String("until", "", "replay only the events up to this time (RFC 3339): the log's prefix before the first later event")
	out := fs.String("out", "", "keep the rebuilt views in this bbolt file, replaced only once the replay succeeds; not an event log (default: a temporary file, removed afterwards)")
	noCompare := fs.Bool("no-compare", false, "do not compare the rebuilt views with the live ones in the log file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: payledger replay [--data-dir D] [--until RFC3339] [--out FILE] [--no-compare]")
		fmt.Fprintln(stderr, "\nRebuilds every projection (invoices, payments, widgets, merchants, indexes,")
		fmt.Fprintln(stderr, "balances) from the event log into a scratch file, and prints events applied,")
		fmt.Fprintln(stderr, "invoices and payments by status, balances per merchant and posting totals per")
		fmt.Fprintln(stderr, "currency. A full replay is then compared key by key with the views the server")
		fmt.Fprintln(stderr, "kept inline. Exits 1 if a posting total is not zero or the views differ.")
		fmt.Fprintln(stderr, "The log is opened read-only and must not be open in a running server.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	var until time.Time
	if *untilFlag != "" {
		var err error
		if until, err = time.Parse(time.RFC3339, *untilFlag); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--until: want an RFC 3339 time such as 2026-02-25T12:00:00Z: %w", err)}
		}
	}
	if *out != "" {
		if err := checkViewsOut(*out); err != nil {
			return &exitError{code: 2, err: err}
		}
	}

	log, path, err := openLogReadOnly(*dataDir)
	if err != nil {
		return err
	}
	defer log.Close()

	var target string
	if *out == "" {
		f, err := os.CreateTemp("", "payledger-replay-*.db")
		if err != nil {
			return fmt.Errorf("scratch file: %w", err)
		}
		target = f.Name()
		f.Close()
	} else {
		// The views are built in <out>.tmp and renamed over --out only once
		// complete: a replay that fails or is killed leaves what --out held.
		target = *out + ".tmp"
		if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("scratch file: %w", err)
		}
	}
	defer os.Remove(target) // after the rename into --out, nothing is there
	db, err := bbolt.Open(target, 0o600, projections.ScratchOptions())
	if err != nil {
		return fmt.Errorf("open %s: %w", target, err)
	}
	defer db.Close()

	head := log.Head()
	defer debug.SetGCPercent(debug.SetGCPercent(replayGCPercent))
	start := time.Now()
	sum, err := projections.Rebuild(ctx, log.Events(ctx, 1), db, until)
	took := time.Since(start)
	if err != nil {
		return fmt.Errorf("replay %s: %w", path, err)
	}
	if *out != "" {
		if err := os.Rename(target, *out); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		if err := durable.SyncDir(filepath.Dir(*out)); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
	}

	rate := ""
	if s := took.Seconds(); s > 0 && sum.Events > 0 {
		rate = fmt.Sprintf(", %.0f events/s", float64(sum.Events)/s)
	}
	fmt.Fprintf(stdout, "replayed %s in %s%s\n", path, took.Round(time.Millisecond), rate)
	if *out != "" {
		fmt.Fprintf(stdout, "views written to %s\n", *out)
	}
	printSummary(stdout, sum, head.Seq, until)

	var problems []string
	for _, cur := range sortedKeys(sum.PostingTotals) {
		if d := sum.PostingTotals[cur]; !d.IsZero() {
			problems = append(problems, fmt.Sprintf("%s postings sum to %s, not zero", cur, d))
		}
	}
	if until.IsZero() && !*noCompare {
		// The live views are read around the log's Store: a damaged page
		// among them is an error, not bbolt's panic.
		if err := boltlog.GuardRead(func() error { return compareLive(log, db, sum, head, stdout, &problems) }); err != nil {
			if errors.Is(err, boltlog.ErrDamaged) {
				return fmt.Errorf("compare with the live views: %w", err)
			}
			return err
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// compareLive compares the views rebuilt into db with the live ones in the
// log's file, printing the outcome; a difference is added to problems.
func compareLive(log *boltlog.Store, db *bbolt.DB, sum projections.Summary, head ledger.Head, stdout io.Writer, problems *[]string) error {
	lv := projections.NewViews(log.DB())
	format, older := lv.OlderFormat()
	live := lv.Checkpoint()
	if err := lv.Damaged(); err != nil {
		// OlderFormat and Checkpoint report no error of their own: a
		// damaged page is not "no views".
		return err
	}
	switch {
	case live > 0 && older:
		fmt.Fprintf(stdout, "live views: of format %d, an older build's: not compared (serve rebuilds them from the log when it next starts)\n", format)
	case live == 0 && head.Seq > 0:
		fmt.Fprintln(stdout, "live views: none in the log file, nothing to compare")
	case live != sum.Checkpoint:
		fmt.Fprintf(stdout, "live views: at sequence %d, the log at %d: not compared\n", live, sum.Checkpoint)
	default:
		err := projections.Compare(log.DB(), db)
		var de *projections.DiffError
		switch {
		case err == nil:
			fmt.Fprintln(stdout, "live views: identical to the replay")
		case errors.As(err, &de):
			fmt.Fprintf(stdout, "live views: DIFFER from the replay: %v\n", de)
			*problems = append(*problems, "live views differ from the replay")
		default:
			return fmt.Errorf("compare with the live views: %w", err)
		}
	}
	return nil
}

// checkViewsOut refuses a --out that exists and is not a views file: an
// event log (such as a data dir's ledger.db) or a file that is not bbolt's,
// which the replay would replace.
func checkViewsOut(out string) error {
	if _, err := os.Stat(out); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	s, err := boltlog.Open(out, &boltlog.Options{ReadOnly: true, OpenTimeout: time.Second})
	if err == nil {
		s.Close()
		return fmt.Errorf("--out %s is an event log: give a file for the views alone", out)
	}
	if !errors.Is(err, boltlog.ErrNotLog) {
		return fmt.Errorf("--out %s exists and is not a views file that a replay wrote: %w", out, err)
	}
	return nil
}

// Status orders for printing: the seeds' lifecycles.
var (
	invoiceStatusOrder = []string{"pending", "success", "expired", "cancelled"}
	paymentStatusOrder = []string{"PENDING", "CONFIRMED", "PROCESSED", "REJECTED", "CANCELLED", "ERROR"}
	widgetStatusOrder  = []string{"active", "disabled", "expired"}
)

func printSummary(w io.Writer, s projections.Summary, head uint64, until time.Time) {
	if until.IsZero() {
		fmt.Fprintf(w, "events: %d applied (log head %d)\n", s.Events, head)
	} else {
		fmt.Fprintf(w, "events: %d applied, up to %s (log head %d)\n", s.Events, until.UTC().Format(time.RFC3339Nano), head)
	}
	fmt.Fprintf(w, "merchants: %d\n", s.Merchants)
	printCounts(w, "invoices", s.Invoices, invoiceStatusOrder)
	printCounts(w, "payments", s.Payments, paymentStatusOrder)
	printCounts(w, "widgets", s.Widgets, widgetStatusOrder)
	fmt.Fprintln(w, "balances:")
	if len(s.Balances) == 0 {
		fmt.Fprintln(w, "  (no postings)")
	}
	for _, m := range sortedKeys(s.Balances) {
		name := "merchant " + m
		if m == "_" {
			name = "system accounts"
		}
		fmt.Fprintf(w, "  %s:\n", name)
		for _, b := range s.Balances[m] {
			fmt.Fprintf(w, "    %-24s %-5s %s\n", b.Account, b.Currency, b.Amount)
		}
	}
	fmt.Fprint(w, "posting totals:")
	if len(s.PostingTotals) == 0 {
		fmt.Fprint(w, " (no postings)")
	}
	zero := true
	for _, cur := range sortedKeys(s.PostingTotals) {
		fmt.Fprintf(w, " %s %s", cur, s.PostingTotals[cur])
		zero = zero && s.PostingTotals[cur].IsZero()
	}
	if zero {
		fmt.Fprintln(w, " (every currency sums to zero)")
	} else {
		fmt.Fprintln(w, " (NOT ZERO)")
	}
}

// printCounts prints a total and the count per status, known statuses in
// lifecycle order, then any others.
func printCounts(w io.Writer, what string, counts map[string]uint64, order []string) {
	var total uint64
	for _, n := range counts {
		total += n
	}
	fmt.Fprintf(w, "%s: %d", what, total)
	for _, st := range order {
		fmt.Fprintf(w, "  %s %d", st, counts[st])
	}
	for _, st := range sortedKeys(counts) {
		if !slices.Contains(order, st) {
			fmt.Fprintf(w, "  %s %d", st, counts[st])
		}
	}
	fmt.Fprintln(w)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
