package audit

import (
	"errors"
	"fmt"
	"os"
	"time"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
)

// Snapshot writes a consistent copy of the log's bbolt file (the log and
// the views, as one read transaction sees them) to path, which must not
// exist, and syncs it. Appends go on meanwhile: bbolt keeps the pages of
// the transaction until it ends. It then opens the copy read-only, so the
// head it returns is the copy's own, and a copy that is not a log is an error.
//
// The read transaction lasts as long as the copy takes: write to a local
// file, not to a slow network peer, since a long read transaction holds up
// an append that needs to grow bbolt's memory map.
//
// Errors: the file's I/O error (path exists: os.ErrExist), or boltlog.Open's
// on the copy. On error the copy is removed.
func Snapshot(store *boltlog.Store, path string) (head ledger.Head, size int64, err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return head, 0, fmt.Errorf("snapshot: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path)
		}
	}()
	err = store.DB().View(func(tx *bbolt.Tx) error {
		size = tx.Size()
		n, err := tx.WriteTo(f)
		if err == nil && n != size {
			err = fmt.Errorf("wrote %d of %d bytes", n, size)
		}
		return err
	})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return head, 0, fmt.Errorf("snapshot %s: %w", path, err)
	}
	st, err := boltlog.Open(path, &boltlog.Options{ReadOnly: true, OpenTimeout: time.Second})
	if err != nil {
		return head, 0, fmt.Errorf("snapshot %s: %w", path, err)
	}
	head = st.Head()
	if err := st.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return head, 0, fmt.Errorf("snapshot %s: %w", path, err)
	}
	return head, size, nil
}
