package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
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
// opens its gate, and a later request of one if the test asked (again).
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

// request is the gate of request n of webhook id: its first request's
// always, a later one's only once the test made it (again).
func (g *gates) request(id string, n int) (chan struct{}, bool) {
	if n == 1 {
		return g.gate(id), true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.ch[againKey(id, n)]
	return c, ok
}

func againKey(id string, n int) string { return fmt.Sprintf("%s#%d", id, n) }

// heldRun is a running dispatcher whose webhooks go to a real receiver
// that holds each one's first request until the test opens its gate, and
// that logs to logs.
type heldRun struct {
	t    *testing.T
	e    *env
	r    *runner
	rc   *receiver
	g    gates
	held chan string // the webhook-ids of requests held, as they arrive
	logs *logged
}

func newHeldRun(t *testing.T) *heldRun {
	h := &heldRun{t: t, e: newEnv(t), held: make(chan string, 8), logs: &logged{}}
	h.rc = newReceiver(t, false, func(r *http.Request, n int) (int, http.Header) {
		id := r.Header.Get(HeaderID)
		if gate, ok := h.g.request(id, n); ok {
			h.held <- id
			select {
			case <-gate:
			case <-r.Context().Done():
			}
		}
		return http.StatusOK, nil
	})
	h.rc.secret = func(string) string { return h.e.kr.SigningSecret("m1", 1) }
	h.e.merchant("m1", h.rc.URL())
	cfg := h.e.config()
	cfg.AttemptTimeout = 30 * time.Second // the gates hold requests, not a timeout
	cfg.Logger = slog.New(h.logs)
	h.r = newRunner(t, h.e, cfg)
	h.r.start()
	return h
}

// open lets the deliveries' held requests be answered (or their first,
// when it comes, go straight through).
func (h *heldRun) open(dels ...Delivery) {
	for _, del := range dels {
		close(h.g.gate(del.WebhookID))
	}
}

// find waits for m1's delivery of an event type for a resource ("": any).
func (h *heldRun) find(typ, res string) Delivery {
	h.t.Helper()
	var del Delivery
	waitFor(h.t, 10*time.Second, func() (err error) {
		del, err = findFor(h.r.d, "m1", typ, res)
		return err
	})
	return del
}

// again makes the receiver hold request n of del too, until openAgain.
func (h *heldRun) again(del Delivery, n int) { h.g.gate(againKey(del.WebhookID, n)) }

// openAgain lets request n of del be answered.
func (h *heldRun) openAgain(del Delivery, n int) { close(h.g.gate(againKey(del.WebhookID, n))) }

// tear tears k's record in webhooks.db while the held attempts of first
// and then of rest finish, so that the results of rest are recorded in
// one batch, after the tear; it returns the intact record. The write
// transaction that tears it is held open until their attempts are over:
// the result writer, given first's result, waits for it holding writeMu,
// and the others' results gather behind it.
//
// It starts once nothing but the result writer can take writeMu: every
// event ingested, and the Ingest that recorded the last one returned. A
// held request does not mean that: Ingest starts the attempts its commit
// made due before it lets writeMu go, and an Ingest still holding it
// passed for the writer with first's result, so rest were let go with
// first and their results split across batches as they came.
func (h *heldRun) tear(k dkey, first Delivery, rest ...Delivery) []byte {
	t := h.t
	t.Helper()
	d := h.r.d
	waitFor(t, 10*time.Second, func() error {
		if c, head := d.Checkpoint(), h.e.store.Head().Seq; c < head {
			return fmt.Errorf("ingested up to %d of %d", c, head)
		}
		if !d.writeMu.TryLock() {
			return errors.New("an ingest holds writeMu")
		}
		d.writeMu.Unlock()
		return nil
	})
	tx, err := d.DB().Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if tx != nil {
			tx.Rollback()
		}
	}()
	intact := bytes.Clone(tx.Bucket(bDeliveries).Get(k[:]))
	if len(intact) == 0 {
		t.Fatalf("no record for %x", k)
	}
	if err := tx.Bucket(bDeliveries).Put(k[:], intact[:len(intact)/2]); err != nil {
		t.Fatal(err)
	}
	h.open(first)
	waitFor(t, 10*time.Second, func() error {
		if d.writeMu.TryLock() {
			d.writeMu.Unlock()
			return errors.New("the result writer has not taken the first result")
		}
		return nil
	})
	h.open(rest...)
	s := running(d)
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
	return intact
}

// counts are the requests received per webhook-id.
func (h *heldRun) counts() map[string]int {
	out := make(map[string]int)
	for _, q := range h.rc.requests() {
		out[q.ID]++
	}
	return out
}

