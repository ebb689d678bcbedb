package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/node"
)

// logFileName is the event log's file inside the data directory (the node
// opens the same file).
const logFileName = node.LogFile

// dataDirFlag registers --data-dir: flag, then PAYLEDGER_DATA_DIR, then ./data.
func dataDirFlag(fs *flag.FlagSet) *string {
	return fs.String("data-dir", envOr("PAYLEDGER_DATA_DIR", "./data"), "data directory holding "+logFileName+" (env PAYLEDGER_DATA_DIR)")
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

// usageError gives a flag parsing error exit status 2 (-h stays a success).
func usageError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return &exitError{code: 2, err: err}
}
