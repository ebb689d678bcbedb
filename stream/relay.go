package stream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
)

// Log is the committed event log the relay publishes from.
type Log interface {
	// Head is the last committed position.
	Head() ledger.Head
	// Wait blocks until the head passes seq.
	Wait(ctx context.Context, seq uint64) (ledger.Head, error)
	// ScanRaw calls fn with the encoded records from sequence from on.
	ScanRaw(ctx context.Context, from uint64, fn func(seq uint64, rec []byte) error) error
	// Get returns the event at a sequence.
	Get(seq uint64) (ledger.Event, error)
}

var _ Log = (*boltlog.Store)(nil)

// readChunk is how many events the relay reads in one log transaction.
const readChunk = 4096

// Relay publishes the committed log to the event stream, in order, each
// event exactly once, with stream sequence = log sequence.
//
// Every event is published asynchronously, at most MaxInFlight awaiting
// their acknowledgement, with Nats-Msg-Id = event id and
// Nats-Expected-Last-Sequence = its sequence - 1, so JetStream stores it
// only right after its predecessor: a re-sent event is refused or reported
// as a duplicate, never stored twice, and a lost one stops everything after
// it until it is re-sent. On any failure the relay waits in-flight
// acknowledgements out, backs off, reads the stream's last message, checks
// it against the log, and resumes after it. That stream state is its
// checkpoint: it survives restarts, and if JetStream loses unsynced writes
// in a crash the relay fills the gap.
type Relay struct {
	conn *Conn
	log  Log
	cfg  RelayConfig
	js   jetstream.JetStream

	pos      mark
	runOnce  sync.Once
	subjects map[subjectKey]string // used by Run's goroutine only
	// times are the event times of the chunk read (Run's goroutine only).
	times []time.Time
	done  chan struct{}
}

// NewRelay returns a relay from log to conn's event stream. Run starts it.
//
// Errors: ErrConfig without a connection or a log.
func NewRelay(conn *Conn, log Log, cfg RelayConfig) (*Relay, error) {
	if conn == nil || log == nil {
		return nil, fmt.Errorf("%w: a relay needs a connection and a log", ErrConfig)
	}
	cfg = cfg.withDefaults(conn.cfg.Logger)
	return &Relay{conn: conn, log: log, cfg: cfg, js: conn.js, done: make(chan struct{}), subjects: map[subjectKey]string{}}, nil
}

// Position is the last log sequence known to be in the stream: acknowledged
// by JetStream, or found there when the relay (re)started.
func (r *Relay) Position() uint64 { return r.pos.get() }

// Backlog is how many committed events are not yet known to be in the
// stream: the log's head minus Position. It grows while NATS is away, as
// the log goes on committing. Until the relay first reaches the stream
// (Position 0) it counts the whole log.
func (r *Relay) Backlog() uint64 {
	head, pos := r.log.Head().Seq, r.Position()
	if head <= pos {
		return 0
	}
	return head - pos
}

// Flush waits until every event committed when it was called is in the
// stream.
//
// Errors: ctx.Err(), or ErrStopped if the relay stops first.
func (r *Relay) Flush(ctx context.Context) error {
	return r.pos.wait(ctx, r.log.Head().Seq, r.done)
}