// delivered is a waitFor condition. By id: a list would stop at a torn
// record.
func (h *heldRun) delivered(del Delivery) func() error {
	return func() error {
		got, err := h.r.d.Delivery("m1", del.ID)
		if err == nil && got.Status != StatusDelivered {
			err = fmt.Errorf("delivery %s (%s) is %s after %d attempts; requests per webhook %v", del.ID, del.EventType, got.Status, got.AttemptCount, h.counts())
		}
		return err
	}
}

// settle waits until nothing is in flight or scheduled (nothing can be
// sent again) once n errors are logged at Error.
func (h *heldRun) settle(n int) {
	h.t.Helper()
	waitFor(h.t, 10*time.Second, func() error {
		if got := len(h.logs.errors()); got < n {
			return fmt.Errorf("%d errors logged, want %d; requests per webhook %v", got, n, h.counts())
		}
		if err := settled(h.r.d, h.e.store); err != nil {
			return fmt.Errorf("%w; requests per webhook %v", err, h.counts())
		}
		return nil
	})
}

// sent checks that each of dels was sent once, but those in n: as many
// times as said.
func (h *heldRun) sent(dels []Delivery, n map[string]int) {
	h.t.Helper()
	got := h.counts()
	for _, del := range dels {
		want, ok := n[del.ID]
		if !ok {
			want = 1
		}
		if got[del.WebhookID] != want {
			h.t.Errorf("%s (seq %d) sent %d times, want %d", del.EventType, del.EventSeq, got[del.WebhookID], want)
		}
	}
}

// inOneTx checks that dels were delivered at their first attempt, in one
// transaction.
func (h *heldRun) inOneTx(dels []Delivery) {
	h.t.Helper()
	var at *time.Time
	for _, del := range dels {
		d, err := h.r.d.Delivery("m1", del.ID)
		if err != nil {
			h.t.Fatal(err)
		}
		if d.Status != StatusDelivered || d.AttemptCount != 1 || len(d.Attempts) != 1 || d.DeliveredAt == nil {
			d.Body = nil
			h.t.Fatalf("delivery recorded with the torn one: %+v", d)
		}
		if at != nil && !at.Equal(*d.DeliveredAt) {
			h.t.Errorf("delivered at %v and %v: not recorded in one transaction", *at, *d.DeliveredAt)
		}
		at = d.DeliveredAt
	}
}

// reported checks that n errors were logged, the last naming k's corrupt
// record and no body (as its resource id shows), URL or secret.
func (h *heldRun) reported(n int, k dkey, resourceIDs ...string) {
	h.t.Helper()
	errs := h.logs.errors()
	if len(errs) != n {
		h.t.Fatalf("%d errors logged, want %d: %+v", len(errs), n, errs)
	}
	rec := errs[n-1]
	if rec.attrs["key"] != fmt.Sprintf("%x", k) || !strings.Contains(rec.attrs["err"], ErrCorrupt.Error()) {
		h.t.Errorf("logged %q %v; want the key %x and a corrupt record", rec.msg, rec.attrs, k)
	}
	for a, v := range rec.attrs {
		for _, bad := range append(resourceIDs, "whsec_", h.rc.URL()) {
			if strings.Contains(v, bad) {
				h.t.Errorf("log attribute %s carries the body, the URL or a secret: %s", a, v)
			}
		}
	}
}

// repair stops the dispatcher, puts k's intact record back and starts it
// again.
func (h *heldRun) repair(k dkey, intact []byte) {
	h.t.Helper()
	h.r.stop()
	if err := h.r.d.DB().Update(func(tx *bbolt.Tx) error { return tx.Bucket(bDeliveries).Put(k[:], intact) }); err != nil {
		h.t.Fatal(err)
	}
	h.r.start()
}

