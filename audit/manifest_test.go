package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// manifested exports a server's history, as payledger export --manifest
// does, and returns its lines (each with its LF; lines[n-1] is sequence n)
// and its manifest.
func manifested(t *testing.T) ([][]byte, *Manifest) {
	t.Helper()
	b := newBuilder(t, true)
	b.history()
	s := b.readOnly()
	exp := exportOf(t, s)
	var tally ExportTally
	for e, err := range ReadExport(bytes.NewReader(exp)) {
		if err != nil {
			t.Fatal(err)
		}
		tally.Add(&e)
	}
	m := tally.Manifest(1)
	lines := bytes.SplitAfter(exp, []byte("\n"))
	lines = lines[:len(lines)-1] // after the last LF
	if uint64(len(lines)) != s.Head().Seq || m.Events != s.Head().Seq || *m.Last != s.Head() || m.Checkpoint == nil {
		t.Fatalf("export of %d events, manifest %+v", s.Head().Seq, m)
	}
	return lines, &m
}

func verifyAgainst(lines [][]byte, m *Manifest) (Report, error) {
	pub := testKey.Public().(ed25519.PublicKey)
	return VerifyExport(context.Background(), bytes.NewReader(bytes.Join(lines, nil)), Options{PublicKeys: []ed25519.PublicKey{pub}, Manifest: m})
}

// TestVerifyExportAgainstItsManifest: the whole export matches its
// manifest; the same file cut at each line boundary of its last lines (all
// valid shorter chains) fails the chain check at the sequence after the
// last it holds, and so does one extended by a line. The manifest survives
// its own round trip through Marshal and ReadManifest.
func TestVerifyExportAgainstItsManifest(t *testing.T) {
	lines, m := manifested(t)
	back, err := ReadManifest(bytes.NewReader(m.Marshal()))
	if err != nil || !bytes.Equal(back.Marshal(), m.Marshal()) {
		t.Fatalf("manifest round trip: %v\n%s", err, m.Marshal())
	}
	r, err := verifyAgainst(lines, back)
	if err != nil || r.Head != *m.Last {
		t.Fatalf("the whole export: %v (head %+v)", err, r.Head)
	}

	// The history ends with a payment.processed, its invoice.paid and a
	// checkpoint: the cuts fall after each of them, and between the two
	// events of one append.
	n := uint64(len(lines))
	for cut := uint64(1); cut <= 6; cut++ {
		last := n - cut
		t.Run(fmt.Sprintf("last %d lines lost", cut), func(t *testing.T) {
			// Without the manifest, every cut but the one inside an append
			// (between a payment.processed and its invoice.paid) passes
			// every check: that is what the manifest is for.
			if _, err := verifyAgainst(lines[:last], nil); (err == nil) != (cut != 2) {
				t.Fatalf("without the manifest: %v", err)
			}
			r, err := verifyAgainst(lines[:last], m)
			f := wantFault(t, err, CheckChain, last+1, "", fmt.Sprintf("the export ends at sequence %d; its manifest says %d: cut short?", last, n))
			if !errors.Is(f, ErrManifestMismatch) || r.Head.Seq != last {
				t.Fatalf("fault %v, verified head %d", f, r.Head.Seq)
			}
		})
	}
	_, err = verifyAgainst(nil, m)
	if f := wantFault(t, err, CheckChain, 1, "", "the export holds no events; its manifest says"); !errors.Is(f, ErrManifestMismatch) {
		t.Fatalf("an empty file: %v", f)
	}

	// Extended: the manifest of the export's first n-1 events.
	var short ExportTally
	for e, err := range ReadExport(bytes.NewReader(bytes.Join(lines[:n-1], nil))) {
		if err != nil {
			t.Fatal(err)
		}
		short.Add(&e)
	}
	sm := short.Manifest(1)
	_, err = verifyAgainst(lines, &sm)
	wantFault(t, err, CheckChain, n, "", fmt.Sprintf("the export goes on to sequence %d; its manifest says it ends at %d", n, n-1))
}

