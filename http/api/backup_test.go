package api

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/payledger/payledger/audit"
	"github.com/payledger/payledger/ledger/boltlog"
)

func TestAdminBackup(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	if r := h.api(m, "POST", "/api/v1/create-invoice", seed003Request); r.Status != http.StatusCreated {
		t.Fatalf("create invoice: %d %s", r.Status, r.Body)
	}
	if r := h.do(req{method: "GET", path: "/admin/v1/backup"}); r.Status != http.StatusUnauthorized || r.errCode(t) != CodeAdminTokenMissing {
		t.Fatalf("backup without a token: %d %s", r.Status, r.Body)
	}
	r := h.admin("GET", "/admin/v1/backup", "")
	head := h.store.Head()
	if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/octet-stream" ||
		r.Header.Get("Content-Length") != strconv.Itoa(len(r.Body)) ||
		r.Header.Get("Content-Disposition") != `attachment; filename="ledger-`+strconv.FormatUint(head.Seq, 10)+`.db"` ||
		r.Header.Get(HeaderBackupSeq) != strconv.FormatUint(head.Seq, 10) || r.Header.Get(HeaderBackupHash) != head.Hash.String() {
		t.Fatalf("backup: %d %v (%d bytes), head %+v", r.Status, r.Header, len(r.Body), head)
	}
	// Nothing is left next to the log.
	if entries, _ := os.ReadDir(filepath.Dir(h.store.Path())); len(entries) != 2 {
		t.Fatalf("the data dir holds %d files after a backup", len(entries))
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(path, r.Body, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := boltlog.Open(path, &boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Head() != head {
		t.Fatalf("backup head %+v, log head %+v", s.Head(), head)
	}
	if rep, err := audit.Run(context.Background(), s, audit.Options{ScratchDir: t.TempDir()}); err != nil || rep.Invoices["pending"] != 1 {
		t.Fatalf("audit of the backup: %+v %v", rep, err)
	}
}
