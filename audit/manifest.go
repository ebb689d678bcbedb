package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/payledger/payledger/ledger"
)

// An export's manifest (payledger export --manifest, docs/audit.md#export-manifest)
// names the events the export holds, so that a copy cut at a line boundary
// (a truncated download, a full disk), which is a valid shorter chain, or
// one with events added, is told from the whole one. The export itself
// stays one event per line and nothing else. The manifest is not signed:
// it catches accident, not a forger, who can write a new one; against
// deliberate tampering the signed checkpoints are the evidence.
const (
	// ManifestFormat is a manifest's "format".
	ManifestFormat = "payledger-export-manifest"
	// ManifestVersion is the manifest format this build writes and reads.
	// Persisted: append-only, never reused; a reader refuses one it does
	// not know.
	ManifestVersion = 1

	// maxManifest bounds a manifest file: it is a few hundred bytes.
	maxManifest = 64 << 10
)

// Manifest describes an export: which events it holds, from its first to
// its last. It holds no time, so exporting the same log twice gives the
// same manifest, byte for byte.
type Manifest struct {
	Format  string `json:"format"`  // ManifestFormat
	Version int    `json:"version"` // ManifestVersion
	From    uint64 `json:"from"`    // the first sequence asked for (export --from)
	Events  uint64 `json:"events"`  // how many event lines the export holds
	// First and Last are the export's first and last events' sequence and
	// hash; null when it holds no events.
	First *ledger.Head `json:"first"`
	Last  *ledger.Head `json:"last"`
	// Checkpoint is the last checkpoint.signed event among the events:
	// where it is and the head it signs, as the event records them; null
	// when the export holds none.
	Checkpoint *CheckpointInfo `json:"checkpoint"`
}

// ExportTally is what a manifest says of an export's events, counted as
// they are written or read in sequence order. The zero value is a tally of
// no events.
type ExportTally struct {
	events      uint64
	first, last ledger.Head
	cp          *CheckpointInfo
}

// Add counts one event.
func (t *ExportTally) Add(e *ledger.Event) {
	if t.events == 0 {
		t.first = ledger.Head{Seq: e.Seq, Hash: e.Hash}
	}
	t.events++
	t.last = ledger.Head{Seq: e.Seq, Hash: e.Hash}
	if e.Stream == StreamCheckpoints && e.Type == TypeCheckpointSigned {
		// One whose data does not decode is not named: verify faults it.
		if cp, err := DecodeCheckpoint(e.Data); err == nil {
			t.cp = &CheckpointInfo{EventSeq: e.Seq, Seq: cp.Seq, Hash: cp.Hash, PublicKey: cp.PublicKey}
		}
	}
}

// Manifest is the manifest of the events counted, for an export asked
// from sequence from (0 counts as 1, as export reads it).
func (t *ExportTally) Manifest(from uint64) Manifest {
	m := Manifest{Format: ManifestFormat, Version: ManifestVersion, From: max(from, 1), Events: t.events}
	if t.events > 0 {
		first, last := t.first, t.last
		m.First, m.Last = &first, &last
	}
	if t.cp != nil {
		cp := *t.cp
		m.Checkpoint = &cp
	}
	return m
}

// Marshal is the manifest as export writes it: indented JSON and a line
// feed, one spelling for one manifest.
func (m *Manifest) Marshal() []byte {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		panic("audit: marshal a manifest: " + err.Error()) // only plain fields
	}
	return append(b, '\n')
}

// ReadManifest reads a manifest and checks that it is one this build reads
// and that it agrees with itself (its count with its first and last
// sequences, its checkpoint among them).
//
// Errors: ErrBadManifest (wrapped, saying what is wrong), or r's.
func ReadManifest(r io.Reader) (*Manifest, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxManifest+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxManifest {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrBadManifest, maxManifest)
	}
	var m Manifest
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadManifest, err)
	}
	if d.More() {
		return nil, fmt.Errorf("%w: more after its JSON object", ErrBadManifest)
	}
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("%w: format %q, not %q", ErrBadManifest, m.Format, ManifestFormat)
	}
	if m.Version != ManifestVersion {
		return nil, fmt.Errorf("%w: version %d; this payledger reads version %d", ErrBadManifest, m.Version, ManifestVersion)
	}
	if err := m.selfCheck(); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBadManifest, err)
	}
	return &m, nil
}

