package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/commands"
)

// logged keeps the records a slog.Logger writes, with their attributes as
// text.
type logged struct {
	mu   sync.Mutex
	recs []loggedRecord
}

type loggedRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (l *logged) Enabled(context.Context, slog.Level) bool { return true }
func (l *logged) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logged) WithGroup(string) slog.Handler            { return l }
func (l *logged) Handle(_ context.Context, r slog.Record) error {
	rec := loggedRecord{level: r.Level, msg: r.Message, attrs: make(map[string]string)}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	l.mu.Lock()
	l.recs = append(l.recs, rec)
	l.mu.Unlock()
	return nil
}

// errors are the records logged at Error.
func (l *logged) errors() []loggedRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []loggedRecord
	for _, r := range l.recs {
		if r.level >= slog.LevelError {
			out = append(out, r)
		}
	}
	return out
}

// gates hold each webhook's first request at the receiver until the test
// opens its gate.
type gates struct {
	mu sync.Mutex
	ch map[string]chan struct{}
}

func (g *gates) gate(id string) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ch == nil {
		g.ch = make(map[string]chan struct{})
	}
	c := g.ch[id]
	if c == nil {
		c = make(chan struct{})
		g.ch[id] = c
	}
	return c
}

// TestUnreadableRecordSetAside: attempts finish together and are recorded
// in one batch, one of whose deliveries has had its record torn in
// webhooks.db while its request was under way. That delivery is set aside
// (logged at Error with its key, out of the schedule); the others of the
// batch are recorded delivered, in the same transaction, once, and never
// sent again. A dispatcher that failed the whole batch on the one record
// sent the others again and again, every time a batch held the bad one.
// After a restart the torn record is reported again and no request made;
// once repaired, the delivery goes (a second time: the answer to the
// first was never recorded).
func TestUnreadableRecordSetAside(t *testing.T) {
	e := newEnv(t)
	held := make(chan string, 8)
	var g gates
	rc := newReceiver(t, false, func(r *http.Request, n int) (int, http.Header) {
		if n == 1 {
			id := r.Header.Get(HeaderID)
			held <- id
			select {
			case <-g.gate(id):
			case <-r.Context().Done():
			}
		}
		return http.StatusOK, nil
	})
	rc.secret = func(string) string { return e.kr.SigningSecret("m1", 1) }
	e.merchant("m1", rc.URL())
	logs := &logged{}
	cfg := e.config()
	cfg.AttemptTimeout = 30 * time.Second // the gates hold requests, not a timeout
	cfg.Logger = slog.New(logs)
	r := newRunner(t, e, cfg)
	r.start()

	invs := make([]string, 4)
	for i := range invs {
		invs[i] = e.invoice("m1", "")
	}
	for range invs {
		recv(t, held, "request held")
	}
	dels := make([]Delivery, len(invs))
	for i, inv := range invs {
		dels[i] = mustFindFor(t, r.d, "m1", commands.TypeInvoiceCreated, inv)
	}
	// first is recorded on its own, to keep the result writer busy while
	// the others finish; bad's record is torn; good are recorded with it.
	first, bad, good := dels[0], dels[1], dels[2:]
	badKey := makeKey(bad.EventSeq, kindByteWebhook)

	// Tear bad's record in a write transaction held open until the
	// others' attempts are over: the writer, given first's result, waits
	// for it holding writeMu, and their results gather behind it.
	tx, err := r.d.DB().Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if tx != nil {
			tx.Rollback()
		}
	}()
	intact := bytes.Clone(tx.Bucket(bDeliveries).Get(badKey[:]))
	if len(intact) == 0 {
		t.Fatalf("no record for %x", badKey)
	}
	if err := tx.Bucket(bDeliveries).Put(badKey[:], intact[:len(intact)/2]); err != nil {
		t.Fatal(err)
	}
	close(g.gate(first.WebhookID))
	waitFor(t, 10*time.Second, func() error {
		if r.d.writeMu.TryLock() {
			r.d.writeMu.Unlock()
			return errors.New("the result writer has not taken the first result")
		}
		return nil
	})
	for _, del := range dels[1:] {
		close(g.gate(del.WebhookID))
	}
	s := running(r.d)
	waitFor(t, 10*time.Second, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.active > 0 {
			return fmt.Errorf("%d attempts under way", s.active)
		}
		return nil
	})
	// An attempt hands its result to the writer before it frees its
	// slot: all are waiting now, and go in the writer's next batch.
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	tx = nil

	counts := func() map[string]int {
		out := make(map[string]int)
		for _, q := range rc.requests() {
			out[q.ID]++
		}
		return out
	}
	// By id: a list would stop at the torn record.
	delivered := func(del Delivery) func() error {
		return func() error {
			got, err := r.d.Delivery("m1", del.ID)
			if err == nil && got.Status != StatusDelivered {
				err = fmt.Errorf("delivery %s is %s after %d attempts", del.ID, got.Status, got.AttemptCount)
			}
			return err
		}
	}
	for _, del := range append([]Delivery{first}, good...) {
		waitFor(t, 10*time.Second, delivered(del))
	}
	// Nothing in flight or scheduled: nothing can be sent again.
	waitFor(t, 10*time.Second, func() error {
		if err := settled(r.d, e.store); err != nil {
			return fmt.Errorf("%w; requests per webhook %v", err, counts())
		}
		return nil
	})
	got := counts()
	for _, del := range dels {
		if got[del.WebhookID] != 1 {
			t.Errorf("webhook %s (seq %d) sent %d times, want 1", del.WebhookID, del.EventSeq, got[del.WebhookID])
		}
	}
	var at *time.Time
	for _, del := range good {
		d, err := r.d.Delivery("m1", del.ID)
		if err != nil {
			t.Fatal(err)
		}
		if d.Status != StatusDelivered || d.AttemptCount != 1 || len(d.Attempts) != 1 || d.DeliveredAt == nil {
			d.Body = nil
			t.Fatalf("delivery recorded with the torn one: %+v", d)
		}
		if at != nil && !at.Equal(*d.DeliveredAt) {
			t.Errorf("delivered at %v and %v: not recorded in one transaction", *at, *d.DeliveredAt)
		}
		at = d.DeliveredAt
	}
	if st := r.d.Stats(); st.Attempts != 4 || st.Delivered != 3 || st.Failed != 0 {
		t.Errorf("stats %+v, want 4 attempts, 3 delivered", st)
	}
	checkReported := func(n int) {
		t.Helper()
		errs := logs.errors()
		if len(errs) != n {
			t.Fatalf("%d errors logged, want %d: %+v", len(errs), n, errs)
		}
		rec := errs[n-1]
		if rec.attrs["key"] != fmt.Sprintf("%x", badKey) || !strings.Contains(rec.attrs["err"], ErrCorrupt.Error()) {
			t.Errorf("logged %q %v; want the key %x and a corrupt record", rec.msg, rec.attrs, badKey)
		}
		for k, v := range rec.attrs {
			if strings.Contains(v, bad.ResourceID) || strings.Contains(v, "whsec_") {
				t.Errorf("log attribute %s carries the body or a secret: %s", k, v)
			}
		}
	}
	checkReported(1)
	// Still in w_due: the next Run loads it.
	if n, _ := dueEntries(t, r.d, badKey); n != 1 {
		t.Errorf("%d w_due entries for the torn delivery, want 1", n)
	}

	// A restart attempts it: the record still does not decode, so no
	// request goes, and it is reported and set aside again.
	r.stop()
	r.start()
	waitFor(t, 10*time.Second, func() error {
		if len(logs.errors()) < 2 {
			return errors.New("not reported again")
		}
		return settled(r.d, e.store)
	})
	checkReported(2)
	if n := counts()[bad.WebhookID]; n != 1 {
		t.Errorf("torn delivery sent %d times, want 1", n)
	}

	// Repaired: it goes on the next Run, once more.
	r.stop()
	if err := r.d.DB().Update(func(tx *bbolt.Tx) error { return tx.Bucket(bDeliveries).Put(badKey[:], intact) }); err != nil {
		t.Fatal(err)
	}
	r.start()
	waitFor(t, 10*time.Second, delivered(bad))
	waitFor(t, 10*time.Second, func() error { return settled(r.d, e.store) })
	got = counts()
	for _, del := range dels {
		want := 1
		if del.ID == bad.ID {
			want = 2
		}
		if got[del.WebhookID] != want {
			t.Errorf("webhook %s sent %d times, want %d", del.WebhookID, got[del.WebhookID], want)
		}
	}
	for _, q := range rc.requests() {
		if q.VerifyErr != nil {
			t.Errorf("webhook %s: signature: %v", q.ID, q.VerifyErr)
		}
	}
}
