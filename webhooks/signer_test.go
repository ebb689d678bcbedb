package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/projections/projectionstest"
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

// ingested opens a dispatcher on a new webhooks.db and ingests the log.
func ingested(t *testing.T, e *env) (d *Dispatcher, path string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), FileName)
	d, err := Open(path, e.config())
	if err != nil {
		t.Fatal(err)
	}
	ingestNew(t, e, d)
	return d, path
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

// upgraded is a dispatcher reopened on views an older build left: the
// log holds merchant m1 with its signing secret rotated, then an invoice
// whose webhook is recorded and due (never attempted); the views' format
// is set back to 4, so Open drops them and they must be projected again
// from the first event, all of it at or below the delivery checkpoint.
type upgraded struct {
	d       *Dispatcher
	rc      *receiver
	evs     []ledgerEvent // the whole log
	rotated int           // index in evs of signing_secret.rotated
	cp      uint64
	key     dkey // the invoice's webhook
}

func openUpgraded(t *testing.T, e *env) *upgraded {
	t.Helper()
	u := &upgraded{rc: newReceiver(t, false, nil)}
	u.rc.secret = func(string) string { return e.kr.SigningSecret("m1", 2) } // the merchant verifies with the rotated secret
	e.merchant("m1", u.rc.URL())
	if _, err := e.svc.RotateSigningSecret(e.ctx, commands.RotateSigningSecret{
		Meta: e.meta(), MerchantID: "m1", Secret: fixedSecret(strings.Repeat("a", 64)),
	}); err != nil {
		t.Fatal(err)
	}
	e.invoice("m1", "")

	d, path := ingested(t, e)
	u.cp = d.Checkpoint()
	u.key = makeKey(u.cp, kindByteWebhook)
	before, err := d.ListDeliveries("m1", ListQuery{})
	if err != nil || before.Details.TotalObjects != 1 {
		t.Fatalf("deliveries before the upgrade: %+v, %v", before.Details, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// The views as an older build left them: Open drops them.
	projectionstest.SetViewsFormat(t, path, 4)

	if u.d, err = Open(path, e.config()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.d.Close() })
	u.rotated = -1
	for ev, err := range e.store.Events(context.Background(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == commands.TypeSigningSecretRotated {
			u.rotated = len(u.evs)
		}
		u.evs = append(u.evs, ev)
	}
	if u.rotated < 0 || u.evs[len(u.evs)-1].Seq != u.cp {
		t.Fatalf("rotation at %d of %d events, checkpoint %d", u.rotated, len(u.evs), u.cp)
	}
	return u
}

// TestSignerAfterViewsRebuilt: an attempt made while the views catch up
// caches the merchant's old signer; the catch-up past the rotation must
// drop it.
func TestSignerAfterViewsRebuilt(t *testing.T) {
	e := newEnv(t)
	u := openUpgraded(t, e)
	d := u.d
	// The views catch up to just before the rotation; an attempt due then
	// reads the merchant's first secret.
	if err := d.Ingest(u.evs[:u.rotated]); err != nil {
		t.Fatal(err)
	}
	d.attempt(context.Background(), u.key)
	// The rest of the catch-up, the rotation among it.
	if err := d.Ingest(u.evs[u.rotated:]); err != nil {
		t.Fatal(err)
	}
	res := d.attempt(context.Background(), u.key)
	if res.status != http.StatusOK {
		t.Fatalf("attempt: %+v", res)
	}
	reqs := u.rc.requests()
	if last := reqs[len(reqs)-1]; last.VerifyErr != nil {
		t.Errorf("after the views caught up, the webhook does not verify with the current secret: %v (signature %q)", last.VerifyErr, last.Signature)
	}
	after, err := d.ListDeliveries("m1", ListQuery{})
	if err != nil || after.Details.TotalObjects != 1 || d.Checkpoint() != u.cp {
		t.Errorf("after the upgrade: %+v, checkpoint %d (was %d), %v", after.Details, d.Checkpoint(), u.cp, err)
	}
}

// sourceFunc is a Source.
type sourceFunc func(ctx context.Context, from uint64, ingest func([]ledgerEvent) error) error

func (f sourceFunc) Follow(ctx context.Context, from uint64, ingest func([]ledgerEvent) error) error {
	return f(ctx, from, ingest)
}

// TestScheduleWaitsForViews: Run attempts nothing while the views are
// behind the delivery checkpoint (they would sign with a retired secret,
// or find no merchant, and spend one of the delivery's attempts): the due
// webhook goes once the catch-up brings them level, signed with the
// current secret, once.
func TestScheduleWaitsForViews(t *testing.T) {
	e := newEnv(t)
	u := openUpgraded(t, e)
	d := u.d
	halfway, resume := make(chan bool), make(chan struct{})
	src := sourceFunc(func(ctx context.Context, from uint64, ingest func([]ledgerEvent) error) error {
		if from != 1 {
			return fmt.Errorf("follow from %d, want 1 (the views start again)", from)
		}
		if err := ingest(u.evs[:u.rotated]); err != nil {
			return err
		}
		d.schedMu.Lock()
		installed := d.sched != nil
		d.schedMu.Unlock()
		halfway <- installed
		<-resume
		if err := ingest(u.evs[u.rotated:]); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, src) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if <-halfway {
		t.Error("the schedule runs while the views are behind the checkpoint")
	}
	close(resume)
	waitFor(t, 10*time.Second, func() error {
		if n := len(u.rc.requests()); n == 0 {
			return errors.New("no attempt yet")
		}
		return nil
	})
	reqs := u.rc.requests()
	if len(reqs) != 1 || reqs[0].VerifyErr != nil {
		t.Fatalf("attempts %d, first verifies: %v; want one, signed with the current secret", len(reqs), reqs[0].VerifyErr)
	}
}