// selfCheck says what in the manifest contradicts the rest of it.
func (m *Manifest) selfCheck() error {
	switch {
	case m.From == 0:
		return fmt.Errorf("from 0: sequences start at 1")
	case m.Events == 0 && (m.First != nil || m.Last != nil || m.Checkpoint != nil):
		return fmt.Errorf("0 events, but a first, last or checkpoint event")
	case m.Events == 0:
		return nil
	case m.First == nil || m.Last == nil:
		return fmt.Errorf("%d events, but no first or last event", m.Events)
	case m.First.Seq != m.From:
		return fmt.Errorf("its first event is sequence %d, but it is from %d", m.First.Seq, m.From)
	case m.Last.Seq < m.First.Seq || m.Last.Seq-m.First.Seq+1 != m.Events:
		return fmt.Errorf("%d events, but sequences %d to %d", m.Events, m.First.Seq, m.Last.Seq)
	case m.Checkpoint != nil && (m.Checkpoint.EventSeq < m.First.Seq || m.Checkpoint.EventSeq > m.Last.Seq):
		return fmt.Errorf("its checkpoint event, sequence %d, is not among its events", m.Checkpoint.EventSeq)
	}
	return nil
}

// Compare says whether the events counted are the ones the manifest names:
// the same count, first and last sequence and hash, and last checkpoint.
// With the chain verified (every hash recomputed, each linked to the one
// before), equal last hashes mean equal events. The first difference found
// is returned as a *ManifestError (errors.Is matches ErrManifestMismatch)
// naming the first sequence where the export and its manifest part; nil
// when they agree.
func (m *Manifest) Compare(t *ExportTally) error {
	bad := func(seq uint64, format string, a ...any) error {
		return &ManifestError{Seq: seq, Reason: fmt.Sprintf(format, a...)}
	}
	switch {
	case t.events == 0 && m.Events == 0:
		return nil
	case t.events == 0:
		return bad(m.First.Seq, "the export holds no events; its manifest says %d, sequences %d to %d: cut short?", m.Events, m.First.Seq, m.Last.Seq)
	case m.Events == 0:
		return bad(t.first.Seq, "the export holds %d events, sequences %d to %d; its manifest says none", t.events, t.first.Seq, t.last.Seq)
	case t.first.Seq != m.First.Seq:
		return bad(min(t.first.Seq, m.First.Seq), "the export starts at sequence %d; its manifest says %d", t.first.Seq, m.First.Seq)
	case t.first.Hash != m.First.Hash:
		return bad(t.first.Seq, "the export's first event, sequence %d, has hash %s; its manifest says %s: another log's export?", t.first.Seq, t.first.Hash, m.First.Hash)
	case t.last.Seq < m.Last.Seq:
		return bad(t.last.Seq+1, "the export ends at sequence %d; its manifest says %d: cut short?", t.last.Seq, m.Last.Seq)
	case t.last.Seq > m.Last.Seq:
		return bad(m.Last.Seq+1, "the export goes on to sequence %d; its manifest says it ends at %d: events added, or another export's manifest?", t.last.Seq, m.Last.Seq)
	case t.last.Hash != m.Last.Hash:
		return bad(t.last.Seq, "the export's last event, sequence %d, has hash %s; its manifest says %s", t.last.Seq, t.last.Hash, m.Last.Hash)
	case t.events != m.Events:
		return bad(t.last.Seq, "the export holds %d events; its manifest says %d", t.events, m.Events)
	case !sameCheckpoint(t.cp, m.Checkpoint):
		seq := t.last.Seq
		if t.cp != nil {
			seq = t.cp.EventSeq
		} else if m.Checkpoint != nil {
			seq = m.Checkpoint.EventSeq
		}
		return bad(seq, "the export's last checkpoint is %s; its manifest says %s", describeCheckpoint(t.cp), describeCheckpoint(m.Checkpoint))
	}
	return nil
}

// Describe says in a line what the manifest names.
func (m *Manifest) Describe() string {
	if m.Events == 0 {
		return fmt.Sprintf("no events (from sequence %d)", m.From)
	}
	return fmt.Sprintf("%d events, sequences %d to %d, last hash %s; last checkpoint %s",
		m.Events, m.First.Seq, m.Last.Seq, m.Last.Hash, describeCheckpoint(m.Checkpoint))
}

func sameCheckpoint(a, b *CheckpointInfo) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

func describeCheckpoint(c *CheckpointInfo) string {
	if c == nil {
		return "none"
	}
	return fmt.Sprintf("the event at sequence %d signing sequence %d hash %s", c.EventSeq, c.Seq, c.Hash)
}

// CheckExport reads an export and compares its events with the manifest
// (Compare), without the chain: a quick pass before anything is written,
// so that an export cut short is refused before its first event is
// imported.
//
// Errors: a *ManifestError; an *ExportError for a line that is not an
// event in export's form; or r's.
func CheckExport(r io.Reader, m *Manifest) error {
	var t ExportTally
	for e, err := range ReadExport(r) {
		if err != nil {
			return err
		}
		t.Add(&e)
	}
	return m.Compare(&t)
}
