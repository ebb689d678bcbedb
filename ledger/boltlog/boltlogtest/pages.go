package boltlogtest

import (
	"encoding/binary"
	"os"
	"testing"

	"go.etcd.io/bbolt"
)

// RecordPages reads the closed log at path and returns its page size, the
// size of its pages in use (past them, bbolt's preallocated space), and the
// first sequence on each leaf page of records, by page id: the pages a test
// damages to see a read reach a broken page. It walks the log bucket's
// B+tree in the raw file (see bbolt's internal/common/page.go).
func RecordPages(t testing.TB, path string) (pageSize, size int, first map[uint64]uint64) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var root uint64
	pageSize = db.Info().PageSize
	err = db.View(func(tx *bbolt.Tx) error {
		root = uint64(tx.Bucket([]byte("log")).Root())
		size = int(tx.Size())
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first = map[uint64]uint64{}
	// A page: id (8), flags (2), count (2), overflow (4), then its
	// elements: a branch's pos (4), ksize (4), pgid (8); a leaf's flags
	// (4), pos (4), ksize (4), vsize (4), pos counting from the element.
	var walk func(id uint64)
	walk = func(id uint64) {
		p := file[id*uint64(pageSize):]
		switch flags := binary.LittleEndian.Uint16(p[8:]); flags {
		case 0x01:
			for i := range int(binary.LittleEndian.Uint16(p[10:])) {
				walk(binary.LittleEndian.Uint64(p[16+16*i+8:]))
			}
		case 0x02:
			pos := 16 + binary.LittleEndian.Uint32(p[16+4:])
			first[id] = binary.BigEndian.Uint64(p[pos : pos+8])
		default:
			t.Fatalf("page %d of the log bucket has flags %x", id, flags)
		}
	}
	walk(root)
	return pageSize, size, first
}