// Run publishes until ctx ends, then waits for the acknowledgements in
// flight and returns nil. While NATS is unreachable it retries with
// backoff. It returns an error only when it cannot go on: ErrDiverged when
// the stream holds something other than the log (it will not publish past
// a stream it cannot trust), a *TooLargeError (ErrTooLarge) when NATS
// refuses an event for its size (skipping it would leave a gap; an
// operator raises the limit and restarts), ledger.ErrClosed when the log
// closes under it, or the log's read error. Run may be called once.
func (r *Relay) Run(ctx context.Context) error {
	ran := false
	r.runOnce.Do(func() { ran = true })
	if !ran {
		return errors.New("relay: Run called twice")
	}
	defer close(r.done)
	log := r.cfg.Logger
	backoff := r.cfg.MinBackoff
	for {
		progressed, err := r.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if final(err) || errors.Is(err, ledger.ErrClosed) || errors.Is(err, errLogRead) {
			log.Error("relay stopped", "err", err, "position", r.Position())
			return err
		}
		if progressed {
			backoff = r.cfg.MinBackoff
		}
		log.Warn("relay: publishing interrupted, will resume from the stream's last message",
			"err", err, "position", r.Position(), "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
		backoff = min(backoff*2, r.cfg.MaxBackoff)
	}
}

// final tells the stream's refusals that no retry can get past: a stream
// that diverged from the log, an event too large for NATS.
func final(err error) bool {
	return errors.Is(err, ErrDiverged) || errors.Is(err, ErrTooLarge)
}

// messageSize is the size NATS counts of event seq's message, headers and
// body, for the report of a refusal (0 if the log cannot say).
func (r *Relay) messageSize(seq uint64) int {
	e, err := r.log.Get(seq)
	if err != nil {
		return 0
	}
	m := Message(r.conn.cfg.SubjectPrefix, &e)
	m.Header[jetstream.ExpectedLastSeqHeader] = []string{strconv.FormatUint(seq-1, 10)}
	return msgSize(m)
}

// errLogRead marks a failure to read the log, which retrying will not fix.
var errLogRead = errors.New("relay: read log")

// session syncs with the stream and publishes until an error or ctx ends.
// It reports whether any event was acknowledged.
func (r *Relay) session(ctx context.Context) (progressed bool, err error) {
	last, err := r.sync(ctx)
	if err != nil {
		return false, err
	}
	r.pos.reset(last)
	w, err := r.newWindow(last + 1)
	if err != nil {
		return false, err
	}
	pubErr := r.publish(ctx, w)
	werr := w.drain()
	progressed = r.Position() > last
	switch {
	case werr != nil:
		return progressed, werr
	case ctx.Err() != nil:
		return progressed, ctx.Err()
	}
	return progressed, pubErr
}

// sync reads the stream's last message, checks that it is the log's event
// at that sequence, and returns the sequence.
func (r *Relay) sync(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.AckTimeout)
	defer cancel()
	s, err := r.js.Stream(ctx, r.conn.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = r.conn.EnsureStream(ctx)
	}
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	last := s.CachedInfo().State.LastSeq
	if last == 0 {
		return 0, nil
	}
	if head := r.log.Head(); last > head.Seq {
		return 0, &DivergedError{Seq: last, Reason: fmt.Sprintf("the stream ends past the log's head %d", head.Seq)}
	}
	m, err := s.GetMsg(ctx, last)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, &DivergedError{Seq: last, Reason: "the stream's last message is missing"}
	}
	if err != nil {
		return 0, fmt.Errorf("read stream sequence %d: %w", last, err)
	}
	want, err := r.log.Get(last)
	if err != nil {
		return 0, fmt.Errorf("%w: sequence %d: %w", errLogRead, last, err)
	}
	// The headers identify the event; restore and consumers check bodies.
	switch {
	case m.Header.Get(HeaderSeq) != strconv.FormatUint(last, 10):
		return 0, &DivergedError{Seq: last, Reason: fmt.Sprintf("the stream's message carries log sequence %q", m.Header.Get(HeaderSeq))}
	case m.Header.Get(HeaderHash) != want.Hash.String() || m.Header.Get(jetstream.MsgIDHeader) != want.ID.String():
		return 0, &DivergedError{Seq: last, Reason: "the stream's message is not the log's event"}
	}
	return last, nil
}

