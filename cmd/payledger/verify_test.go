package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/audit"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/node"
	"github.com/payledger/payledger/projections"
	"github.com/payledger/payledger/stream"
)

func TestVerifyCommand(t *testing.T) {
	dir := auditLog(t, 50)
	code, out, errs := runCmd(t, "verify", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "hash chain verified: 50 events") || !strings.Contains(out, "head: seq 50 ") {
		t.Fatalf("verify = %d\n%s%s", code, out, errs)
	}
	// The environment variable stands in for the flag.
	t.Setenv("PAYLEDGER_DATA_DIR", dir)
	if code, out, errs := runCmd(t, "verify"); code != 0 || !strings.Contains(out, "50 events") {
		t.Fatalf("verify from PAYLEDGER_DATA_DIR = %d\n%s%s", code, out, errs)
	}
}

func TestVerifyCommandNamesTamperedSequence(t *testing.T) {
	dir := auditLog(t, 50)
	tamper(t, dir, 23)
	code, out, errs := runCmd(t, "verify", "--data-dir", dir)
	if code == 0 {
		t.Fatalf("verify of a tampered log exited 0\n%s", out)
	}
	if !strings.Contains(out, "FAILED at sequence 23") || !strings.Contains(errs, "first bad sequence 23") {
		t.Fatalf("verify did not name sequence 23:\nstdout: %s\nstderr: %s", out, errs)
	}
	if !strings.Contains(out, "the 22 events before it verify") {
		t.Fatalf("verify did not say how far the log is good:\n%s", out)
	}
}

// A record rewritten with a wrong previous hash and its own hash recomputed
// (as a forger who knows the format would) is sound alone, so no byte check
// finds it: verify names it by its previous-hash link.
func TestVerifyCommandNamesResealedRecord(t *testing.T) {
	dir := auditLog(t, 50)
	editRecord(t, dir, 23, func(rec []byte) ([]byte, error) {
		e, err := ledger.Decode(rec)
		if err != nil {
			return nil, err
		}
		e.PrevHash[0] ^= 0x01
		return ledger.Encode(nil, &e), nil
	})
	code, out, errs := runCmd(t, "verify", "--data-dir", dir)
	if code == 0 || !strings.Contains(out, "FAILED at sequence 23: previous hash does not match") || !strings.Contains(errs, "first bad sequence 23") {
		t.Fatalf("verify of a resealed record = %d, want a chain break at sequence 23:\nstdout: %s\nstderr: %s", code, out, errs)
	}
}

