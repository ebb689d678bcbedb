package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"time"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
)

// Options configures a verification. The zero value is the default.
type Options struct {
	// PublicKeys are the checkpoint keys the auditor trusts. With any given,
	// every checkpoint must be signed by one of them and there must be at
	// least one checkpoint; with none, each checkpoint is checked against
	// the key it names (which proves the log intact since, not who signed).
	PublicKeys []ed25519.PublicKey
	// SkipRebuild leaves out the projections check (a rebuild of every view
	// into a scratch file and a key-by-key comparison), the slowest one.
	SkipRebuild bool
	// ScratchDir holds the rebuild's temporary file. Default os.TempDir().
	ScratchDir string
	// Manifest, for VerifyExport, is the export's manifest: its events
	// must be exactly the ones it names (Manifest.Compare), or the export
	// fails the chain check. Without one, an export cut at a line boundary
	// verifies as the shorter log it is. Run ignores it.
	Manifest *Manifest
}

// Report is what a verification found, as far as it got.
type Report struct {
	Head          ledger.Head                `json:"head"`           // the last verified event
	Events        uint64                     `json:"events"`         // events checked by the domain checks
	Streams       uint64                     `json:"streams"`        // distinct streams
	Types         map[string]uint64          `json:"types"`          // events by type
	Invoices      map[string]uint64          `json:"invoices"`       // by status, from their events
	PostingEvents uint64                     `json:"posting_events"` // events that carry postings
	Totals        map[string]Flow            `json:"totals"`         // postings per currency
	Merchants     map[string]map[string]Flow `json:"merchants"`      // postings of each merchant's events, per currency

	Checkpoints    uint64          `json:"checkpoints"` // verified
	LastCheckpoint *CheckpointInfo `json:"last_checkpoint,omitempty"`
	Keys           []string        `json:"keys,omitempty"` // public keys that signed them, hex
	// Uncovered is how many events come after the head the last
	// checkpoint signed (the checkpoint event itself among them).
	Uncovered uint64 `json:"uncovered"`

	// Views says what became of the views checks: "compared" (invoice
	// views agree with their events and every view equals a rebuild),
	// "rebuilt" (no views in the file; a rebuild succeeded), "none"
	// (an export), or why they were skipped.
	Views string `json:"views"`

	Took struct {
		Chain, Domain, Views, Rebuild time.Duration
	} `json:"-"`
}

// Run verifies a log, in order: the hash chain, sequence continuity, stream
// versions, index and head (boltlog.Store.Verify); then, in one pass over
// the events, that every stream starts with its creation event, that
// postings balance per currency and per merchant in every event and in
// total, that every invoice's events follow its lifecycle, and every
// checkpoint (signature, key, the chain's hash at the signed sequence);
// then that each invoice's view says what its events say; and last that the
// views equal a rebuild from the log. It stops at the first fault.
//
// The log should not be appended to meanwhile (a read-only open or a
// backup): Run checks the events up to the head when it began, and skips
// the views checks when the views have moved past it because the log grew.
// Views past the end of the log (a log cut short behind them) are a fault.
//
// Errors: a *Fault naming the check, sequence and stream (errors.Is
// matches ErrChain, ErrStreams, ErrPostings, ErrInvoice, ErrCheckpoint or
// ErrProjections); ctx.Err(); or an I/O error.
func Run(ctx context.Context, store *boltlog.Store, opts Options) (Report, error) {
	var r Report
	start := time.Now()
	head, err := store.Verify(ctx)
	r.Took.Chain = time.Since(start)
	r.Head = head
	var ve *ledger.VerifyError
	if errors.As(err, &ve) {
		f := &Fault{Seq: ve.Seq, Check: CheckChain, Reason: ve.Reason, Cause: err}
		if e, gerr := store.Get(ve.Seq); gerr == nil {
			f.Stream = e.Stream
		}
		return r, f
	}
	if err != nil {
		return r, err
	}

	start = time.Now()
	c := newChecker(opts.PublicKeys)
	for e, err := range store.Events(ctx, 1) {
		if err != nil {
			return r, err
		}
		if e.Seq > head.Seq {
			break
		}
		if f := c.event(&e); f != nil {
			c.fill(&r)
			return r, f
		}
	}
	err = c.finish(func(seqs []uint64) (map[uint64]ledger.Hash, error) {
		out := make(map[uint64]ledger.Hash, len(seqs))
		for _, seq := range seqs {
			e, err := store.Get(seq)
			if err != nil {
				return nil, err
			}
			out[seq] = e.Hash
		}
		return out, nil
	})
	c.fill(&r)
	r.Took.Domain = time.Since(start)
	if err != nil {
		return r, err
	}

	// The views live in the same file, and are read around the Store: a
	// damaged page among them makes bbolt panic, which GuardRead turns
	// into an error (the chain and the log's own reads are guarded in
	// the Store).
	if err := boltlog.GuardRead(func() error { return checkViews(ctx, store, opts, head, c, &r) }); err != nil {
		if errors.Is(err, boltlog.ErrDamaged) {
			return r, &Fault{Check: CheckProjections, Reason: "the views are damaged (rebuild them from the log: payledger replay, or restore): " + err.Error(), Cause: err}
		}
		return r, err
	}
	return r, nil
}