// TestVerifyExportRefusesATamperedManifest: a manifest that says anything
// else of the same export fails, naming what differs; one that contradicts
// itself, or is not a manifest this build reads, is refused as it is read.
func TestVerifyExportRefusesATamperedManifest(t *testing.T) {
	lines, m := manifested(t)
	n := uint64(len(lines))
	edit := func(fn func(m *Manifest)) *Manifest {
		var c Manifest
		if err := json.Unmarshal(m.Marshal(), &c); err != nil {
			t.Fatal(err)
		}
		fn(&c)
		return &c
	}
	for _, tc := range []struct {
		name   string
		m      *Manifest
		seq    uint64
		reason string
	}{
		{"a later end", edit(func(m *Manifest) { m.Last.Seq++; m.Events++ }), n + 1, fmt.Sprintf("the export ends at sequence %d; its manifest says %d: cut short?", n, n+1)},
		{"another last hash", edit(func(m *Manifest) { m.Last.Hash[0] ^= 1 }), n, fmt.Sprintf("the export's last event, sequence %d, has hash %s; its manifest says", n, m.Last.Hash)},
		{"another first hash", edit(func(m *Manifest) { m.First.Hash[0] ^= 1 }), 1, "the export's first event, sequence 1, has hash"},
		{"no checkpoint", edit(func(m *Manifest) { m.Checkpoint = nil }), m.Checkpoint.EventSeq, "its manifest says none"},
		{"another checkpoint", edit(func(m *Manifest) { m.Checkpoint.Seq-- }), m.Checkpoint.EventSeq, "the export's last checkpoint is the event at sequence"},
		{"no events", edit(func(m *Manifest) { *m = Manifest{Format: ManifestFormat, Version: ManifestVersion, From: 1} }), 1, fmt.Sprintf("the export holds %d events, sequences 1 to %d; its manifest says none", n, n)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.m.selfCheck(); err != nil {
				t.Fatalf("the edited manifest is not consistent: %v", err)
			}
			_, err := verifyAgainst(lines, tc.m)
			if f := wantFault(t, err, CheckChain, tc.seq, "", tc.reason); !errors.Is(f, ErrManifestMismatch) {
				t.Fatalf("not ErrManifestMismatch: %v", f)
			}
		})
	}

	good := string(m.Marshal())
	for name, tc := range map[string]struct{ text, reason string }{
		"a count that is not its sequences": {strings.Replace(good, fmt.Sprintf(`"events": %d`, n), fmt.Sprintf(`"events": %d`, n-1), 1), fmt.Sprintf("%d events, but sequences 1 to %d", n-1, n)},
		"a newer version":                   {strings.Replace(good, `"version": 1`, `"version": 2`, 1), "version 2; this payledger reads version 1"},
		"another format":                    {strings.Replace(good, ManifestFormat, "payledger-export", 1), `format "payledger-export"`},
		"an unknown field":                  {strings.Replace(good, `"from"`, `"signed": true, "from"`, 1), `unknown field "signed"`},
		"two objects":                       {good + good, "more after its JSON object"},
		"from another sequence":             {strings.Replace(good, `"from": 1`, `"from": 2`, 1), "its first event is sequence 1, but it is from 2"},
		"not JSON":                          {good[:len(good)/2], "unexpected EOF"},
	} {
		_, err := ReadManifest(strings.NewReader(tc.text))
		if !errors.Is(err, ErrBadManifest) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: %v, want ErrBadManifest saying %q", name, err, tc.reason)
		}
	}
}

// TestCheckExport: the quick pass import makes before writing: the whole
// export passes; cut, or a line dropped from the middle, it is refused.
func TestCheckExport(t *testing.T) {
	lines, m := manifested(t)
	if err := CheckExport(bytes.NewReader(bytes.Join(lines, nil)), m); err != nil {
		t.Fatal(err)
	}
	n := uint64(len(lines))
	var me *ManifestError
	if err := CheckExport(bytes.NewReader(bytes.Join(lines[:n-2], nil)), m); !errors.As(err, &me) || me.Seq != n-1 {
		t.Fatalf("a cut export: %v", err)
	}
	dropped := bytes.Join(append(append([][]byte{}, lines[:4]...), lines[5:]...), nil)
	if err := CheckExport(bytes.NewReader(dropped), m); !errors.Is(err, ErrManifestMismatch) || !strings.Contains(err.Error(), fmt.Sprintf("holds %d events; its manifest says %d", n-1, n)) {
		t.Fatalf("a line dropped: %v", err)
	}
	if err := CheckExport(bytes.NewReader(append(bytes.Join(lines, nil), "{"...)), m); !errors.Is(err, ErrBadExport) {
		t.Fatalf("a line that is not an event: %v", err)
	}
}
