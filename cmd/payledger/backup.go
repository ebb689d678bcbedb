package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/payledger/payledger/audit"
	"github.com/payledger/payledger/http/api"
	"github.com/payledger/payledger/internal/durable"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
)

func init() {
	register(&command{name: "backup", summary: "write a consistent copy of the log: from a running server, or from a stopped node's data dir", run: runBackup})
}

// runBackup writes a consistent snapshot of ledger.db to --out: from a
// running server's GET /admin/v1/backup (with --server), or from the data
// dir of a stopped node. It writes <out>.tmp, checks the copy is a log
// whose head is the one the snapshot named, verifies its chain (or the
// whole audit with --audit), then renames it into place. Exit status: 0
// when the backup is written and verified, 1 otherwise, 2 on bad usage.
func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backup", stderr)
	// Not adminFlags.register: without --server there is no server to ask,
	// so --server has no default, and --data-dir is also the log copied.
	var g adminFlags
	fs.StringVar(&g.server, "server", "", "URL of a running server to back up; without it, the stopped node's log in --data-dir is copied")
	fs.StringVar(&g.token, "admin-token", "", "admin token")
	fs.StringVar(&g.dataDir, "data-dir", "./data", "the stopped node's data directory to copy ledger.db from; with --server, where serve wrote admin.token, read when no token is given")
	fs.bindEnv(map[string]string{"server": "PAYLEDGER_SERVER", "admin-token": "PAYLEDGER_ADMIN_TOKEN", "data-dir": "PAYLEDGER_DATA_DIR"})
	out := fs.String("out", "", "file to write the backup to (must not exist)")
	full := fs.Bool("audit", false, "verify the copy with every check of payledger verify, not only its chain")
	noVerify := fs.Bool("no-verify", false, "do not verify the copy's chain (not with --audit)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: payledger backup --server URL [--admin-token T] --out FILE [--audit | --no-verify]")
		fmt.Fprintln(stderr, "       payledger backup --data-dir D --out FILE [--audit | --no-verify]")
		fmt.Fprintln(stderr, "\nWrites a consistent copy of the event log (ledger.db, with its views): over HTTP")
		fmt.Fprintln(stderr, "from a running server (GET /admin/v1/backup, while it goes on serving), or, without")
		fmt.Fprintln(stderr, "--server (and PAYLEDGER_SERVER), from the data dir of a stopped node. The copy's")
		fmt.Fprintln(stderr, "chain is verified before it is renamed into place. docs/operations.md: restore.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *full && *noVerify {
		return &exitError{code: 2, err: errors.New("give --audit (every check of payledger verify) or --no-verify (none), not both")}
	}
	if *out == "" {
		return &exitError{code: 2, err: errors.New("--out FILE is required")}
	}
	if _, err := os.Stat(*out); err == nil {
		return &exitError{code: 2, err: fmt.Errorf("%s exists: give a new file", *out)}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	remote := set["server"] || fs.fromEnv["server"]
	tmp := *out + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}

	var (
		want ledger.Head
		size int64
		err  error
		src  string
	)
	if remote {
		token := g.token
		if token == "" {
			b, rerr := os.ReadFile(filepath.Join(g.dataDir, adminTokenFile))
			if rerr != nil {
				return &exitError{code: 2, err: fmt.Errorf("no admin token: give --admin-token or PAYLEDGER_ADMIN_TOKEN (%v)", rerr)}
			}
			token = strings.TrimSpace(string(b))
		}
		src = strings.TrimRight(g.server, "/")
		want, size, err = downloadBackup(ctx, src, token, tmp)
	} else {
		s, path, oerr := openLogReadOnly(g.dataDir)
		if oerr != nil {
			return fmt.Errorf("%w (a running server: use --server)", oerr)
		}
		src = path
		want, size, err = audit.Snapshot(s, tmp)
		s.Close()
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	checked, err := checkBackup(ctx, tmp, want, *full, *noVerify)
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("the copy of %s: %w (nothing written)", src, err)
	}
	if err := os.Rename(tmp, *out); err != nil {
		return err
	}
	if err := durable.SyncDir(filepath.Dir(*out)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backup of %s written to %s: %d bytes, head seq %d hash %s (%s)\n", src, *out, size, want.Seq, want.Hash, checked)
	return nil
}

// downloadBackup fetches GET /admin/v1/backup into path and returns the
// head the server said the snapshot has.
func downloadBackup(ctx context.Context, server, token, path string) (ledger.Head, int64, error) {
	var head ledger.Head
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/admin/v1/backup", nil)
	if err != nil {
		return head, 0, &exitError{code: 2, err: err}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	// No overall timeout: a large log takes as long as it takes to send.
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: 10 * time.Minute}}
	res, err := client.Do(req)
	if err != nil {
		return head, 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return head, 0, fmt.Errorf("%s answered %s: %s", server, res.Status, strings.TrimSpace(string(b)))
	}
	head.Seq, err = strconv.ParseUint(res.Header.Get(api.HeaderBackupSeq), 10, 64)
	if err == nil {
		head.Hash, err = ledger.ParseHash(res.Header.Get(api.HeaderBackupHash))
	}
	if err != nil {
		return head, 0, fmt.Errorf("%s: no valid %s and %s headers: is it a payledger server?", server, api.HeaderBackupSeq, api.HeaderBackupHash)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return head, 0, err
	}
	n, err := io.Copy(f, res.Body)
	if err == nil && res.ContentLength >= 0 && n != res.ContentLength {
		err = fmt.Errorf("received %d of %d bytes", n, res.ContentLength)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return head, 0, fmt.Errorf("download from %s: %w", server, err)
	}
	return head, n, nil
}

// checkBackup opens the copy as a log, checks its head, and verifies it.
func checkBackup(ctx context.Context, path string, want ledger.Head, full, skip bool) (string, error) {
	s, err := boltlog.Open(path, &boltlog.Options{ReadOnly: true, OpenTimeout: auditOpenTimeout})
	if err != nil {
		return "", err
	}
	defer s.Close()
	if s.Head() != want {
		return "", fmt.Errorf("its head is %d %s, the snapshot's was %d %s", s.Head().Seq, s.Head().Hash, want.Seq, want.Hash)
	}
	switch {
	case skip:
		return "not verified", nil
	case full:
		dir, _ := filepath.Abs(filepath.Dir(path))
		if _, err := audit.Run(ctx, s, audit.Options{ScratchDir: dir}); err != nil {
			return "", err
		}
		return "every check of payledger verify passed", nil
	}
	if _, err := s.Verify(ctx); err != nil {
		return "", err
	}
	return "chain verified", nil
}