// verified checks every request's signature.
func (h *heldRun) verified() {
	for _, q := range h.rc.requests() {
		if q.VerifyErr != nil {
			h.t.Errorf("webhook %s: signature: %v", q.ID, q.VerifyErr)
		}
	}
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
	h := newHeldRun(t)
	d := h.r.d
	invs := make([]string, 4)
	for i := range invs {
		invs[i] = h.e.invoice("m1", "")
	}
	for range invs {
		recv(t, h.held, "request held")
	}
	dels := make([]Delivery, len(invs))
	for i, inv := range invs {
		dels[i] = mustFindFor(t, d, "m1", commands.TypeInvoiceCreated, inv)
	}
	// first is recorded on its own, to keep the result writer busy while
	// the others finish; bad's record is torn; good are recorded with it.
	first, bad, good := dels[0], dels[1], dels[2:]
	badKey := makeKey(bad.EventSeq, kindByteWebhook)
	intact := h.tear(badKey, first, dels[1:]...)

	for _, del := range append([]Delivery{first}, good...) {
		waitFor(t, 10*time.Second, h.delivered(del))
	}
	h.settle(1)
	h.sent(dels, nil)
	h.inOneTx(good)
	if st := d.Stats(); st.Attempts != 4 || st.Delivered != 3 || st.Failed != 0 {
		t.Errorf("stats %+v, want 4 attempts, 3 delivered", st)
	}
	h.reported(1, badKey, bad.ResourceID)
	// Still in w_due: the next Run loads it.
	if n, _ := dueEntries(t, d, badKey); n != 1 {
		t.Errorf("%d w_due entries for the torn delivery, want 1", n)
	}

	// A restart attempts it: the record still does not decode, so no
	// request goes, and it is reported and set aside again.
	h.r.stop()
	h.r.start()
	h.settle(2)
	h.reported(2, badKey, bad.ResourceID)
	h.sent(dels, nil)

	// Repaired: it goes on the next Run, once more.
	h.repair(badKey, intact)
	waitFor(t, 10*time.Second, h.delivered(bad))
	h.settle(2)
	h.sent(dels, map[string]int{bad.ID: 2})
	h.verified()
}

// TestUnreadableNextRecordSetAside: a payment's first delivery is
// delivered while the record of the next one, waiting behind it, is torn in
// webhooks.db; its attempt is recorded in one batch with others. Moving the
// payment's queue on reads the torn record: the first delivery is recorded
// delivered all the same, once, and never sent again, the rest of the batch
// is recorded with it, and the torn delivery is reported (logged at Error
// with its key) and set aside, the later one waiting behind it. A restart
// reports it again and sends nothing; a redelivery of the first sends it
// and reports the torn one again. Once it is repaired, the next Run sends
// it and then the one behind it, in order. A dispatcher that failed the
// whole batch on the torn record sent every attempt of it again, and the
// first delivery again and again.
func TestUnreadableNextRecordSetAside(t *testing.T) {
	h := newHeldRun(t)
	d := h.r.d
	// Heads of four queues: two invoices' own, the paid invoice's and its
	// payment's. The payment's three deliveries go in order, one at a time.
	others := []string{h.e.invoice("m1", ""), h.e.invoice("m1", "")}
	inv, _ := h.e.paidInvoice("m1", "")
	for range 4 {
		recv(t, h.held, "request held")
	}
	find := h.find
	// first is recorded on its own, to keep the result writer busy while
	// the others finish; paid ends in the batch, and next's record,
	// behind it, is torn; then waits behind next; batch are recorded with
	// paid; invPaid goes once its invoice's first delivery is recorded.
	first := find(commands.TypeInvoiceCreated, others[0])
	paid := find(commands.TypePaymentCreated, "")
	next := find(commands.TypePaymentConfirmed, "")
	then := find(commands.TypePaymentProcessed, "")
	batch := []Delivery{find(commands.TypeInvoiceCreated, others[1]), find(commands.TypeInvoiceCreated, inv)}
	invPaid := find(commands.TypeInvoicePaid, inv)
	all := []Delivery{first, paid, next, then, invPaid, batch[0], batch[1]}
	nextKey := makeKey(next.EventSeq, kindByteWebhook)
	h.open(next, then, invPaid) // not held: they go once their turn comes
	intact := h.tear(nextKey, first, append([]Delivery{paid}, batch...)...)

	for _, del := range []Delivery{first, paid, invPaid, batch[0], batch[1]} {
		waitFor(t, 10*time.Second, h.delivered(del))
	}
	h.settle(1)
	waiting := map[string]int{next.ID: 0, then.ID: 0}
	h.sent(all, waiting)
	h.inOneTx(append([]Delivery{paid}, batch...))
	if got, err := d.Delivery("m1", then.ID); err != nil || got.Status != StatusPending || got.AttemptCount != 0 {
		t.Errorf("the delivery behind the torn one: %v, %s after %d attempts; want pending, none", err, got.Status, got.AttemptCount)
	}
	if st := d.Stats(); st.Attempts != 5 || st.Delivered != 5 || st.Failed != 0 {
		t.Errorf("stats %+v, want 5 attempts, 5 delivered", st)
	}
	h.reported(1, nextKey, paid.ResourceID, inv)

	// A restart: the torn record is reported again, and nothing is sent.
	h.r.stop()
	h.r.start()
	h.settle(2)
	h.reported(2, nextKey, paid.ResourceID, inv)
	h.sent(all, waiting)

	// Redelivered meanwhile, the first is sent again, and the torn record
	// reported again: the queue still waits for it.
	if _, err := d.Redeliver("m1", paid.ID); err != nil {
		t.Fatal(err)
	}
	h.settle(3)
	h.reported(3, nextKey, paid.ResourceID, inv)
	if got, err := d.Delivery("m1", paid.ID); err != nil || got.Status != StatusDelivered || got.AttemptCount != 2 {
		t.Errorf("redelivered: %v, %s after %d attempts; want delivered after 2", err, got.Status, got.AttemptCount)
	}
	waiting[paid.ID] = 2
	h.sent(all, waiting)

	// Repaired: the next Run sends it, then the one behind it.
	h.repair(nextKey, intact)
	waitFor(t, 10*time.Second, h.delivered(then))
	waitFor(t, 10*time.Second, h.delivered(next))
	h.settle(3)
	h.sent(all, map[string]int{paid.ID: 2})
	h.verified()
	var order []string
	for _, q := range h.rc.requests() {
		if q.ID == paid.WebhookID || q.ID == next.WebhookID || q.ID == then.WebhookID {
			order = append(order, q.ID)
		}
	}
	if want := []string{paid.WebhookID, paid.WebhookID, next.WebhookID, then.WebhookID}; !slices.Equal(order, want) {
		t.Errorf("the payment's webhooks went as %v, want %v", order, want)
	}
	if _, n := dueEntries(t, d, nextKey); n != 0 {
		t.Errorf("%d w_due entries left once all were delivered", n)
	}
	h.reported(3, nextKey, paid.ResourceID, inv)
}

