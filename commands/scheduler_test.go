package commands_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
)

// manualClock is a clock the test moves by hand.
type manualClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: c.now.Add(d), ch: ch})
	return ch
}

// nextWake returns the earliest time a pending After fires at.
func (c *manualClock) nextWake() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.waiters) == 0 {
		return time.Time{}, false
	}
	at := c.waiters[0].at
	for _, w := range c.waiters[1:] {
		if w.at.Before(at) {
			at = w.at
		}
	}
	return at, true
}

// dropWaiters forgets the pending Afters (of a Run that has stopped).
func (c *manualClock) dropWaiters() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiters = nil
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

type viewsDue struct{ v *projections.Views }

func (d viewsDue) Due(t time.Time, after commands.Due, limit int) ([]commands.Due, error) {
	items, err := d.v.Due(t, projections.Due(after), limit)
	out := make([]commands.Due, len(items))
	for i, it := range items {
		out[i] = commands.Due(it)
	}
	return out, err
}
func (d viewsDue) NextDue() (time.Time, bool) { return d.v.NextDue() }

func openWithViews(t *testing.T, path string) (*boltlog.Store, *commands.Service, *projections.Views) {
	t.Helper()
	store, err := boltlog.Open(path, &boltlog.Options{Projectors: []boltlog.Projector{&projections.Projector{}}})
	if err != nil {
		t.Fatal(err)
	}
	return store, commands.NewService(store, commands.Config{}), projections.NewViews(store.DB())
}

// shopWithViews opens a log with views under t.TempDir() (closed when the
// test ends) and registers merchant m1; meta makes commands at clock's time.
func shopWithViews(t *testing.T, clock *manualClock) (store *boltlog.Store, svc *commands.Service, views *projections.Views, meta func() commands.Meta) {
	t.Helper()
	store, svc, views = openWithViews(t, filepath.Join(t.TempDir(), "ledger.db"))
	t.Cleanup(func() { store.Close() })
	meta = func() commands.Meta { return commands.Meta{CommandID: ulid.Make(), Time: clock.Now()} }
	name := "Shop"
	if err := svc.RegisterMerchant(context.Background(), commands.RegisterMerchant{Meta: meta(), MerchantID: "m1", Settings: commands.MerchantSettings{Name: &name},
		Key: commands.APIKeyIssued{KeyID: "k", KeyHash: hex64('a')}, Secret: commands.SecretMaterial{SecretHash: hex64('b')}}); err != nil {
		t.Fatal(err)
	}
	return store, svc, views, meta
}

