package node

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/payledger/payledger/audit"
	"github.com/payledger/payledger/internal/durable"
)

// CheckpointKeyFile holds the node's Ed25519 checkpoint signing key inside
// the data directory (docs/audit.md). Keep it with master.key: a restored
// node that lost it signs with a new key, which auditors must be told.
const CheckpointKeyFile = "checkpoint.key"

// CheckpointConfig configures the signed checkpoints of the log's head
// (audit.Checkpointer). The zero value is the default.
type CheckpointConfig struct {
	// Disabled signs no checkpoints.
	Disabled bool
	// Every signs once this many events were appended since the last
	// checkpoint. Default 10,000.
	Every uint64
	// Interval signs this long after the last checkpoint if anything was
	// appended since. Default 60s.
	Interval time.Duration
	// KeyFile is the signing key, created (mode 0600) if absent. Default
	// <DataDir>/checkpoint.key.
	KeyFile string
}

// startCheckpoints loads (or makes) the signing key and runs the
// checkpointer. It stops (with a last checkpoint) after the other
// background goroutines, the expiry scheduler among them, so that nothing
// they append lands after the last checkpoint, and before the relay
// flushes and the log closes (closeAll).
func (n *Node) startCheckpoints(ctx context.Context) error {
	cc := n.cfg.Checkpoints
	if cc.Disabled {
		return nil
	}
	path := cc.KeyFile
	if path == "" {
		path = filepath.Join(n.cfg.DataDir, CheckpointKeyFile)
	}
	key, created, err := audit.LoadOrCreateKey(path)
	if err != nil {
		return fmt.Errorf("checkpoint key: %w", err)
	}
	log := n.cfg.Logger.With("component", "checkpoints")
	if err := durable.CheckSecret(path, "checkpoint signing key", log); err != nil {
		return fmt.Errorf("checkpoint key: %w", err)
	}
	n.Checkpoints = audit.NewCheckpointer(n.Log, key, audit.CheckpointConfig{
		Every: cc.Every, Interval: cc.Interval, Now: n.cfg.Clock.Now, Logger: log,
	})
	if err := n.Checkpoints.Load(ctx); err != nil {
		return err
	}
	if created {
		log.Info("created a checkpoint signing key", "path", path, "public_key", audit.PublicKeyHex(n.Checkpoints.PublicKey()))
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.lastCancel = cancel
	n.last.Go("checkpointer", func() {
		if err := n.Checkpoints.Run(ctx); err != nil {
			log.Error("checkpoints stopped", "err", err)
		}
	})
	return nil
}
