package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/ledger"
)

func exportLines(t *testing.T, out string) []ledger.Event {
	t.Helper()
	var evs []ledger.Event
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			t.Fatalf("empty line %d", i+1)
		}
		var e ledger.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %d %q: %v", i+1, line, err)
		}
		evs = append(evs, e)
	}
	return evs
}

func TestExportCommand(t *testing.T) {
	dir := auditLog(t, 40)
	code, out, errs := runCmd(t, "export", "--data-dir", dir)
	if code != 0 || errs != "" {
		t.Fatalf("export = %d: %s", code, errs)
	}
	evs := exportLines(t, out)
	if len(evs) != 40 {
		t.Fatalf("exported %d events, want 40", len(evs))
	}
	// The lines are the log itself: every hash recomputes from its line and
	// the chain verifies from them alone.
	v := ledger.NewVerifier()
	for i := range evs {
		if err := v.Check(&evs[i]); err != nil {
			t.Fatalf("exported line %d: %v", i+1, err)
		}
	}
	if evs[7].Claims[0] != "m-1/ext/7" || !strings.Contains(string(evs[3].Data), `"note": "<a & b>`) {
		t.Fatalf("event 8 exported as %+v", evs[7])
	}

	code, out, _ = runCmd(t, "export", "--data-dir", dir, "--from", "35")
	if evs := exportLines(t, out); code != 0 || len(evs) != 6 || evs[0].Seq != 35 || evs[5].Seq != 40 {
		t.Fatalf("export --from 35 = %d, %d events", code, len(evs))
	}
	if code, out, _ := runCmd(t, "export", "--data-dir", dir, "--from", "41"); code != 0 || out != "" {
		t.Fatalf("export past the head = %d %q", code, out)
	}
}

func TestExportCommandStopsAtBadRecord(t *testing.T) {
	dir := auditLog(t, 20)
	tamper(t, dir, 12)
	code, out, errs := runCmd(t, "export", "--data-dir", dir)
	if code == 0 || !strings.Contains(errs, "sequence 12") {
		t.Fatalf("export of a tampered log = %d: %s", code, errs)
	}
	if evs := exportLines(t, out); len(evs) != 11 || evs[10].Seq != 11 {
		t.Fatalf("export wrote %d events before the bad one, want 11", len(evs))
	}
	if code, _, errs := runCmd(t, "export", "--data-dir", t.TempDir()); code != 1 || !strings.Contains(errs, "no event log") {
		t.Fatalf("export of an empty dir = %d: %s", code, errs)
	}
}

// exportManifest runs payledger export --manifest on dir and returns the
// export and the manifest's path, next to the export's.
func exportManifest(t *testing.T, dir string, args ...string) (exp, manifest string) {
	t.Helper()
	manifest = filepath.Join(t.TempDir(), "events.manifest")
	code, out, errs := runCmd(t, append([]string{"export", "--data-dir", dir, "--manifest", manifest}, args...)...)
	if code != 0 || errs != "" {
		t.Fatalf("export --manifest = %d: %s", code, errs)
	}
	return out, manifest
}

