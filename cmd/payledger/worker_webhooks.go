package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/payledger/payledger/keyring"
	"github.com/payledger/payledger/node"
	"github.com/payledger/payledger/stream"
	"github.com/payledger/payledger/webhooks"
)

func init() {
	registerWorker(&worker{name: "webhooks", summary: "deliver merchants' webhooks, fed by the stream (a durable consumer)", run: runWebhooksWorker})
}

// runWebhooksWorker runs a webhook dispatcher in its own process: events
// from the JetStream stream through a durable consumer, state in
// <data-dir>/webhooks.db, signing secrets derived from the node's master key.
func runWebhooksWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("worker webhooks", stderr)
	ncfg := natsClientFlags(fs)
	dataDir := fs.String("data-dir", "./data", "directory of webhooks.db")
	masterKey := fs.String("master-key", "", "the node's master key file, to derive signing secrets (default <data-dir>/"+node.MasterKeyFile+")")
	baseURL := fs.String("base-url", webhooks.DefaultBaseURL, "public http or https URL of the hosted pages, for payment_link")
	allowPrivate := fs.Bool("allow-private-webhooks", false, "let webhooks reach loopback/private addresses over plain http")
	durable := fs.String("durable", webhooks.DefaultDurable, "durable consumer name, with the shard appended when there are shards")
	shard := fs.String("shard", "", "deliver for one share of the merchants: i/n, 0 <= i < n (each shard its own data dir)")
	timeout := fs.Duration("attempt-timeout", webhooks.DefaultAttemptTimeout, "timeout of one attempt")
	retryBase := fs.Duration("retry-base", webhooks.DefaultBackoffBase, "wait after the first failed attempt; doubles per attempt")
	retryMax := fs.Duration("retry-max", webhooks.DefaultBackoffMax, "longest wait between attempts")
	maxAttempts := fs.Int("max-attempts", webhooks.DefaultMaxAttempts, "attempts before a delivery fails")
	concurrency := fs.Int("concurrency", webhooks.DefaultConcurrency, "attempts in flight")
	perHost := fs.Int("per-host", webhooks.DefaultPerHostConcurrency, "attempts in flight to one host")
	logFormat, logLevel := logFlags(fs)
	fs.bindEnv(map[string]string{
		"data-dir":               "PAYLEDGER_DATA_DIR",
		"master-key":             "PAYLEDGER_MASTER_KEY",
		"base-url":               "PAYLEDGER_BASE_URL",
		"allow-private-webhooks": "PAYLEDGER_ALLOW_PRIVATE_WEBHOOKS",
		"durable":                "PAYLEDGER_WEBHOOKS_DURABLE",
		"shard":                  "PAYLEDGER_WEBHOOKS_SHARD",
	})
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: payledger worker webhooks --nats-url URL --data-dir D [--shard i/n] [flags]")
		fmt.Fprintln(stderr, "\nDelivers merchants' webhooks and status_url calls in its own process, fed by the")
		fmt.Fprintln(stderr, "NATS stream through a durable consumer, its state in <data-dir>/webhooks.db. It needs")
		fmt.Fprintln(stderr, "the node's master.key (--master-key) to sign. Run serve with --webhooks=false beside")
		fmt.Fprintln(stderr, "it, or every webhook is sent twice. Progress is logged to stderr; SIGTERM or SIGINT")
		fmt.Fprintln(stderr, "stop it.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := checkBaseURL(*baseURL); err != nil {
		return fs.valueError("base-url", err)
	}
	shardIndex, shardCount, err := parseShard(*shard)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if shardCount > 1 && *durable == webhooks.DefaultDurable {
		*durable = fmt.Sprintf("%s-%dof%d", webhooks.DefaultDurable, shardIndex, shardCount)
	}
	logger, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	ncfg.Logger = logger
	if *masterKey == "" {
		*masterKey = filepath.Join(*dataDir, node.MasterKeyFile)
	}
	// keyring.Open would make a new key: signatures nobody could verify.
	if _, err := os.Stat(*masterKey); err != nil {
		return fmt.Errorf("master key: %w (copy the node's %s, or pass --master-key)", err, node.MasterKeyFile)
	}
	kr, err := keyring.Open(*masterKey, &keyring.Options{Logger: logger})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return err
	}
	d, err := webhooks.Open(filepath.Join(*dataDir, webhooks.FileName), webhooks.Config{
		Keys: kr, BaseURL: *baseURL, AllowPrivate: *allowPrivate,
		AttemptTimeout: *timeout, BackoffBase: *retryBase, BackoffMax: *retryMax, MaxAttempts: *maxAttempts,
		Concurrency: *concurrency, PerHostConcurrency: *perHost,
		ShardIndex: shardIndex, ShardCount: shardCount, Logger: logger,
	})
	if err != nil {
		return err
	}
	defer d.Close()
	conn, err := openNATS(ctx, ncfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	logger.Info("worker webhooks: started", "checkpoint", d.Checkpoint(), "durable", *durable)
	err = d.Run(ctx, webhooks.FromStream(conn, stream.ConsumerConfig{Durable: *durable, Logger: logger}))
	if err != nil {
		return err
	}
	logger.Info("worker webhooks: stopped", "checkpoint", d.Checkpoint())
	return nil
}

// parseShard reads "i/n"; "" is the one shard 0/1.
func parseShard(s string) (index, count int, err error) {
	if s == "" {
		return 0, 1, nil
	}
	a, b, ok := strings.Cut(s, "/")
	index, err1 := strconv.Atoi(a)
	count, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || count < 1 || index < 0 || index >= count {
		return 0, 0, errors.New("--shard must be i/n with 0 <= i < n")
	}
	return index, count, nil
}
