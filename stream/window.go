package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// errAckTimeout means no acknowledgement came for AckTimeout.
var errAckTimeout = errors.New("no publish acknowledgement in time")

// window is one relay session's publishes awaiting their JetStream
// acknowledgement: at most MaxInFlight, each sent with a reply subject
// that names its sequence on an inbox of the session's own, so a late
// acknowledgement from an earlier session is never taken for a new one.
//
// Acknowledgements come back in any order; the position advances over the
// contiguous acknowledged prefix. (In practice JetStream acknowledges in
// order.) The window fails on the first refusal, on a disconnection, or when
// the oldest publish waits longer than AckTimeout; acknowledgements that
// still come after a failure keep advancing the position.
type window struct {
	r      *Relay
	nc     *nats.Conn
	prefix string
	sub    *nats.Subscription
	status chan nats.Status
	done   chan struct{}
	wake   chan struct{} // progress or failure (capacity 1)
	lags   []ackLag      // scratch of onAck

	mu        sync.Mutex
	base      uint64      // lowest sequence not yet acknowledged
	next      uint64      // next sequence to publish
	acked     []bool      // by sequence modulo size
	committed []time.Time // event times, by sequence modulo size
	progress  time.Time   // when base last moved, or the window last became busy
	err       error
	gone      bool   // disconnected: the acks in flight will never come
	refused   uint64 // lowest sequence JetStream refused (0: none); no ack from there on can come
	// endWait ends the relay's wait for new commits (see waitContext).
	endWait context.CancelFunc
}

type ackLag struct {
	seq uint64
	lag time.Duration
}

func (r *Relay) newWindow(next uint64) (*window, error) {
	n := r.cfg.MaxInFlight
	w := &window{
		r:         r,
		nc:        r.conn.nc,
		prefix:    r.conn.nc.NewRespInbox() + ".",
		done:      make(chan struct{}),
		wake:      make(chan struct{}, 1),
		base:      next,
		next:      next,
		acked:     make([]bool, n),
		committed: make([]time.Time, n),
	}
	// Watch for disconnections before subscribing, so none goes unseen.
	w.status = w.nc.StatusChanged(nats.RECONNECTING, nats.CLOSED)
	sub, err := w.nc.Subscribe(w.prefix+"*", w.onAck)
	if err != nil {
		w.nc.RemoveStatusListener(w.status)
		return nil, fmt.Errorf("subscribe to acknowledgements: %w", err)
	}
	_ = sub.SetPendingLimits(-1, -1) // bounded by MaxInFlight
	w.sub = sub
	go w.watch()
	return w, nil
}

// watch fails the window when the connection drops.
func (w *window) watch() {
	select {
	case st := <-w.status:
		w.mu.Lock()
		w.gone = true
		w.mu.Unlock()
		w.fail(fmt.Errorf("nats connection %s", st))
	case <-w.done:
	}
}

func (w *window) fail(err error) {
	w.mu.Lock()
	if w.err == nil || (final(err) && !final(w.err)) {
		w.err = err
	}
	if w.endWait != nil {
		w.endWait()
	}
	w.mu.Unlock()
	w.signal()
}

// waitContext is the context the relay waits for new commits with, once it
// has published everything committed. It ends with ctx, when the window
// fails, and, while publishes are in flight, when the oldest has waited
// AckTimeout: a relay with nothing new to publish must still notice that
// its acknowledgements will never come (a dropped connection, a stream that
// lost its leader) and start a new session that publishes those events
// again, rather than wait for the next commit. Call done after the wait;
// then late tells whether the window failed meanwhile.
func (w *window) waitContext(ctx context.Context) (wctx context.Context, done func(), err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return nil, nil, w.err
	}
	var cancel context.CancelFunc
	if w.base < w.next {
		wctx, cancel = context.WithDeadline(ctx, w.progress.Add(w.r.cfg.AckTimeout))
	} else {
		wctx, cancel = context.WithCancel(ctx)
	}
	w.endWait = cancel
	return wctx, func() {
		w.mu.Lock()
		w.endWait = nil
		w.mu.Unlock()
		cancel()
	}, nil
}

