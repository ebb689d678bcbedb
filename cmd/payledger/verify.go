package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/payledger/payledger/audit"
	"github.com/payledger/payledger/ledger"
)

func init() {
	register(&command{name: "verify", summary: "verify the event log (or an export): hash chain, postings, invoice statuses, projections, signed checkpoints", run: runVerify})
}

// keyList is a repeatable --public-key. The values are read after parsing,
// by keys: the flag package would repeat a refused value in its message, and
// a private key pasted by mistake must not end up in a terminal's or CI's log.
type keyList []string

func (k *keyList) String() string { return fmt.Sprint(len(*k), " keys") }

func (k *keyList) Set(s string) error {
	*k = append(*k, s)
	return nil
}

// keys reads every --public-key; an error names the flag's place, never its
// value.
func (k keyList) keys() ([]ed25519.PublicKey, error) {
	out := make([]ed25519.PublicKey, 0, len(k))
	for i, arg := range k {
		pub, err := readPublicKey(arg)
		if err != nil {
			return nil, fmt.Errorf("--public-key (number %d): %w", i+1, err)
		}
		out = append(out, pub)
	}
	return out, nil
}

// readPublicKey takes a public key as hex or base64, or a file holding one
// (such as payledger keygen's output).
func readPublicKey(arg string) (ed25519.PublicKey, error) {
	pub, err := audit.ParsePublicKey(arg)
	if err == nil {
		return pub, nil
	}
	b, ferr := os.ReadFile(arg)
	if errors.Is(ferr, fs.ErrNotExist) || (ferr == nil && len(b) > 4096) {
		return nil, err
	}
	if ferr != nil {
		return nil, ferr
	}
	pub, err = audit.ParsePublicKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", arg, err)
	}
	return pub, nil
}