func TestVerifyCommandErrors(t *testing.T) {
	if code, _, errs := runCmd(t, "verify", "--data-dir", t.TempDir()); code != 1 || !strings.Contains(errs, "no event log at") {
		t.Fatalf("verify of an empty dir = %d: %s", code, errs)
	}
	if code, _, _ := runCmd(t, "verify", "--data-dir", t.TempDir(), "extra"); code != 2 {
		t.Fatalf("verify with an extra argument = %d", code)
	}
	if code, _, _ := runCmd(t, "verify", "--nope"); code != 2 {
		t.Fatalf("verify with an unknown flag = %d", code)
	}
	// A server holding the log: a clear message, not bbolt's "timeout".
	dir := auditLog(t, 3)
	s, err := boltlog.Open(filepath.Join(dir, logFileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	type result struct {
		code int
		errs string
	}
	verified := make(chan result, 1)
	go func() {
		code, _, errs := runCmd(t, "verify", "--data-dir", dir)
		verified <- result{code, errs}
	}()
	select {
	case r := <-verified:
		if r.code != 1 || !strings.Contains(r.errs, "in use by another process") || !strings.Contains(r.errs, "payledger serve") {
			t.Fatalf("verify of a log in use = %d: %s", r.code, r.errs)
		}
	case <-time.After(10 * time.Second):
		// The deferred Close frees the lock, and verify then returns.
		t.Fatal("verify still waiting for the lock after 10 s")
	}
}

// auditLog writes a closed log of n events (streams s0..s3, some claims,
// data with characters JSON escapes) in a new data dir and returns the dir.
// Their type is none the domain knows, so the checks after the chain
// (postings, invoices, projections) pass over them.
func auditLog(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	s, err := boltlog.Open(filepath.Join(dir, logFileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	for i := range n {
		e := ledger.NewEvent{
			ID: ulid.Make(), Type: "test.event", Time: t0.Add(time.Duration(i) * time.Millisecond),
			Merchant: "m-1", Correlation: fmt.Sprintf("req-%d", i),
			Data: json.RawMessage(fmt.Sprintf(`{"i": %d, "note": "<a & b>\u00e9"}`, i)),
		}
		if i%7 == 0 {
			e.Claims = []string{fmt.Sprintf("m-1/ext/%d", i)}
		}
		if _, err := s.Append(context.Background(), fmt.Sprintf("s%d", i%4), ledger.Any, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runCmd runs a payledger command line and returns its exit code and output.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runMain(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// tamper flips one byte of the stored record at seq.
func tamper(t *testing.T, dir string, seq uint64) {
	t.Helper()
	editRecord(t, dir, seq, func(rec []byte) ([]byte, error) {
		rec[len(rec)-40] ^= 0x01
		return rec, nil
	})
}

// editRecord replaces the log record at seq in dir (the log closed) with
// what fn makes of a copy of it.
func editRecord(t *testing.T, dir string, seq uint64, fn func(rec []byte) ([]byte, error)) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(dir, logFileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("log"))
		k := binary.BigEndian.AppendUint64(nil, seq)
		rec, err := fn(bytes.Clone(b.Get(k)))
		if err != nil {
			return err
		}
		return b.Put(k, rec)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// signCheckpoint appends a checkpoint of the head of dir's log, signed with
// the data dir's checkpoint key (made if absent) at time at, and returns
// the public key in hex.
func signCheckpoint(t *testing.T, dir string, at time.Time) string {
	t.Helper()
	s, err := boltlog.Open(filepath.Join(dir, logFileName), &boltlog.Options{Projectors: []boltlog.Projector{&projections.Projector{}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	key, _, err := audit.LoadOrCreateKey(filepath.Join(dir, node.CheckpointKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	c := audit.NewCheckpointer(s, key, audit.CheckpointConfig{Now: func() time.Time { return at }})
	if _, ok, err := c.Checkpoint(context.Background()); !ok || err != nil {
		t.Fatalf("checkpoint: %v %v", ok, err)
	}
	return audit.PublicKeyHex(c.PublicKey())
}

func TestVerifyCommandReportsTheLedger(t *testing.T) {
	dir := replayLog(t)
	code, out, errs := runCmd(t, "verify", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("verify = %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{
		"hash chain verified: 14 events",
		"head: seq 14 ",
		"streams: 9",
		"invoices: 4  pending 1  success 2  expired 0  cancelled 1",
		"postings: 2 events, each balanced per currency and per merchant",
		"  UAH    debits 3000  credits -3000  net 0",
		"  merchant m2: UAH debits 1500 credits -1500; USDT debits 36.144578 credits -36.144578;",
		"checkpoints: none (14 events not covered by a signature)",
		"views: compared",
		"ok: every check passed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
}

// TestVerifyCommandNamesInvoiceViewFault: the view of an invoice edited in
// the file, behind the log: verify names the invoice and its last event.
func TestVerifyCommandNamesInvoiceViewFault(t *testing.T) {
	dir := replayLog(t)
	db, err := bbolt.Open(filepath.Join(dir, logFileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := projections.NewViews(db).InvoiceByExternalID("m1", "o3")
	if err != nil {
		t.Fatal(err)
	}
	inv.Status = "success"
	raw, err := projections.EncodeView(&inv)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("v_invoices")).Put([]byte(inv.InvoiceID), raw) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	code, out, errs := runCmd(t, "verify", "--data-dir", dir)
	want := "FAILED: invoices at sequence 5 (stream invoice-" + inv.InvoiceID + "): the view of invoice " + inv.InvoiceID + " says success, its events say pending"
	if code != 1 || !strings.Contains(out, want) || !strings.Contains(errs, "first bad sequence 5") {
		t.Fatalf("verify = %d, want %q\n%s%s", code, want, out, errs)
	}
	if !strings.Contains(out, "hash chain verified: 14 events") {
		t.Fatalf("verify did not report the chain as good:\n%s", out)
	}
	// A failing verify says "ok" of nothing: a script looking for "ok:"
	// finds none, and the verdict, last, is FAILED.
	if strings.Contains(out, "ok:") {
		t.Errorf("a failing verify printed \"ok:\":\n%s", out)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); !strings.Contains(lines[len(lines)-1], "FAILED") {
		t.Errorf("a failing verify's last line is %q, not its FAILED verdict", lines[len(lines)-1])
	}
}

// TestVerifyCommandCheckpoints: a log and its export verified against the
// public key alone; another key, and a forged signature (with the chain
// re-hashed around it), refused.
func TestVerifyCommandCheckpoints(t *testing.T) {
	dir := replayLog(t)
	pub := signCheckpoint(t, dir, replayT0.Add(time.Hour))
	code, out, errs := runCmd(t, "verify", "--data-dir", dir, "--public-key", pub)
	if code != 0 || !strings.Contains(out, "checkpoints: 1 verified, signed by "+pub+"; the last (at sequence 15) signs sequence 14") || !strings.Contains(out, "events after it: 1") {
		t.Fatalf("verify --public-key = %d\n%s%s", code, out, errs)
	}
	keyFile := filepath.Join(t.TempDir(), "payledger.pub")
	_, kout, _ := runCmd(t, "keygen", "--data-dir", dir)
	if strings.TrimSpace(kout) != pub {
		t.Fatalf("keygen printed %q, the checkpoint names %s", kout, pub)
	}
	if err := os.WriteFile(keyFile, []byte(kout), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCmd(t, "verify", "--data-dir", dir, "--public-key", keyFile); code != 0 {
		t.Fatalf("verify --public-key FILE = %d\n%s%s", code, out, errs)
	}
	other := strings.Repeat("ab", 32)
	if code, out, _ := runCmd(t, "verify", "--data-dir", dir, "--public-key", other); code != 1 || !strings.Contains(out, "FAILED: checkpoints at sequence 15") || !strings.Contains(out, "not by a trusted key") {
		t.Fatalf("verify with another key = %d\n%s", code, out)
	}
	if code, _, errs := runCmd(t, "verify", "--data-dir", dir, "--public-key", "nonsense"); code != 2 || !strings.Contains(errs, "Ed25519 public key") {
		t.Fatalf("verify with a bad key = %d: %s", code, errs)
	}
	// The private key pasted by mistake is refused without being repeated.
	priv, err := os.ReadFile(filepath.Join(dir, node.CheckpointKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSpace(string(priv))
	code, out, errs = runCmd(t, "verify", "--data-dir", dir, "--public-key", secret)
	if code != 2 || !strings.Contains(errs, "this is a private key") || strings.Contains(out+errs, secret) {
		t.Fatalf("verify with the private key = %d, want 2 naming the mistake without the key:\n%s%s", code, out, errs)
	}
	if code, _, _ := runCmd(t, "verify", "--data-dir", dir, "--export", "x.jsonl"); code != 2 {
		t.Fatalf("verify with --data-dir and --export = %d", code)
	}

	// The export, with the public key only.
	_, exp, _ := runCmd(t, "export", "--data-dir", dir)
	expFile := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(expFile, []byte(exp), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCmd(t, "verify", "--export", expFile, "--public-key", pub)
	if code != 0 || !strings.Contains(out, expFile+": hash chain verified: 15 events") || !strings.Contains(out, "checkpoints: 1 verified") ||
		!strings.Contains(out, "views: none (an export)") || !strings.Contains(out, "invoices: 4  pending 1  success 2") {
		t.Fatalf("verify --export = %d\n%s%s", code, out, errs)
	}

	// A forged signature, the chain re-hashed from it so that only the
	// signature can tell.
	evs := exportLines(t, exp)
	cp := &evs[14]
	var data map[string]any
	_ = json.Unmarshal(cp.Data, &data)
	sig := []byte(data["signature"].(string))
	sig[0] ^= 1
	data["signature"] = string(sig)
	cp.Data, _ = json.Marshal(data)
	var forged []byte
	for i := range evs {
		e := &evs[i]
		if i > 0 {
			e.PrevHash = evs[i-1].Hash
		}
		ledger.Encode(nil, e)
		forged = append(stream.AppendJSON(forged, e), '\n')
	}
	if err := os.WriteFile(expFile, forged, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCmd(t, "verify", "--export", expFile, "--public-key", pub)
	if code != 1 || !strings.Contains(out, "FAILED: checkpoints at sequence 15 (stream checkpoints): checkpoint of sequence 14: forged or damaged signature") ||
		!strings.Contains(errs, "first bad sequence 15") {
		t.Fatalf("verify of a forged checkpoint = %d\n%s%s", code, out, errs)
	}
}

// TestReplayUntilWithCheckpoints: checkpoint events are applied (counted)
// by a replay and change no view; --until cuts before or after them.
func TestReplayUntilWithCheckpoints(t *testing.T) {
	dir := replayLog(t)
	signCheckpoint(t, dir, replayT0.Add(20*time.Minute))
	code, out, errs := runCmd(t, "replay", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "events: 15 applied (log head 15)") || !strings.Contains(out, "live views: identical to the replay") {
		t.Fatalf("replay = %d\n%s%s", code, out, errs)
	}
	for _, tc := range []struct {
		until  time.Duration
		events string
	}{
		{15 * time.Minute, "events: 14 applied"},
		{25 * time.Minute, "events: 15 applied"},
	} {
		code, out, errs := runCmd(t, "replay", "--data-dir", dir, "--until", replayT0.Add(tc.until).Format(time.RFC3339))
		if code != 0 || !strings.Contains(out, tc.events) || !strings.Contains(out, "invoices: 4  pending 1  success 2  expired 0  cancelled 1") ||
			!strings.Contains(out, "posting totals: UAH 0 USDT 0") {
			t.Fatalf("replay --until +%s = %d\n%s%s", tc.until, code, out, errs)
		}
	}
	code, out, _ = runCmd(t, "replay", "--data-dir", dir, "--until", replayT0.Add(150*time.Second).Format(time.RFC3339))
	if code != 0 || !strings.Contains(out, "events: 8 applied") || !strings.Contains(out, "invoices: 3  pending 2  success 1") {
		t.Fatalf("replay --until +2m30s = %d\n%s", code, out)
	}
}

// runChild runs a payledger command line in a child process (the test
// binary re-executed, see TestWebhooksWorkerChild), for what could kill
// the process, and returns its exit code and output.
func runChild(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestWebhooksWorkerChild$")
	cmd.Env = append(os.Environ(), childArgsEnv+"="+strings.Join(args, "\x1f"), "PAYLEDGER_SERVER=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// TestToolsRefuseTruncatedLog: a copy of a log cut short (a backup copied
// to a full disk, a download cut off) must be refused with a message that
// names the file and the problem, not crash the tool when it reads a page
// past the end of the file.
func TestToolsRefuseTruncatedLog(t *testing.T) {
	if os.Getenv(childArgsEnv) != "" {
		t.Skip("child process")
	}
	t.Setenv("PAYLEDGER_SERVER", "")
	backup := filepath.Join(t.TempDir(), "b.db")
	if code, _, errs := runCmd(t, "backup", "--data-dir", auditLog(t, 3000), "--out", backup); code != 0 {
		t.Fatalf("backup = %d: %s", code, errs)
	}
	b, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, logFileName)
	if err := os.WriteFile(path, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"verify", "--data-dir", dir},
		{"export", "--data-dir", dir},
		{"backup", "--data-dir", dir, "--out", filepath.Join(t.TempDir(), "again.db")},
		{"import", "--data-dir", dir, "--from", writeFile(t, "")},
	} {
		code, _, errs := runChild(t, args...)
		if code != 1 || !strings.Contains(errs, path) || !strings.Contains(errs, "truncated") {
			t.Errorf("%s of a truncated log = %d: %s", args[0], code, errs)
		}
	}
}

// TestToolsRefuseBadLogKey: a key in the log bucket that is not an 8-byte
// sequence is corruption the tools report, naming the bucket and the key's
// length, instead of crashing on it.
func TestToolsRefuseBadLogKey(t *testing.T) {
	if os.Getenv(childArgsEnv) != "" {
		t.Skip("child process")
	}
	t.Setenv("PAYLEDGER_SERVER", "")
	for _, key := range [][]byte{[]byte("abc"), append(binary.BigEndian.AppendUint64(nil, 23), 0)} {
		dir := auditLog(t, 50)
		db, err := bbolt.Open(filepath.Join(dir, logFileName), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("log")).Put(key, []byte("x")) })
		if cerr := db.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`"log" bucket key of %d bytes`, len(key))
		for _, args := range [][]string{
			{"verify", "--data-dir", dir},
			{"export", "--data-dir", dir},
			{"backup", "--data-dir", dir, "--out", filepath.Join(t.TempDir(), "b.db")},
		} {
			code, out, errs := runChild(t, args...)
			if code != 1 || !strings.Contains(errs, want) {
				t.Errorf("%s with a %d-byte log key = %d, want 1 and %s:\n%s", args[0], len(key), code, want, errs)
			}
			if args[0] == "verify" && len(key) == 9 && !strings.Contains(out, "FAILED at sequence 24") {
				t.Errorf("verify did not name sequence 24:\n%s", out)
			}
		}
	}
}

// TestVerifyCommandWithManifest: an export with its manifest verifies and
// says it matches; the same file cut at each line boundary of its last
// lines, each a valid shorter log, fails naming where the manifest says it
// ends; so does a manifest changed to name another last event. Without
// --manifest the report says completeness was not checked.
func TestVerifyCommandWithManifest(t *testing.T) {
	dir := replayLog(t)
	pub := signCheckpoint(t, dir, replayT0.Add(time.Hour))
	exp, manifest := exportManifest(t, dir)
	file := writeFile(t, exp)
	code, out, errs := runCmd(t, "verify", "--export", file, "--manifest", manifest, "--public-key", pub)
	if code != 0 || !strings.Contains(out, "completeness: matches its manifest "+manifest+": 15 events, sequences 1 to 15, last hash ") ||
		!strings.Contains(out, "ok: every check passed") {
		t.Fatalf("verify --manifest of the whole export = %d\n%s%s", code, out, errs)
	}
	code, out, errs = runCmd(t, "verify", "--export", file, "--public-key", pub)
	if code != 0 || !strings.Contains(out, "completeness: not checked (no --manifest); a file cut at a line boundary verifies as a shorter log") {
		t.Fatalf("verify without --manifest = %d\n%s%s", code, out, errs)
	}

	lines := strings.SplitAfter(exp, "\n")
	lines = lines[:len(lines)-1] // after the last LF
	for cut := 1; cut <= 5; cut++ {
		kept := len(lines) - cut
		file := writeFile(t, strings.Join(lines[:kept], ""))
		code, out, errs := runCmd(t, "verify", "--export", file, "--manifest", manifest, "--public-key", pub)
		if code != 1 || !strings.Contains(out, fmt.Sprintf("FAILED at sequence %d: the export ends at sequence %d; its manifest says 15: cut short?", kept+1, kept)) ||
			!strings.Contains(out, fmt.Sprintf("its %d events verify as a chain", kept)) || !strings.Contains(errs, fmt.Sprintf("first bad sequence %d", kept+1)) {
			t.Fatalf("verify --manifest of the export without its last %d lines = %d\n%s%s", cut, code, out, errs)
		}
	}

	// The manifest changed: another last hash; something else than a
	// manifest; a manifest for --data-dir.
	evs := exportLines(t, exp)
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	forged := filepath.Join(t.TempDir(), "forged.manifest")
	if err := os.WriteFile(forged, bytes.Replace(b, []byte(evs[14].Hash.String()), []byte(evs[13].Hash.String()), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCmd(t, "verify", "--export", file, "--manifest", forged)
	if code != 1 || !strings.Contains(out, fmt.Sprintf("FAILED at sequence 15: the export's last event, sequence 15, has hash %s; its manifest says %s", evs[14].Hash, evs[13].Hash)) {
		t.Fatalf("verify with a changed manifest = %d\n%s%s", code, out, errs)
	}
	code, out, errs = runCmd(t, "verify", "--export", file, "--manifest", file)
	if code != 1 || !strings.Contains(errs, "malformed export manifest") {
		t.Fatalf("verify with an export for a manifest = %d\n%s%s", code, out, errs)
	}
	if code, _, errs := runCmd(t, "verify", "--data-dir", dir, "--manifest", manifest); code != 2 || !strings.Contains(errs, "--manifest is for --export") {
		t.Fatalf("verify --data-dir --manifest = %d: %s", code, errs)
	}
}
