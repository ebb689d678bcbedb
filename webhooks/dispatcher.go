package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/projections"
)

// FileName is the dispatcher's database in a data directory.
const FileName = "webhooks.db"

// Dispatcher records, signs, attempts and retries webhook deliveries, and
// answers merchants' questions about them. Open it, Run it with a Source,
// Close it. Its merchant operations work whether or not it is running.
type Dispatcher struct {
	cfg    Config
	db     *bbolt.DB
	proj   projections.Projector
	client *http.Client

	// writeMu orders write transactions with the schedule changes they
	// imply, so memory follows the commits in their order.
	writeMu    sync.Mutex
	checkpoint atomic.Uint64
	// viewsAt is the last sequence the views hold; under writeMu. It is
	// never past the checkpoint, and behind it while views rebuilt after
	// an upgrade catch up: a source must start right after it.
	// installSched, set by Run while the views are behind the checkpoint,
	// starts the schedule once an ingest brings them to installAt.
	viewsAt      uint64
	installSched func() error
	installAt    uint64

	running atomic.Bool
	schedMu sync.Mutex
	sched   *scheduler // nil unless running

	signersMu sync.Mutex
	signers   map[string]*signer
	// signersGen counts the ingests that dropped signers: a signer read
	// from the views is cached only if none did while it was read.
	signersGen uint64

	disabledMu sync.RWMutex
	disabled   map[string]bool // merchant 0 url

	stats stats
}