// TestFailedRecordingKeepsResourceOrder: an invoice's later delivery
// (invoice.cancelled) is in flight when the merchant redelivers its earlier
// one (invoice.created), which becomes the head of the invoice's queue:
// the later one now waits behind it. Then the transaction that records the
// later one's attempt fails (a bucket planted where its attempt goes makes
// the Put fail), and every key of the batch is put back on the schedule.
// The later one must not be sent again while the earlier one is pending:
// a dispatcher that attempted any pending delivery it was given sent it
// again at once, a later status overtaking an earlier one. Once the
// earlier one is delivered, the later one goes.
func TestFailedRecordingKeepsResourceOrder(t *testing.T) {
	h := newHeldRun(t)
	d := h.r.d
	find := h.find
	inv := h.e.invoice("m1", "")
	recv(t, h.held, "invoice.created held")
	created := find(commands.TypeInvoiceCreated, inv)
	h.open(created)
	waitFor(t, 10*time.Second, h.delivered(created))
	h.e.cancel("m1", inv)
	recv(t, h.held, "invoice.cancelled held")
	cancelled := find(commands.TypeInvoiceCancelled, inv)
	k := makeKey(cancelled.EventSeq, kindByteWebhook)

	h.again(created, 2)
	if _, err := d.Redeliver("m1", created.ID); err != nil {
		t.Fatal(err)
	}
	if id := recv(t, h.held, "redelivery held"); id != created.WebhookID {
		t.Fatalf("held %s, want the redelivery of invoice.created (%s)", id, created.WebhookID)
	}
	planted := attemptKey(k, 1)
	plant := func(tx *bbolt.Tx) error { _, err := tx.Bucket(bAttempts).CreateBucket(planted); return err }
	if err := d.DB().Update(plant); err != nil {
		t.Fatal(err)
	}
	h.open(cancelled)
	waitFor(t, 10*time.Second, func() error {
		if n := h.counts()[cancelled.WebhookID]; n > 1 {
			t.Fatalf("invoice.cancelled sent %d times while the redelivery of invoice.created was pending", n)
		}
		if len(h.logs.errors()) == 0 {
			return errors.New("the failed recording is not logged")
		}
		s := running(d)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.inflight[k] || s.byKey[k] != nil {
			return errors.New("invoice.cancelled is still in flight or scheduled")
		}
		return nil
	})
	if errs := h.logs.errors(); len(errs) != 1 || errs[0].msg != "record webhook attempts" {
		t.Fatalf("errors logged: %+v", errs)
	}
	if err := d.DB().Update(func(tx *bbolt.Tx) error { return tx.Bucket(bAttempts).DeleteBucket(planted) }); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Delivery("m1", cancelled.ID); err != nil || got.Status != StatusPending || got.AttemptCount != 0 {
		t.Fatalf("invoice.cancelled: %v, %s after %d attempts; want pending, none recorded", err, got.Status, got.AttemptCount)
	}

	h.openAgain(created, 2)
	waitFor(t, 10*time.Second, h.delivered(cancelled))
	waitFor(t, 10*time.Second, h.delivered(created))
	h.settle(1)
	var order []string
	for _, q := range h.rc.requests() {
		order = append(order, q.ID)
	}
	if want := []string{created.WebhookID, cancelled.WebhookID, created.WebhookID, cancelled.WebhookID}; !slices.Equal(order, want) {
		t.Errorf("the invoice's webhooks went as %v, want %v", order, want)
	}
	h.verified()
}
