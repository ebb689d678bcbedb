// Package boltlog is payledger's durable event log: hash-chained records in a
// bbolt file, appended with optimistic concurrency and group commit, read by
// stream or from a global sequence, and verified end to end.
//
// An append is acknowledged only after the bbolt transaction that holds it has
// been committed and fsynced. Concurrent appends queue for one writer goroutine,
// which takes everything queued into one transaction: the next commit starts as
// soon as the previous one ends, with no timer. Inline projectors maintain read
// models inside that same transaction, so a view is never behind the log.
package boltlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/payledger/payledger/ledger"
)

// Bucket names of the log. Persisted: never rename.
var (
	bucketLog    = []byte("log")    // seq (8, BE) -> record
	bucketIndex  = []byte("index")  // stream 0x00 version (8, BE) -> seq (8, BE)
	bucketClaims = []byte("claims") // claim key -> stream
	bucketMeta   = []byte("meta")   // "format" -> 1 byte; "head" -> seq (8) + hash (32)

	keyFormat = []byte("format")
	keyHead   = []byte("head")
)

// Projector maintains a read model inside the log's write transaction.
//
// Init runs once when the store opens, in a write transaction: it creates its
// buckets and returns the sequence its view has applied up to (0 for a fresh
// view). The store then applies every later event, so a projector added to an
// existing log, or one whose buckets were dropped, catches up before the first
// append.
//
// Apply receives the events of one append, of one Import or of one batch of
// a catch-up (in sequence order; a batch of a catch-up may end anywhere) in
// the same transaction that stores them, and records its checkpoint there.
// It must be deterministic and depend only on the events and its own
// buckets. An error rolls back that append alone: the others in the commit
// group go ahead. A projector that must know an append's events from the
// others implements AppendProjector.
type Projector interface {
	Init(tx *bbolt.Tx) (applied uint64, err error)
	Apply(tx *bbolt.Tx, events []ledger.Event) error
}

// AppendProjector is a Projector told when its events are exactly one
// append's. For an append (Append, AppendWrites) the store calls
// ApplyAppend instead of Apply, so that a projector can refuse an append
// that ends where its writer's appends never end; a catch-up's batches and
// an Import's events, whose ends are not appends' ends, still go to Apply.
// ApplyAppend has Apply's contract otherwise.
type AppendProjector interface {
	Projector
	ApplyAppend(tx *bbolt.Tx, events []ledger.Event) error
}

// Options configures a Store. The zero value is the default.
type Options struct {
	// MaxBatch bounds how many appends share one commit. Default 8192.
	MaxBatch int
	// OpenTimeout bounds the wait for another process's file lock. Default 5s.
	OpenTimeout time.Duration
	// InitialMmapSize is bbolt's initial memory map, which avoids remapping as
	// the file grows. Default 256 MiB.
	InitialMmapSize int
	// Projectors run inside every write transaction, in order.
	Projectors []Projector
	// OnCommit, if set, is called after each commit with the number of events
	// and appends it held and how long the commit took (for metrics).
	OnCommit func(events, appends int, took time.Duration)
	// ReadOnly opens an existing log for reading (verify, export) with a
	// shared lock: it never creates or changes the file, runs no projectors,
	// and refuses appends with ErrReadOnly. A damaged tail does not stop a
	// read-only Open: Verify names it.
	ReadOnly bool
}

// Store is the durable event log. It is safe for concurrent use.
type Store struct {
	db   *bbolt.DB
	opts Options

	// closeMu guards closed and the send on reqs, so Close cannot close reqs
	// under a sender.
	closeMu sync.RWMutex
	closed  bool
	reqs    chan *request
	done    chan struct{}
	wg      sync.WaitGroup

	headMu sync.Mutex
	head   ledger.Head
	notify chan struct{}
	// commitTx commits the writer's transactions: (*bbolt.Tx).Commit, which
	// tests replace to fail a commit before or after it became visible.
	commitTx func(*bbolt.Tx) error
	// failed is set, once, when a commit failed after bbolt had already
	// made it visible (its meta page written, the sync of it not): what is
	// on disk is unknown until the file is reopened, so every later append
	// is refused with it. Atomic: the HTTP server reads it on every request.
	failed atomic.Pointer[error]
}

