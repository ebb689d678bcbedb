package projections_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/internal/proccpu"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/projections"
)

// benchInvoices sizes the benchmark's log: about 4.3 events per invoice.
// PAYLEDGER_BENCH_INVOICES overrides it for a longer, quiet run.
func benchInvoices() int {
	if n, err := strconv.Atoi(os.Getenv("PAYLEDGER_BENCH_INVOICES")); err == nil && n > 0 {
		return n
	}
	return 50_000
}

// BenchmarkRebuild replays a log of realistic invoice and payment events
// (workload: 20 merchants, appends of 500 writes as group commit makes them)
// into a fresh views file opened with ScratchOptions, as payledger replay
// does, and reports events/s. The log is read through boltlog's iterator, so
// record decoding and hash checks are included.
func BenchmarkRebuild(b *testing.B) {
	dir := b.TempDir()
	st := openLog(b, filepath.Join(dir, "ledger.db"), nil)
	defer st.Close()
	merchants := make([]string, 20)
	for i := range merchants {
		merchants[i] = fmt.Sprintf("m%02d", i)
	}
	appendAll(b, st, workload(newGen(), rand.New(rand.NewPCG(1, 1)), merchants, benchInvoices(), 500))
	events := st.Head().Seq

	// payledger replay, the rebuild operators run, raises the GC target
	// (cmd/payledger/replay.go): measure the rebuild as it runs there.
	// PAYLEDGER_BENCH_GOGC overrides it (100 is Go's default).
	gc := 400
	if v, err := strconv.Atoi(os.Getenv("PAYLEDGER_BENCH_GOGC")); err == nil {
		gc = v
	}
	defer debug.SetGCPercent(debug.SetGCPercent(gc))

	b.ResetTimer()
	cpu0 := proccpu.Used()
	i := 0
	for b.Loop() {
		i++
		opts := projections.ScratchOptions()
		if ps := benchPageSize(); ps > 0 {
			opts.PageSize = ps
		}
		db, err := bbolt.Open(filepath.Join(dir, fmt.Sprintf("views-%d.db", i)), 0o600, opts)
		if err != nil {
			b.Fatal(err)
		}
		sum, err := projections.Rebuild(context.Background(), st.Events(context.Background(), 1), db, time.Time{})
		if err != nil {
			b.Fatal(err)
		}
		if sum.Events != events {
			b.Fatalf("rebuilt %d events of %d", sum.Events, events)
		}
		b.StopTimer()
		if i == 1 {
			if fi, err := os.Stat(db.Path()); err == nil {
				b.ReportMetric(float64(fi.Size())/float64(events), "file-bytes/event")
			}
		}
		db.Close()
		os.Remove(db.Path())
		b.StartTimer()
	}
	b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	// CPU time (user and system, all threads) per event: what a busy machine
	// does not distort as much as wall time. The timer excludes only the
	// file cleanup, which costs little CPU.
	b.ReportMetric(float64((proccpu.Used()-cpu0).Nanoseconds())/float64(events)/float64(b.N), "cpu-ns/event")
	b.ReportMetric(float64(events), "events/op")
}

// benchPageSize overrides ScratchOptions' page size (PAYLEDGER_BENCH_PAGESIZE).
func benchPageSize() int {
	n, _ := strconv.Atoi(os.Getenv("PAYLEDGER_BENCH_PAGESIZE"))
	return n
}

// BenchmarkApplyInline is the projector's share of one append: a single
// invoice.created applied inside a write transaction of a log that already
// holds 10,000 invoices, rolled back so every iteration sees the same views.
func BenchmarkApplyInline(b *testing.B) {
	st := openLog(b, filepath.Join(b.TempDir(), "ledger.db"), &projections.Projector{})
	defer st.Close()
	g := newGen()
	appendAll(b, st, workload(g, rand.New(rand.NewPCG(2, 2)), []string{"m1", "m2", "m3"}, 10_000, 500))
	head := st.Head()
	_, w := g.invoice("m1", "bench", "1500.00", "UAH", "41.50", "2")
	e := ledger.Event{Seq: head.Seq + 1, Stream: w.Stream, Version: 1, Type: w.Events[0].Type,
		Time: w.Events[0].Time, Merchant: "m1", Data: w.Events[0].Data}
	p := &projections.Projector{}
	for b.Loop() {
		tx, err := st.DB().Begin(true)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Apply(tx, []ledger.Event{e}); err != nil {
			b.Fatal(err)
		}
		_ = tx.Rollback()
	}
}
