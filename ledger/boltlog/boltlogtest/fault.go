package boltlogtest

import (
	"os"
	"reflect"
	"sync"
	"testing"
	"unsafe"

	"github.com/payledger/payledger/ledger/boltlog"
)

// FailMetaSync makes the next commit of s fail the way a disk does after
// bbolt made it visible: its meta page is written, then the fdatasync of it
// fails (on a closed descriptor swapped in behind bbolt's back, as bbolt
// has no hook for it), so bbolt rolls back in memory while every later
// transaction reads the new meta, and the store fails with ledger.ErrFailed.
// The page cache keeps the commit: reopened, the log has it.
//
// The returned restore gives bbolt its file back (the disk works again);
// call it once the failing append has returned, before anything else reads
// or writes the file. It is idempotent and also runs at the test's end.
//
// It reaches into bbolt's unexported fields: go.sum pins bbolt, and a bump
// that renames or retypes them fails the test here, to be adapted, rather
// than silently dropping the check.
func FailMetaSync(t testing.TB, s *boltlog.Store) (restore func()) {
	t.Helper()
	db := s.DB()
	field := func(path ...string) reflect.Value {
		v := reflect.ValueOf(db).Elem()
		for _, p := range path {
			if v = v.FieldByName(p); !v.IsValid() {
				t.Fatalf("bbolt.DB has no field %v any more: adapt boltlogtest.FailMetaSync to the bbolt in go.mod", path)
			}
		}
		return reflect.NewAt(v.Type(), unsafe.Pointer(v.UnsafeAddr())).Elem()
	}
	fileField, writeAt := field("file"), field("ops", "writeAt")
	realFile, ok1 := fileField.Interface().(*os.File)
	realWriteAt, ok2 := writeAt.Interface().(func([]byte, int64) (int, error))
	if !ok1 || !ok2 {
		t.Fatal("bbolt.DB's file or ops.writeAt changed type: adapt boltlogtest.FailMetaSync to the bbolt in go.mod")
	}
	closed, err := os.Open(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	closed.Close() // fdatasync on it fails with EBADF
	pageSize := int64(db.Info().PageSize)
	armed := true
	writeAt.Set(reflect.ValueOf(func(b []byte, off int64) (int, error) {
		n, err := realWriteAt(b, off)
		if armed && err == nil && off < 2*pageSize { // a meta page reached the file
			armed = false
			fileField.Set(reflect.ValueOf(closed))
		}
		return n, err
	}))
	var once sync.Once
	restore = func() {
		once.Do(func() {
			fileField.Set(reflect.ValueOf(realFile))
			writeAt.Set(reflect.ValueOf(realWriteAt))
		})
	}
	t.Cleanup(restore) // before the log's own cleanup closes it
	return restore
}