// runVerify checks a log read-only (or an export), in order: the hash
// chain, sequence continuity, stream versions, index and head (for an
// export with --manifest, that it holds exactly the events the manifest
// names, so that one cut short fails); that every stream starts with its creation event; postings per currency and per
// merchant; that every invoice's status follows from its events and its
// view says so; the signed checkpoints; and that the views equal a rebuild.
// It prints what it found and stops at the first fault. Exit status: 0
// when everything verifies, 1 at a fault (the error names the first bad
// sequence) or when the log or the manifest cannot be read, 2 on bad
// usage.
func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify", stderr)
	dataDir := dataDirFlag(fs)
	export := fs.String("export", "", "verify this export file (payledger export's JSON Lines, from sequence 1) instead of a log")
	manifest := fs.String("manifest", "", "the export's manifest (payledger export --manifest): the export must hold exactly the events it names, so that one cut short fails")
	var keys keyList
	fs.Var(&keys, "public-key", "trusted checkpoint key: hex or base64 Ed25519 public key, or a file holding one (payledger keygen prints it); repeat for several. Every checkpoint must be signed by one, and there must be one")
	skipRebuild := fs.Bool("skip-rebuild", false, "leave out the slowest check: rebuilding every view and comparing it with the live one")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: payledger verify [--data-dir D | --export FILE [--manifest M]] [--public-key K]... [--skip-rebuild]")
		fmt.Fprintln(stderr, "\nChecks, in order, and stops at the first fault, naming its sequence and stream:")
		fmt.Fprintln(stderr, "  chain        every record's hash, the chain, sequence continuity, stream versions, index, head;")
		fmt.Fprintln(stderr, "               for an export with --manifest, exactly the events its manifest names")
		fmt.Fprintln(stderr, "  streams      every stream starts with its creation event, and has one")
		fmt.Fprintln(stderr, "  postings     every event's postings sum to zero per currency and touch only its merchant's")
		fmt.Fprintln(stderr, "               accounts; each merchant's and all postings sum to zero")
		fmt.Fprintln(stderr, "  invoices     every invoice's events follow its lifecycle, and its view says what they say")
		fmt.Fprintln(stderr, "  checkpoints  each signature, over the exact (sequence, hash) it names, and the chain's hash there;")
		fmt.Fprintln(stderr, "               signed_at not after the event's time nor more than a minute before it")
		fmt.Fprintln(stderr, "  projections  the views equal a rebuild from the log (not for an export)")
		fmt.Fprintln(stderr, "\nThe log is opened read-only and must not be open in a running server (back it up")
		fmt.Fprintln(stderr, "with payledger backup and verify the copy). An export needs only the public key.")
		fmt.Fprintln(stderr, "An export cut at a line boundary is a valid, shorter log: only --manifest tells it")
		fmt.Fprintln(stderr, "from the whole one, and without it the report says completeness was not checked.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["export"] && set["data-dir"] {
		return &exitError{code: 2, err: errors.New("give --data-dir or --export, not both")}
	}
	if *manifest != "" && *export == "" {
		return &exitError{code: 2, err: errors.New("--manifest is for --export: the manifest of an export")}
	}
	pubs, kerr := keys.keys()
	if kerr != nil {
		return &exitError{code: 2, err: kerr}
	}
	opts := audit.Options{PublicKeys: pubs, SkipRebuild: *skipRebuild}
	if *manifest != "" {
		m, err := readManifest(*manifest)
		if err != nil {
			return err
		}
		opts.Manifest = m
	}

	var (
		path string
		rep  audit.Report
		err  error
	)
	start := time.Now()
	if *export != "" {
		path = *export
		f, ferr := os.Open(path)
		if ferr != nil {
			return ferr
		}
		defer f.Close()
		rep, err = audit.VerifyExport(ctx, f, opts)
	} else {
		s, p, oerr := openLogReadOnly(*dataDir)
		if oerr != nil {
			return oerr
		}
		defer s.Close()
		path = p
		rep, err = audit.Run(ctx, s, opts)
	}
	took := time.Since(start)

	var f *audit.Fault
	isFault := errors.As(err, &f)
	if isFault && f.Check == audit.CheckChain {
		reason := f.Reason
		var ve *ledger.VerifyError
		if errors.As(err, &ve) {
			reason = ve.Reason
		}
		fmt.Fprintf(stdout, "%s: FAILED at sequence %d: %s\n", path, f.Seq, reason)
		if errors.Is(err, audit.ErrManifestMismatch) {
			fmt.Fprintf(stdout, "its %d events verify as a chain (head %d %s), but they are not the ones its manifest %s names: %s\n",
				rep.Head.Seq, rep.Head.Seq, rep.Head.Hash, *manifest, opts.Manifest.Describe())
		} else {
			fmt.Fprintf(stdout, "the %d events before it verify; last good head %d %s\n", rep.Head.Seq, rep.Head.Seq, rep.Head.Hash)
		}
		return fmt.Errorf("%s: first bad sequence %d: %w", path, f.Seq, err)
	}
	if err != nil && !isFault {
		return fmt.Errorf("%s: %w", path, err)
	}
	chainTook := rep.Took.Chain
	if *export != "" {
		chainTook = took
	}
	rate := ""
	if s := chainTook.Seconds(); s > 0 && rep.Head.Seq > 0 {
		rate = fmt.Sprintf(", %.0f events/s", float64(rep.Head.Seq)/s)
	}
	// Not "ok": the checks after the chain may still fail. The verdict is
	// "ok: every check passed" at the end, or a FAILED line.
	fmt.Fprintf(stdout, "%s: hash chain verified: %d events in %s%s\n", path, rep.Head.Seq, chainTook.Round(time.Millisecond), rate)
	fmt.Fprintf(stdout, "head: seq %d hash %s\n", rep.Head.Seq, rep.Head.Hash)
	switch {
	case *export == "":
	case opts.Manifest != nil:
		fmt.Fprintf(stdout, "completeness: matches its manifest %s: %s\n", *manifest, opts.Manifest.Describe())
	default:
		fmt.Fprintln(stdout, "completeness: not checked (no --manifest); a file cut at a line boundary verifies as a shorter log")
	}
	printAudit(stdout, rep, isFault)
	if isFault {
		fmt.Fprintf(stdout, "%s: FAILED: %s\n", path, strings.TrimPrefix(f.Error(), "audit: "))
		if f.Seq != 0 {
			return fmt.Errorf("%s: first bad sequence %d: %w", path, f.Seq, err)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	fmt.Fprintf(stdout, "%s: ok: every check passed in %s\n", path, took.Round(time.Millisecond))
	return nil
}

// printAudit prints what the checks after the chain found; partial is a
// report cut short by a fault.
func printAudit(w io.Writer, r audit.Report, partial bool) {
	if partial {
		fmt.Fprintf(w, "checked up to the fault: %d events\n", r.Events)
	}
	fmt.Fprintf(w, "streams: %d\n", r.Streams)
	printCounts(w, "invoices", r.Invoices, invoiceStatusOrder)
	fmt.Fprintf(w, "postings: %d events", r.PostingEvents)
	if !partial {
		fmt.Fprint(w, ", each balanced per currency and per merchant")
	}
	fmt.Fprintln(w)
	for _, cur := range sortedKeys(r.Totals) {
		t := r.Totals[cur]
		fmt.Fprintf(w, "  %-6s debits %s  credits %s  net %s\n", cur, t.Debits, t.Credits, t.Net())
	}
	for _, m := range sortedKeys(r.Merchants) {
		fmt.Fprintf(w, "  merchant %s:", m)
		for _, cur := range sortedKeys(r.Merchants[m]) {
			t := r.Merchants[m][cur]
			fmt.Fprintf(w, " %s debits %s credits %s;", cur, t.Debits, t.Credits)
		}
		fmt.Fprintln(w)
	}
	switch {
	case r.Checkpoints == 0:
		fmt.Fprintf(w, "checkpoints: none (%d events not covered by a signature)\n", r.Uncovered)
	default:
		lc := r.LastCheckpoint
		fmt.Fprintf(w, "checkpoints: %d verified, signed by %s; the last (at sequence %d) signs sequence %d hash %s; events after it: %d\n",
			r.Checkpoints, strings.Join(r.Keys, ", "), lc.EventSeq, lc.Seq, lc.Hash, r.Uncovered)
	}
	if r.Views != "" {
		fmt.Fprintf(w, "views: %s\n", r.Views)
	}
}

// readManifest reads an export's manifest (verify and import --manifest).
func readManifest(path string) (*audit.Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	defer f.Close()
	m, err := audit.ReadManifest(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}