type request struct {
	writes  []ledger.Write
	imports []ledger.Event // committed events from elsewhere (restore, re-import)
	events  []ledger.Event
	err     error
	dropped bool // failed after writing began; excluded when the group is redone
	done    chan struct{}
}

// Open opens (or creates) the log at path.
//
// Errors: ErrLocked when another process holds the file past
// Options.OpenTimeout; ErrTruncated for a file shorter than its pages;
// ledger.ErrUnsupportedVersion for a log written by a newer format;
// ErrNotLog for an empty file or a bbolt file that is not a log (a
// writable open makes a new log only of a missing file or of a bbolt file
// with no bucket); ledger.ErrCorrupt (as a
// *ledger.VerifyError naming the sequence) when the stored head does not
// match an intact last record, or the log bucket's last key is not a
// sequence; ErrDamaged (also ledger.ErrCorrupt) when a page it reads is
// damaged; a projector's Init or catch-up error; or the file's I/O error.
func Open(path string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 8192
	}
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = 5 * time.Second
	}
	if o.InitialMmapSize <= 0 {
		o.InitialMmapSize = 256 << 20
	}
	switch fi, err := os.Stat(path); {
	case err != nil: // a new log, or bbolt's open says what is wrong
	case fi.Size() == 0:
		// A copy that got none of its bytes, or a file someone else made:
		// never a log (bbolt writes a new file's first pages before its
		// open returns), so not made into one. A read-only bbolt open
		// would fail on it with "bad file descriptor".
		return nil, fmt.Errorf("open log %s: %w: the file is empty (a copy that got none of its bytes; or a first start cut off before it wrote anything: then remove the file)", path, ErrNotLog)
	case fi.Size() > 0 && !o.ReadOnly:
		// bbolt's read-write open reads the freelist page, which a
		// truncated file may not have: check the size read-only first.
		db, err := openBolt(path, o, true)
		if err != nil {
			return nil, err
		}
		if err := db.Close(); err != nil {
			return nil, fmt.Errorf("open log %s: %w", path, err)
		}
	}
	db, err := openBolt(path, o, o.ReadOnly)
	if err != nil {
		return nil, err
	}
	s := &Store{
		db:       db,
		opts:     o,
		reqs:     make(chan *request, 4096),
		done:     make(chan struct{}),
		notify:   make(chan struct{}),
		commitTx: (*bbolt.Tx).Commit,
	}
	if o.ReadOnly {
		err = s.view(s.initReadOnly)
	} else {
		err = guardRead(s.init)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open log %s: %w", path, err)
	}
	if !o.ReadOnly {
		s.wg.Add(1)
		go s.run()
	}
	return s, nil
}

// openBolt opens the bbolt file and checks its size.
func openBolt(path string, o Options, readOnly bool) (*bbolt.DB, error) {
	// A read-write open reads the freelist page: a damaged one panics in
	// bbolt.Open, once it has opened, locked and mapped the file, and the
	// DB it was building, which would close it, is lost. So the file bbolt
	// opens is kept here, to unlock and close should that happen: a later
	// open in this process must not wait for the lock. Only the memory
	// map stays (address space, not memory) until the process ends.
	var (
		db   *bbolt.DB
		file *os.File
	)
	err := guardRead(func() (err error) {
		db, err = bbolt.Open(path, 0o600, &bbolt.Options{
			Timeout:         o.OpenTimeout,
			FreelistType:    bbolt.FreelistMapType,
			InitialMmapSize: o.InitialMmapSize,
			ReadOnly:        readOnly,
			OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
				f, err := os.OpenFile(name, flag, perm)
				file = f
				return f, err
			},
		})
		return err
	})
	if isDamage(err) && file != nil {
		unlockFile(file)
		file.Close()
	}
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open log %s: %w (waited %s; is a payledger server using it?)", path, ErrLocked, o.OpenTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", path, err)
	}
	if err := checkFileSize(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open log %s: %w", path, err)
	}
	return db, nil
}

// checkFileSize refuses a file shorter than the pages its meta page
// counts. bbolt maps the file without checking that: the first read of a
// page past its end would kill the process with SIGBUS.
func checkFileSize(db *bbolt.DB) error {
	fi, err := os.Stat(db.Path())
	if err != nil {
		return err
	}
	return guardRead(func() error {
		return db.View(func(tx *bbolt.Tx) error {
			if need := tx.Size(); fi.Size() < need {
				return fmt.Errorf("%w: %d bytes, its pages need %d (a copy cut short?)", ErrTruncated, fi.Size(), need)
			}
			return nil
		})
	})
}

