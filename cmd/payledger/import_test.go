package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// exportOf runs payledger export on dir.
func exportOf(t *testing.T, dir string) string {
	t.Helper()
	code, out, errs := runCmd(t, "export", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("export = %d: %s", code, errs)
	}
	return out
}

func writeFile(t *testing.T, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestImportRoundTrip: export, import into a fresh data dir, export again:
// the same bytes, the same head, and the new log passes every check.
func TestImportRoundTrip(t *testing.T) {
	dir := replayLog(t)
	pub := signCheckpoint(t, dir, replayT0.Add(time.Hour))
	first := exportOf(t, dir)
	fresh := filepath.Join(t.TempDir(), "restored")
	code, out, errs := runCmd(t, "import", "--data-dir", fresh, "--from", writeFile(t, first))
	if code != 0 || !strings.Contains(out, "imported 15 events into "+filepath.Join(fresh, logFileName)) {
		t.Fatalf("import = %d\n%s%s", code, out, errs)
	}
	if again := exportOf(t, fresh); again != first {
		t.Fatalf("export after import differs:\n%s\nvs\n%s", again, first)
	}
	_, v1, _ := runCmd(t, "verify", "--data-dir", dir)
	code, v2, errs := runCmd(t, "verify", "--data-dir", fresh, "--public-key", pub)
	head := func(s string) string { return s[strings.Index(s, "head: "):][:len("head: seq 15 hash ")+64] }
	if code != 0 || head(v1) != head(v2) || !strings.Contains(v2, "views: compared") {
		t.Fatalf("verify of the imported log = %d\n%s%s", code, v2, errs)
	}
	if _, err := os.Stat(filepath.Join(fresh, logFileName+".import")); !os.IsNotExist(err) {
		t.Fatalf("left the scratch file behind: %v", err)
	}
}

// TestImportRefusesTamperedLine: one amount changed in one line: the
// import names its sequence and writes nothing.
func TestImportRefusesTamperedLine(t *testing.T) {
	dir := replayLog(t)
	lines := strings.SplitAfter(exportOf(t, dir), "\n")
	lines[7] = strings.Replace(lines[7], `"paid_amount":"1500"`, `"paid_amount":"15000"`, 1) // seq 8: invoice.paid
	if !strings.Contains(lines[7], "15000") {
		t.Fatalf("line 8 has no paid_amount to change: %s", lines[7])
	}
	fresh := filepath.Join(t.TempDir(), "restored")
	code, _, errs := runCmd(t, "import", "--data-dir", fresh, "--from", writeFile(t, strings.Join(lines, "")))
	if code != 1 || !strings.Contains(errs, "refused at sequence 8") || !strings.Contains(errs, "hash does not match") || !strings.Contains(errs, "nothing imported") {
		t.Fatalf("import of a tampered export = %d: %s", code, errs)
	}
	if entries, _ := os.ReadDir(fresh); len(entries) != 0 {
		t.Fatalf("the data dir holds %d files after a refused import", len(entries))
	}
	// A line re-encoded: refused even though its event's hash is intact.
	lines = strings.SplitAfter(exportOf(t, dir), "\n")
	lines[3] = strings.Replace(lines[3], `,"version":`, `, "version":`, 1)
	code, _, errs = runCmd(t, "import", "--data-dir", fresh, "--from", writeFile(t, strings.Join(lines, "")))
	if code != 1 || !strings.Contains(errs, "refused at sequence 4") || !strings.Contains(errs, "export line 4") {
		t.Fatalf("import of a re-encoded line = %d: %s", code, errs)
	}
}

// TestImportContinuesALog: a log holding the first events takes the rest
// from a whole export, from its head on.
func TestImportContinuesALog(t *testing.T) {
	dir := replayLog(t)
	all := exportOf(t, dir)
	lines := strings.SplitAfter(all, "\n")
	part := filepath.Join(t.TempDir(), "part")
	if code, _, errs := runCmd(t, "import", "--data-dir", part, "--from", writeFile(t, strings.Join(lines[:6], ""))); code != 0 {
		t.Fatalf("import of 6 = %d: %s", code, errs)
	}
	code, out, errs := runCmd(t, "import", "--data-dir", part, "--from", writeFile(t, all))
	if code != 0 || !strings.Contains(out, "imported 8 events") {
		t.Fatalf("import of the rest = %d\n%s%s", code, out, errs)
	}
	if again := exportOf(t, part); again != all {
		t.Fatal("the continued log differs from the original")
	}
	// Another log's export does not continue this one.
	other := auditLog(t, 5)
	code, _, errs = runCmd(t, "import", "--data-dir", other, "--from", writeFile(t, all))
	if code != 1 || !strings.Contains(errs, "refused at sequence 5: the export's event is not the log's head") {
		t.Fatalf("import of another log's events = %d: %s", code, errs)
	}
	if code, _, errs := runCmd(t, "import", "--data-dir", part); code != 2 || !strings.Contains(errs, "--from") {
		t.Fatalf("import without --from = %d: %s", code, errs)
	}
}

// TestImportRefusesShorterExportOfAnotherLog: an export that ends before
// the log's head never reaches the head's sequence, but its last event
// must still be the log's at that sequence: another log's shorter export
// is refused, a prefix of this log's own is accepted with nothing to do.
func TestImportRefusesShorterExportOfAnotherLog(t *testing.T) {
	dir := replayLog(t)
	other := exportOf(t, auditLog(t, 5))
	code, out, errs := runCmd(t, "import", "--data-dir", dir, "--from", writeFile(t, other))
	if code != 1 || !strings.Contains(errs, "refused at sequence 5") {
		t.Fatalf("import of another log's shorter export = %d\n%s%s", code, out, errs)
	}
	own := strings.SplitAfter(exportOf(t, dir), "\n")
	code, out, errs = runCmd(t, "import", "--data-dir", dir, "--from", writeFile(t, strings.Join(own[:5], "")))
	if code != 0 || !strings.Contains(out, "imported 0 events") {
		t.Fatalf("import of a prefix of the log's own export = %d\n%s%s", code, out, errs)
	}
}

// TestImportRefusesEmptyExport: an export with no events (an empty file, a
// failed pipe) into a data dir without events would create an empty
// ledger.db; it is refused and leaves none. A log with events is left as it
// is: an empty export is what export --from gives past its head, nothing
// to continue it with.
func TestImportRefusesEmptyExport(t *testing.T) {
	fresh := filepath.Join(t.TempDir(), "fresh")
	code, out, errs := runCmd(t, "import", "--data-dir", fresh, "--from", writeFile(t, ""))
	if code != 1 || !strings.Contains(errs, "the export holds no events") {
		t.Fatalf("import of an empty export = %d\n%s%s", code, out, errs)
	}
	for _, name := range []string{logFileName, logFileName + ".import"} {
		if _, err := os.Stat(filepath.Join(fresh, name)); !os.IsNotExist(err) {
			t.Fatalf("a refused import left %s: %v", name, err)
		}
	}
	dir := replayLog(t)
	before := exportOf(t, dir)
	if code, out, errs := runCmd(t, "import", "--data-dir", dir, "--from", writeFile(t, "")); code != 0 || !strings.Contains(out, "imported 0 events") {
		t.Fatalf("import of an empty export into a log with events = %d\n%s%s", code, out, errs)
	}
	if exportOf(t, dir) != before {
		t.Fatal("an empty import changed the log")
	}
}

// TestImportWithManifest: an export with its manifest imports; cut at each
// line boundary of its last lines it is refused and nothing is appended,
// into a fresh data dir and into a log it would continue (import commits
// in batches: the manifest is checked before the first); a changed manifest
// is refused too. --manifest needs a file, not standard input.
func TestImportWithManifest(t *testing.T) {
	dir := replayLog(t)
	exp, manifest := exportManifest(t, dir)
	fresh := filepath.Join(t.TempDir(), "restored")
	code, out, errs := runCmd(t, "import", "--data-dir", fresh, "--from", writeFile(t, exp), "--manifest", manifest)
	if code != 0 || !strings.Contains(out, "imported 14 events") || !strings.Contains(out, "the export matched its manifest "+manifest+": 14 events, sequences 1 to 14") {
		t.Fatalf("import --manifest = %d\n%s%s", code, out, errs)
	}
	if again := exportOf(t, fresh); again != exp {
		t.Fatal("the imported log differs from the original")
	}

	lines := strings.SplitAfter(exp, "\n")
	lines = lines[:len(lines)-1] // after the last LF
	part := filepath.Join(t.TempDir(), "part")
	if code, _, errs := runCmd(t, "import", "--data-dir", part, "--from", writeFile(t, strings.Join(lines[:3], ""))); code != 0 {
		t.Fatalf("import of 3 = %d: %s", code, errs)
	}
	partBefore := exportOf(t, part)
	for cut := 1; cut <= 5; cut++ {
		kept := len(lines) - cut
		file := writeFile(t, strings.Join(lines[:kept], ""))
		want := fmt.Sprintf("refused at sequence %d: audit: the export ends at sequence %d; its manifest says 14: cut short? (nothing imported)", kept+1, kept)
		fresh := filepath.Join(t.TempDir(), "fresh")
		code, out, errs := runCmd(t, "import", "--data-dir", fresh, "--from", file, "--manifest", manifest)
		if code != 1 || !strings.Contains(errs, want) {
			t.Fatalf("import --manifest of the export without its last %d lines = %d\n%s%s", cut, code, out, errs)
		}
		if entries, _ := os.ReadDir(fresh); len(entries) != 0 {
			t.Fatalf("a refused import left %d files", len(entries))
		}
		code, out, errs = runCmd(t, "import", "--data-dir", part, "--from", file, "--manifest", manifest)
		if code != 1 || !strings.Contains(errs, want) {
			t.Fatalf("import --manifest continuing a log from the export without its last %d lines = %d\n%s%s", cut, code, out, errs)
		}
		if exportOf(t, part) != partBefore {
			t.Fatalf("a refused import (the last %d lines cut) appended to the log", cut)
		}
	}

	// A manifest changed to name one more event.
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(strings.Replace(string(b), `"events": 14`, `"events": 15`, 1), `"seq": 14,`, `"seq": 15,`, 1)
	forged := filepath.Join(t.TempDir(), "forged.manifest")
	if err := os.WriteFile(forged, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCmd(t, "import", "--data-dir", part, "--from", writeFile(t, exp), "--manifest", forged)
	if code != 1 || !strings.Contains(errs, "the export ends at sequence 14; its manifest says 15: cut short? (nothing imported)") || exportOf(t, part) != partBefore {
		t.Fatalf("import with a changed manifest = %d\n%s%s", code, out, errs)
	}
	if code, _, errs := runCmd(t, "import", "--data-dir", part, "--from", "-", "--manifest", manifest); code != 2 || !strings.Contains(errs, "--manifest needs --from FILE") {
		t.Fatalf("import --from - --manifest = %d: %s", code, errs)
	}
}

// TestImportWithManifestChecksBeforeTheFirstBatch: import commits every
// 4,096 events, so an export longer than a batch and cut short would have
// its first batches in the log before its end showed the cut: with a
// manifest the whole file is compared first, and nothing is appended.
func TestImportWithManifestChecksBeforeTheFirstBatch(t *testing.T) {
	dir := auditLog(t, importBatch+100)
	exp, manifest := exportManifest(t, dir)
	lines := strings.SplitAfter(exp, "\n")
	cut := writeFile(t, strings.Join(lines[:len(lines)-3], "")) // 2 events lost
	part := filepath.Join(t.TempDir(), "part")
	if code, _, errs := runCmd(t, "import", "--data-dir", part, "--from", writeFile(t, strings.Join(lines[:10], ""))); code != 0 {
		t.Fatalf("import of 10 = %d: %s", code, errs)
	}
	before := exportOf(t, part)
	code, out, errs := runCmd(t, "import", "--data-dir", part, "--from", cut, "--manifest", manifest)
	if code != 1 || !strings.Contains(errs, fmt.Sprintf("the export ends at sequence %d; its manifest says %d: cut short? (nothing imported)", importBatch+98, importBatch+100)) {
		t.Fatalf("import --manifest of a cut export = %d\n%s%s", code, out, errs)
	}
	if exportOf(t, part) != before {
		t.Fatal("a refused import appended to the log")
	}
}
