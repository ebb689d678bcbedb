package stream_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/internal/proccpu"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/stream"
)

var (
	benchRate     = flag.Int("relay.rate", 10000, "BenchmarkRelayLag: events appended per second")
	benchDuration = flag.Duration("relay.duration", 5*time.Second, "BenchmarkRelayLag: how long to append")
	benchBacklog  = flag.Int("relay.backlog", 200000, "BenchmarkRelayCatchUp: events in the backlog")
	benchProfile  = flag.String("relay.cpuprofile", "", "BenchmarkRelayCatchUp: write a CPU profile of the catch-up alone here")
)

// benchData is an invoice.created payload of a realistic size (~330 bytes).
var benchData = json.RawMessage(`{"invoice_id":"0193a5f2-7c1e-7d3a-9b1e-2f4c6d8e0a1b","merchant_id":"01J9Z3Q4R5S6T7V8W9X0Y1Z2A3","amount":"1500.00","currency_code":"UAH","customer_id":"cust-42","external_id":"order-2025-000042","purpose":"Order #42","conversion_rate":"41.50","merchant_usdt":"35.42","expires_at":"2025-03-01T12:20:00Z","callback_url":"https://shop.example/hooks/payledger"}`)

func benchEvent(i int) ledger.NewEvent {
	return ledger.NewEvent{
		ID: ulid.Make(), Type: "invoice.created", Time: time.Now(),
		Merchant: fmt.Sprintf("01J9Z3Q4R5S6T7V8W9X0Y1Z2%02d", i%20), Correlation: "req-0123456789abcdef",
		Data: benchData,
	}
}

// embedded starts the embedded server as serve does by default.
func embedded(b *testing.B) *stream.Conn {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := stream.Open(ctx, stream.Config{StoreDir: b.TempDir(), Port: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(conn.Close)
	if _, err := conn.EnsureStream(ctx); err != nil {
		b.Fatal(err)
	}
	return conn
}

// BenchmarkRelayLag appends events at -relay.rate a second (each its own
// append, so concurrent appends share group commits as HTTP requests do)
// for -relay.duration and reports the publish lag from commit to JetStream
// acknowledgement. Run it with -benchtime=1x.
func BenchmarkRelayLag(b *testing.B) {
	for range b.N {
		conn := embedded(b)
		var mu sync.Mutex
		type commit struct {
			head uint64
			at   time.Time
		}
		var commits []commit
		var store *boltlog.Store
		opts := &boltlog.Options{OnCommit: func(events, appends int, took time.Duration) {
			now := time.Now()
			h := store.Head().Seq
			mu.Lock()
			commits = append(commits, commit{h, now})
			mu.Unlock()
		}}
		var err error
		store, err = boltlog.Open(filepath.Join(b.TempDir(), "ledger.db"), opts)
		if err != nil {
			b.Fatal(err)
		}
		lags := make([]time.Duration, 0, int(float64(*benchRate)*benchDuration.Seconds())+1024)
		var lagMu sync.Mutex
		relay, err := stream.NewRelay(conn, store, stream.RelayConfig{OnAck: func(seq uint64, _ time.Duration) {
			now := time.Now()
			mu.Lock()
			i := sort.Search(len(commits), func(i int) bool { return commits[i].head >= seq })
			at := now // acknowledged before OnCommit ran: no lag to speak of
			if i < len(commits) {
				at = commits[i].at
			}
			mu.Unlock()
			lagMu.Lock()
			lags = append(lags, now.Sub(at))
			lagMu.Unlock()
		}})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- relay.Run(ctx) }()

		// Pace appends in 1ms ticks.
		b.ResetTimer()
		perTick := *benchRate / 1000
		sem := make(chan struct{}, 256)
		var wg sync.WaitGroup
		var appendErr error
		var errOnce sync.Once
		start := time.Now()
		tick := time.NewTicker(time.Millisecond)
		sent := 0
		for now := range tick.C {
			if now.Sub(start) >= *benchDuration {
				break
			}
			due := int(float64(*benchRate) * now.Sub(start).Seconds())
			for ; sent < due && sent < due+perTick; sent++ {
				sem <- struct{}{}
				wg.Add(1)
				go func(i int) {
					defer func() { <-sem; wg.Done() }()
					if _, err := store.Append(context.Background(), fmt.Sprintf("invoice-%d", i), ledger.NoStream, benchEvent(i)); err != nil {
						errOnce.Do(func() { appendErr = err })
					}
				}(sent)
			}
		}
		tick.Stop()
		wg.Wait()
		elapsed := time.Since(start)
		fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := relay.Flush(fctx); err != nil {
			b.Fatal(err)
		}
		fcancel()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if appendErr != nil {
			b.Fatal(appendErr)
		}
		store.Close()

		lagMu.Lock()
		// Skip the first half second (server and caches warming up).
		skip := min(len(lags)/10, *benchRate/2)
		l := slices.Clone(lags[skip:])
		lagMu.Unlock()
		slices.Sort(l)
		pct := func(p float64) float64 { return float64(l[int(p*float64(len(l)-1))].Microseconds()) / 1000 }
		b.ReportMetric(float64(sent)/elapsed.Seconds(), "events/s")
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(pct(1), "max-ms")
		b.ReportMetric(float64(len(commits))/elapsed.Seconds(), "commits/s")
	}
}

// BenchmarkRelayCatchUp fills a log with -relay.backlog events while no
// relay runs (NATS away), then starts one and reports how fast it publishes
// the backlog. Run it with -benchtime=1x.
func BenchmarkRelayCatchUp(b *testing.B) {
	store, err := boltlog.Open(filepath.Join(b.TempDir(), "ledger.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	const per = 1000
	for i := 0; i < *benchBacklog; i += per {
		evs := make([]ledger.NewEvent, min(per, *benchBacklog-i))
		for j := range evs {
			evs[j] = benchEvent(i + j)
		}
		if _, err := store.Append(context.Background(), fmt.Sprintf("invoice-%d", i), ledger.NoStream, evs...); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		conn := embedded(b)
		relay, err := stream.NewRelay(conn, store, stream.RelayConfig{})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		if *benchProfile != "" {
			f, err := os.Create(*benchProfile)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
		b.StartTimer()
		start, cpu0 := time.Now(), proccpu.Used()
		go func() { done <- relay.Run(ctx) }()
		fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Minute)
		if err := relay.Flush(fctx); err != nil {
			b.Fatal(err)
		}
		elapsed, cpu := time.Since(start), proccpu.Used()-cpu0
		b.StopTimer()
		fcancel()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(*benchBacklog)/elapsed.Seconds(), "events/s")
		// CPU time of the process (relay and embedded server) per event: a
		// figure that does not depend on what else the machine runs.
		b.ReportMetric(float64(cpu.Microseconds())/float64(*benchBacklog), "cpu-µs/event")
		conn.Close()
	}
}

// BenchmarkDecodeMessage is a consumer's check of one message: decoding,
// the hash, the headers and the body's one spelling.
func BenchmarkDecodeMessage(b *testing.B) {
	log := openLog(b)
	appendEvents(b, log, 0, 1, 1)
	e, err := log.Get(1)
	if err != nil {
		b.Fatal(err)
	}
	m := stream.Message("", &e)
	b.SetBytes(int64(len(m.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := stream.DecodeMessage(m.Header, m.Data, 1); err != nil {
			b.Fatal(err)
		}
	}
}
