package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/payledger/payledger/internal/durable"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/node"
)

// logFileName is the event log's file inside the data directory (the node
// opens the same file).
const logFileName = node.LogFile

// dataDirFlag registers --data-dir: flag, then PAYLEDGER_DATA_DIR, then ./data.
func dataDirFlag(fs *flagSet) *string {
	dir := fs.String("data-dir", "./data", "data directory holding "+logFileName)
	fs.bindEnv(map[string]string{"data-dir": "PAYLEDGER_DATA_DIR"})
	return dir
}

// checkpointKeyFlag registers --checkpoint-key, serve's and keygen's:
// flag, then PAYLEDGER_CHECKPOINT_KEY, then (left empty)
// <data-dir>/checkpoint.key, so that keygen prints the key serve signs with.
func checkpointKeyFlag(fs *flagSet, p *string) {
	fs.StringVar(p, "checkpoint-key", "", "Ed25519 checkpoint signing key file (default <data-dir>/"+node.CheckpointKeyFile+")")
	fs.bindEnv(map[string]string{"checkpoint-key": "PAYLEDGER_CHECKPOINT_KEY"})
}

// auditOpenTimeout is how long verify and export wait for the log's lock.
const auditOpenTimeout = 2 * time.Second

// openLogReadOnly opens <dataDir>/ledger.db for auditing: read-only, never
// creating it. The errors say what to do: no log there, or a server holding it.
func openLogReadOnly(dataDir string) (*boltlog.Store, string, error) {
	path := filepath.Join(dataDir, logFileName)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, path, fmt.Errorf("no event log at %s (is --data-dir right?)", path)
	}
	s, err := boltlog.Open(path, &boltlog.Options{ReadOnly: true, OpenTimeout: auditOpenTimeout})
	if errors.Is(err, boltlog.ErrLocked) {
		return nil, path, fmt.Errorf("%s is in use by another process, most likely a running 'payledger serve': stop it first (bbolt locks the file), or run this on a copy taken while it was stopped: %w", path, err)
	}
	if err != nil {
		return nil, path, err
	}
	return s, path, nil
}

// parseArgs parses a subcommand's flags and refuses positional arguments:
// both are usage errors (exit 2), -h and --help aside.
func parseArgs(fs *flagSet, args []string) error {
	if err := fs.applyEnv(); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	return nil
}

// usageError gives a flag parsing error exit status 2 (-h stays a
// success), not printed again: the flag package printed it, with the usage.
func usageError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return &exitError{code: 2, err: err, quiet: true}
}

// fillLog appends events to <dataDir>/ledger.db with fill, as restore and
// import both do. A log that already has events is continued from its head:
// what fill appended before it failed stays, since it continued a verified
// chain. A missing or empty log is filled in <log>.<name> and moved into
// place only once fill and a full verification succeed: all or nothing. done
// names the outcome in errors ("imported", "restored"). A fill of a missing
// or empty log that brings no events fails with the error empty (an empty
// ledger.db would pass for a copy). It returns the log's path and its head
// before and after.
func fillLog(ctx context.Context, dataDir, name, done, empty string, fill func(*boltlog.Store) (ledger.Head, error)) (path string, before, head ledger.Head, err error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", before, head, err
	}
	path = filepath.Join(dataDir, logFileName)
	if _, err := os.Stat(path); err == nil {
		st, err := openReplicaLog(path)
		if err != nil {
			return path, before, head, err
		}
		if before = st.Head(); before.Seq > 0 {
			head, err = fill(st)
			if cerr := st.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return path, before, head, fmt.Errorf("%w (the log keeps the verified events up to %d)", err, head.Seq)
			}
			return path, before, head, nil
		}
		if err := st.Close(); err != nil {
			return path, before, head, err
		}
	}
	tmp := path + "." + name
	if err := boltlog.Remove(tmp); err != nil {
		return path, before, head, err
	}
	st, err := openReplicaLog(tmp)
	if err != nil {
		return path, before, head, err
	}
	head, err = fill(st)
	if err == nil && head.Seq == 0 {
		err = errors.New(empty)
	}
	if err == nil {
		_, err = st.Verify(ctx)
	}
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = boltlog.Remove(tmp)
		return path, before, head, fmt.Errorf("%w (nothing %s)", err, done)
	}
	if err := os.Rename(tmp, path); err != nil {
		return path, before, head, err
	}
	return path, before, head, durable.SyncDir(dataDir)
}
