package boltlogtest

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	"go.etcd.io/bbolt"
)

// RecordPages reads the closed log at path and returns its page size, the
// size of its pages in use (past them, bbolt's preallocated space), and the
// first sequence on each leaf page of records, by page id: the pages a test
// damages to see a read reach a broken page.
func RecordPages(t testing.TB, path string) (pageSize, size int, first map[uint64]uint64) {
	t.Helper()
	pageSize, size, keys := BucketPages(t, path, "log")
	first = make(map[uint64]uint64, len(keys))
	for id, k := range keys {
		first[id] = binary.BigEndian.Uint64(k)
	}
	return pageSize, size, first
}

// BucketPages reads the closed bbolt file at path and returns its page
// size, the size of its pages in use, and the first key on each leaf page
// of the top-level bucket named bucket (the log's "log", or a view such as
// "v_invoices"), by page id. It walks the bucket's B+tree in the raw file
// (see bbolt's internal/common/page.go). A bucket small enough to be
// stored inline in its parent has no pages of its own: the test fails.
func BucketPages(t testing.TB, path, bucket string) (pageSize, size int, first map[uint64][]byte) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var root uint64
	pageSize = db.Info().PageSize
	err = db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket([]byte(bucket)); b != nil {
			root = uint64(b.Root())
		}
		size = int(tx.Size())
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if root == 0 {
		t.Fatalf("bucket %q of %s is missing or inline: it has no pages", bucket, path)
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first = map[uint64][]byte{}
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
			ksize := binary.LittleEndian.Uint32(p[16+8:])
			first[id] = bytes.Clone(p[pos : pos+ksize])
		default:
			t.Fatalf("page %d of bucket %q has flags %x", id, bucket, flags)
		}
	}
	walk(root)
	return pageSize, size, first
}

// FreelistPage reads the closed bbolt file at path and returns its page
// size and the id of the freelist page its current meta page names (the
// meta page with the higher transaction id). A meta page, after the page
// header (16 bytes): magic (4), version (4), page size (4), flags (4), the
// root bucket (16), freelist (8), high water mark (8), txid (8), checksum
// (8); see bbolt's internal/common/meta.go.
func FreelistPage(t testing.TB, path string) (pageSize int, id uint64) {
	t.Helper()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize = int(binary.LittleEndian.Uint32(file[16+8:]))
	var txid uint64
	for _, m := range [][]byte{file[:pageSize], file[pageSize : 2*pageSize]} {
		if tx := binary.LittleEndian.Uint64(m[16+48:]); tx >= txid {
			txid, id = tx, binary.LittleEndian.Uint64(m[16+32:])
		}
	}
	return pageSize, id
}
