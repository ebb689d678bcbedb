package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
	"github.com/payledger/payledger/stream/natstest"
)

// requireSameLog checks that the log at path holds exactly src's events and
// the same rate view, and that its chain verifies.
func requireSameLog(t *testing.T, path string, src *boltlog.Store) {
	t.Helper()
	st, err := openReplicaLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := st.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	if st.Head() != src.Head() {
		t.Fatalf("copy head %v, source head %v", st.Head(), src.Head())
	}
	for e, err := range st.Events(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		want, err := src.Get(e.Seq)
		if err != nil || want.Hash != e.Hash {
			t.Fatalf("sequence %d differs (%v)", e.Seq, err)
		}
	}
	got, err := projections.NewViews(st.DB()).Rate("UAH")
	if err != nil {
		t.Fatal(err)
	}
	want, err := projections.NewViews(src.DB()).Rate("UAH")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("rate view %+v, source %+v", got, want)
	}
}

func TestRestoreRoundTrip(t *testing.T) {
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	src := sourceLog(t)
	appendTestEvents(t, src, 3000)
	publishTo(t, url, src)
	dir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	code, out, errs := run(ctx, "restore", "--nats-url", url, "--data-dir", dir)
	if code != 0 {
		t.Fatalf("restore exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "restored 3000 events") {
		t.Errorf("restore printed %q", out)
	}
	requireSameLog(t, filepath.Join(dir, "ledger.db"), src)

	// Again after the write node went on: the restored log is continued.
	appendTestEvents(t, src, 200)
	publishTo(t, url, src)
	code, out, errs = run(ctx, "restore", "--nats-url", url, "--data-dir", dir)
	if code != 0 {
		t.Fatalf("second restore exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "restored 200 events") {
		t.Errorf("second restore printed %q", out)
	}
	requireSameLog(t, filepath.Join(dir, "ledger.db"), src)
}

func TestRestoreRefusesAlteredMessage(t *testing.T) {
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	src := sourceLog(t)
	appendTestEvents(t, src, 100)

	// The stream as the relay would write it, but for one altered amount.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	publishAltered(ctx, t, openStream(ctx, t, url), src, 42, func(m *nats.Msg) {
		m.Data = []byte(strings.Replace(string(m.Data), `{"i": 42}`, `{"i": 4200}`, 1))
	})

	dir := filepath.Join(t.TempDir(), "data")
	code, _, errs := run(ctx, "restore", "--nats-url", url, "--data-dir", dir)
	if code == 0 {
		t.Fatal("restore of a broken chain succeeded")
	}
	if !strings.Contains(errs, "sequence 42") {
		t.Fatalf("restore did not name sequence 42: %s", errs)
	}
	for _, name := range []string{"ledger.db", "ledger.db.restore"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (%v)", name, err)
		}
	}
}

// TestRestoreRefusesEmptyStream: restoring a data dir without events from a
// stream without messages fails and leaves no ledger.db (an empty one would
// pass for a restored log).
func TestRestoreRefusesEmptyStream(t *testing.T) {
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	openStream(ctx, t, url)

	dir := filepath.Join(t.TempDir(), "data")
	code, out, errs := run(ctx, "restore", "--nats-url", url, "--data-dir", dir)
	if code != 1 || !strings.Contains(errs, "no events to restore (nothing restored)") {
		t.Fatalf("restore from an empty stream = %d\n%s%s", code, out, errs)
	}
	for _, name := range []string{"ledger.db", "ledger.db.restore"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (%v)", name, err)
		}
	}
}

// TestOpenReplicaLogLocked: a log another process holds (a running worker
// or server) is refused after the open timeout with boltlog.ErrLocked,
// naming the file, rather than waiting for ever.
func TestOpenReplicaLogLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	holder, err := openReplicaLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	st, err := openReplicaLog(path)
	if err == nil {
		st.Close()
		t.Fatal("a held log opened twice")
	}
	if !errors.Is(err, boltlog.ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Fatalf("second open: %v", err)
	}
}
