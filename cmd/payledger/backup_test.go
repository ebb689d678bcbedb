package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/audit"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/node"
)

// httpJSON sends a JSON request and decodes the answer, failing the test
// on anything but a 2xx.
func httpJSON(method, url string, header map[string]string, body string) (map[string]any, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 {
		return nil, fmt.Errorf("%s %s: %d %s", method, url, res.StatusCode, b)
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestBackupOverHTTPWhileAppending takes a backup from a running node while
// invoices are being created, verifies it (every check, and the
// checkpoints against the node's public key), and starts a node on it.
func TestBackupOverHTTPWhileAppending(t *testing.T) {
	t.Setenv("PAYLEDGER_SERVER", "")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := node.Open(ctx, node.Config{DataDir: dir, Addr: "127.0.0.1:0", AdminToken: "admin-secret", NoNATS: true, Out: io.Discard,
		Logger: quiet, Checkpoints: node.CheckpointConfig{Every: 20, Interval: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- n.Serve(ctx) }()
	base := n.BaseURL()
	admin := map[string]string{"Authorization": "Bearer admin-secret"}
	m, err := httpJSON("POST", base+"/admin/v1/merchants", admin, `{"name": "Backup Inc", "commission_percent": "2"}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := httpJSON("POST", base+"/admin/v1/rates", admin, `{"currency": "UAH", "rate": "41.50"}`); err != nil {
		t.Fatal(err)
	}
	key := map[string]string{"X-Api-Key": m["api_key"].(string)}

	var (
		mu      sync.Mutex
		created int
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			body := fmt.Sprintf(`{"amount": "1500.00", "currency_code": "UAH", "customer_id": "c%d", "external_id": "order-%d"}`, i, i)
			if _, err := httpJSON("POST", base+"/api/v1/create-invoice", key, body); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			created++
			mu.Unlock()
		}
	}()
	stopAppends := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopAppends() // before the node stops, when the test fails
	waitUntil(t, "30 invoices and a checkpoint", func() bool {
		mu.Lock()
		defer mu.Unlock()
		v, _ := n.Log.StreamVersion(audit.StreamCheckpoints)
		return created >= 30 && v >= 1
	})

	out := filepath.Join(t.TempDir(), "ledger-backup.db")
	code, stdout, errs := runCmd(t, "backup", "--server", base, "--admin-token", "admin-secret", "--out", out, "--audit")
	mu.Lock()
	during := created
	mu.Unlock()
	if code != 0 || !strings.Contains(stdout, "backup of "+base+" written to "+out) || !strings.Contains(stdout, "every check of payledger verify passed") {
		t.Fatalf("backup = %d\n%s%s", code, stdout, errs)
	}
	// Appends go on after the backup too: two more invoices acknowledged.
	// The second was sent after the backup had returned, so it is in the
	// node's log past the backup's head (checked below).
	waitUntil(t, "two invoices after the backup", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return created >= during+2
	})
	stopAppends()
	pub := n.Checkpoints.PublicKey()
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}

	s, err := boltlog.Open(out, &boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Run(context.Background(), s, audit.Options{PublicKeys: []ed25519.PublicKey{pub}, ScratchDir: t.TempDir()})
	backupHead := s.Head()
	s.Close()
	if err != nil || rep.Views != "compared" || rep.Checkpoints == 0 || rep.Invoices["pending"] < 30 || rep.Invoices["pending"] > uint64(during)+1 {
		t.Fatalf("audit of the backup: %+v\n%v", rep, err)
	}
	// The backup is a prefix of the node's log: the same event at its head.
	live, err := boltlog.Open(filepath.Join(dir, node.LogFile), &boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	e, err := live.Get(backupHead.Seq)
	liveHead := live.Head()
	live.Close()
	if err != nil || e.Hash != backupHead.Hash || liveHead.Seq <= backupHead.Seq {
		t.Fatalf("backup head %+v; the node's log has %v %v at that sequence and ends at %d", backupHead, e.Hash, err, liveHead.Seq)
	}

	// Restore: a data dir with the backup as its ledger.db and the node's keys.
	restored := t.TempDir()
	copyFile(t, out, filepath.Join(restored, node.LogFile))
	copyFile(t, filepath.Join(dir, node.MasterKeyFile), filepath.Join(restored, node.MasterKeyFile))
	copyFile(t, filepath.Join(dir, node.CheckpointKeyFile), filepath.Join(restored, node.CheckpointKeyFile))
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	n2, err := node.Open(ctx2, node.Config{DataDir: restored, Addr: "127.0.0.1:0", AdminToken: "admin-secret", NoNATS: true, Out: io.Discard, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	served2 := make(chan error, 1)
	go func() { served2 <- n2.Serve(ctx2) }()
	list, err := httpJSON("GET", n2.BaseURL()+"/api/v1/invoices?page_size=1", key, "")
	if err != nil {
		t.Fatal(err)
	}
	total := list["page_details"].(map[string]any)["total_objects"].(float64)
	if uint64(total) != rep.Invoices["pending"] {
		t.Fatalf("the restored node lists %v invoices, the backup holds %d", total, rep.Invoices["pending"])
	}
	if _, err := httpJSON("POST", n2.BaseURL()+"/api/v1/create-invoice", key, `{"amount": "10.00", "currency_code": "UAH", "customer_id": "after", "external_id": "after-restore"}`); err != nil {
		t.Fatalf("the restored node does not take invoices: %v", err)
	}
	cancel2()
	if err := <-served2; err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCmd(t, "verify", "--data-dir", restored, "--public-key", audit.PublicKeyHex(pub)); code != 0 {
		t.Fatalf("verify of the restored node's log = %d\n%s%s", code, out, errs)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBackupFromDataDir(t *testing.T) {
	t.Setenv("PAYLEDGER_SERVER", "")
	dir := replayLog(t)
	out := filepath.Join(t.TempDir(), "b.db")
	code, stdout, errs := runCmd(t, "backup", "--data-dir", dir, "--out", out)
	if code != 0 || !strings.Contains(stdout, "head seq 14 ") || !strings.Contains(stdout, "(chain verified)") {
		t.Fatalf("backup = %d\n%s%s", code, stdout, errs)
	}
	orig, _ := os.ReadFile(filepath.Join(dir, logFileName))
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Fatalf("backup file: %v %v", fi, err)
	}
	restored := t.TempDir()
	copyFile(t, out, filepath.Join(restored, logFileName))
	if code, o, e := runCmd(t, "verify", "--data-dir", restored); code != 0 || !strings.Contains(o, "views: compared") {
		t.Fatalf("verify of the backup = %d\n%s%s", code, o, e)
	}
	if now, _ := os.ReadFile(filepath.Join(dir, logFileName)); !bytes.Equal(orig, now) {
		t.Fatal("the offline backup changed the source log")
	}
	if code, _, errs := runCmd(t, "backup", "--data-dir", dir, "--out", out); code != 2 || !strings.Contains(errs, "exists") {
		t.Fatalf("backup over an existing file = %d: %s", code, errs)
	}
	if code, _, errs := runCmd(t, "backup", "--data-dir", dir); code != 2 || !strings.Contains(errs, "--out") {
		t.Fatalf("backup without --out = %d: %s", code, errs)
	}
	// A node holding the log: the offline backup says to ask the server.
	s, err := boltlog.Open(filepath.Join(dir, logFileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if code, _, errs := runCmd(t, "backup", "--data-dir", dir, "--out", out+"2"); code != 1 || !strings.Contains(errs, "use --server") {
		t.Fatalf("backup of a log in use = %d: %s", code, errs)
	}
	if _, err := os.Stat(out + "2.tmp"); !os.IsNotExist(err) {
		t.Fatalf("left %s.tmp behind", out+"2")
	}
}

func TestBackupRefusedByServer(t *testing.T) {
	dir := t.TempDir()
	n, err := node.Open(context.Background(), node.Config{DataDir: dir, Addr: "127.0.0.1:0", AdminToken: "admin-secret", NoNATS: true, Out: io.Discard,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Checkpoints: node.CheckpointConfig{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- n.Serve(ctx) }()
	defer func() { cancel(); <-served }()
	out := filepath.Join(t.TempDir(), "b.db")
	code, _, errs := runCmd(t, "backup", "--server", n.BaseURL(), "--admin-token", "wrong", "--out", out)
	if code != 1 || !strings.Contains(errs, "401") || !strings.Contains(errs, "ADMIN_TOKEN_INVALID") {
		t.Fatalf("backup with a wrong token = %d: %s", code, errs)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("a refused backup left a file")
	}
	if _, err := os.Stat(filepath.Join(dir, node.CheckpointKeyFile)); !os.IsNotExist(err) {
		t.Fatal("a node with checkpoints disabled made a key")
	}
}

// TestBackupRefusesAuditWithNoVerify: --audit asks for every check of
// payledger verify, --no-verify for none; together they are a usage error,
// refused before anything is read or written.
func TestBackupRefusesAuditWithNoVerify(t *testing.T) {
	t.Setenv("PAYLEDGER_SERVER", "")
	dir := auditLog(t, 3)
	out := filepath.Join(t.TempDir(), "b.db")
	code, stdout, errs := runCmd(t, "backup", "--data-dir", dir, "--out", out, "--audit", "--no-verify")
	if code != 2 || !strings.Contains(errs, "--audit") || !strings.Contains(errs, "--no-verify") {
		t.Fatalf("backup --audit --no-verify = %d\n%s%s", code, stdout, errs)
	}
	for _, p := range []string{out, out + ".tmp"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("a refused backup left %s: %v", p, err)
		}
	}
	// Either alone is fine (--audit's run: TestBackupOverHTTPWhileAppending).
	if code, stdout, errs := runCmd(t, "backup", "--data-dir", dir, "--out", out, "--no-verify"); code != 0 || !strings.Contains(stdout, "(not verified)") {
		t.Fatalf("backup --no-verify = %d\n%s%s", code, stdout, errs)
	}
}

// TestBackupHelpSaysWhereWithoutServer: without --server (or
// PAYLEDGER_SERVER) backup copies the stopped node's log in --data-dir, so
// its -h must not show --server with admin's default URL, as if the copy
// came from a server there, and --data-dir is what it copies.
func TestBackupHelpSaysWhereWithoutServer(t *testing.T) {
	code, _, errs := runCmd(t, "backup", "-h")
	if code != 0 {
		t.Fatalf("backup -h = %d: %s", code, errs)
	}
	help := flagHelp(errs)
	if s := help["server"]; strings.Contains(s, "(default") || !strings.Contains(s, "--data-dir") {
		t.Errorf("backup -h, --server: %q: want no default, and where the copy comes from without it", s)
	}
	if s := help["data-dir"]; !strings.Contains(s, "stopped node") {
		t.Errorf("backup -h, --data-dir: %q: want the stopped node's log it copies", s)
	}
}
