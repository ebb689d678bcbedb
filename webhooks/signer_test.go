package webhooks

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/commands"
)

// gateKeys blocks the first SigningKey call made while armed, so a test can
// put an ingest in the middle of a signer cache fill.
type gateKeys struct {
	inner   Keys
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (g *gateKeys) SigningKey(m string, v int) []byte {
	if g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.release
	}
	return g.inner.SigningKey(m, v)
}

// ingestNew ingests the log's events past the dispatcher's checkpoint.
func ingestNew(t *testing.T, e *env, d *Dispatcher) {
	t.Helper()
	var evs []ledgerEvent
	for ev, err := range e.store.Events(context.Background(), d.Checkpoint()+1) {
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if err := d.Ingest(evs); err != nil {
		t.Fatal(err)
	}
}

// TestSignerCacheAfterRotation: a signer cache fill reads the merchant's
// view (secret 1); meanwhile a rotation to secret 2, with no overlap, is
// ingested and drops the cache; then the fill stores what it read. Webhooks
// made after the rotation must still be signed with secret 2, whether the
// fill raced the ingest or not.
func TestSignerCacheAfterRotation(t *testing.T) {
	for _, race := range []bool{false, true} {
		t.Run(map[bool]string{false: "fill before the rotation", true: "fill racing the rotation"}[race], func(t *testing.T) {
			e := newEnv(t)
			rc := newReceiver(t, false, nil)
			rc.secret = func(string) string { return e.kr.SigningSecret("m1", 2) } // the merchant verifies with the new secret
			e.merchant("m1", rc.URL())
			cfg := e.config()
			gk := &gateKeys{inner: e.kr, entered: make(chan struct{}), release: make(chan struct{})}
			cfg.Keys = gk
			d, err := Open(filepath.Join(t.TempDir(), FileName), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			ingestNew(t, e, d)

			filled := make(chan error, 1)
			if race {
				gk.armed.Store(true)
				go func() { _, err := d.signer("m1"); filled <- err }()
				<-gk.entered // the fill has read the view
			} else {
				_, err := d.signer("m1")
				filled <- err
			}
			if _, err := e.svc.RotateSigningSecret(e.ctx, commands.RotateSigningSecret{
				Meta: e.meta(), MerchantID: "m1", Secret: fixedSecret(strings.Repeat("a", 64)),
			}); err != nil {
				t.Fatal(err)
			}
			ingestNew(t, e, d)
			close(gk.release)
			if err := <-filled; err != nil {
				t.Fatal(err)
			}

			e.invoice("m1", "")
			ingestNew(t, e, d)
			res := d.attempt(context.Background(), makeKey(d.Checkpoint(), kindByteWebhook))
			if res.status != http.StatusOK {
				t.Fatalf("attempt: %+v", res)
			}
			reqs := rc.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d webhooks, want 1", len(reqs))
			}
			if reqs[0].VerifyErr != nil {
				t.Fatalf("the webhook does not verify with the rotated secret: %v (signature %q)", reqs[0].VerifyErr, reqs[0].Signature)
			}
		})
	}
}

// TestSignerAfterViewsRebuilt: views of an older format (an upgrade) are
// dropped at Open and projected again from the first event, behind the
// checkpoint. An attempt made while they catch up reads the merchant's
// view as of an old event (before a rotation, here); once they have caught
// up, a webhook must be signed with the merchant's current secret, not the
// one that attempt read. The upgrade records no delivery twice.
func TestSignerAfterViewsRebuilt(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, false, nil)
	rc.secret = func(string) string { return e.kr.SigningSecret("m1", 2) } // the merchant verifies with the rotated secret
	e.merchant("m1", rc.URL())
	if _, err := e.svc.RotateSigningSecret(e.ctx, commands.RotateSigningSecret{
		Meta: e.meta(), MerchantID: "m1", Secret: fixedSecret(strings.Repeat("a", 64)),
	}); err != nil {
		t.Fatal(err)
	}
	e.invoice("m1", "")

	path := filepath.Join(t.TempDir(), FileName)
	d, err := Open(path, e.config())
	if err != nil {
		t.Fatal(err)
	}
	ingestNew(t, e, d)
	cp := d.Checkpoint()
	key := makeKey(cp, kindByteWebhook) // the invoice's webhook
	before, err := d.ListDeliveries("m1", ListQuery{})
	if err != nil || before.Details.TotalObjects != 1 {
		t.Fatalf("deliveries before the upgrade: %+v, %v", before.Details, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// The views as an older build left them: Open drops them.
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("v_meta")).Put([]byte("format"), []byte{4})
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	d, err = Open(path, e.config())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var evs []ledgerEvent
	rotated := -1
	for ev, err := range e.store.Events(context.Background(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == commands.TypeSigningSecretRotated {
			rotated = len(evs)
		}
		evs = append(evs, ev)
	}
	if rotated < 0 || evs[len(evs)-1].Seq != cp {
		t.Fatalf("rotation at %d of %d events, checkpoint %d", rotated, len(evs), cp)
	}
	// The views catch up to just before the rotation; an attempt due then
	// reads the merchant's first secret.
	if err := d.Ingest(evs[:rotated]); err != nil {
		t.Fatal(err)
	}
	d.attempt(context.Background(), key)
	// The rest of the catch-up, the rotation among it.
	if err := d.Ingest(evs[rotated:]); err != nil {
		t.Fatal(err)
	}
	res := d.attempt(context.Background(), key)
	if res.status != http.StatusOK {
		t.Fatalf("attempt: %+v", res)
	}
	reqs := rc.requests()
	if last := reqs[len(reqs)-1]; last.VerifyErr != nil {
		t.Errorf("after the views caught up, the webhook does not verify with the current secret: %v (signature %q)", last.VerifyErr, last.Signature)
	}
	after, err := d.ListDeliveries("m1", ListQuery{})
	if err != nil || after.Details.TotalObjects != 1 || d.Checkpoint() != cp {
		t.Errorf("after the upgrade: %+v, checkpoint %d (was %d), %v", after.Details, d.Checkpoint(), cp, err)
	}
}