// Open opens (or creates) the dispatcher's database at path.
//
// Errors: ErrConfig; ErrUnsupportedVersion or ErrCorrupt for a database
// this build cannot read; projections.ErrUnsupportedVersion; bbolt's (a
// timeout when another process holds the file).
func Open(path string, cfg Config) (*Dispatcher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:         cfg.OpenTimeout,
		FreelistType:    bbolt.FreelistMapType,
		InitialMmapSize: 64 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("open webhooks %s: %w", path, err)
	}
	d := &Dispatcher{
		// The views it reads back, without the indexes it never reads.
		proj: projections.Projector{ViewsOnly: true},
		cfg:  cfg, db: db, client: newClient(cfg),
		signers:  make(map[string]*signer),
		disabled: make(map[string]bool),
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		cp, err := initBuckets(tx)
		if err != nil {
			return err
		}
		projected, err := d.proj.Init(tx)
		if err != nil {
			return fmt.Errorf("views: %w", err)
		}
		if projected > cp {
			return fmt.Errorf("%w: views at %d are ahead of the checkpoint %d", ErrCorrupt, projected, cp)
		}
		d.checkpoint.Store(cp)
		d.viewsAt = projected
		return tx.Bucket(bDisabled).ForEach(func(k, _ []byte) error {
			d.disabled[string(k)] = true
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open webhooks %s: %w", path, err)
	}
	return d, nil
}

// Close closes the database. Run must have returned.
//
// Errors: ErrRunning, or bbolt's.
func (d *Dispatcher) Close() error {
	if d.running.Load() {
		return ErrRunning
	}
	return d.db.Close()
}

// Checkpoint is the last event sequence whose deliveries are recorded.
func (d *Dispatcher) Checkpoint() uint64 { return d.checkpoint.Load() }

// DB is the dispatcher's database, for inspection (payledger replay).
func (d *Dispatcher) DB() *bbolt.DB { return d.db }

// Ingest records the deliveries of committed events, in one transaction
// with the checkpoint. Events at or below the checkpoint are skipped, so a
// source may pass an event again. Sources call it; Run wires one up.
//
// Errors: ErrSequenceGap (an event past checkpoint+1), the projector's
// (projections.ErrInconsistent and the like), bbolt's.
func (d *Dispatcher) Ingest(events []ledger.Event) error {
	if len(events) == 0 {
		return nil
	}
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	var (
		res ingestResult
		w   *wtx
	)
	err := d.db.Update(func(tx *bbolt.Tx) error {
		w = newWtx(tx, &d.cfg, time.Now())
		var err error
		res, err = d.ingestTx(w, events)
		return err
	})
	if err != nil {
		return err
	}
	d.checkpoint.Store(res.checkpoint)
	if len(res.merchants) > 0 {
		d.signersMu.Lock()
		d.signersGen++
		for m := range res.merchants {
			delete(d.signers, m)
		}
		d.signersMu.Unlock()
	}
	d.afterCommit(w, nil)
	d.viewsAt = max(d.viewsAt, events[len(events)-1].Seq)
	if d.installSched != nil && d.viewsAt >= d.installAt {
		install := d.installSched
		d.installSched = nil
		return install()
	}
	return nil
}

// afterCommit applies a committed transaction's changes to memory: the
// disabled targets and the schedule. done are the keys whose attempts the
// transaction recorded.
func (d *Dispatcher) afterCommit(w *wtx, done []dkey) {
	if len(w.disabled) > 0 {
		d.disabledMu.Lock()
		for k, on := range w.disabled {
			if on {
				d.disabled[k] = true
			} else {
				delete(d.disabled, k)
			}
		}
		d.disabledMu.Unlock()
	}
	d.schedMu.Lock()
	s := d.sched
	d.schedMu.Unlock()
	if s != nil {
		s.apply(w.ops, done)
	}
}

func (d *Dispatcher) isDisabled(merchant, url string) bool {
	d.disabledMu.RLock()
	defer d.disabledMu.RUnlock()
	return d.disabled[disabledKey(merchant, url)]
}

// Run follows src from the dispatcher's checkpoint, records deliveries and
// attempts them, until ctx ends or src fails. Then it starts no attempt,
// lets those under way finish for up to Config.ShutdownGrace, records them,
// and aborts the rest: an aborted attempt is not recorded (it is no
// failure of the receiver's, and counts against no retry budget), and its
// delivery stays pending and due, so the next Run attempts it at once. On
// return no attempt is in flight.
//
// Errors: ErrRunning; the source's or Ingest's error; "load schedule"
// wrapping ErrCorrupt when the due index does not load, at the start or
// once views rebuilt after an upgrade are level with the checkpoint (the
// deliveries stay recorded and pending). nil when ctx ends.
func (d *Dispatcher) Run(ctx context.Context, src Source) error {
	if !d.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer d.running.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Attempts outlive ctx by up to the grace: abort ends them.
	actx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()

	results := make(chan result, 4096)
	var attempts sync.WaitGroup
	s := newScheduler(d.cfg.Concurrency, d.cfg.PerHostConcurrency, func(e *entry) {
		attempts.Add(1)
		go func() {
			defer attempts.Done()
			res := d.attempt(actx, e.key)
			res.host = e.host
			// The result goes to the writer before the slot is freed: a
			// writer that falls behind holds attempts back, rather than
			// freed slots starting more whose results wait on it; and
			// once no attempt holds a slot, the writer has every result.
			if !res.dropped {
				results <- res
			}
			d.schedMu.Lock()
			sc := d.sched
			d.schedMu.Unlock()
			if sc != nil {
				sc.done(e.host)
			}
		}()
	})
	var schedWG, writerWG sync.WaitGroup
	// install loads the due index and starts the schedule, under writeMu,
	// so no commit falls between the load and the installation.
	install := func() error {
		if err := d.db.View(func(tx *bbolt.Tx) error { return s.load(tx) }); err != nil {
			return fmt.Errorf("load schedule from %s: %w", d.db.Path(), err)
		}
		d.schedMu.Lock()
		d.sched = s
		d.schedMu.Unlock()
		schedWG.Add(1)
		go func() { defer schedWG.Done(); s.run(ctx) }()
		return nil
	}
	// An attempt signs with the merchant's secret and reads its URL from
	// the views. Views behind the checkpoint (an upgrade that changed
	// their format projects them again from the first event) would give
	// an old secret, or no merchant at all: the schedule waits for the
	// ingest that brings them level. If it fails there, Run ends with the
	// error whatever the source does with Ingest's: a source that hands
	// the batch again (FromStream's) would find the installation spent,
	// and Run would go on recording deliveries and attempting none.
	d.writeMu.Lock()
	var err, installErr error // installErr under writeMu
	from := d.viewsAt + 1
	if cp := d.checkpoint.Load(); d.viewsAt < cp {
		d.installSched = func() error {
			if err := install(); err != nil {
				installErr = err
				cancel()
				return err
			}
			return nil
		}
		d.installAt = cp
	} else {
		err = install()
	}
	d.writeMu.Unlock()
	if err != nil {
		return err
	}
	writerWG.Add(1)
	go func() { defer writerWG.Done(); d.writeResults(results) }()

	err = src.Follow(ctx, from, d.Ingest)
	d.writeMu.Lock()
	d.installSched = nil
	if installErr != nil {
		err = installErr
	}
	d.writeMu.Unlock()
	// Stop launching, give the attempts under way their grace, abort
	// those still under way, record what finished, then detach the
	// scheduler.
	cancel()
	s.stop()
	schedWG.Wait()
	finishAttempts(&attempts, d.cfg.ShutdownGrace, abort)
	close(results)
	writerWG.Wait()
	d.schedMu.Lock()
	d.sched = nil
	d.schedMu.Unlock()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// finishAttempts waits up to grace for the attempts under way, then
// aborts those left and waits for them to return.
func finishAttempts(attempts *sync.WaitGroup, grace time.Duration, abort context.CancelFunc) {
	done := make(chan struct{})
	go func() { attempts.Wait(); close(done) }()
	if grace > 0 {
		t := time.NewTimer(grace)
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
	}
	abort()
	<-done
}
