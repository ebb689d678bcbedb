package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/payledger/payledger/ledger"
)

// Handler handles one event. It may be called more than once for the same
// event (after a failure, a crash, or an acknowledgement lost on the way),
// so it must be idempotent by event id or sequence. Returning an error
// hands the same event again after a backoff; events after it wait.
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
	// handed again; it doubles from one to the other. Defaults 100ms, 30s.
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
// failed event is negatively acknowledged together with every later one it
// fetched, so JetStream redelivers them in order. With one worker per
// durable name the order is strict; several workers sharing a name split
// the events and only each worker's share is in order.
type Consumer struct {
	conn *Conn
	cfg  ConsumerConfig
	cons jetstream.Consumer
	last uint64 // highest stream sequence handled by this process
}

// NewConsumer creates the durable consumer, or takes up an existing one
// (updating its filter, batch and ack wait).
//
// Errors: ErrConfig without a durable name, or the JetStream API's.
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
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.MinBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = conn.cfg.Logger
	}
	if len(cfg.FilterSubjects) == 0 {
		cfg.FilterSubjects = []string{conn.AllSubjects()}
	}
	s, err := conn.Stream(ctx)
	if err != nil {
		return nil, err
	}
	cc, err := s.Consumer(ctx, cfg.Durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
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
	case err == nil:
		upd := cc.CachedInfo().Config
		upd.FilterSubject, upd.FilterSubjects = "", cfg.FilterSubjects
		upd.AckWait, upd.MaxAckPending = cfg.AckWait, cfg.Batch
		cc, err = s.UpdateConsumer(ctx, upd)
	}
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", cfg.Durable, err)
	}
	return &Consumer{conn: conn, cfg: cfg, cons: cc}, nil
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
// the consumer stops there rather than skip it.
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
	backoff := c.cfg.MinBackoff
	sleep := func() {
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(backoff*2, c.cfg.MaxBackoff)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	msgs := make([]jetstream.Msg, 0, c.cfg.Batch)
	events := make([]ledger.Event, 0, c.cfg.Batch)
	for ctx.Err() == nil {
		batch, err := c.cons.Fetch(c.cfg.Batch, jetstream.FetchMaxWait(c.cfg.FetchWait))
		if err != nil {
			log.Warn("fetch failed", "err", err)
			sleep()
			continue
		}
		// Hand over what has arrived as soon as it arrives; after a failure
		// (or once ctx ends) hand the rest of this fetch back, in order.
		var stop error // the failure, or errStopped
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
			if stop == nil && ctx.Err() != nil {
				stop = errStopped
			}
			if stop != nil {
				nakAll(msgs)
				continue
			}
			stop = c.handle(ctx, msgs, events[:0], handle)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
			log.Warn("fetch ended early", "err", err)
		}
		var me *MessageError
		switch {
		case errors.As(stop, &me):
			return stop
		case stop == errStopped || stop == nil || ctx.Err() != nil:
		default:
			log.Warn("handler failed; redelivering", "err", stop, "retry_in", backoff)
			sleep()
		}
	}
	return nil
}

var errStopped = errors.New("stopped")

// handle decodes msgs, hands the new events over, acknowledges the ones
// handled and hands back the rest. It returns the handler's error or a
// *MessageError.
func (c *Consumer) handle(ctx context.Context, msgs []jetstream.Msg, events []ledger.Event, handle func(context.Context, []ledger.Event) (int, error)) error {
	keep := msgs[:0]
	for i, m := range msgs {
		meta, err := m.Metadata()
		if err != nil {
			nakAll(msgs[i:])
			return fmt.Errorf("message metadata: %w", err)
		}
		seq := meta.Sequence.Stream
		if seq <= c.last {
			_ = m.Ack() // handled already: its acknowledgement was lost
			continue
		}
		e, err := DecodeMessage(m.Headers(), m.Data(), seq)
		if err != nil {
			nakAll(keep)
			nakAll(msgs[i:])
			return err
		}
		keep, events = append(keep, m), append(events, e)
	}
	if len(events) == 0 {
		return nil
	}
	done, err := handle(ctx, events)
	for _, m := range keep[:done] {
		_ = m.Ack()
	}
	if done > 0 {
		c.last = events[done-1].Seq
	}
	if err != nil {
		nakAll(keep[done:])
		return fmt.Errorf("event %d: %w", events[done].Seq, err)
	}
	return nil
}

func nakAll(msgs []jetstream.Msg) {
	for _, m := range msgs {
		_ = m.Nak()
	}
}
