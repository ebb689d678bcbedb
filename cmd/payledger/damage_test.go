package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
)

// TestToolsReportDamagedPage: a page of records whose header is damaged
// (bbolt asserts each page's id and type, and panics) makes verify report
// FAILED at the page's first sequence and exit 1, export and replay exit 1
// naming it, and serve refuse to start when it is the page its open reads:
// never a stack trace and exit 2, which is for bad usage.
func TestToolsReportDamagedPage(t *testing.T) {
	if os.Getenv(childArgsEnv) != "" {
		t.Skip("child process")
	}
	t.Setenv("PAYLEDGER_SERVER", "")
	src := filepath.Join(auditLog(t, 3000), logFileName)
	pageSize, _, first := boltlogtest.RecordPages(t, src)
	var mid, last uint64 // a page in the middle, and the last
	for id, seq := range first {
		if seq > 1000 && (first[mid] <= 1000 || seq < first[mid]) {
			mid = id
		}
		if seq > first[last] {
			last = id
		}
	}
	if first[mid] <= 1000 || mid == last {
		t.Fatalf("no page of records past sequence 1000 but the last: %v", first)
	}
	damaged := func(id uint64, off int) string {
		t.Helper()
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		b[int(id)*pageSize+off] ^= 0xff
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, logFileName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	for _, off := range []int{0, 8} { // the page's id, its type
		dir := damaged(mid, off)
		seq := strconv.FormatUint(first[mid], 10)
		code, out, errs := runChild(t, "verify", "--data-dir", dir)
		if code != 1 || !regexp.MustCompile(`FAILED at sequence `+seq+`: .*damaged`).MatchString(out) || !strings.Contains(errs, "first bad sequence "+seq) {
			t.Errorf("verify with page %d+%d damaged = %d, want 1 and sequence %s:\n%s%s", mid, off, code, seq, out, errs)
		}
		for _, args := range [][]string{
			{"export", "--data-dir", dir},
			{"replay", "--data-dir", dir, "--out", filepath.Join(t.TempDir(), "views.db")},
		} {
			code, _, errs := runChild(t, args...)
			if code != 1 || !strings.Contains(errs, "cannot read sequence "+seq) || !strings.Contains(errs, "damaged") || strings.Contains(errs, "goroutine") {
				t.Errorf("%s with page %d+%d damaged = %d, want 1 naming sequence %s: %s", args[0], mid, off, code, seq, errs)
			}
		}
		dir = damaged(last, off)
		code, _, errs = runChild(t, "serve", "--data-dir", dir, "--addr", "127.0.0.1:0", "--nats-port", "-1")
		if code != 1 || !strings.Contains(errs, "damaged") || strings.Contains(errs, "goroutine") {
			t.Errorf("serve with its last page of records damaged = %d, want 1: %s", code, errs)
		}
	}
}

// TestReplayReportsDamagedViewPage: replay reads the live views around the
// log's Store to compare them with its rebuild; a damaged page among them
// (here, every leaf of the invoice views, id and type) makes it exit 1
// saying the file is damaged, after printing its summary: never bbolt's
// panic, and never "no views" or "identical".
func TestReplayReportsDamagedViewPage(t *testing.T) {
	if os.Getenv(childArgsEnv) != "" {
		t.Skip("child process")
	}
	t.Setenv("PAYLEDGER_SERVER", "")
	src := filepath.Join(replayLogPending(t, 100), logFileName)
	pageSize, _, first := boltlogtest.BucketPages(t, src, "v_invoices")
	for _, off := range []int{0, 8} { // the page's id, its type
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		for id := range first {
			b[int(id)*pageSize+off] ^= 0xff
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, logFileName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, errs := runChild(t, "replay", "--data-dir", dir)
		if code != 1 || !strings.Contains(out, "invoices: 104") || strings.Contains(out, "live views:") ||
			!strings.Contains(errs, "compare with the live views: boltlog: log file is damaged: a page cannot be read (bbolt: ") || strings.Contains(errs, "goroutine") {
			t.Errorf("replay with the invoice views' leaves damaged at +%d = %d, want 1 naming the damage:\n%s%s", off, code, out, errs)
		}
	}
}

// TestCommandsRefuseAForeignLedgerFile: a ledger.db that is empty, or is
// another bbolt file (a webhooks.db copied to the wrong name), is refused
// by serve and import (and restore, which opens it as import does) as not
// a payledger log, and left byte for byte as it was: it used to be made
// into a new log, serve adding a demo merchant to it.
func TestCommandsRefuseAForeignLedgerFile(t *testing.T) {
	export := writeFile(t, exportOf(t, auditLog(t, 3)))
	foreign := func(t *testing.T) string {
		dir := t.TempDir()
		db, err := bbolt.Open(filepath.Join(dir, logFileName), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucket([]byte("w_deliveries"))
			if err == nil {
				err = b.Put([]byte("d1"), []byte("delivery"))
			}
			return err
		})
		if cerr := db.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		return dir
	}
	empty := func(t *testing.T) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, logFileName), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	for name, mk := range map[string]func(*testing.T) string{"another bbolt file": foreign, "an empty file": empty} {
		for _, cmd := range [][]string{
			{"import", "--from", export},
			{"serve", "--addr", "127.0.0.1:0", "--no-nats"},
		} {
			t.Run(name+"/"+cmd[0], func(t *testing.T) {
				dir := mk(t)
				path := filepath.Join(dir, logFileName)
				before, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				// Bounded: a serve that takes the file runs until cancelled.
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				var stdout, stderr bytes.Buffer
				code := runMain(ctx, append(append(cmd[:1:1], "--data-dir", dir), cmd[1:]...), &stdout, &stderr)
				if code != 1 || !strings.Contains(stderr.String(), "not a payledger log") {
					t.Errorf("exit %d\n%s%s", code, stdout.String(), stderr.String())
				}
				if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
					t.Errorf("%s changed: %d bytes, now %d", logFileName, len(before), len(after))
				}
			})
		}
	}
}