// late fails the window if its oldest publish has waited AckTimeout for
// its acknowledgement, and returns the window's failure, if any.
func (w *window) late() error {
	w.mu.Lock()
	late := w.err == nil && w.base < w.next && time.Since(w.progress) >= w.r.cfg.AckTimeout
	base := w.base
	w.mu.Unlock()
	if late {
		w.fail(fmt.Errorf("publish sequence %d: %w", base, errAckTimeout))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *window) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// publish sends m as event seq once the window has room. committed is the
// event's time, where its publish lag starts.
func (w *window) publish(ctx context.Context, seq uint64, m *nats.Msg, committed time.Time) error {
	size := uint64(len(w.acked))
	for {
		w.mu.Lock()
		if w.err != nil {
			err := w.err
			w.mu.Unlock()
			return err
		}
		if w.next-w.base < size {
			break
		}
		deadline := w.progress.Add(w.r.cfg.AckTimeout)
		w.mu.Unlock()
		if err := w.waitUntil(ctx, deadline); err != nil {
			return err
		}
	}
	if w.next != seq {
		w.mu.Unlock()
		return fmt.Errorf("relay: publishing %d, window expects %d", seq, w.next)
	}
	if w.base == w.next {
		w.progress = time.Now()
	}
	w.committed[seq%size] = committed
	w.next++
	w.mu.Unlock()
	m.Reply = w.prefix + strconv.FormatUint(seq, 10)
	if err := w.nc.PublishMsg(m); err != nil {
		// Not sent: no acknowledgement to wait for.
		w.mu.Lock()
		if w.next == seq+1 {
			w.next = seq
		}
		w.mu.Unlock()
		if errors.Is(err, nats.ErrMaxPayload) {
			err = &TooLargeError{Seq: seq, Size: msgSize(m),
				Limit: fmt.Sprintf("the NATS server's max_payload of %d bytes", w.nc.MaxPayload())}
		} else {
			err = fmt.Errorf("publish sequence %d: %w", seq, err)
		}
		w.fail(err)
		return err
	}
	return nil
}

// msgSize is what NATS counts of m against its limits: headers and body.
func msgSize(m *nats.Msg) int { return m.Size() - len(m.Subject) - len(m.Reply) }

// waitUntil waits for progress, a failure, ctx or the deadline; past the
// deadline with the oldest publish still unacknowledged it fails the window.
func (w *window) waitUntil(ctx context.Context, deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-w.wake:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		_ = w.late() // the caller finds the failure under the lock
		return nil
	}
}

// drain waits until every publish is acknowledged (up to the first that
// JetStream refused), the window fails with acknowledgements that cannot
// come (disconnected, or AckTimeout without progress), and closes the
// window. It returns the window's failure.
func (w *window) drain() error {
	defer func() {
		_ = w.sub.Unsubscribe()
		w.nc.RemoveStatusListener(w.status)
		close(w.done)
	}()
	for {
		w.mu.Lock()
		idle := w.base == w.next || (w.refused != 0 && w.base >= w.refused)
		gone, err := w.gone, w.err
		deadline := w.progress.Add(w.r.cfg.AckTimeout)
		w.mu.Unlock()
		if idle || gone {
			return err
		}
		if time.Now().After(deadline) {
			w.fail(errAckTimeout)
			w.mu.Lock()
			err = w.err
			w.mu.Unlock()
			return err
		}
		_ = w.waitUntil(context.Background(), deadline)
	}
}