// initReadOnly checks the format and loads the head, changing nothing.
func (s *Store) initReadOnly(tx *bbolt.Tx) error {
	for _, name := range [][]byte{bucketLog, bucketIndex, bucketClaims, bucketMeta} {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("%w: no %q bucket", ErrNotLog, name)
		}
	}
	meta := tx.Bucket(bucketMeta)
	if err := checkFormat(meta.Get(keyFormat)); err != nil {
		return err
	}
	h, err := readHead(meta)
	s.head = h
	return err
}

func checkFormat(f []byte) error {
	if len(f) != 1 || f[0] != ledger.FormatV1 {
		return fmt.Errorf("%w: log format %v (this build reads %d)", ledger.ErrUnsupportedVersion, f, ledger.FormatV1)
	}
	return nil
}

func readHead(meta *bbolt.Bucket) (ledger.Head, error) {
	var h ledger.Head
	b := meta.Get(keyHead)
	if b == nil {
		return h, nil
	}
	if len(b) != 40 {
		return h, fmt.Errorf("%w: head record of %d bytes", ledger.ErrCorrupt, len(b))
	}
	h.Seq = binary.BigEndian.Uint64(b)
	copy(h.Hash[:], b[8:])
	return h, nil
}

func (s *Store) init() error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		// A file with no bucket is new (its first transaction is this one);
		// one with buckets but no meta is another bbolt file (a webhooks
		// store, a replay's views): neither made into a log nor changed.
		if tx.Bucket(bucketMeta) == nil {
			if k, _ := tx.Cursor().First(); k != nil {
				return fmt.Errorf("%w: no %q bucket, and a %q one (another program's bbolt file?)", ErrNotLog, bucketMeta, k)
			}
		} else if tx.Bucket(bucketMeta).Get(keyFormat) == nil {
			return fmt.Errorf("%w: a %q bucket with no format", ErrNotLog, bucketMeta)
		}
		for _, name := range [][]byte{bucketLog, bucketIndex, bucketClaims, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		f := meta.Get(keyFormat)
		if f == nil { // a new log
			f = []byte{ledger.FormatV1}
			if err := meta.Put(keyFormat, f); err != nil {
				return err
			}
		}
		if err := checkFormat(f); err != nil {
			return err
		}
		h, err := readHead(meta)
		if err != nil {
			return err
		}
		s.head = h
		// The head must be the last record, and that record must be intact:
		// appending after a damaged tail would chain onto a bad hash.
		k, v := tx.Bucket(bucketLog).Cursor().Last()
		switch {
		case k == nil && s.head.Seq != 0:
			return &ledger.VerifyError{Seq: 1, Reason: fmt.Sprintf("head at %d but the log is empty", s.head.Seq), Err: ledger.ErrCorrupt}
		case k != nil:
			key, err := logSeq(k)
			if err != nil {
				return &ledger.VerifyError{Seq: s.head.Seq + 1, Reason: "last key: " + err.Error(), Err: ledger.ErrCorrupt}
			}
			seq, _, _, hash, err := ledger.CheckRecord(v)
			if err != nil {
				class := ledger.ErrCorrupt
				if errors.Is(err, ledger.ErrUnsupportedVersion) {
					class = ledger.ErrUnsupportedVersion
				}
				return &ledger.VerifyError{Seq: key, Reason: "last record: " + err.Error(), Err: class}
			}
			if seq != key || seq != s.head.Seq || hash != s.head.Hash {
				return &ledger.VerifyError{Seq: min(key, s.head.Seq+1), Reason: fmt.Sprintf("head (%d) does not match the last record (%d under key %d)", s.head.Seq, seq, key), Err: ledger.ErrCorrupt}
			}
		}
		for i, p := range s.opts.Projectors {
			applied, err := p.Init(tx)
			if err != nil {
				return fmt.Errorf("projector %d: init: %w", i, err)
			}
			if err := catchUp(tx, p, applied, s.head.Seq); err != nil {
				return fmt.Errorf("projector %d: catch up from %d: %w", i, applied, err)
			}
		}
		return nil
	})
}

// catchUpBatch is how many events one Apply of a catch-up gets.
const catchUpBatch = 1024