func TestSchedulerExpiresAndCatchesUpAfterRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	store, svc, views := openWithViews(t, path)
	ctx := context.Background()
	clock := &manualClock{now: t0}
	meta := func() commands.Meta { return commands.Meta{CommandID: ulid.Make(), Time: clock.Now()} }
	name := "Shop"
	if err := svc.RegisterMerchant(ctx, commands.RegisterMerchant{Meta: meta(), MerchantID: "m1", Settings: commands.MerchantSettings{Name: &name},
		Key: commands.APIKeyIssued{KeyID: "k", KeyHash: hex64('a')}, Secret: commands.SecretMaterial{SecretHash: hex64('b')}}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 5 {
		inv, err := svc.CreateInvoice(ctx, commands.CreateInvoice{Meta: meta(), InvoiceID: ulid.Make(), MerchantID: "m1", Amount: "10.00",
			Currency: "UAH", ExternalID: "o-" + string(rune('a'+i)), Rate: dec("41.5")})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, inv.InvoiceID)
	}
	w, err := svc.CreateWidget(ctx, commands.CreateWidget{Meta: meta(), MerchantID: "m1", NewID: ulid.Make(), Kind: commands.WidgetUnlimited, ExpiresAt: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	sched := commands.NewScheduler(svc, viewsDue{views}, clock, nil)
	clock.Advance(10 * time.Minute)
	if n, err := sched.RunOnce(ctx); err != nil || n != 0 {
		t.Fatalf("before expiry: expired %d (%v)", n, err)
	}
	// Pay one: it must not be expired.
	p, _, err := svc.CreatePayment(ctx, commands.CreatePayment{Meta: meta(), PaymentID: ulid.Make(), InvoiceID: ids[0], Method: "visamaster.uah"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ProcessPayment(ctx, commands.ProcessPayment{Meta: meta(), PaymentID: p.PaymentID}); err != nil {
		t.Fatal(err)
	}

	// The process "crashes" past the expiry: a restarted scheduler catches up.
	store.Close()
	clock.Advance(2 * time.Hour)
	store, svc, views = openWithViews(t, path)
	defer store.Close()
	sched = commands.NewScheduler(svc, viewsDue{views}, clock, nil)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sched.Run(runCtx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		all := true
		for _, id := range ids[1:] {
			inv, err := svc.LoadInvoice(ctx, "", id)
			if err != nil {
				t.Fatal(err)
			}
			all = all && inv.Status == commands.InvoiceStatusExpired
		}
		wg, _ := svc.LoadWidget(ctx, "", w.WidgetID)
		if all && wg.Status == commands.WidgetStatusExpired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("scheduler did not catch up on overdue invoices and widgets")
		}
		sched.Kick()
		time.Sleep(5 * time.Millisecond) // poll interval of a condition with a deadline
	}
	paid, _ := svc.LoadInvoice(ctx, "", ids[0])
	if paid.Status != commands.InvoiceStatusSuccess {
		t.Fatalf("paid invoice became %s", paid.Status)
	}
	if _, ok := views.NextDue(); ok {
		t.Fatal("due index still holds settled items")
	}

	// A new invoice expires by itself when the clock reaches it.
	inv, err := svc.CreateInvoice(ctx, commands.CreateInvoice{Meta: meta(), InvoiceID: ulid.Make(), MerchantID: "m1", Amount: "10.00",
		Currency: "UAH", ExternalID: "late-one", Rate: dec("41.5")})
	if err != nil {
		t.Fatal(err)
	}
	sched.Kick()
	clock.Advance(21 * time.Minute)
	deadline = time.Now().Add(10 * time.Second)
	for {
		got, _ := svc.LoadInvoice(ctx, "", inv.InvoiceID)
		if got.Status == commands.InvoiceStatusExpired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("invoice did not expire when the clock passed expires_at")
		}
		clock.Advance(0)
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestSchedulerNotBlockedByFarFutureWidgets: a merchant's widgets that
// expire after 2262 must not stand in front of the invoices that are due:
// the scheduler reads the due view 256 items at a time, and items it cannot
// expire yet used to fill that whole window, so no invoice of any merchant
// expired any more.
func TestSchedulerNotBlockedByFarFutureWidgets(t *testing.T) {
	ctx := context.Background()
	clock := &manualClock{now: t0}
	_, svc, views, meta := shopWithViews(t, clock)
	far := time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	errs := make(chan error, 256)
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := svc.CreateWidget(ctx, commands.CreateWidget{Meta: meta(), MerchantID: "m1", NewID: ulid.Make(), Kind: commands.WidgetUnlimited, ExpiresAt: far})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	inv, err := svc.CreateInvoice(ctx, commands.CreateInvoice{Meta: meta(), InvoiceID: ulid.Make(), MerchantID: "m1", Amount: "10.00",
		Currency: "UAH", ExternalID: "o-1", Rate: dec("41.5")})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(21 * time.Minute)
	sched := commands.NewScheduler(svc, viewsDue{views}, clock, nil)
	if n, err := sched.RunOnce(ctx); err != nil || n != 1 {
		t.Fatalf("expired %d (%v), want the one overdue invoice", n, err)
	}
	got, err := svc.LoadInvoice(ctx, "", inv.InvoiceID)
	if err != nil || got.Status != commands.InvoiceStatusExpired {
		t.Fatalf("invoice %v (%v), want expired", got.Status, err)
	}
	if next, ok := views.NextDue(); !ok || !next.After(clock.Now()) {
		t.Fatalf("next due %v %v: the far widgets are not due yet", next, ok)
	}
}

// TestSchedulerExpiresDisabledWidget: a widget disabled by its merchant
// still expires at its expires_at (either status -> expired); it cannot be
// re-enabled after that time, so left disabled it would never expire.
func TestSchedulerExpiresDisabledWidget(t *testing.T) {
	ctx := context.Background()
	clock := &manualClock{now: t0}
	_, svc, views, meta := shopWithViews(t, clock)
	w, err := svc.CreateWidget(ctx, commands.CreateWidget{Meta: meta(), MerchantID: "m1", NewID: ulid.Make(), Kind: commands.WidgetUnlimited, ExpiresAt: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ChangeWidgetStatus(ctx, commands.ChangeWidgetStatus{Meta: meta(), MerchantID: "m1", WidgetID: w.WidgetID, Status: commands.WidgetStatusDisabled}); err != nil {
		t.Fatal(err)
	}
	sched := commands.NewScheduler(svc, viewsDue{views}, clock, nil)
	clock.Advance(2 * time.Hour)
	if n, err := sched.RunOnce(ctx); err != nil || n != 1 {
		t.Fatalf("expired %d (%v), want the disabled widget", n, err)
	}
	got, err := svc.LoadWidget(ctx, "m1", w.WidgetID)
	if err != nil || got.Status != commands.WidgetStatusExpired {
		t.Fatalf("widget %v (%v), want expired", got.Status, err)
	}
	if _, ok := views.NextDue(); ok {
		t.Fatal("due index still holds the expired widget")
	}
}

// poisonStreams damages the log file under a running store the way a bad
// disk or a hand edit would: each stream's first index entry is repointed at
// other's first record (docs/format.md, "index"), so reading the stream
// fails with ledger.ErrCorrupt and every command on it fails with that error.
func poisonStreams(t *testing.T, store *boltlog.Store, other string, streams ...string) {
	t.Helper()
	evs, err := store.ReadStream(context.Background(), other, 1)
	if err != nil || len(evs) == 0 {
		t.Fatalf("read %s: %d events, %v", other, len(evs), err)
	}
	err = store.DB().Update(func(tx *bbolt.Tx) error {
		for _, stream := range streams {
			k := binary.BigEndian.AppendUint64(append([]byte(stream), 0), 1)
			if err := tx.Bucket([]byte("index")).Put(k, binary.BigEndian.AppendUint64(nil, evs[0].Seq)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSchedulerGoesOnPastAFailingInvoice: the earliest due invoice's stream
// is damaged, so expiring it fails with an unexpected error on every pass.
// RunOnce used to return at that error, and the next pass started again
// from the same invoice: nothing due after it ever expired. It must expire
// everything else, log the failing item and still report the error (so Run
// backs off).
func TestSchedulerGoesOnPastAFailingInvoice(t *testing.T) {
	ctx := context.Background()
	clock := &manualClock{now: t0}
	store, svc, views, meta := shopWithViews(t, clock)
	var ids []string
	for i := range 3 {
		inv, err := svc.CreateInvoice(ctx, commands.CreateInvoice{Meta: meta(), InvoiceID: ulid.Make(), MerchantID: "m1", Amount: "10.00",
			Currency: "UAH", ExternalID: "o-" + strconv.Itoa(i), Rate: dec("41.5")})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, inv.InvoiceID)
		clock.Advance(time.Minute)
	}
	w, err := svc.CreateWidget(ctx, commands.CreateWidget{Meta: meta(), MerchantID: "m1", NewID: ulid.Make(), Kind: commands.WidgetUnlimited, ExpiresAt: t0.Add(30 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	bad := ids[0]
	poisonStreams(t, store, commands.StreamID(commands.StreamInvoice, ids[1]), commands.StreamID(commands.StreamInvoice, bad))
	if _, err := svc.LoadInvoice(ctx, "", bad); !errors.Is(err, ledger.ErrCorrupt) {
		t.Fatalf("load the damaged invoice: %v, want ErrCorrupt", err)
	}

	var logs bytes.Buffer
	sched := commands.NewScheduler(svc, viewsDue{views}, clock, slog.New(slog.NewTextHandler(&logs, nil)))
	clock.Advance(time.Hour)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if n, err := sched.RunOnce(cancelled); n != 0 || !errors.Is(err, context.Canceled) || logs.Len() != 0 {
		t.Fatalf("cancelled pass: expired %d (%v), logged %q; want it to stop at once", n, err, logs.String())
	}
	n, err := sched.RunOnce(ctx)
	if !errors.Is(err, ledger.ErrCorrupt) {
		t.Errorf("RunOnce error %v, want the damaged invoice's ErrCorrupt reported", err)
	}
	if n != 3 {
		t.Errorf("expired %d, want the 2 later invoices and the widget", n)
	}
	if st := sched.Stats(); st.Expired != 3 || st.Failed != 1 {
		t.Errorf("stats %+v, want 3 expired and 1 failed", st)
	}
	for _, id := range ids[1:] {
		if got, err := svc.LoadInvoice(ctx, "", id); err != nil || got.Status != commands.InvoiceStatusExpired {
			t.Errorf("invoice %s behind the failing one: %v (%v), want expired", id, got.Status, err)
		}
	}
	if got, err := svc.LoadWidget(ctx, "", w.WidgetID); err != nil || got.Status != commands.WidgetStatusExpired {
		t.Errorf("widget behind the failing invoice: %v (%v), want expired", got.Status, err)
	}
	if line := logs.String(); !strings.Contains(line, "kind=invoice") || !strings.Contains(line, "id="+bad) {
		t.Errorf("log %q does not name the failing invoice", line)
	}
	// The damaged invoice stays due: the next pass tries it again.
	if ds, err := views.Due(clock.Now(), projections.Due{}, 0); err != nil || len(ds) != 1 || ds[0].ID != bad {
		t.Errorf("due after the pass: %+v (%v), want only %s", ds, err, bad)
	}
}

// lineCounter counts the log lines that hold a string; Run logs from its own
// goroutine.
type lineCounter struct {
	mu   sync.Mutex
	sub  string
	hits int
}

func (w *lineCounter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.hits += strings.Count(string(p), w.sub)
	return len(p), nil
}

func (w *lineCounter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hits
}

// TestSchedulerPagesPastItemsItCannotExpire: more due items than one read
// of the due view (256) fail on every pass, and an invoice due after them
// must still expire. A pass used to read the first 256 items again and
// again and stop when none of them expired, so nothing behind them ever
// did. Run must still back off (not spin) while they keep failing, and a
// pass must try each of them once.
func TestSchedulerPagesPastItemsItCannotExpire(t *testing.T) {
	ctx := context.Background()
	clock := &manualClock{now: t0}
	store, svc, views, meta := shopWithViews(t, clock)
	const stuck = 300
	ids := make(chan string, stuck)
	var wg sync.WaitGroup
	for i := range stuck {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inv, err := svc.CreateInvoice(ctx, commands.CreateInvoice{Meta: meta(), InvoiceID: ulid.Make(), MerchantID: "m1", Amount: "10.00",
				Currency: "UAH", ExternalID: "stuck-" + strconv.Itoa(i), Rate: dec("41.5")})
			if err != nil {
				t.Error(err)
				return
			}
			ids <- commands.StreamID(commands.StreamInvoice, inv.InvoiceID)
		}()
	}
	wg.Wait()
	close(ids)
	if t.Failed() {
		t.FailNow()
	}
	clock.Advance(time.Minute)
	late, err := svc.CreateInvoice(ctx, commands.CreateInvoice{Meta: meta(), InvoiceID: ulid.Make(), MerchantID: "m1", Amount: "10.00",
		Currency: "UAH", ExternalID: "late", Rate: dec("41.5")})
	if err != nil {
		t.Fatal(err)
	}
	var streams []string
	for id := range ids {
		streams = append(streams, id)
	}
	poisonStreams(t, store, commands.StreamID(commands.StreamInvoice, late.InvoiceID), streams...)
	clock.Advance(time.Hour)
	if ds, err := views.Due(clock.Now(), projections.Due{}, 0); err != nil || len(ds) != stuck+1 || ds[stuck].ID != late.InvoiceID {
		t.Fatalf("due: %d items (%v), want the %d stuck ones first, then %s", len(ds), err, stuck, late.InvoiceID)
	}

	logs := &lineCounter{sub: "msg=expire "}
	sched := commands.NewScheduler(svc, viewsDue{views}, clock, slog.New(slog.NewTextHandler(logs, nil)))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sched.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// One pass, then Run waits a second of the clock's before the next.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if at, ok := clock.nextWake(); ok {
			if want := clock.Now().Add(time.Second); !at.Equal(want) {
				t.Fatalf("Run sleeps until %v, want the back-off to %v", at, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not finish a pass and back off")
		}
		time.Sleep(time.Millisecond) // poll interval of a condition with a deadline
	}
	got, err := svc.LoadInvoice(ctx, "", late.InvoiceID)
	if err != nil || got.Status != commands.InvoiceStatusExpired {
		t.Fatalf("invoice behind %d stuck ones: %v (%v), want expired", stuck, got.Status, err)
	}
	if n := logs.count(); n != stuck {
		t.Fatalf("%d failures logged in the first pass, want each of the %d stuck invoices once", n, stuck)
	}
}

// newInvoice creates a 10.00 UAH invoice of m1's and returns its id.
func newInvoice(t *testing.T, svc *commands.Service, meta func() commands.Meta, ext string) string {
	t.Helper()
	inv, err := svc.CreateInvoice(context.Background(), commands.CreateInvoice{Meta: meta(), InvoiceID: ulid.Make(), MerchantID: "m1", Amount: "10.00",
		Currency: "UAH", ExternalID: ext, Rate: dec("41.5")})
	if err != nil {
		t.Fatal(err)
	}
	return inv.InvoiceID
}

// healStream undoes poisonStreams for stream: its first index entry points
// at its own first event again.
func healStream(t *testing.T, store *boltlog.Store, stream string, seq uint64) {
	t.Helper()
	if err := store.DB().Update(func(tx *bbolt.Tx) error {
		k := binary.BigEndian.AppendUint64(append([]byte(stream), 0), 1)
		return tx.Bucket([]byte("index")).Put(k, binary.BigEndian.AppendUint64(nil, seq))
	}); err != nil {
		t.Fatal(err)
	}
}

// waitForSleep waits until Run, on its own goroutine, sleeps on the clock,
// and returns until when.
func waitForSleep(t *testing.T, clock *manualClock) time.Time {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if at, ok := clock.nextWake(); ok {
			return at
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not finish a pass and sleep")
		}
		time.Sleep(time.Millisecond) // poll interval of a condition with a deadline
	}
}

// TestSchedulerBacksOffAFailingItem: an invoice that cannot be expired (its
// stream damaged) used to be tried, counted and logged on every pass, about
// once a second, for ever. It must be tried once per backoff step of its
// own, 1 s doubling to 5 min, while other items expire on time; Run must
// sleep until its retry, or until an item falls due before it; and a
// success forgets the backoff.
func TestSchedulerBacksOffAFailingItem(t *testing.T) {
	ctx := context.Background()
	clock := &manualClock{now: t0}
	store, svc, views, meta := shopWithViews(t, clock)
	invoice := func(ext string) string { return newInvoice(t, svc, meta, ext) }
	bad, good := invoice("bad"), invoice("good")
	badStream := commands.StreamID(commands.StreamInvoice, bad)
	evs, err := store.ReadStream(ctx, badStream, 1)
	if err != nil {
		t.Fatal(err)
	}
	poisonStreams(t, store, commands.StreamID(commands.StreamInvoice, good), badStream)
	clock.Advance(time.Hour)

	logs := &lineCounter{sub: "id=" + bad}
	sched := commands.NewScheduler(svc, viewsDue{views}, clock, slog.New(slog.NewTextHandler(logs, nil)))
	tries := 0
	// try runs a pass and checks whether it tried the bad invoice.
	try := func(want bool) {
		t.Helper()
		n, err := sched.RunOnce(ctx)
		if want {
			tries++
		}
		if tried := err != nil; tried != want || n != 0 {
			t.Fatalf("pass at +%v: expired %d, err %v; want the bad invoice tried: %t", clock.Now().Sub(t0.Add(time.Hour)), n, err, want)
		}
		if st := sched.Stats(); st.Failed != uint64(tries) || st.Retrying != 1 {
			t.Fatalf("stats %+v after %d tries, want %[2]d failed and 1 retrying", st, tries)
		}
		if l := logs.count(); l != tries {
			t.Fatalf("bad invoice logged %d times in %d tries", l, tries)
		}
	}
	if n, err := sched.RunOnce(ctx); n != 1 || !errors.Is(err, ledger.ErrCorrupt) {
		t.Fatalf("first pass: expired %d (%v), want the good invoice and the bad one's error", n, err)
	}
	tries = 1
	try(false)
	for _, step := range []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300} {
		clock.Advance(step*time.Second - time.Millisecond)
		try(false)
		clock.Advance(time.Millisecond)
		try(true)
	}

	// Run sleeps until the retry (5 min away), not a second...
	runSleep := func() time.Time {
		t.Helper()
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- sched.Run(runCtx) }()
		at := waitForSleep(t, clock)
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		clock.dropWaiters() // the stopped Run's sleep
		return at
	}
	clock.Advance(4*time.Minute + 30*time.Second)
	if at, want := runSleep(), clock.Now().Add(30*time.Second); !at.Equal(want) {
		t.Fatalf("Run sleeps until %v, want the retry at %v", at, want)
	}
	// ...or until an item that falls due before the retry.
	w, err := svc.CreateWidget(ctx, commands.CreateWidget{Meta: meta(), MerchantID: "m1", NewID: ulid.Make(), Kind: commands.WidgetUnlimited,
		ExpiresAt: clock.Now().Add(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if at, want := runSleep(), w.ExpiresAt; !at.Equal(want) {
		t.Fatalf("Run sleeps until %v, want the widget's expiry at %v", at, want)
	}

	// Repaired, the invoice expires at its next try, and its backoff goes.
	healStream(t, store, badStream, evs[0].Seq)
	clock.Advance(30 * time.Second)
	if n, err := sched.RunOnce(ctx); n != 2 || err != nil {
		t.Fatalf("pass after repair: expired %d (%v), want the invoice and the widget", n, err)
	}
	if st := sched.Stats(); st.Retrying != 0 || st.Failed != uint64(tries) {
		t.Errorf("stats after repair %+v", st)
	}
}

// TestSchedulerWakesForNewItems: a Run asleep until its next due item, or
// for its longest wait, looks again when something is created that may
// expire sooner, whichever adapter created it. Before, only the API's
// invoice creations woke it: a widget created with an expires_at in ten
// seconds, or an invoice made on the hosted widget page, waited out the
// sleep (up to a minute) before it expired.
func TestSchedulerWakesForNewItems(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	clock := &manualClock{now: t0}
	_, svc, views, meta := shopWithViews(t, clock)
	var created atomic.Int32
	svc.OnDue(func() { created.Add(1) })
	sched := commands.NewScheduler(svc, viewsDue{views}, clock, nil)
	done := make(chan error, 1)
	go func() { done <- sched.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Nothing is due: Run sleeps for its longest wait.
	waitFor("the scheduler sleeps a minute", func() bool {
		at, ok := clock.nextWake()
		return ok && at.Equal(t0.Add(time.Minute))
	})

	expiresAt := t0.Add(10 * time.Second)
	w, err := svc.CreateWidget(ctx, commands.CreateWidget{Meta: meta(), MerchantID: "m1", NewID: ulid.Make(),
		Kind: commands.WidgetUnlimited, ExpiresAt: expiresAt})
	if err != nil {
		t.Fatal(err)
	}
	waitFor("the scheduler waits for the new widget's expiry", func() bool {
		at, ok := clock.nextWake()
		return ok && at.Equal(expiresAt)
	})
	clock.Advance(10 * time.Second)
	waitFor("the widget expires", func() bool {
		got, err := svc.LoadWidget(ctx, "m1", w.WidgetID)
		return err == nil && got.Status == commands.WidgetStatusExpired
	})

	// Every creation path tells the hooks: API invoice, e-invoice, widget
	// invoice (the hosted page's path), widget.
	w2, err := svc.CreateWidget(ctx, commands.CreateWidget{Meta: meta(), MerchantID: "m1", NewID: ulid.Make(), Kind: commands.WidgetUnlimited})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateInvoice(ctx, commands.CreateInvoice{Meta: meta(), InvoiceID: ulid.Make(), MerchantID: "m1", Amount: "10.00",
		Currency: "UAH", ExternalID: "o-1", Rate: dec("41.5")}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateEInvoice(ctx, commands.CreateEInvoice{Meta: meta(), InvoiceID: ulid.Make(), MerchantID: "m1", PaymentID: "p-1",
		Method: "visamaster.uah", Amount: "100.00", Description: "d", Sender: "4444111144441111", Rate: dec("41.50")}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateWidgetInvoice(ctx, commands.CreateWidgetInvoice{Meta: meta(), InvoiceID: ulid.Make(), WidgetID: w2.WidgetID,
		Amount: "250.00", Method: "visamaster.uah", Rate: dec("41.50")}); err != nil {
		t.Fatal(err)
	}
	if got := created.Load(); got != 5 {
		t.Errorf("OnDue hooks called %d times for 5 creations", got)
	}
	// A refused creation tells nobody.
	if _, err := svc.CreateInvoice(ctx, commands.CreateInvoice{Meta: meta(), InvoiceID: ulid.Make(), MerchantID: "m1", Amount: "10.00",
		Currency: "UAH", ExternalID: "o-1", Rate: dec("41.5")}); !errors.Is(err, commands.ErrDuplicateExternalID) {
		t.Fatalf("duplicate external_id: %v", err)
	}
	if got := created.Load(); got != 5 {
		t.Errorf("OnDue hooks called %d times after a refused creation, want 5", got)
	}
}