// onAck handles JetStream's reply to one publish (on the subscription's
// goroutine, so calls are serial and OnAck sees sequences in order).
func (w *window) onAck(m *nats.Msg) {
	seq, err := strconv.ParseUint(m.Subject[len(w.prefix):], 10, 64)
	if err != nil {
		return
	}
	stored, ackErr := parseAck(m, w.r.conn.cfg.Stream)
	if ackErr == nil && stored != seq {
		ackErr = &DivergedError{Seq: seq, Reason: fmt.Sprintf("JetStream stored the event at sequence %d", stored)}
	}
	now := time.Now()
	size := uint64(len(w.acked))
	w.mu.Lock()
	if seq < w.base || seq >= w.next || w.acked[seq%size] {
		w.mu.Unlock()
		return // not in flight: a repeated reply
	}
	if ackErr != nil {
		// Each event is stored only after its predecessor: none from
		// here on can be acknowledged now.
		if w.refused == 0 || seq < w.refused {
			w.refused = seq
		}
		w.mu.Unlock()
		var ae *apiError
		if errors.As(ackErr, &ae) && ae.errCode == jsMessageTooLarge {
			w.fail(&TooLargeError{Seq: seq, Size: w.r.messageSize(seq),
				Limit: fmt.Sprintf("JetStream as over the stream's maximum message size or the server's max_payload (%v)", ae)})
			return
		}
		w.fail(fmt.Errorf("publish sequence %d: %w", seq, ackErr))
		return
	}
	w.acked[seq%size] = true
	lags := w.lags[:0]
	for w.base < w.next && w.acked[w.base%size] {
		i := w.base % size
		w.acked[i] = false
		// An event time after now (a clock stepped back) is no lag.
		lags = append(lags, ackLag{w.base, max(now.Sub(w.committed[i]), 0)})
		w.base++
	}
	if len(lags) > 0 {
		w.progress = now
	}
	top := w.base - 1
	w.mu.Unlock()
	w.lags = lags
	if len(lags) == 0 {
		return
	}
	// An acknowledgement at a sequence proves every earlier event is stored
	// too (each was accepted only after its predecessor).
	w.r.pos.set(top)
	if on := w.r.cfg.OnAck; on != nil {
		for _, l := range lags {
			on(l.seq, l.lag)
		}
	}
	w.signal()
}

// parseAck reads a publish acknowledgement: the stream sequence the message
// is stored at, or JetStream's refusal.
func parseAck(m *nats.Msg, stream string) (uint64, error) {
	if len(m.Data) == 0 {
		if m.Header.Get("Status") == "503" {
			return 0, nats.ErrNoResponders
		}
		return 0, fmt.Errorf("empty acknowledgement (status %q)", m.Header.Get("Status"))
	}
	// Fast path for {"stream":"NAME","seq":N} and its duplicate form.
	d := m.Data
	const seqKey = `"seq":`
	if bytes.HasPrefix(d, []byte(`{"stream":"`)) && !bytes.Contains(d, []byte(`"error"`)) {
		rest := d[len(`{"stream":"`):]
		if bytes.HasPrefix(rest, []byte(stream)) && len(rest) > len(stream) && rest[len(stream)] == '"' {
			if i := bytes.Index(rest, []byte(seqKey)); i >= 0 {
				j := i + len(seqKey)
				k := j
				for k < len(rest) && rest[k] >= '0' && rest[k] <= '9' {
					k++
				}
				if n, err := strconv.ParseUint(string(rest[j:k]), 10, 64); err == nil {
					return n, nil
				}
			}
		}
	}
	var ack struct {
		Stream string `json:"stream"`
		Seq    uint64 `json:"seq"`
		Error  *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(d, &ack); err != nil {
		return 0, fmt.Errorf("bad acknowledgement %q: %w", d, err)
	}
	switch {
	case ack.Error != nil:
		return 0, &apiError{code: ack.Error.Code, errCode: ack.Error.ErrCode, desc: ack.Error.Description}
	case ack.Stream != stream:
		return 0, &DivergedError{Seq: ack.Seq, Reason: fmt.Sprintf("acknowledged by stream %q", ack.Stream)}
	}
	return ack.Seq, nil
}

// jsMessageTooLarge is JetStream's error code for a message over the
// stream's maximum message size or the server's max_payload
// (JSStreamMessageExceedsMaximumErr).
const jsMessageTooLarge = 10054

// apiError is JetStream's refusal of a publish.
type apiError struct {
	code, errCode int
	desc          string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("jetstream: %s (code %d, error code %d)", e.desc, e.code, e.errCode)
}
