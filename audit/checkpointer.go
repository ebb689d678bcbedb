package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/payledger/payledger/internal/ids"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
)

// CheckpointConfig configures a Checkpointer. The zero value is the default.
type CheckpointConfig struct {
	// Every signs a checkpoint once this many events were appended since
	// the last one. Default 10,000.
	Every uint64
	// Interval signs a checkpoint this long after the last one if anything
	// was appended since. Default 60s.
	Interval time.Duration
	// Now gives the checkpoint event's time and signed_at. Default time.Now.
	Now func() time.Time
	// Logger receives failures to append a checkpoint. Default slog.Default().
	Logger *slog.Logger
}

// Defaults of CheckpointConfig.
const (
	DefaultCheckpointEvery    = 10_000
	DefaultCheckpointInterval = 60 * time.Second
)

// finalTimeout bounds the checkpoint a Checkpointer signs as it stops.
const finalTimeout = 5 * time.Second

// Checkpointer signs the log's head with an Ed25519 key every Every events
// or Interval, whichever comes first, and only when anything was appended
// since its last checkpoint, and appends each checkpoint to the log as a
// checkpoint.signed event on stream "checkpoints" (so it reaches the NATS
// stream like any event). It signs once more when it stops.
type Checkpointer struct {
	log *boltlog.Store
	key ed25519.PrivateKey
	cfg CheckpointConfig

	mu     sync.Mutex
	loaded bool
	base   uint64 // sequence of the last checkpoint event (0: none)
	signed uint64 // the sequence it signed

	// idle, which tests set, is called on Run's goroutine each time an
	// interval has passed with nothing to sign, as Run starts waiting for
	// the next append: until that append it signs nothing, and waits on
	// the log rather than on a timer.
	idle func()
}

// NewCheckpointer returns a checkpointer for log signing with key.
func NewCheckpointer(log *boltlog.Store, key ed25519.PrivateKey, cfg CheckpointConfig) *Checkpointer {
	if cfg.Every == 0 {
		cfg.Every = DefaultCheckpointEvery
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultCheckpointInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Checkpointer{log: log, key: key, cfg: cfg}
}

// PublicKey is the key third parties verify the checkpoints with.
func (c *Checkpointer) PublicKey() ed25519.PublicKey { return c.key.Public().(ed25519.PublicKey) }

// load finds the last checkpoint in the log.
func (c *Checkpointer) load(ctx context.Context) error {
	if c.loaded {
		return nil
	}
	v, err := c.log.StreamVersion(StreamCheckpoints)
	if err != nil {
		return err
	}
	if v > 0 {
		evs, err := c.log.ReadStream(ctx, StreamCheckpoints, v)
		if err != nil {
			return err
		}
		if len(evs) > 0 {
			last := evs[len(evs)-1]
			cp, err := DecodeCheckpoint(last.Data)
			if err != nil {
				return fmt.Errorf("sequence %d: %w", last.Seq, err)
			}
			c.base, c.signed = last.Seq, cp.Seq
		}
	}
	c.loaded = true
	return nil
}

// Load finds the last checkpoint in the log, which Run and Checkpoint
// otherwise do first. A node calls it as it starts, so that a log whose
// checkpoints cannot be read stops the start instead of leaving the node
// serving with no checkpoints signed.
//
// Errors: the log's, ctx.Err(), or a checkpoint event that does not decode.
func (c *Checkpointer) Load(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.load(ctx); err != nil {
		return fmt.Errorf("checkpoints: find the last one: %w", err)
	}
	return nil
}

// Checkpoint signs the log's head now and appends the checkpoint, unless
// nothing was appended since the last checkpoint. It returns the
// checkpoint event and whether it appended one.
//
// Errors: the log's (ledger.ErrClosed, an I/O error), or ctx.Err().
func (c *Checkpointer) Checkpoint(ctx context.Context) (ledger.Event, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.load(ctx); err != nil {
		return ledger.Event{}, false, fmt.Errorf("checkpoint: find the last one: %w", err)
	}
	head := c.log.Head()
	if !c.uncovered(head.Seq) {
		return ledger.Event{}, false, nil
	}
	now := c.cfg.Now().UTC()
	data, err := json.Marshal(SignCheckpoint(c.key, head, now))
	if err != nil {
		return ledger.Event{}, false, err
	}
	id, err := ids.At(now)
	if err != nil {
		return ledger.Event{}, false, err
	}
	evs, err := c.log.Append(ctx, StreamCheckpoints, ledger.Any, ledger.NewEvent{ID: id, Type: TypeCheckpointSigned, Time: now, Data: data})
	if err != nil {
		return ledger.Event{}, false, fmt.Errorf("checkpoint of sequence %d: %w", head.Seq, err)
	}
	c.base, c.signed = evs[0].Seq, head.Seq
	return evs[0], true, nil
}

// uncovered reports whether the log up to head holds events no checkpoint
// covers, besides the last checkpoint event itself: events appended after
// it, or events that were committed between the head it signed and its
// own append.
func (c *Checkpointer) uncovered(head uint64) bool {
	return head > c.base || (c.base > 0 && c.base > c.signed+1)
}

// pending reports, under the lock, whether a checkpoint is due now, and
// the sequence the log must pass for one to be due.
func (c *Checkpointer) pending() (bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.uncovered(c.log.Head().Seq), c.base
}

// Run signs checkpoints until ctx ends, then signs a last one if anything
// was appended since the previous (so a log stopped gracefully ends with a
// checkpoint), and returns nil. It returns early with nil when the log closes.
//
// Errors: reading the last checkpoint from the log at the start.
func (c *Checkpointer) Run(ctx context.Context) error {
	c.mu.Lock()
	err := c.load(ctx)
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("checkpoints: find the last one: %w", err)
	}
	lastAt := time.Now()
	for {
		_, base := c.pending()
		wctx, cancel := context.WithDeadline(ctx, lastAt.Add(c.cfg.Interval))
		_, err := c.log.Wait(wctx, base+c.cfg.Every-1)
		cancel()
		due, base := c.pending()
		switch {
		case ctx.Err() != nil:
			return c.final()
		case errors.Is(err, ledger.ErrClosed):
			return nil
		case errors.Is(err, context.DeadlineExceeded) && !due:
			// The interval passed with nothing new: sign as soon as
			// something is appended.
			if c.idle != nil {
				c.idle()
			}
			_, err = c.log.Wait(ctx, base)
			if ctx.Err() != nil {
				return c.final()
			}
			if errors.Is(err, ledger.ErrClosed) {
				return nil
			}
		}
		if _, _, err := c.Checkpoint(ctx); err != nil {
			if errors.Is(err, ledger.ErrClosed) {
				return nil
			}
			if ctx.Err() != nil {
				return c.final()
			}
			c.cfg.Logger.Error("checkpoint failed; retrying", "err", err)
			select {
			case <-time.After(min(time.Second, c.cfg.Interval)):
			case <-ctx.Done():
				return c.final()
			}
			continue
		}
		lastAt = time.Now()
	}
}

// final signs the last checkpoint as the checkpointer stops.
func (c *Checkpointer) final() error {
	ctx, cancel := context.WithTimeout(context.Background(), finalTimeout)
	defer cancel()
	if _, _, err := c.Checkpoint(ctx); err != nil && !errors.Is(err, ledger.ErrClosed) {
		c.cfg.Logger.Error("final checkpoint failed", "err", err)
	}
	return nil
}
