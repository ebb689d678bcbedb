package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/payledger/payledger/audit"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
)

func init() {
	register(&command{name: "import", summary: "re-import payledger export output into a log, checking every hash and the chain", run: runImport})
}

// Import batches: one Store.Import (one commit) each, so memory stays
// bounded however long the export.
const (
	importBatch      = 4096
	importBatchBytes = 4 << 20
)

// runImport reads an export (JSON Lines) and appends its events with their
// ids, positions and hashes (boltlog.Store.Import), with the projections
// inline as serve runs them, so the result is the same log: exporting it
// again gives the same bytes. Every line must be in export form and every
// event must continue the chain; the first that does not stops the import,
// named by its sequence. Into a data dir without events it imports all or
// nothing (into ledger.db.import, renamed into place once the whole log
// verifies); a log with events is continued from its head, the export's
// events up to the head being skipped once the one at the head (or, for an
// export that ends before it, the export's last) matches the log's. An
// export with no events is refused into a data dir without events (it
// would leave an empty ledger.db) and imports nothing into a log with
// events. With --manifest (audit.Manifest), the whole file is first read
// and compared with the manifest, so that an export cut short, extended, or
// not the manifest's is refused before anything is appended, and compared
// again as it is imported.
func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("import", stderr)
	dataDir := dataDirFlag(fs)
	from := fs.String("from", "", `the export file ("-": standard input)`)
	manifest := fs.String("manifest", "", "the export's manifest (payledger export --manifest): the export must hold exactly the events it names, checked before anything is imported; needs --from FILE, not standard input")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: payledger import --data-dir D --from FILE [--manifest M]")
		fmt.Fprintln(stderr, "\nRe-imports the output of payledger export into <data-dir>/ledger.db, checking every")
		fmt.Fprintln(stderr, "line's hash and the chain, and builds the projections as it goes. Into a data dir")
		fmt.Fprintln(stderr, "without events it imports all or nothing; a log with events is continued from its")
		fmt.Fprintln(stderr, "head. A tampered line stops it, naming its sequence; an export without events is")
		fmt.Fprintln(stderr, "refused into a data dir without events. The node must be stopped. An export cut at a")
		fmt.Fprintln(stderr, "line boundary is a valid, shorter log: with --manifest, one that does not hold exactly")
		fmt.Fprintln(stderr, "the events its manifest names is refused and nothing is imported.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *from == "" {
		return &exitError{code: 2, err: errors.New("--from FILE is required")}
	}
	if *manifest != "" && *from == "-" {
		return &exitError{code: 2, err: errors.New("--manifest needs --from FILE: the export is read twice, first to compare it with its manifest")}
	}
	var m *audit.Manifest
	if *manifest != "" {
		var err error
		if m, err = readManifest(*manifest); err != nil {
			return err
		}
	}
	var in io.Reader = os.Stdin
	if *from != "-" {
		f, err := os.Open(*from)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
		if m != nil {
			if err := audit.CheckExport(f, m); err != nil {
				return fmt.Errorf("%s: %w (nothing imported)", *from, refusal(err))
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
		}
	}
	path, before, head, err := fillLog(ctx, *dataDir, "import", "imported", "the export holds no events", func(st *boltlog.Store) (ledger.Head, error) {
		return importInto(ctx, st, in, m, stderr)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %d events into %s: head %d %s\n", head.Seq-before.Seq, path, head.Seq, head.Hash)
	if m != nil {
		fmt.Fprintf(stdout, "the export matched its manifest %s: %s\n", *manifest, m.Describe())
	}
	return nil
}

// refusal names the sequence an export's error is at, when it is known.
func refusal(err error) error {
	var ee *audit.ExportError
	if errors.As(err, &ee) && ee.Seq != 0 {
		return fmt.Errorf("refused at sequence %d: %w", ee.Seq, err)
	}
	var me *audit.ManifestError
	if errors.As(err, &me) {
		return fmt.Errorf("refused at sequence %d: %w", me.Seq, err)
	}
	return err
}

// importInto appends the export's events past st's head, in batches, and
// returns the log's head. With a manifest m, the export's events must be
// the ones it names, checked before the last batch is appended.
func importInto(ctx context.Context, st *boltlog.Store, in io.Reader, m *audit.Manifest, stderr io.Writer) (ledger.Head, error) {
	start := st.Head()
	batch := make([]ledger.Event, 0, importBatch)
	size := 0
	last := time.Now()
	var skipped ledger.Head // the export's last event already in the log
	var tally audit.ExportTally
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := st.Import(ctx, batch); err != nil {
			var ve *ledger.VerifyError
			if errors.As(err, &ve) {
				return fmt.Errorf("refused at sequence %d: %w", ve.Seq, err)
			}
			return err
		}
		clear(batch)
		batch, size = batch[:0], 0
		if time.Since(last) >= time.Second {
			last = time.Now()
			fmt.Fprintf(stderr, "payledger import: at sequence %d\n", st.Head().Seq)
		}
		return nil
	}
	for e, err := range audit.ReadExport(in) {
		if err != nil {
			if ferr := flush(); ferr != nil {
				return st.Head(), ferr
			}
			return st.Head(), refusal(err)
		}
		tally.Add(&e)
		if e.Seq <= start.Seq {
			// Already in the log: the export must agree at the head.
			if e.Seq == start.Seq && e.Hash != start.Hash {
				return st.Head(), fmt.Errorf("refused at sequence %d: the export's event is not the log's head %s", e.Seq, start.Hash)
			}
			skipped = ledger.Head{Seq: e.Seq, Hash: e.Hash}
			continue
		}
		batch = append(batch, e)
		size += len(e.Data) + 512
		if len(batch) == importBatch || size >= importBatchBytes {
			if err := flush(); err != nil {
				return st.Head(), err
			}
		}
	}
	if skipped.Seq > 0 && skipped.Seq < start.Seq {
		// The export ends before the log's head, so the check at the head
		// never ran: its last event must be the log's at that sequence, or
		// it is another history and "nothing to import" would be a lie.
		e, err := st.Get(skipped.Seq)
		if err != nil {
			return st.Head(), fmt.Errorf("refused at sequence %d: %w", skipped.Seq, err)
		}
		if e.Hash != skipped.Hash {
			return st.Head(), fmt.Errorf("refused at sequence %d: the export's event is not the log's %s", skipped.Seq, e.Hash)
		}
	}
	if m != nil {
		// Checked before the whole file was imported; a file changed since
		// is caught here, before the last batch.
		if err := m.Compare(&tally); err != nil {
			return st.Head(), refusal(err)
		}
	}
	if err := flush(); err != nil {
		return st.Head(), err
	}
	return st.Head(), nil
}
