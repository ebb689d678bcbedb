package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"io"
	"path/filepath"

	"github.com/payledger/payledger/audit"
	"github.com/payledger/payledger/node"
)

func init() {
	register(&command{name: "keygen", summary: "print the node's checkpoint public key (making the key if there is none)", run: runKeygen})
}

// runKeygen prints the public key of the data dir's checkpoint signing key
// (or of --key), as one line of hex (or base64): what auditors give
// payledger verify --public-key. A missing key is made, as serve would on
// its first start; an existing one is never replaced.
func runKeygen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen", stderr)
	dataDir := dataDirFlag(fs)
	keyFile := fs.String("key", "", "the key file (default <data-dir>/"+node.CheckpointKeyFile+")")
	b64 := fs.Bool("base64", false, "print the public key in base64 instead of hex")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: payledger keygen [--data-dir D | --key FILE] [--base64]")
		fmt.Fprintln(stderr, "\nPrints the Ed25519 public key that verifies the node's signed checkpoints, making")
		fmt.Fprintln(stderr, "the private key (mode 0600) if there is none. Give the public key to auditors:")
		fmt.Fprintln(stderr, "payledger verify --public-key KEY. Keep the private key with master.key.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	path := *keyFile
	if path == "" {
		path = filepath.Join(*dataDir, node.CheckpointKeyFile)
	}
	key, created, err := audit.LoadOrCreateKey(path)
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
