package webhooks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/stream"
)

// DefaultDurable is the durable consumer name of FromStream.
const DefaultDurable = "payledger-webhooks"

// FromStream follows the JetStream event stream through a durable
// consumer (cfg.Durable, default "payledger-webhooks"; Batch default 1024),
// so a webhook worker can run in its own process against an external NATS
// cluster. The dispatcher's checkpoint is the truth: a new consumer starts
// after it; events the consumer hands again are skipped; a consumer ahead
// of the checkpoint (its webhooks.db replaced, say) is recreated at the
// checkpoint rather than skip events; and so is one deleted on the server.
// An ingest error other than a gap ends Follow with it, the batch not
// acknowledged.
func FromStream(conn *stream.Conn, cfg stream.ConsumerConfig) Source {
	if cfg.Durable == "" {
		cfg.Durable = DefaultDurable
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultMaxBatch
	}
	return &streamSource{conn: conn, cfg: cfg}
}

type streamSource struct {
	conn *stream.Conn
	cfg  stream.ConsumerConfig
}

func (s *streamSource) Follow(ctx context.Context, from uint64, ingest func([]ledger.Event) error) error {
	next := max(from, 1)
	backoff := 100 * time.Millisecond
	// A consumer made anew that gets no further than the last one (the
	// stream lacks the event at the checkpoint, or another dispatcher
	// shares the durable name) is made again after a growing pause, not in
	// a tight loop.
	var (
		again       time.Duration
		lastAgainAt uint64
	)
	pause := func() error {
		if lastAgainAt != next {
			again, lastAgainAt = 0, next
			return nil
		}
		again = min(max(2*again, 100*time.Millisecond), 5*time.Second)
		select {
		case <-time.After(again):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for {
		cfg := s.cfg
		cfg.StartSeq = next
		c, err := stream.NewConsumer(ctx, s.conn, cfg)
		var info *jetstream.ConsumerInfo
		if err == nil {
			info, err = c.Info(ctx)
		}
		if err != nil {
			// NATS unreachable or the stream not there yet: wait for it.
			if errors.Is(err, stream.ErrConfig) || ctx.Err() != nil {
				return err
			}
			s.conn.Config().Logger.Warn("webhooks consumer unavailable; retrying", "durable", cfg.Durable, "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return ctx.Err()
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if info.AckFloor.Stream >= next {
			// Acknowledged past the checkpoint (webhooks.db replaced or
			// restored from a backup): those events would never come.
			if err := pause(); err != nil {
				return err
			}
			if err := s.recreate(ctx, cfg.Durable, next, fmt.Errorf("acknowledged up to %d", info.AckFloor.Stream)); err != nil {
				return err
			}
			continue
		}
		rctx, cancel := context.WithCancel(ctx)
		var gap, failed error
		err = c.RunBatch(rctx, func(_ context.Context, events []ledger.Event) error {
			err := ingest(events)
			switch {
			case err == nil:
				next = events[len(events)-1].Seq + 1
			case errors.Is(err, ErrSequenceGap):
				gap = err
				cancel()
			default:
				// The consumer would hand the batch again, after a pause,
				// for ever: a corrupt webhooks.db or a refused event
				// fails the same way each time, and the worker would sit
				// delivering nothing, with a warning now and then. End
				// Follow with it, as FromLog does: Run returns it.
				failed = err
				cancel()
			}
			return err
		})
		cancel()
		if failed != nil && ctx.Err() == nil {
			return failed
		}
		if errors.Is(err, stream.ErrConsumerGone) && ctx.Err() == nil {
			// Deleted on the server: the next round makes it anew at the
			// checkpoint.
			s.conn.Config().Logger.Warn("webhooks consumer gone; making it anew at the checkpoint", "durable", cfg.Durable, "from", next, "err", err)
			if err := pause(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if gap == nil {
			return ctx.Err()
		}
		if err := pause(); err != nil {
			return err
		}
		if err := s.recreate(ctx, cfg.Durable, next, gap); err != nil {
			return err
		}
	}
}

// recreate deletes a durable consumer that is past the checkpoint, so the
// next round creates it again at the checkpoint.
func (s *streamSource) recreate(ctx context.Context, durable string, from uint64, why error) error {
	s.conn.Config().Logger.Warn("webhooks consumer ahead of the checkpoint; recreating it", "durable", durable, "from", from, "why", why)
	if err := s.conn.JetStream().DeleteConsumer(ctx, s.conn.Config().Stream, durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("recreate consumer %s: %w", durable, err)
	}
	return nil
}