// catchUp applies the events after applied to p in batches of catchUpBatch
// (the grouping of the original appends is not recorded, and a projector's
// result does not depend on it: Rebuild applies large batches too).
func catchUp(tx *bbolt.Tx, p Projector, applied, head uint64) error {
	if applied >= head {
		return nil
	}
	c := tx.Bucket(bucketLog).Cursor()
	batch := make([]ledger.Event, 0, catchUpBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := p.Apply(tx, batch); err != nil {
			return fmt.Errorf("sequences %d-%d: %w", batch[0].Seq, batch[len(batch)-1].Seq, err)
		}
		clear(batch)
		batch = batch[:0]
		return nil
	}
	for k, v := c.Seek(seqKey(applied + 1)); k != nil; k, v = c.Next() {
		seq, err := logSeq(k)
		if err != nil {
			return err
		}
		e, err := ledger.Decode(v)
		if err != nil {
			return fmt.Errorf("sequence %d: %w", seq, err)
		}
		batch = append(batch, e)
		if len(batch) == catchUpBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// Close stops accepting appends, commits the ones already queued, and closes
// the file.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	if !s.opts.ReadOnly {
		close(s.reqs)
	}
	s.closeMu.Unlock()
	s.wg.Wait()
	close(s.done)
	return s.db.Close()
}

// DB is the underlying bbolt database, for projections that read their views.
// Writes must go through Append.
func (s *Store) DB() *bbolt.DB { return s.db }

// Path is the log's file.
func (s *Store) Path() string { return s.db.Path() }

// Head returns the last committed position.
func (s *Store) Head() ledger.Head {
	s.headMu.Lock()
	defer s.headMu.Unlock()
	return s.head
}

// Wait blocks until the log's head is past seq and returns the head. It
// returns ctx.Err() if ctx ends first and ledger.ErrClosed if the store closes.
func (s *Store) Wait(ctx context.Context, seq uint64) (ledger.Head, error) {
	for {
		s.headMu.Lock()
		h, ch := s.head, s.notify
		s.headMu.Unlock()
		if h.Seq > seq {
			return h, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return h, ctx.Err()
		case <-s.done:
			return h, ledger.ErrClosed
		}
	}
}

// Append atomically appends events to one stream if the stream is at the
// expected version, and returns them as committed (sequence, version, hashes).
// It returns after the commit is fsynced.
//
// Errors: *ledger.ConflictError (ledger.ErrVersionConflict),
// *ledger.ClaimError (ledger.ErrClaimed), ledger.ErrInvalidEvent,
// ledger.ErrClosed, ledger.ErrFailed, or the I/O error of a failed commit.
// On any error but ledger.ErrFailed nothing of this append was written; with
// ledger.ErrFailed whether it was is known only after the log is reopened.
func (s *Store) Append(ctx context.Context, stream string, expected ledger.Expected, events ...ledger.NewEvent) ([]ledger.Event, error) {
	return s.AppendWrites(ctx, ledger.Write{Stream: stream, Expected: expected, Events: events})
}

// AppendWrites appends to several streams atomically: every write's expected
// version must hold, or nothing is written. A write with no events is a pure
// condition on its stream's version. The returned events are in the order of
// the writes. The context bounds only the wait to enter the queue: once queued,
// an append is committed or refused, and AppendWrites reports which.
//
// Errors: as Append.
func (s *Store) AppendWrites(ctx context.Context, writes ...ledger.Write) ([]ledger.Event, error) {
	n := 0
	var seen map[string]struct{} // only for appends to many streams
	if len(writes) > 8 {
		seen = make(map[string]struct{}, len(writes))
	}
	for i, w := range writes {
		dup := false
		if seen != nil {
			_, dup = seen[w.Stream]
			seen[w.Stream] = struct{}{}
		} else {
			for _, earlier := range writes[:i] {
				dup = dup || earlier.Stream == w.Stream
			}
		}
		if dup {
			return nil, fmt.Errorf("%w: stream %q written twice in one append", ledger.ErrInvalidEvent, w.Stream)
		}
		if w.Expected < ledger.Any {
			return nil, fmt.Errorf("%w: expected version %d", ledger.ErrInvalidEvent, w.Expected)
		}
		for i := range w.Events {
			if err := ledger.ValidateNew(w.Stream, &w.Events[i]); err != nil {
				return nil, err
			}
		}
		n += len(w.Events)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: append of no events", ledger.ErrInvalidEvent)
	}
	return s.submit(ctx, &request{writes: writes, done: make(chan struct{})})
}