// checkViews is Run's views checks: the live views against the events,
// then a rebuild of the log compared with them. It fills r's views fields.
func checkViews(ctx context.Context, store *boltlog.Store, opts Options, head ledger.Head, c *checker, r *Report) error {
	start := time.Now()
	live, err := projections.Summarize(store.DB())
	hasViews := err == nil
	lv := projections.NewViews(store.DB())
	format, older := lv.OlderFormat()
	if err := lv.Damaged(); err != nil {
		return err // OlderFormat reports no error of its own
	}
	switch {
	case hasViews && older:
		// A data dir from before an upgrade: this build cannot read those
		// views, and serve rebuilds them from the log when it next opens
		// the file. The rebuild below still checks the log.
		hasViews = false
		r.Views = fmt.Sprintf("not compared: the views are of format %d, an older build's (payledger serve rebuilds them from the log when it next starts)", format)
	case errors.Is(err, projections.ErrNotFound):
		r.Views = "no views in the file"
	case err != nil:
		return &Fault{Check: CheckProjections, Reason: "live views: " + err.Error(), Cause: err}
	case live.Checkpoint > head.Seq:
		// Views and log commit in one transaction, so views past the
		// verified head are fine only if the log has grown to them since
		// (a live log); a log without those events was cut short.
		_, gerr := store.Get(live.Checkpoint)
		switch {
		case errors.Is(gerr, ledger.ErrNotFound):
			return fault(CheckProjections, head.Seq+1, "", "the views have applied the log up to sequence %d, but the log ends at %d: the events after it are missing", live.Checkpoint, head.Seq)
		case gerr != nil:
			return gerr
		}
		r.Views = fmt.Sprintf("not compared: the views moved on to sequence %d while verifying", live.Checkpoint)
		return nil
	case live.Checkpoint < head.Seq:
		return fault(CheckProjections, live.Checkpoint+1, "", "the views have applied the log up to sequence %d of %d", live.Checkpoint, head.Seq)
	default:
		if err := c.compareInvoices(lv, live); err != nil {
			return err
		}
	}
	r.Took.Views = time.Since(start)

	if opts.SkipRebuild {
		if hasViews {
			r.Views = "invoice views agree with their events; rebuild skipped"
		}
		return nil
	}
	start = time.Now()
	err = rebuildAndCompare(ctx, store, head, hasViews, opts.ScratchDir, c)
	r.Took.Rebuild = time.Since(start)
	if err != nil {
		return err
	}
	switch {
	case hasViews:
		r.Views = "compared"
	case older:
		r.Views += "; the log rebuilds cleanly"
	default:
		r.Views = "rebuilt (no views in the file to compare)"
	}
	return nil
}

