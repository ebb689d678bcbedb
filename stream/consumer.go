package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/payledger/payledger/ledger"
)

// Handler handles one event. It may be called more than once for the same
// event (after a failure, a crash, or an acknowledgement lost on the way),
// so it must be idempotent by event id or sequence. Returning an error
// hands the same event again after a backoff; events after it wait. The
// context ends when Run's does.
type Handler func(ctx context.Context, e ledger.Event) error

// BatchHandler handles events in order, all of them or none: an error hands
// the whole batch again. Same idempotency rule as Handler.
type BatchHandler func(ctx context.Context, events []ledger.Event) error

// ConsumerConfig configures a durable consumer of the event stream. The
// zero value, with Durable set, consumes every event from the first.
type ConsumerConfig struct {
	// Durable names the consumer: JetStream keeps its position under this
	// name, and workers that share it share its events. Required.
	Durable string
	// FilterSubjects selects the events (subjects with wildcards, see
	// Filter). Default: every event.
	FilterSubjects []string
	// StartSeq is the stream sequence (= log sequence) a new consumer
	// starts at. Default: the first event. An existing consumer keeps its
	// position.
	StartSeq uint64
	// Batch is how many events one fetch brings, and how many may await
	// acknowledgement. Default 256.
	Batch int
	// AckWait is how long JetStream waits for an acknowledgement before it
	// redelivers (to this or another worker). Default 30s.
	AckWait time.Duration
	// MinBackoff and MaxBackoff bound the wait before a failed event is
	// handed again; it doubles from one to the other. Defaults 100ms, and
	// 30s or a third of AckWait, whichever is less.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// FetchWait is how long one pull request waits on the server for
	// events. A pull is never abandoned early (events the server sent to an
	// abandoned pull would come back only after AckWait, behind later
	// ones), so it also bounds how long Run takes to return after ctx ends
	// and to hand back events after a failure. Default 1s.
	FetchWait time.Duration
	// Logger receives failures. Default: the Conn's logger.
	Logger *slog.Logger
}

// Consumer is a durable pull consumer of the event stream with explicit
// acknowledgement. It hands decoded, verified events to a handler in
// stream order and acknowledges each after the handler returns nil. A
// failed event is handed again after a backoff, the later ones waiting
// behind it, and JetStream is told they are in progress meanwhile; if the
// process dies, JetStream redelivers what it had not acknowledged after
// AckWait. Within a run the events it fetches are handed in stream order,
// and a run stopped by its context hands back what it had not handled in
// stream order, so the next run carries on in order. After a crash, events
// that were in flight come back after AckWait, possibly behind later ones,
// and are handed then; and several workers sharing a durable name split
// the events, each share in order. An event's redelivery after it was
// handled here (its acknowledgement lost) is acknowledged, not handed
// again. Handlers that need every event in sequence (a log copy) check the
// sequence and, like `payledger worker projections`, start a consumer of
// their own from their checkpoint.
type Consumer struct {
	conn *Conn
	cfg  ConsumerConfig
	cons jetstream.Consumer
	// handled are the stream sequences this Consumer handled, so that a
	// redelivery of one (its acknowledgement lost) is acknowledged again
	// rather than handed twice. Only those: an event this process never
	// handled may come after later ones (from a crashed worker or another
	// worker of the durable, after AckWait) and must still be handed.
	handled seqRanges
}

// seqRanges is a set of sequences as sorted, disjoint, non-adjacent closed
// ranges: one range while a single worker consumes in order. It keeps at
// most maxRanges, forgetting the oldest: a redelivery of a forgotten one is
// handed again, which handlers (idempotent by rule) take in their stride.
type seqRanges struct{ r [][2]uint64 }

const maxRanges = 1024

func (s *seqRanges) has(seq uint64) bool {
	i := sort.Search(len(s.r), func(i int) bool { return s.r[i][1] >= seq })
	return i < len(s.r) && s.r[i][0] <= seq
}

func (s *seqRanges) add(seq uint64) {
	i := sort.Search(len(s.r), func(i int) bool { return s.r[i][1]+1 >= seq })
	switch {
	case i < len(s.r) && s.r[i][0] <= seq && seq <= s.r[i][1]:
		return
	case i < len(s.r) && s.r[i][1]+1 == seq:
		s.r[i][1] = seq
		if i+1 < len(s.r) && s.r[i+1][0] == seq+1 {
			s.r[i][1] = s.r[i+1][1]
			s.r = slices.Delete(s.r, i+1, i+2)
		}
	case i < len(s.r) && s.r[i][0] == seq+1:
		s.r[i][0] = seq
	default:
		s.r = slices.Insert(s.r, i, [2]uint64{seq, seq})
		if len(s.r) > maxRanges {
			s.r = slices.Delete(s.r, 0, 1)
		}
	}
}