// Import appends events that were committed elsewhere (a restore from the
// stream, a re-imported export), keeping their ids, positions and hashes.
// They must continue this log's chain exactly: the next sequence, the head's
// hash as previous hash, each stream's next version, and a hash that matches
// their contents. Claims are taken as recorded.
//
// Errors: *ledger.VerifyError (ledger.ErrChainBroken or ledger.ErrCorrupt)
// naming the first event that does not fit, ledger.ErrClosed, or an I/O error.
// On any error nothing of this import was written.
func (s *Store) Import(ctx context.Context, events []ledger.Event) error {
	if len(events) == 0 {
		return nil
	}
	_, err := s.submit(ctx, &request{imports: events, done: make(chan struct{})})
	return err
}

func (s *Store) submit(ctx context.Context, r *request) ([]ledger.Event, error) {
	if s.opts.ReadOnly {
		return nil, ErrReadOnly
	}
	if err := ctx.Err(); err != nil {
		return nil, err // select below would pick at random when both are ready
	}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return nil, ledger.ErrClosed
	}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return nil, ctx.Err()
	}
	s.closeMu.RUnlock()
	<-r.done
	return r.events, r.err
}

// run is the single writer: it takes every queued append into one
// transaction and commits it.
func (s *Store) run() {
	defer s.wg.Done()
	batch := make([]*request, 0, 256)
	a := &arena{}
	for first := range s.reqs {
		batch = s.takeQueued(append(batch[:0], first))
		batch = s.commit(batch, a)
		clear(batch) // let the answered requests go
	}
}

