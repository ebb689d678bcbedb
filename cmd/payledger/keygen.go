package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/payledger/payledger/audit"
	"github.com/payledger/payledger/node"
)

func init() {
	register(&command{name: "keygen", summary: "print the node's checkpoint public key (making the key of a node that has none)", run: runKeygen})
}

// runKeygen prints the public key of the checkpoint signing key serve signs
// with (--checkpoint-key, PAYLEDGER_CHECKPOINT_KEY, else the data dir's
// checkpoint.key), as one line of hex (or base64): what auditors give
// payledger verify --public-key. A missing key is made, as serve would on
// its next start, only where the data dir holds a log, or with --create:
// a mistyped --data-dir must not get a key that verifies nothing. An
// existing key is never replaced, and printing it makes nothing.
func runKeygen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen", stderr)
	dataDir := dataDirFlag(fs)
	var keyFile string
	checkpointKeyFlag(fs, &keyFile)
	fs.Var(fs.Lookup("checkpoint-key").Value, "key", "the same as --checkpoint-key (its older name)")
	create := fs.Bool("create", false, "make the key if there is none, even where the data dir holds no "+logFileName+" (a node not started yet)")
	b64 := fs.Bool("base64", false, "print the public key in base64 instead of hex")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: payledger keygen [--data-dir D] [--checkpoint-key FILE] [--create] [--base64]")
		fmt.Fprintln(stderr, "\nPrints the Ed25519 public key that verifies the node's signed checkpoints: of the key")
		fmt.Fprintln(stderr, "serve signs with (--checkpoint-key, else <data-dir>/checkpoint.key). A missing key")
		fmt.Fprintln(stderr, "(mode 0600) is made only where the data dir holds "+logFileName+", or with --create.")
		fmt.Fprintln(stderr, "Give the public key to auditors: payledger verify --public-key KEY. Keep the private")
		fmt.Fprintln(stderr, "key with master.key.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	path := keyFile
	if path == "" {
		path = filepath.Join(*dataDir, node.CheckpointKeyFile)
	}
	mayCreate := *create
	if !mayCreate {
		_, err := os.Stat(filepath.Join(*dataDir, logFileName))
		mayCreate = err == nil
	}
	var (
		key     ed25519.PrivateKey
		created bool
		err     error
	)
	if mayCreate {
		key, created, err = audit.LoadOrCreateKey(path)
	} else if key, err = audit.LoadKey(path); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no checkpoint key at %s, and no event log at %s to make one for (is --data-dir right?): give --create to make a key for a node not started yet", path, filepath.Join(*dataDir, logFileName))
	}
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(stderr, "payledger keygen: made a new checkpoint key in %s\n", path)
	}
	pub := key.Public().(ed25519.PublicKey)
	if *b64 {
		fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(pub))
	} else {
		fmt.Fprintln(stdout, audit.PublicKeyHex(pub))
	}
	return nil
}
