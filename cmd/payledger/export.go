package main

import (
	"bufio"
	"context"
	"encoding/json"
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
// manifest, not even the one a previous export left at that path. Only
// such a manifest is ever replaced: an existing --manifest that is
// anything else (the log itself, a key, a directory, a symlink) is refused
// before anything is opened or written.
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
		fmt.Fprintln(stderr, "match it. FILE must be new or a manifest an earlier export wrote, which is replaced;")
		fmt.Fprintln(stderr, "anything else there (a symlink, a directory, another file) is refused, exit status 2.")
		fmt.Fprintln(stderr, "An export that fails once it has opened the log writes no manifest and removes the")
		fmt.Fprintln(stderr, "earlier one at FILE.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	var old os.FileInfo // an earlier export's manifest at --manifest
	if *manifest != "" {
		var err error
		if old, err = checkManifestOut(*manifest); err != nil {
			return &exitError{code: 2, err: err}
		}
	}
	s, path, err := openLogReadOnly(*dataDir)
	if err != nil {
		return err
	}
	defer s.Close()
	if old != nil {
		// A manifest left by an earlier export must not sit next to this
		// one's output if this one fails: it could match the events this
		// one got out before failing. Removed only if it is still the file
		// checked above.
		if now, err := os.Lstat(*manifest); err == nil && !os.SameFile(old, now) {
			return fmt.Errorf("--manifest %s was replaced since it was checked: left as it is", *manifest)
		}
		if err := os.Remove(*manifest); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove the earlier manifest: %w", err)
		}
	}
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
		// Create links a new file into place and never replaces one: if
		// something appeared at the path meanwhile, it stays.
		if err := durable.Create(*manifest, m.Marshal(), 0o644); err != nil {
			return fmt.Errorf("write the manifest: %w", err)
		}
	}
	return nil
}

// checkManifestOut refuses an export's --manifest path that exists and is
// not a manifest an earlier export wrote: a symlink, a directory, a device
// or another file (the log itself, a key) is never removed nor replaced.
// It returns the earlier manifest's FileInfo, or nil when nothing is there.
func checkManifestOut(path string) (os.FileInfo, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("--manifest %s: %w", path, err)
	}
	refuse := func(what string) error {
		return fmt.Errorf("--manifest %s %s: export replaces only a manifest an earlier export wrote; give a new file", path, what)
	}
	switch mode := fi.Mode(); {
	case mode&os.ModeSymlink != 0:
		return nil, refuse("is a symbolic link")
	case mode.IsDir():
		return nil, refuse("is a directory")
	case !mode.IsRegular():
		return nil, refuse("is not a regular file")
	}
	if !isManifest(path, fi) {
		return nil, refuse("exists and is not a payledger export manifest")
	}
	return fi, nil
}

// isManifest says whether the regular file at path (fi, from Lstat) reads
// as a JSON object whose "format" is the manifest's, of any version: an
// older build's manifest is replaced too.
func isManifest(path string, fi os.FileInfo) bool {
	if fi.Size() > maxManifestSize {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if now, err := f.Stat(); err != nil || !os.SameFile(fi, now) {
		return false // replaced since the Lstat
	}
	b, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil || len(b) > maxManifestSize {
		return false
	}
	var m struct {
		Format string `json:"format"`
	}
	return json.Unmarshal(b, &m) == nil && m.Format == audit.ManifestFormat
}

// maxManifestSize bounds what isManifest reads: a manifest is a few hundred
// bytes (audit.ReadManifest refuses one over 64 KiB).
const maxManifestSize = 64 << 10