// VerifyExport verifies an export (payledger export's JSON Lines, from
// sequence 1) with what it holds: the chain (every hash recomputed from its
// line), the stream, postings, invoice and checkpoint checks of Run, in one
// pass, and a second pass only for a checkpoint further back than the
// checker remembers. A chain fault anywhere comes before any other. There
// are no views in an export: the views checks are Run's. With
// opts.Manifest, the events must be exactly the ones it names, checked
// after the chain and before the other checks.
//
// Errors: as Run; a line that is not an event is a chain *Fault whose
// cause is an *ExportError; events other than the manifest's are a chain
// *Fault whose cause is a *ManifestError (errors.Is matches
// ErrManifestMismatch), at the first sequence where they part.
func VerifyExport(ctx context.Context, r io.ReadSeeker, opts Options) (Report, error) {
	var rep Report
	rep.Views = "none (an export)"
	start := time.Now()
	v := ledger.NewVerifier()
	c := newChecker(opts.PublicKeys)
	var first *Fault
	var tally ExportTally
	n := 0
	for e, err := range ReadExport(r) {
		if err != nil {
			rep.Head = v.Head()
			var ee *ExportError
			if errors.As(err, &ee) {
				return rep, &Fault{Seq: max(ee.Seq, v.Head().Seq+1), Check: CheckChain, Reason: ee.what(), Cause: err}
			}
			return rep, err
		}
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
		}
		if err := v.Check(&e); err != nil {
			rep.Head = v.Head()
			ve := &ledger.VerifyError{}
			errors.As(err, &ve)
			reason := ve.Reason
			if v.Count() == 0 && e.Seq != 1 {
				reason = fmt.Sprintf("the export starts at sequence %d: verifying needs an export from sequence 1 (payledger export without --from)", e.Seq)
			}
			return rep, &Fault{Seq: ve.Seq, Stream: e.Stream, Check: CheckChain, Reason: reason, Cause: err}
		}
		tally.Add(&e)
		if first == nil {
			first = c.event(&e)
		}
	}
	rep.Head = v.Head()
	rep.Took.Chain = time.Since(start)
	if m := opts.Manifest; m != nil {
		if err := m.Compare(&tally); err != nil {
			var me *ManifestError
			errors.As(err, &me)
			return rep, &Fault{Seq: me.Seq, Check: CheckChain, Reason: me.Reason, Cause: err}
		}
	}
	if first != nil {
		c.fill(&rep)
		return rep, first
	}
	err := c.finish(func(seqs []uint64) (map[uint64]ledger.Hash, error) {
		if _, err := r.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("read the export again for old checkpoints: %w", err)
		}
		out := make(map[uint64]ledger.Hash, len(seqs))
		for e, err := range ReadExport(r) {
			if err != nil {
				return nil, err
			}
			if _, ok := slices.BinarySearch(seqs, e.Seq); ok {
				out[e.Seq] = e.Hash
			}
			if e.Seq >= seqs[len(seqs)-1] {
				break
			}
		}
		return out, nil
	})
	c.fill(&rep)
	return rep, err
}

// fill copies what the checker counted into a report.
func (c *checker) fill(r *Report) {
	r.Events, r.Streams, r.PostingEvents = c.events, c.streams, c.postingEvents
	r.Types = c.types
	r.Invoices = map[string]uint64{}
	for _, st := range c.invoices {
		r.Invoices[statusNames[st.status]]++
	}
	r.Totals = map[string]Flow{}
	for cur, f := range c.totals {
		r.Totals[cur] = *f
	}
	r.Merchants = map[string]map[string]Flow{}
	for m, flows := range c.merchants {
		r.Merchants[m] = map[string]Flow{}
		for cur, f := range flows {
			r.Merchants[m][cur] = *f
		}
	}
	r.Checkpoints = c.checkpoints
	r.Keys = sortedKeys(c.keys)
	if c.checkpoints > 0 {
		cp := c.lastCP
		r.LastCheckpoint = &cp
		r.Uncovered = c.last - cp.Seq
	} else {
		r.LastCheckpoint, r.Uncovered = nil, c.last
	}
}

