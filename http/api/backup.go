package api

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/payledger/payledger/audit"
	"github.com/payledger/payledger/internal/ids"
)

// Headers of a backup response: the snapshot's head, so a client can check
// the file it received (payledger backup does).
const (
	HeaderBackupSeq  = "Payledger-Head-Seq"
	HeaderBackupHash = "Payledger-Head-Hash"
)

// backupSlots lets one backup at a time run in the process: each spools a
// whole copy of the log to disk first.
var backupSlots = make(chan struct{}, 1)

// adminBackup answers GET /admin/v1/backup with a consistent snapshot of
// the log's bbolt file (the log and its views as one read transaction saw
// them) while appends go on: a file that payledger serve opens as its
// ledger.db. The snapshot is first written next to the log
// (audit.Snapshot: the read transaction lasts a local disk copy, so a slow
// client never holds up an append that must grow bbolt's memory map), then
// unlinked and streamed from the open file, without the server's write
// timeout. Content-Disposition names the head sequence; the Payledger-Head-
// headers give the head. A second backup waits for the first.
func (s *Server) adminBackup(w http.ResponseWriter, r *http.Request) {
	c := &call{s: s, r: r, ctx: r.Context()}
	if err := s.admit(c, authAdmin, w); err != nil {
		s.writeError(w, r, err)
		return
	}
	select {
	case backupSlots <- struct{}{}:
		defer func() { <-backupSlots }()
	case <-r.Context().Done():
		s.writeError(w, r, r.Context().Err())
		return
	}
	tmp := filepath.Join(filepath.Dir(s.store.Path()), ".backup-"+ids.New().String()+".db")
	head, size, err := audit.Snapshot(s.store, tmp)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("backup: %w", err))
		return
	}
	f, err := os.Open(tmp)
	os.Remove(tmp) // the open file stays readable; nothing is left behind
	if err != nil {
		s.writeError(w, r, fmt.Errorf("backup: %w", err))
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="ledger-%d.db"`, head.Seq))
	h.Set("Cache-Control", "no-store")
	h.Set(HeaderBackupSeq, strconv.FormatUint(head.Seq, 10))
	h.Set(HeaderBackupHash, head.Hash.String())
	// A large log takes longer to send than the server's write timeout.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	if n, err := io.Copy(w, f); err != nil {
		s.log.WarnContext(r.Context(), "backup: sending stopped", "request_id", requestID(r.Context()), "sent", n, "size", size, "err", err)
	}
}