// TestExportManifest: --manifest leaves export's output byte for byte as
// it is without (one event per line, nothing else) and writes a manifest
// naming the events, the same bytes for the same log; a failed export
// writes none and removes the one an earlier export left.
func TestExportManifest(t *testing.T) {
	dir := replayLog(t)
	pub := signCheckpoint(t, dir, replayT0.Add(time.Hour))
	plain := exportOf(t, dir)
	exp, mpath := exportManifest(t, dir)
	if exp != plain {
		t.Fatalf("export --manifest writes other bytes than export:\n%s\nvs\n%s", exp, plain)
	}
	evs := exportLines(t, exp)
	if len(evs) != 15 || strings.Count(exp, "\n") != 15 {
		t.Fatalf("export --manifest wrote %d events in %d lines", len(evs), strings.Count(exp, "\n"))
	}
	got, err := os.ReadFile(mpath)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{
  "format": "payledger-export-manifest",
  "version": 1,
  "from": 1,
  "events": 15,
  "first": {
    "seq": 1,
    "hash": "%s"
  },
  "last": {
    "seq": 15,
    "hash": "%s"
  },
  "checkpoint": {
    "event_seq": 15,
    "seq": 14,
    "hash": "%s",
    "public_key": "%s"
  }
}
`, evs[0].Hash, evs[14].Hash, evs[13].Hash, pub)
	if string(got) != want {
		t.Fatalf("manifest:\n%s\nwant:\n%s", got, want)
	}
	// Again into the same path: the same bytes.
	code, out, errs := runCmd(t, "export", "--data-dir", dir, "--manifest", mpath)
	if again, _ := os.ReadFile(mpath); code != 0 || out != plain || !bytes.Equal(again, got) {
		t.Fatalf("export --manifest again = %d (%s): manifest\n%s", code, errs, again)
	}

	_, m35 := exportManifest(t, dir, "--from", "35")
	if b, _ := os.ReadFile(m35); !strings.Contains(string(b), `"from": 35,
  "events": 0,
  "first": null,
  "last": null,
  "checkpoint": null`) {
		t.Fatalf("manifest of an export past the head:\n%s", b)
	}
	exp, m10 := exportManifest(t, dir, "--from", "10")
	if b, _ := os.ReadFile(m10); len(exportLines(t, exp)) != 6 || !strings.Contains(string(b), `"from": 10,
  "events": 6,
  "first": {
    "seq": 10,`) {
		t.Fatalf("manifest of export --from 10:\n%s", b)
	}
}

// TestExportManifestNotWrittenOnFailure: an export that stops at a bad
// record writes no manifest, and removes the one an earlier export left
// at that path (it could match the events written before the failure).
func TestExportManifestNotWrittenOnFailure(t *testing.T) {
	dir := auditLog(t, 20)
	_, mpath := exportManifest(t, dir)
	tamper(t, dir, 12)
	code, _, errs := runCmd(t, "export", "--data-dir", dir, "--manifest", mpath)
	if code != 1 || !strings.Contains(errs, "sequence 12") {
		t.Fatalf("export of a tampered log = %d: %s", code, errs)
	}
	if _, err := os.Stat(mpath); !os.IsNotExist(err) {
		t.Fatalf("a failed export left a manifest: %v", err)
	}
	if code, _, _ := runCmd(t, "export", "--data-dir", t.TempDir(), "--manifest", mpath); code != 1 {
		t.Fatalf("export of an empty dir = %d", code)
	}
	if _, err := os.Stat(mpath); !os.IsNotExist(err) {
		t.Fatalf("a failed export wrote a manifest: %v", err)
	}
}

// TestExportManifestRefusesWhatIsNotAManifest: --manifest at a path that
// holds anything but a manifest an earlier export wrote (the live log, the
// master key, another file, a directory, a symlink, even one to a
// manifest) is refused with exit status 2 before anything is written, and
// what is there is left as it was; an earlier export's manifest is
// replaced.
func TestExportManifestRefusesWhatIsNotAManifest(t *testing.T) {
	dir := auditLog(t, 10)
	logPath := filepath.Join(dir, logFileName)
	keyPath := filepath.Join(dir, "master.key")
	if err := os.WriteFile(keyPath, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := writeFile(t, `{"format": "something-else", "version": 1}`+"\n")
	sub := filepath.Join(t.TempDir(), "manifests")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	_, good := exportManifest(t, dir)
	link := filepath.Join(t.TempDir(), "link.manifest")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	snapshot := func(path string) string {
		t.Helper()
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			return fi.Mode().String() + " " + string(b)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			to, _ := os.Readlink(path)
			return fi.Mode().String() + " -> " + to
		}
		return fi.Mode().String()
	}
	for _, c := range []struct{ name, path, says string }{
		{"the live log", logPath, "not a payledger export manifest"},
		{"the master key", keyPath, "not a payledger export manifest"},
		{"another JSON file", other, "not a payledger export manifest"},
		{"a directory", sub, "is a directory"},
		{"a symlink to a manifest", link, "is a symbolic link"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before, goodBefore := snapshot(c.path), snapshot(good)
			code, out, errs := runCmd(t, "export", "--data-dir", dir, "--manifest", c.path)
			if code != 2 || out != "" || !strings.Contains(errs, c.says) || !strings.Contains(errs, c.path) {
				t.Errorf("export --manifest %s = %d, %d bytes out: %s", c.name, code, len(out), errs)
			}
			if after := snapshot(c.path); after != before {
				t.Errorf("%s changed:\n%.200q\nnow\n%.200q", c.name, before, after)
			}
			if snapshot(good) != goodBefore {
				t.Errorf("the manifest the symlink points to changed")
			}
		})
	}
	if code, _, errs := runCmd(t, "verify", "--data-dir", dir); code != 0 {
		t.Fatalf("verify after the refused exports = %d: %s", code, errs)
	}

	// An earlier export's manifest, of other events, is replaced.
	code, _, errs := runCmd(t, "export", "--data-dir", dir, "--from", "4", "--manifest", good)
	if b, _ := os.ReadFile(good); code != 0 || !strings.Contains(string(b), `"from": 4,
  "events": 7,`) {
		t.Fatalf("export over an earlier manifest = %d (%s):\n%s", code, errs, b)
	}
}