// compareInvoices checks every invoice's view against the fold of its
// events (status, stream version, the payment that paid it, late), and the
// views' counts by status against the folds'. Of several disagreements it
// names the one whose last event comes first.
func (c *checker) compareInvoices(views *projections.Views, live projections.Summary) error {
	var worst *Fault
	note := func(f *Fault) {
		if worst == nil || f.Seq < worst.Seq {
			worst = f
		}
	}
	counts := map[string]uint64{}
	for k, st := range c.invoices {
		status := statusNames[st.status]
		counts[status]++
		id := k.uuid()
		stream := commands.StreamID(commands.StreamInvoice, id)
		v, err := views.InvoicePublic(id)
		switch {
		case errors.Is(err, boltlog.ErrDamaged):
			return err // Run says the views are damaged
		case errors.Is(err, projections.ErrNotFound):
			note(fault(CheckInvoices, st.lastSeq, stream, "invoice %s has no view", id))
			continue
		case err != nil:
			note(&Fault{Seq: st.lastSeq, Stream: stream, Check: CheckInvoices, Reason: fmt.Sprintf("invoice %s: view: %v", id, err), Cause: err})
			continue
		}
		paidBy := ""
		if st.status == stSuccess {
			paidBy = commands.StreamID(commands.StreamPayment, st.paidBy.ulid())
		}
		switch {
		case v.Status != status:
			note(fault(CheckInvoices, st.lastSeq, stream, "the view of invoice %s says %s, its events say %s", id, v.Status, status))
		case v.Version != st.version:
			note(fault(CheckInvoices, st.lastSeq, stream, "the view of invoice %s is at version %d, its stream at %d", id, v.Version, st.version))
		case v.PaidBy != paidBy || v.Late != st.late:
			note(fault(CheckInvoices, st.lastSeq, stream, "the view of invoice %s says paid by %q (late %t), its events say %q (late %t)", id, v.PaidBy, v.Late, paidBy, st.late))
		}
	}
	if worst != nil {
		return worst
	}
	for _, status := range sortedKeys(live.Invoices) {
		if live.Invoices[status] != counts[status] {
			return fault(CheckInvoices, 0, "", "the views count %d invoices %s, their events %d", live.Invoices[status], status, counts[status])
		}
	}
	return nil
}

// rebuildAndCompare rebuilds every view from the log's events up to head
// into a scratch file and compares them key by key with the live views.
func rebuildAndCompare(ctx context.Context, store *boltlog.Store, head ledger.Head, compare bool, dir string, c *checker) error {
	f, err := os.CreateTemp(dir, "payledger-audit-*.db")
	if err != nil {
		return fmt.Errorf("rebuild: scratch file: %w", err)
	}
	name := f.Name()
	f.Close()
	defer os.Remove(name)
	db, err := bbolt.Open(name, 0o600, projections.ScratchOptions())
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	defer db.Close()
	events := func(yield func(ledger.Event, error) bool) {
		for e, err := range store.Events(ctx, 1) {
			if err == nil && e.Seq > head.Seq {
				return
			}
			if !yield(e, err) {
				return
			}
		}
	}
	if _, err := projections.Rebuild(ctx, events, db, time.Time{}); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		f := &Fault{Check: CheckProjections, Reason: "the views cannot be rebuilt: " + err.Error(), Cause: err}
		if m := rebuildAt.FindStringSubmatch(err.Error()); m != nil {
			f.Seq, _ = strconv.ParseUint(m[1], 10, 64)
			f.Stream = m[2]
		}
		return f
	}
	if !compare {
		return nil
	}
	err = projections.Compare(store.DB(), db)
	var de *projections.DiffError
	if errors.As(err, &de) {
		f := &Fault{Check: CheckProjections, Reason: "the live views differ from a rebuild: " + de.Error(), Cause: err}
		key := string(de.Key)
		switch de.Bucket {
		case "v_invoices":
			f.Stream = commands.StreamID(commands.StreamInvoice, key)
			f.Seq = c.invoices[uuidKey(key)].lastSeq
		case "v_payments":
			f.Stream = key
		case "v_widgets":
			f.Stream = commands.StreamID(commands.StreamWidget, key)
		case "v_merchants":
			f.Stream = commands.StreamID(commands.StreamMerchant, key)
		}
		return f
	}
	return err
}

// rebuildAt finds the event a projections error names:
// "sequence 42 (invoice.paid on invoice-...)".
var rebuildAt = regexp.MustCompile(`sequence ([0-9]+) \([^ ]+ on ([^)]+)\)`)
