package audit

import (
	"errors"
	"fmt"
)

// The checks, in the order Run makes them. A Fault names one.
const (
	CheckChain       = "chain"       // hashes, sequence continuity, stream versions, index, head
	CheckStreams     = "streams"     // every stream starts with its creation event, and has one
	CheckPostings    = "postings"    // double entry per event, per currency and per merchant
	CheckInvoices    = "invoices"    // each invoice's status follows from its events; the views agree
	CheckCheckpoints = "checkpoints" // signatures, and the chain's hash at each signed sequence
	CheckProjections = "projections" // the views equal a rebuild from the log
)

var (
	// ErrChain means the hash chain, sequence continuity, a stream's
	// versions, the stream index or the head is broken.
	ErrChain = errors.New("audit: hash chain broken")
	// ErrStreams means a stream does not start with its creation event, or has two.
	ErrStreams = errors.New("audit: stream does not start with its creation event")
	// ErrPostings means an event's postings do not balance per currency or
	// move another merchant's money, or a total does not sum to zero.
	ErrPostings = errors.New("audit: postings do not balance")
	// ErrInvoice means an invoice's events break its lifecycle, or its view
	// does not say what its events say.
	ErrInvoice = errors.New("audit: invoice status does not follow from its events")
	// ErrCheckpoint means a signed checkpoint does not verify: a bad
	// signature, an untrusted key, or a hash the chain does not have at the
	// signed sequence; or no checkpoint where a trusted key was given.
	ErrCheckpoint = errors.New("audit: checkpoint does not verify")
	// ErrProjections means the views differ from a rebuild from the log,
	// or a rebuild fails.
	ErrProjections = errors.New("audit: projections differ from a rebuild")
	// ErrBadKey means a key file or a public key is malformed.
	ErrBadKey = errors.New("audit: malformed key")
	// ErrBadExport means a line of an export is not an event in the form
	// payledger export writes.
	ErrBadExport = errors.New("audit: malformed export line")
	// ErrBadManifest means an export's manifest is malformed, contradicts
	// itself, or names a format version this build does not read.
	ErrBadManifest = errors.New("audit: malformed export manifest")
	// ErrManifestMismatch means an export's events are not the ones its
	// manifest names: the export was cut short or extended, or the
	// manifest is another export's or was changed.
	ErrManifestMismatch = errors.New("audit: export does not match its manifest")
)

var checkErr = map[string]error{
	CheckChain:       ErrChain,
	CheckStreams:     ErrStreams,
	CheckPostings:    ErrPostings,
	CheckInvoices:    ErrInvoice,
	CheckCheckpoints: ErrCheckpoint,
	CheckProjections: ErrProjections,
}

// Fault is the first thing verification found wrong: which check, at which
// sequence (0 when it is not one event's, such as a view with no events
// behind it), on which stream, and why. errors.Is matches its check's
// sentinel (ErrChain, ErrPostings...) and the cause, if any.
type Fault struct {
	Seq    uint64
	Stream string
	Check  string
	Reason string
	Cause  error // the underlying error (a *ledger.VerifyError, say), or nil
}

func (f *Fault) Error() string {
	where := ""
	if f.Seq != 0 {
		where = fmt.Sprintf(" at sequence %d", f.Seq)
	}
	if f.Stream != "" {
		where += fmt.Sprintf(" (stream %s)", f.Stream)
	}
	return fmt.Sprintf("audit: %s%s: %s", f.Check, where, f.Reason)
}

// Unwrap returns the check's sentinel and the cause.
func (f *Fault) Unwrap() []error {
	out := []error{checkErr[f.Check]}
	if f.Cause != nil {
		out = append(out, f.Cause)
	}
	return out
}

func fault(check string, seq uint64, stream, format string, a ...any) *Fault {
	return &Fault{Seq: seq, Stream: stream, Check: check, Reason: fmt.Sprintf(format, a...)}
}

// ExportError names the line of an export that could not be read.
type ExportError struct {
	Line   int
	Seq    uint64 // the sequence the line claims, when it says one
	Reason string
}

func (e *ExportError) Error() string { return "audit: " + e.what() }

// what is the error without the package's prefix, for a Fault's reason.
func (e *ExportError) what() string {
	if e.Seq != 0 {
		return fmt.Sprintf("export line %d (sequence %d): %s", e.Line, e.Seq, e.Reason)
	}
	return fmt.Sprintf("export line %d: %s", e.Line, e.Reason)
}

// Unwrap makes errors.Is(err, ErrBadExport) true.
func (e *ExportError) Unwrap() error { return ErrBadExport }

// ManifestError says where an export and its manifest part.
type ManifestError struct {
	Seq    uint64 // the first sequence where they differ
	Reason string
}

func (e *ManifestError) Error() string { return "audit: " + e.Reason }

// Unwrap makes errors.Is(err, ErrManifestMismatch) true.
func (e *ManifestError) Unwrap() error { return ErrManifestMismatch }
