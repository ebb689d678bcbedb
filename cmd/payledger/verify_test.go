package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
)

func TestVerifyCommand(t *testing.T) {
	dir := auditLog(t, 50)
	code, out, errs := runCmd(t, "verify", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "ok: 50 events verified") || !strings.Contains(out, "head: seq 50 ") {
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
	start := time.Now()
	code, _, errs := runCmd(t, "verify", "--data-dir", dir)
	if code != 1 || !strings.Contains(errs, "in use by another process") || !strings.Contains(errs, "payledger serve") {
		t.Fatalf("verify of a log in use = %d: %s", code, errs)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("verify waited %s for the lock", took)
	}
}

// auditLog writes a closed log of n events (streams s0..s3, some claims,
// data with characters JSON escapes) in a new data dir and returns the dir.
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
			ID: ulid.Make(), Type: "invoice.created", Time: t0.Add(time.Duration(i) * time.Millisecond),
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
	db, err := bbolt.Open(filepath.Join(dir, logFileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("log"))
		k := binary.BigEndian.AppendUint64(nil, seq)
		rec := bytes.Clone(b.Get(k))
		rec[len(rec)-40] ^= 0x01
		return b.Put(k, rec)
	})
	if err != nil {
		t.Fatal(err)
	}
}
