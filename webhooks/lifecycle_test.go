package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/payledger/payledger/projections"
)

// TestOpenRefuses: Open refuses a webhooks.db it cannot trust, with an
// error naming the file, and changes nothing in it: one written by a
// newer build (after a rollback: a build that misread the deliveries
// could lose or repeat them, and one that dropped newer views would sign
// with what it rebuilt), a torn format record, views past the delivery
// checkpoint (deliveries of the events between would be made from views
// ahead of them), and a file another dispatcher holds (two would attempt
// every delivery twice).
func TestOpenRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		// bucket, key, value to put in the file (none: leave it)
		bucket, key string
		value       func(cp uint64) []byte
		hold        bool
		want        error
	}{
		{name: "newer webhooks format", bucket: "w_meta", key: "format",
			value: func(uint64) []byte { return []byte{formatVersion + 1} }, want: ErrUnsupportedVersion},
		{name: "torn webhooks format", bucket: "w_meta", key: "format",
			value: func(uint64) []byte { return []byte{formatVersion, 0} }, want: ErrCorrupt},
		{name: "newer views format", bucket: "v_meta", key: "format",
			value: func(uint64) []byte { return []byte{200} }, want: projections.ErrUnsupportedVersion},
		{name: "views ahead of the checkpoint", bucket: "v_meta", key: "checkpoint",
			value: func(cp uint64) []byte { return be64(cp + 1) }, want: ErrCorrupt},
		{name: "held by another dispatcher", hold: true, want: berrors.ErrTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.merchant("m1", "https://hooks.example.com/m1")
			e.invoice("m1", "")
			d, path := ingested(t, e)
			cp := d.Checkpoint()
			if tc.hold {
				defer d.Close()
			} else if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.value != nil {
				db, err := bbolt.Open(path, 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := db.Update(func(tx *bbolt.Tx) error {
					return tx.Bucket([]byte(tc.bucket)).Put([]byte(tc.key), tc.value(cp))
				}); err != nil {
					t.Fatal(err)
				}
				db.Close()
			}
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			cfg := e.config()
			cfg.OpenTimeout = 100 * time.Millisecond
			d2, err := Open(path, cfg)
			if err == nil {
				d2.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("Open: %v; want %v, naming %s", err, tc.want, path)
			}
			if after, err := os.ReadFile(path); err != nil || !bytes.Equal(before, after) {
				t.Errorf("the refused file changed (%v)", err)
			}
		})
	}
}

// TestRunWhileRunning: a second Run of a running dispatcher is refused at
// once (two would attempt every delivery twice), and so is Close; the
// first goes on and delivers each webhook once.
func TestRunWhileRunning(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, false, nil)
	rc.secret = func(string) string { return e.kr.SigningSecret("m1", 1) }
	e.merchant("m1", rc.URL())
	d, _ := e.dispatcher("", e.config())
	waitFor(t, 10*time.Second, func() error {
		if !d.running.Load() {
			return errors.New("not running yet")
		}
		return nil
	})
	// Bounded, should the refusal fail and this one run.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Run(ctx, FromLog(e.store, 0, 0)); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v, want ErrRunning", err)
	}
	if err := d.Close(); !errors.Is(err, ErrRunning) {
		t.Fatalf("Close while running: %v, want ErrRunning", err)
	}
	e.paidInvoice("m1", "")
	checkDelivered(t, d, "m1", rc, 5)
	if n := len(rc.accepted()); n != 5 {
		t.Errorf("%d webhooks accepted, want 5", n)
	}
}

// TestIngestAllOrNothing: a batch one of whose events cannot be read
// through the views (a corrupt invoice view in webhooks.db) is refused
// whole: the checkpoint stays, and no delivery of the batch is recorded,
// not even those before the bad event, so a source hands it all again
// and none is skipped. Once the record is good again the same batch makes
// each delivery once.
func TestIngestAllOrNothing(t *testing.T) {
	e := newEnv(t)
	e.merchant("m1", "https://hooks.example.com/m1")
	first := e.invoice("m1", "")
	d, _ := ingested(t, e)
	defer d.Close()
	cp := d.Checkpoint()
	e.invoice("m1", "")
	e.cancel("m1", first)
	var batch []ledgerEvent
	for ev, err := range e.store.Events(context.Background(), cp+1) {
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, ev)
	}
	if len(batch) != 2 {
		t.Fatalf("%d events after the checkpoint, want 2", len(batch))
	}
	count := func() int {
		t.Helper()
		p, err := d.ListDeliveries("m1", ListQuery{})
		if err != nil {
			t.Fatal(err)
		}
		return p.Details.TotalObjects
	}
	before := count()

	var key, good []byte
	if err := d.DB().Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(vInvoices)
		k, v := b.Cursor().First() // the first invoice's view: ULIDs sort by time
		key, good = bytes.Clone(k), bytes.Clone(v)
		return b.Put(key, []byte{0xff, 0xff, 0xff})
	}); err != nil {
		t.Fatal(err)
	}
	if err := d.Ingest(batch); err == nil {
		t.Fatal("Ingest of the batch with a corrupt view succeeded")
	} else if !errors.Is(err, projections.ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("sequence %d", batch[1].Seq)) {
		t.Errorf("Ingest: %v; want a corrupt view, at sequence %d", err, batch[1].Seq)
	}
	if d.Checkpoint() != cp || count() != before {
		t.Fatalf("after the refused batch: checkpoint %d (was %d), %d deliveries (were %d)", d.Checkpoint(), cp, count(), before)
	}

	if err := d.DB().Update(func(tx *bbolt.Tx) error { return tx.Bucket(vInvoices).Put(key, good) }); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a source may hand it again
		if err := d.Ingest(batch); err != nil {
			t.Fatal(err)
		}
	}
	if d.Checkpoint() != batch[1].Seq || count() != before+2 {
		t.Errorf("after the repair: checkpoint %d, %d deliveries; want %d, %d", d.Checkpoint(), count(), batch[1].Seq, before+2)
	}
}
