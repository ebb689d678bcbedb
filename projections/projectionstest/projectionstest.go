// Package projectionstest helps the tests of code that keeps projections'
// views in a bbolt file (a log's, the webhook dispatcher's) make that file
// look as another build left it.
package projectionstest

import (
	"errors"
	"testing"

	"go.etcd.io/bbolt"
)

// SetViewsFormat records in the closed bbolt file at path that its views
// are of views format f, as a build that wrote format f would have left
// them: an older one, which projections.Projector.Init drops and projects
// again, and which audit, replay and verify do not compare; or a newer
// one, which Init refuses. The views must exist (v_meta, with its "format"
// key, in projections/keys.go).
func SetViewsFormat(t testing.TB, path string, f byte) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket([]byte("v_meta"))
		if meta == nil {
			return errors.New("no v_meta bucket")
		}
		return meta.Put([]byte("format"), []byte{f})
	}); err != nil {
		t.Fatalf("set the views format of %s: %v", path, err)
	}
}