// takeQueued adds to batch whatever appends are queued now, without waiting.
// (If the queue has been closed, the run loop sees that itself.)
func (s *Store) takeQueued(batch []*request) []*request {
	for len(batch) < s.opts.MaxBatch {
		select {
		case r, ok := <-s.reqs:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// retryError marks a request whose failure was found after it had started
// writing into the transaction: the transaction must be redone without it.
type retryError struct{ err error }

func (e *retryError) Error() string { return e.err.Error() }

func (s *Store) commit(batch []*request, a *arena) []*request {
	start := time.Now()
	if err := s.Failed(); err != nil {
		s.failAll(batch, err)
		return batch
	}
	for {
		live := 0
		for _, r := range batch {
			if !r.dropped {
				live++
			}
		}
		if live == 0 {
			for _, r := range batch {
				close(r.done)
			}
			return batch
		}
		tx, err := s.db.Begin(true)
		if err != nil {
			s.failAll(batch, fmt.Errorf("begin append transaction: %w", err))
			return batch
		}
		head := s.Head()
		redo := false
		nEvents, nAppends := 0, 0
		for i := 0; i < len(batch) && !redo; i++ {
			r := batch[i]
			if r.err == nil {
				var evs []ledger.Event
				if r.imports != nil {
					evs, err = s.importEvents(tx, r.imports, &head, a)
				} else {
					evs, err = s.write(tx, r.writes, &head, a)
				}
				var retry *retryError
				switch {
				case errors.As(err, &retry):
					r.err = retry.err
					r.dropped = true
					redo = true
				case err != nil:
					r.err = err // refused before anything was written
				default:
					r.events = evs
					nEvents += len(evs)
					nAppends++
				}
			}
			if i == len(batch)-1 && !redo {
				// Before paying for the fsync, take in the appends that
				// arrived while this transaction was being written: no
				// timer, just no commit with work left in the queue.
				batch = s.takeQueued(batch)
			}
		}
		if redo {
			// Judge every other append afresh: a conflict with a dropped
			// append's writes was not a real one.
			_ = tx.Rollback()
			for _, r := range batch {
				r.events = nil
				if !r.dropped {
					r.err = nil
				}
			}
			continue
		}
		if nAppends == 0 {
			_ = tx.Rollback()
			for _, r := range batch {
				close(r.done)
			}
			return batch
		}
		var hk [40]byte
		binary.BigEndian.PutUint64(hk[:], head.Seq)
		copy(hk[8:], head.Hash[:])
		if err := tx.Bucket(bucketMeta).Put(keyHead, hk[:]); err != nil {
			_ = tx.Rollback()
			s.failAll(batch, fmt.Errorf("append: %w", err))
			return batch
		}
		if err := s.commitTx(tx); err != nil {
			if err := s.checkFailedCommit(err, head); err != nil {
				s.failAll(batch, err)
				return batch
			}
			s.failAll(batch, fmt.Errorf("commit append: %w", err))
			return batch
		}
		s.headMu.Lock()
		s.head = head
		close(s.notify)
		s.notify = make(chan struct{})
		s.headMu.Unlock()
		if s.opts.OnCommit != nil {
			s.opts.OnCommit(nEvents, nAppends, time.Since(start))
		}
		for _, r := range batch {
			close(r.done)
		}
		return batch
	}
}

// checkFailedCommit looks at what a failed commit left visible. bbolt
// writes a commit's meta page, then syncs it; if that sync fails, the
// commit is already what every later transaction reads (and may or may not
// be on the disk). Building on it would mean acknowledging appends on top
// of a state the disk may not have, and writing them from the old head
// would overwrite records that later transactions see. So when the stored
// head is no longer the one this store holds, the store fails for good:
// the returned error (ledger.ErrFailed) answers this batch and every later
// append, and /readyz reports it. A commit that failed before its meta page
// (a full disk, a failed write or data sync) left nothing visible: nil, and
// appends go on.
func (s *Store) checkFailedCommit(commitErr error, attempted ledger.Head) error {
	old := s.Head()
	var stored ledger.Head
	readErr := s.view(func(tx *bbolt.Tx) error {
		var err error
		stored, err = readHead(tx.Bucket(bucketMeta)) // an empty log has none: the zero head
		return err
	})
	if readErr == nil && stored == old {
		return nil
	}
	err := fmt.Errorf("%w: commit of sequences %d to %d failed after it became visible (%w); reopen the log to see whether it is on disk",
		ledger.ErrFailed, old.Seq+1, attempted.Seq, commitErr)
	s.failed.CompareAndSwap(nil, &err)
	return *s.failed.Load()
}

// Failed returns the error that made the store refuse every append
// (ledger.ErrFailed), or nil while it works. Once it is set, bbolt (and so
// every reader of DB, such as the views) may already show a commit that is
// not on the disk: callers must not serve state read from the store until
// it is reopened. It is one atomic load, cheap enough for every request.
func (s *Store) Failed() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *Store) failAll(batch []*request, err error) {
	if !errors.Is(err, ledger.ErrFailed) && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) {
		// Name it, so callers can answer "try later" rather than "bug".
		err = fmt.Errorf("%w: %w", ledger.ErrStorageFull, err)
	}
	for _, r := range batch {
		if r.err == nil {
			r.err = err
			r.events = nil
		}
		close(r.done)
	}
}

// write checks one append against the transaction and, if it holds, writes
// it. A refusal found before any write returns the error itself; a failure
// after writing began returns *retryError.
func (s *Store) write(tx *bbolt.Tx, writes []ledger.Write, head *ledger.Head, a *arena) ([]ledger.Event, error) {
	index := tx.Bucket(bucketIndex)
	claims := tx.Bucket(bucketClaims)
	ic := index.Cursor()
	var small [4]uint64
	versions := small[:0]
	var claimed map[string]string
	for _, w := range writes {
		cur := streamVersion(ic, w.Stream, a)
		if w.Expected != ledger.Any && uint64(w.Expected) != cur {
			return nil, &ledger.ConflictError{Stream: w.Stream, Expected: w.Expected, Actual: cur}
		}
		versions = append(versions, cur)
		for _, e := range w.Events {
			for _, c := range e.Claims {
				holder := ""
				if h, ok := claimed[c]; ok {
					holder = h
				} else if h := claims.Get(a.key(c)); h != nil {
					holder = string(h)
				}
				if holder != "" && holder != w.Stream {
					return nil, &ledger.ClaimError{Key: c, Holder: holder}
				}
				if claimed == nil {
					claimed = make(map[string]string)
				}
				claimed[c] = w.Stream
			}
		}
	}
	// Checked: from here on a failure must undo the transaction.
	logB := tx.Bucket(bucketLog)
	logB.FillPercent = 1.0 // keys only ever grow
	n := 0
	for _, w := range writes {
		n += len(w.Events)
	}
	out := make([]ledger.Event, 0, n)
	pos := *head
	for i, w := range writes {
		v := versions[i]
		for j := range w.Events {
			pos.Seq++
			v++
			var e ledger.Event
			a.scratch, e = ledger.Seal(a.scratch[:0], w.Stream, pos.Seq, v, pos.Hash, &w.Events[j])
			pos.Hash = e.Hash
			if err := s.putEvent(logB, index, claims, &e, a); err != nil {
				return nil, &retryError{err}
			}
			out = append(out, e)
		}
	}
	if err := s.project(tx, out, true); err != nil {
		return nil, &retryError{err}
	}
	*head = pos
	return out, nil
}

// putEvent stores one sealed event (its encoding in a.scratch): the record,
// its index entry and its claims. Values go into the arena, as bbolt keeps
// them until the commit.
func (s *Store) putEvent(logB, index, claims *bbolt.Bucket, e *ledger.Event, a *arena) error {
	seq := a.copy(binary.BigEndian.AppendUint64(a.tmp[:0], e.Seq))
	if err := logB.Put(seq, a.copy(a.scratch)); err != nil {
		return fmt.Errorf("store sequence %d: %w", e.Seq, err)
	}
	if err := index.Put(indexKey(a, e.Stream, e.Version), seq); err != nil {
		return fmt.Errorf("index sequence %d: %w", e.Seq, err)
	}
	for _, c := range e.Claims {
		if err := claims.Put(a.key(c), a.copyString(e.Stream)); err != nil {
			return fmt.Errorf("claim %q: %w", c, err)
		}
	}
	return nil
}

// indexKey is stream 0x00 version(8), in the arena's scratch key (bbolt
// copies keys).
func indexKey(a *arena, stream string, version uint64) []byte {
	a.tmp = append(append(a.tmp[:0], stream...), 0)
	a.tmp = binary.BigEndian.AppendUint64(a.tmp, version)
	return a.tmp
}

// streamVersion is the stream's version in the transaction: the version of
// its last index entry (0 if none). Stream ids hold no NUL, so the stream's
// entries are exactly the keys from "stream\x00" up to "stream\x01".
func streamVersion(c *bbolt.Cursor, stream string, a *arena) uint64 {
	a.tmp = append(append(a.tmp[:0], stream...), 1)
	k, _ := c.Seek(a.tmp)
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if len(k) == len(stream)+9 && k[len(stream)] == 0 && string(k[:len(stream)]) == stream {
		return binary.BigEndian.Uint64(k[len(stream)+1:])
	}
	return 0
}

// arena hands out the bytes the writer stores in one commit group: bbolt
// keeps value slices until the commit, so each needs memory of its own, and
// one large allocation beats one per value.
type arena struct {
	buf     []byte
	scratch []byte // the record being sealed
	tmp     []byte // a key being built (bbolt copies keys)
}

const arenaChunk = 256 << 10

// copy returns a copy of p that stays valid after the arena moves on.
func (a *arena) copy(p []byte) []byte {
	if len(p) > cap(a.buf)-len(a.buf) {
		a.buf = make([]byte, 0, max(arenaChunk, len(p)))
	}
	a.buf = append(a.buf, p...)
	return a.buf[len(a.buf)-len(p) : len(a.buf) : len(a.buf)]
}

func (a *arena) copyString(s string) []byte {
	if len(s) > cap(a.buf)-len(a.buf) {
		a.buf = make([]byte, 0, max(arenaChunk, len(s)))
	}
	a.buf = append(a.buf, s...)
	return a.buf[len(a.buf)-len(s) : len(a.buf) : len(a.buf)]
}

// key returns s as bytes for a lookup or a key (bbolt copies keys).
func (a *arena) key(s string) []byte {
	a.tmp = append(a.tmp[:0], s...)
	return a.tmp
}

// importEvents checks committed events against the chain and stores them.
func (s *Store) importEvents(tx *bbolt.Tx, events []ledger.Event, head *ledger.Head, a *arena) ([]ledger.Event, error) {
	index := tx.Bucket(bucketIndex)
	claims := tx.Bucket(bucketClaims)
	ic := index.Cursor()
	pos := *head
	local := make(map[string]uint64)
	var claimed map[string]string // claims taken earlier in this import
	for i := range events {
		e := &events[i]
		if e.Seq != pos.Seq+1 {
			return nil, &ledger.VerifyError{Seq: pos.Seq + 1, Reason: fmt.Sprintf("import found sequence %d", e.Seq), Err: ledger.ErrChainBroken}
		}
		if e.PrevHash != pos.Hash {
			return nil, &ledger.VerifyError{Seq: e.Seq, Reason: "previous hash does not match the log's head", Err: ledger.ErrChainBroken}
		}
		cur, ok := local[e.Stream]
		if !ok {
			cur = streamVersion(ic, e.Stream, a)
		}
		if e.Version != cur+1 {
			return nil, &ledger.VerifyError{Seq: e.Seq, Reason: fmt.Sprintf("stream %q version %d follows %d", e.Stream, e.Version, cur), Err: ledger.ErrChainBroken}
		}
		local[e.Stream] = e.Version
		n := ledger.NewEvent{ID: e.ID, Type: e.Type, Time: e.Time, Merchant: e.Merchant, Correlation: e.Correlation, Claims: e.Claims, Data: e.Data}
		if err := ledger.ValidateNew(e.Stream, &n); err != nil {
			return nil, &ledger.VerifyError{Seq: e.Seq, Reason: err.Error(), Err: ledger.ErrCorrupt}
		}
		var sealed ledger.Event
		a.scratch, sealed = ledger.Seal(a.scratch[:0], e.Stream, e.Seq, e.Version, e.PrevHash, &n)
		if sealed.Hash != e.Hash {
			return nil, &ledger.VerifyError{Seq: e.Seq, Reason: "hash does not match the event's contents", Err: ledger.ErrCorrupt}
		}
		for _, c := range e.Claims {
			holder, ok := claimed[c]
			if !ok {
				if h := claims.Get(a.key(c)); h != nil {
					holder, ok = string(h), true
				}
			}
			if ok && holder != e.Stream {
				return nil, &ledger.VerifyError{Seq: e.Seq, Reason: fmt.Sprintf("claim %q already held by %q", c, holder), Err: ledger.ErrChainBroken}
			}
			if claimed == nil {
				claimed = make(map[string]string)
			}
			claimed[c] = e.Stream
		}
		pos = ledger.Head{Seq: e.Seq, Hash: e.Hash}
	}
	// Checked: write.
	logB := tx.Bucket(bucketLog)
	logB.FillPercent = 1.0
	out := make([]ledger.Event, len(events))
	for i := range events {
		e := events[i]
		n := ledger.NewEvent{ID: e.ID, Type: e.Type, Time: e.Time, Merchant: e.Merchant, Correlation: e.Correlation, Claims: e.Claims, Data: e.Data}
		a.scratch, e = ledger.Seal(a.scratch[:0], e.Stream, e.Seq, e.Version, e.PrevHash, &n)
		if err := s.putEvent(logB, index, claims, &e, a); err != nil {
			return nil, &retryError{err}
		}
		out[i] = e
	}
	if err := s.project(tx, out, false); err != nil {
		return nil, &retryError{err}
	}
	*head = pos
	return out, nil
}

// project runs the projectors over one append's events, or an import's
// (appended false: they go to Apply, not ApplyAppend). A panicking
// projector fails that append like an error would, instead of killing the
// writer goroutine and with it every other append.
func (s *Store) project(tx *bbolt.Tx, events []ledger.Event, appended bool) (err error) {
	for i, p := range s.opts.Projectors {
		func() {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("projector %d: panic: %v", i, r)
				}
			}()
			apply := p.Apply
			if ap, ok := p.(AppendProjector); ok && appended {
				apply = ap.ApplyAppend
			}
			if e := apply(tx, events); e != nil {
				err = fmt.Errorf("projector %d: %w", i, e)
			}
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// logSeq decodes a key of the log bucket: a sequence, 8 bytes big-endian.
// A key of any other length (bbolt lets any tool add one) is damage, and
// reading it as a sequence would read past its end or misplace its record.
//
// Errors: ledger.ErrCorrupt naming the bucket and the key's length.
func logSeq(k []byte) (uint64, error) {
	if len(k) != 8 {
		return 0, fmt.Errorf("%w: %q bucket key of %d bytes, not an 8-byte sequence", ledger.ErrCorrupt, bucketLog, len(k))
	}
	return binary.BigEndian.Uint64(k), nil
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

// Remove deletes a log file; for tests and for restore into a fresh file.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