// NewConsumer creates the durable consumer, or takes up an existing one
// (updating its filter, batch and ack wait). While the server is still
// closing a consumer of that name (just deleted, say by a worker making it
// anew), its errors are logged and the attempt made again after a backoff
// (MinBackoff doubling to MaxBackoff), for as long as ctx lives.
//
// Errors: ErrConfig without a durable name, or the JetStream API's (the
// last one if ctx ends while the server is closing the old consumer).
func NewConsumer(ctx context.Context, conn *Conn, cfg ConsumerConfig) (*Consumer, error) {
	if cfg.Durable == "" {
		return nil, fmt.Errorf("%w: a consumer needs a durable name", ErrConfig)
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 256
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.FetchWait <= 0 {
		cfg.FetchWait = time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	// Waits between attempts stay well inside AckWait: each renews the
	// events' lease.
	cfg.MaxBackoff = max(min(cfg.MaxBackoff, cfg.AckWait/3), cfg.MinBackoff)
	if cfg.Logger == nil {
		cfg.Logger = conn.cfg.Logger
	}
	if len(cfg.FilterSubjects) == 0 {
		cfg.FilterSubjects = []string{conn.AllSubjects()}
	}
	backoff := cfg.MinBackoff
	var retries takeUpRetries
	for {
		cc, err := takeUp(ctx, conn, cfg)
		if err == nil {
			return &Consumer{conn: conn, cfg: cfg, cons: cc}, nil
		}
		if !retries.again(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("consumer %s: %w", cfg.Durable, err)
		}
		cfg.Logger.Warn("consumer: the server is still closing the old one; trying again",
			"consumer", cfg.Durable, "err", err, "retry_in", backoff)
		sleepCtx(ctx, backoff)
		backoff = min(backoff*2, cfg.MaxBackoff)
	}
}

// closingAttempts bounds the attempts at taking up a consumer through
// errors that the server's closing of an old one causes but that a lasting
// fault causes too (a store that cannot be made: disk full, permissions):
// with the backoff's doubling, about ten seconds or more. A "consumer
// closed" answer says the closing itself, and is retried for as long as
// the context lives.
const closingAttempts = 8

// takeUpRetries decides NewConsumer's retries: a "consumer closed" answer
// always gets another attempt; the other answers a closing can cause,
// counted apart from those, at most closingAttempts in all; anything else
// none.
type takeUpRetries struct{ others int }

// again reports whether takeUp's error err is worth another attempt.
func (r *takeUpRetries) again(err error) bool {
	if !errors.Is(err, errClosing) {
		return false
	}
	if apiDescription(err) == "consumer closed" {
		return true
	}
	r.others++
	return r.others < closingAttempts
}

// errClosing marks a JetStream API error that the server returns for a
// moment while it closes a consumer of the same name (deleted by an
// operator, or by a worker making it anew): taking it up again after a
// backoff gets past it.
var errClosing = errors.New("consumer closing on the server")

// takeUp creates the durable consumer, or takes up and updates an existing
// one. An error that the server's closing of an old consumer of that name
// can cause, and that a later attempt gets past, also matches errClosing:
//
//   - creation failing on the server (JSErrCodeConsumerCreate, 10012): the
//     old consumer closed under the request ("consumer closed"), or its
//     store still being removed ("error creating store for consumer", a
//     failed rename in it). Creation's configuration errors have codes of
//     their own.
//   - an update answered "consumer closed" (10012; an update's other 10012
//     errors are changes the server refuses, and stay errors).
//   - a creation answered that the consumer does not exist (10149: the old
//     one, still registered, closed under it) or already exists with
//     another configuration (10105: the old one not yet removed, or another
//     worker's made just now, which the next attempt takes up).
func takeUp(ctx context.Context, conn *Conn, cfg ConsumerConfig) (jetstream.Consumer, error) {
	s, err := conn.Stream(ctx)
	if err != nil {
		return nil, err
	}
	cc, err := s.Consumer(ctx, cfg.Durable)
	if err == nil {
		upd := cc.CachedInfo().Config
		upd.FilterSubject, upd.FilterSubjects = "", cfg.FilterSubjects
		upd.AckWait, upd.MaxAckPending = cfg.AckWait, cfg.Batch
		cc, err = s.UpdateConsumer(ctx, upd)
		if errors.Is(err, jetstream.ErrConsumerDoesNotExist) {
			// Deleted on the server since it was looked up (by an
			// operator, or a worker making it anew): make it below.
			err = jetstream.ErrConsumerNotFound
		} else if apiErrorIs(err, jetstream.JSErrCodeConsumerCreate) && apiDescription(err) == "consumer closed" {
			return nil, fmt.Errorf("%w: %w", errClosing, err)
		}
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return cc, err
	}
	want := jetstream.ConsumerConfig{
		Durable:        cfg.Durable,
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		FilterSubjects: cfg.FilterSubjects,
		AckWait:        cfg.AckWait,
		MaxAckPending:  cfg.Batch,
		MaxDeliver:     -1,
		ReplayPolicy:   jetstream.ReplayInstantPolicy,
	}
	if cfg.StartSeq > 1 {
		want.DeliverPolicy, want.OptStartSeq = jetstream.DeliverByStartSequencePolicy, cfg.StartSeq
	}
	cc, err = s.CreateConsumer(ctx, want)
	if apiErrorIs(err, jetstream.JSErrCodeConsumerCreate, jetstream.JSErrCodeConsumerDoesNotExist, jetstream.JSErrCodeConsumerAlreadyExists) {
		return nil, fmt.Errorf("%w: %w", errClosing, err)
	}
	return cc, err
}

// apiErrorIs reports whether err is a JetStream API error with one of codes.
func apiErrorIs(err error, codes ...jetstream.ErrorCode) bool {
	var ae *jetstream.APIError
	return errors.As(err, &ae) && slices.Contains(codes, ae.ErrorCode)
}

// apiDescription is the description of a JetStream API error, or "".
func apiDescription(err error) string {
	var ae *jetstream.APIError
	if errors.As(err, &ae) {
		return ae.Description
	}
	return ""
}

// Info is the consumer's state on the server.
//
// Errors: the JetStream API's.
func (c *Consumer) Info(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	return c.cons.Info(ctx)
}

// Run hands events one at a time to h until ctx ends (then it returns nil).
//
// Errors: *MessageError for a stream message that is not a valid event;
// the consumer stops there rather than skip it. ErrConsumerGone when the
// durable consumer no longer exists on the server: make it anew (from the
// handler's checkpoint) to go on.
func (c *Consumer) Run(ctx context.Context, h Handler) error {
	return c.run(ctx, func(ctx context.Context, events []ledger.Event) (int, error) {
		for i, e := range events {
			if err := h(ctx, e); err != nil {
				return i, err
			}
		}
		return len(events), nil
	})
}

// RunBatch hands events in batches (up to Batch) to h until ctx ends.
//
// Errors: as Run.
func (c *Consumer) RunBatch(ctx context.Context, h BatchHandler) error {
	return c.run(ctx, func(ctx context.Context, events []ledger.Event) (int, error) {
		if err := h(ctx, events); err != nil {
			return 0, err
		}
		return len(events), nil
	})
}

func (c *Consumer) run(ctx context.Context, handle func(context.Context, []ledger.Event) (int, error)) error {
	log := c.cfg.Logger.With("consumer", c.cfg.Durable)
	msgs := make([]jetstream.Msg, 0, c.cfg.Batch)
	events := make([]ledger.Event, 0, c.cfg.Batch)
	fetchBackoff := c.cfg.MinBackoff
	for ctx.Err() == nil {
		batch, err := c.cons.Fetch(c.cfg.Batch, jetstream.FetchMaxWait(c.cfg.FetchWait))
		if err != nil {
			log.Warn("fetch failed", "err", err, "retry_in", fetchBackoff)
			sleepCtx(ctx, fetchBackoff)
			fetchBackoff = min(fetchBackoff*2, c.cfg.MaxBackoff)
			continue
		}
		// Hand over what has arrived as soon as it arrives. Once ctx ends,
		// hand the rest of this fetch back (a fetch is never abandoned),
		// but only once the fetch is over, in stream order: a message
		// handed back while the fetch is open can be redelivered into it
		// at once and handed back again behind later ones, and the next
		// run would then get the events out of order.
		var bad error
		var handBack []jetstream.Msg
		ch := batch.Messages()
		for m := range ch {
			msgs = append(msgs[:0], m)
		more:
			for len(msgs) < c.cfg.Batch {
				select {
				case m, ok := <-ch:
					if !ok {
						break more
					}
					msgs = append(msgs, m)
				default:
					break more
				}
			}
			if bad != nil || ctx.Err() != nil {
				handBack = append(handBack, msgs...)
				continue
			}
			var rest []jetstream.Msg
			rest, bad = c.handle(ctx, log, msgs, events[:0], handle)
			handBack = append(handBack, rest...)
		}
		nakInOrder(handBack)
		ferr := batch.Error()
		if errors.Is(ferr, nats.ErrTimeout) || errors.Is(ferr, jetstream.ErrNoMessages) {
			ferr = nil
		}
		if bad != nil {
			if ferr != nil {
				log.Warn("fetch ended early", "err", ferr)
			}
			return bad
		}
		if ferr == nil {
			fetchBackoff = c.cfg.MinBackoff
			continue
		}
		if ctx.Err() != nil {
			continue
		}
		// A fetch the server ended at once (the consumer deleted, no
		// responders) would otherwise be asked again at once, forever.
		if _, err := c.cons.Info(ctx); errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("%w: %s: %v", ErrConsumerGone, c.cfg.Durable, ferr)
		}
		log.Warn("fetch ended early", "err", ferr, "retry_in", fetchBackoff)
		sleepCtx(ctx, fetchBackoff)
		fetchBackoff = min(fetchBackoff*2, c.cfg.MaxBackoff)
	}
	return nil
}

// handle decodes msgs and hands the new events over until all are handled
// or ctx ends: a failed event is handed again after a backoff, in this
// process, with the events after it waiting, and JetStream is told they
// are in progress so that it does not redeliver them meanwhile. (Handing
// them back with a negative acknowledgement would race the next fetch,
// which could then deliver later events first.) Handled events are
// acknowledged; once ctx ends, the rest are returned, for the caller to
// hand back. It returns a *MessageError for a message that is not an
// event, with the messages not handled.
func (c *Consumer) handle(ctx context.Context, log *slog.Logger, msgs []jetstream.Msg, events []ledger.Event, handle func(context.Context, []ledger.Event) (int, error)) (rest []jetstream.Msg, _ error) {
	keep := msgs[:0]
	for i, m := range msgs {
		meta, err := m.Metadata()
		if err != nil {
			return append(keep, msgs[i:]...), &MessageError{Reason: fmt.Sprintf("no JetStream metadata: %v", err)}
		}
		seq := meta.Sequence.Stream
		if c.handled.has(seq) {
			_ = m.Ack() // handled already: a redelivery
			continue
		}
		e, err := DecodeMessage(m.Headers(), m.Data(), seq)
		if err != nil {
			return append(keep, msgs[i:]...), err
		}
		keep, events = append(keep, m), append(events, e)
	}
	backoff := c.cfg.MinBackoff
	for len(events) > 0 {
		done, err := handle(ctx, events)
		for i, m := range keep[:done] {
			_ = m.Ack()
			c.handled.add(events[i].Seq)
		}
		if done > 0 {
			backoff = c.cfg.MinBackoff
		}
		keep, events = keep[done:], events[done:]
		if err == nil {
			return nil, nil
		}
		if ctx.Err() != nil {
			return keep, nil
		}
		log.Warn("handler failed; handing the event again", "seq", events[0].Seq, "err", err, "retry_in", backoff)
		for _, m := range keep {
			_ = m.InProgress()
		}
		sleepCtx(ctx, backoff)
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
	return nil, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// nakInOrder hands messages back in stream order (those without metadata
// first), so that JetStream redelivers them in that order.
func nakInOrder(msgs []jetstream.Msg) {
	type held struct {
		seq uint64
		m   jetstream.Msg
	}
	hs := make([]held, len(msgs))
	for i, m := range msgs {
		hs[i].m = m
		if meta, err := m.Metadata(); err == nil {
			hs[i].seq = meta.Sequence.Stream
		}
	}
	slices.SortStableFunc(hs, func(a, b held) int { return cmp.Compare(a.seq, b.seq) })
	for _, h := range hs {
		_ = h.m.Nak()
	}
}
