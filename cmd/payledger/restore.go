package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/payledger/payledger/audit"
	"github.com/payledger/payledger/commands"
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
		fmt.Fprintln(stderr, "continued from its head. A broken chain stops it, naming the sequence. A log")
		fmt.Fprintln(stderr, "that ends part way through an append (a payment.processed without the")
		fmt.Fprintln(stderr, "invoice.paid appended with it, a payment.created without its")
		fmt.Fprintln(stderr, "invoice.payment_added) is kept, with a warning naming it.")
		fmt.Fprintln(stderr)
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
	var cut *cutAppend
	path, before, head, err := fillLog(ctx, *dataDir, "restore", "restored", "no events to restore", func(st *boltlog.Store) (ledger.Head, error) {
		head, err := stream.Restore(ctx, conn, st, progress)
		if err == nil {
			cut, err = endsInAppend(st, head)
		}
		return head, err
	})
	if err != nil {
		return err
	}
	// The restore itself succeeded: the log holds what the stream holds,
	// and the node takes it (docs/operations.md), so a cut append is a
	// warning, not a failure (exit status 0).
	fmt.Fprintf(stdout, "restored %d events into %s: head %d %s", head.Seq-before.Seq, path, head.Seq, head.Hash)
	if cut != nil && cut.unchecked != nil {
		fmt.Fprintln(stdout)
		fmt.Fprintf(stderr, "payledger restore: warning: the log's last event, sequence %d (%s), could not be checked for an append cut part way (%v); the restore itself is complete: run payledger verify\n",
			cut.seq, cut.payment, cut.unchecked)
		return nil
	}
	if cut != nil {
		fmt.Fprintf(stdout, "; the last complete append ends at sequence %d, the stream holds only the start of the next (see the warning)", cut.seq-1)
	}
	fmt.Fprintln(stdout)
	if cut == nil {
		return nil
	}
	invoice := "its invoice"
	if cut.invoice != "" {
		invoice = "invoice " + cut.invoice
	}
	if cut.created {
		fmt.Fprintf(stderr, "payledger restore: warning: the log ends part way through an append: sequence %d, the payment.created of %s for %s, but the stream does not hold the invoice.payment_added appended with it; the last complete append ends at sequence %d. The node takes this log as it is: the payment stands (no money moved with this append), and its invoice does not count it toward the %d payments it takes (docs/operations.md, \"Restoring\", step 3)\n",
			cut.seq, cut.payment, invoice, cut.seq-1, commands.MaxPaymentsPerInvoice)
		return nil
	}
	fmt.Fprintf(stderr, "payledger restore: warning: the log ends part way through an append: sequence %d, the payment.processed of %s, paid %s, but the stream does not hold the invoice.paid appended with it; the last complete append ends at sequence %d. The node takes this log as it is (the payment processed, its invoice pending): run payledger verify, whose invoices check reports it, and settle the invoice by hand (docs/operations.md, \"Restoring\", step 3)\n",
		cut.seq, cut.payment, invoice, cut.seq-1)
	return nil
}

// cutAppend is a restored log's last event when it is the first of an
// append whose other events the stream does not hold, or when its data do
// not decode, so that this cannot be told (unchecked).
type cutAppend struct {
	seq       uint64
	payment   string // the payment.processed's (or payment.created's) stream
	invoice   string // the invoice it paid (or is of), "" when not found
	created   bool   // a payment.created without its invoice.payment_added, not a payment.processed
	unchecked error  // why the event could not be checked; nil: it was
}

// endsInAppend reports whether the log st, at head, ends part way through
// an append. The log records no append's bounds (the relay publishes each
// event as its own message, and boltlog keeps no append ids), so it looks
// for the cuts that can be told from the events: a payment.processed that
// paid its invoice, whose invoice.paid is appended with it, right after it
// (audit.AwaitsInvoicePaid, the invoices check's rule), and a
// payment.created, whose invoice.payment_added is appended with it, right
// after it, when the log shows its writer appends one (createdCut). A last
// event whose data do not decode is returned with unchecked set, not as an
// error: the restore is complete whatever it is, and failing it would
// throw a fresh data dir's restore away. (The inline projector refuses such
// a payment.processed first, so restore should never see one; this keeps
// the check from being the thing that fails a restore.)
func endsInAppend(st *boltlog.Store, head ledger.Head) (*cutAppend, error) {
	if head.Seq == 0 {
		return nil, nil
	}
	e, err := st.Get(head.Seq)
	if err != nil {
		return nil, fmt.Errorf("read the log's last event: %w", err)
	}
	if e.Type == commands.TypePaymentCreated {
		return createdCut(st, &e)
	}
	awaits, err := audit.AwaitsInvoicePaid(&e)
	if err != nil {
		return &cutAppend{seq: e.Seq, payment: e.Stream, unchecked: err}, nil
	}
	if !awaits {
		return nil, nil
	}
	cut := &cutAppend{seq: e.Seq, payment: e.Stream}
	if p, err := projections.NewViews(st.DB()).PaymentByStream(e.Stream); err == nil {
		cut.invoice = p.InvoiceID
	}
	return cut, nil
}

// createdLookback bounds how far createdCut looks back for an earlier
// payment.created.
const createdLookback = 1 << 16

// createdCut is endsInAppend for a last event e that is a payment.created.
// Since invoice.payment_added exists, commands.CreatePayment appends it
// right after every payment.created, in the same append, so such a log
// ending in a payment.created was cut. A log written before (or partly
// before) it existed holds payment.created events alone: the nearest
// earlier payment.created in the log, within createdLookback events, tells
// which form the log's writer used. Without one, e is taken as cut: the
// log then holds no payment its writer made otherwise. Data that do not
// decode, or an earlier event that cannot be read, leave e unchecked.
func createdCut(st *boltlog.Store, e *ledger.Event) (*cutAppend, error) {
	cut := &cutAppend{seq: e.Seq, payment: e.Stream, created: true}
	var d commands.PaymentCreated
	if err := json.Unmarshal(e.Data, &d); err != nil {
		cut.unchecked = fmt.Errorf("%s data: %w", e.Type, err)
		return cut, nil
	}
	cut.invoice = d.InvoiceID
	for seq := e.Seq - 1; seq >= 1 && e.Seq-seq <= createdLookback; seq-- {
		prev, err := st.Get(seq)
		if err != nil {
			cut.unchecked = fmt.Errorf("read sequence %d: %w", seq, err)
			return cut, nil
		}
		if prev.Type != commands.TypePaymentCreated {
			continue
		}
		next, err := st.Get(seq + 1)
		if err != nil {
			cut.unchecked = fmt.Errorf("read sequence %d: %w", seq+1, err)
			return cut, nil
		}
		if next.Type != commands.TypeInvoicePaymentAdded {
			return nil, nil // the older form: a payment.created alone
		}
		break
	}
	return cut, nil
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