// publish reads the log from w.next on and publishes each event, waiting
// for new commits, until ctx ends or the window fails.
func (r *Relay) publish(ctx context.Context, w *window) error {
	msgs := make([]*nats.Msg, 0, readChunk)
	next := w.next
	for {
		head := r.log.Head().Seq
		if next > head {
			wctx, done, err := w.waitContext(ctx)
			if err != nil {
				return err
			}
			h, err := r.log.Wait(wctx, next-1)
			done()
			if err != nil && ctx.Err() == nil && wctx.Err() != nil {
				// Woken by the window: failed, or its oldest publish
				// may be late.
				if err := w.late(); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			head = h.Seq
		}
		var err error
		msgs, err = r.read(ctx, next, min(head, next+readChunk-1), msgs[:cap(msgs)])
		if err != nil {
			return err
		}
		for i, m := range msgs {
			seq := next + uint64(i)
			last := strconv.FormatUint(seq-1, 10)
			if vs := m.Header[jetstream.ExpectedLastSeqHeader]; len(vs) == 1 {
				vs[0] = last
			} else {
				m.Header[jetstream.ExpectedLastSeqHeader] = []string{last}
			}
			if err := w.publish(ctx, seq, m, r.times[i]); err != nil {
				return err
			}
		}
		next += uint64(len(msgs))
	}
}

// read builds the messages of the events from..to in msgs, reusing the
// messages of the previous chunk (published by now), and their event times
// in r.times.
func (r *Relay) read(ctx context.Context, from, to uint64, msgs []*nats.Msg) ([]*nats.Msg, error) {
	want := from
	n := 0
	r.times = r.times[:0]
	err := r.log.ScanRaw(ctx, from, func(seq uint64, rec []byte) error {
		if seq > to {
			return errStopScan
		}
		if seq != want {
			return fmt.Errorf("%w: sequence %d follows %d", ledger.ErrCorrupt, seq, want-1)
		}
		e, err := ledger.Decode(rec)
		if err != nil {
			return fmt.Errorf("sequence %d: %w", seq, err)
		}
		switch {
		case n == len(msgs):
			msgs = append(msgs, &nats.Msg{})
		case msgs[n] == nil:
			msgs[n] = &nats.Msg{}
		}
		fillMessage(msgs[n], r.subject(e.Merchant, e.Type), &e)
		r.times = append(r.times, e.Time)
		n++
		want++
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %w", errLogRead, err)
	}
	if want <= to {
		return nil, fmt.Errorf("%w: log ends at %d, head says %d", errLogRead, want-1, to)
	}
	return msgs[:n], nil
}

// subject is Subject, remembered: a node has few merchants and types.
func (r *Relay) subject(merchant, typ string) string {
	k := subjectKey{merchant, typ}
	if s, ok := r.subjects[k]; ok {
		return s
	}
	if len(r.subjects) >= 4096 {
		clear(r.subjects)
	}
	s := Subject(r.conn.cfg.SubjectPrefix, merchant, typ)
	r.subjects[k] = s
	return s
}

type subjectKey struct{ merchant, typ string }

var errStopScan = errors.New("stop scan")

// mark is a sequence that can be waited on.
type mark struct {
	mu sync.Mutex
	v  uint64
	ch chan struct{}
}

func (m *mark) get() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.v
}

// set raises the mark.
func (m *mark) set(v uint64) {
	m.mu.Lock()
	if v > m.v {
		m.v = v
		if m.ch != nil {
			close(m.ch)
			m.ch = nil
		}
	}
	m.mu.Unlock()
}

// reset moves the mark to v, down too (JetStream lost a tail).
func (m *mark) reset(v uint64) {
	m.mu.Lock()
	m.v = v
	if m.ch != nil {
		close(m.ch)
		m.ch = nil
	}
	m.mu.Unlock()
}

func (m *mark) wait(ctx context.Context, v uint64, stopped <-chan struct{}) error {
	for {
		m.mu.Lock()
		if m.v >= v {
			m.mu.Unlock()
			return nil
		}
		if m.ch == nil {
			m.ch = make(chan struct{})
		}
		ch := m.ch
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-stopped:
			if m.get() >= v {
				return nil
			}
			return ErrStopped
		}
	}
}
