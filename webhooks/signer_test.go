package webhooks

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

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
