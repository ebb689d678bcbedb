package boltlog_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
)

// payload is a ~300-byte JSON event body, about what a payment event carries.
var payload = []byte(`{"invoice_id":"0192d3a4-5b6c-7d8e-9f00-112233445566","merchant_id":"m_01JD0000000000000000000000",` +
	`"amount":"1500.00","currency_code":"UAH","conversion_rate":"41.50","merchant_usdt":"35.42",` +
	`"customer_id":"cust-0000042","external_id":"order-2026-11-21-000042","status":"pending",` +
	`"expires_at":"2026-11-21T10:20:00Z","method":"visamaster.uah"}`)

func benchEvent(typ string) ledger.NewEvent {
	return ledger.NewEvent{ID: ulid.Make(), Type: typ, Time: time.Now(), Merchant: "m_01JD0000000000000000000000",
		Correlation: "req-0123456789abcdef", Data: payload}
}

// BenchmarkAppend measures durable appends (each acknowledged only after its
// commit's fsync) with concurrent writers, one ~300-byte event per append,
// the way the commands package appends: each writer opens a new aggregate
// stream ("invoice-<ULID>", expecting no stream), appends two more events to
// it expecting its version (payment status changes), then moves on to a new
// one. It reports events/s and the p50/p99 time an append waits for its
// commit (from the call to its return).
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			benchAppend(b, writers, func(w int) func() (string, ledger.Expected) {
				var stream string
				var v uint64
				return func() (string, ledger.Expected) {
					if v == 3 || stream == "" {
						stream, v = "invoice-"+ulid.Make().String(), 0
					}
					v++
					return stream, ledger.Exactly(v - 1)
				}
			})
		})
	}
}

// BenchmarkAppendHotStreams is the worst case for the stream index: each of
// 64 writers appends to its own long-lived stream, so every commit touches
// as many index pages as writers.
func BenchmarkAppendHotStreams(b *testing.B) {
	benchAppend(b, 64, func(w int) func() (string, ledger.Expected) {
		stream := fmt.Sprintf("merchant-%04d", w)
		return func() (string, ledger.Expected) { return stream, ledger.Any }
	})
}

func benchAppend(b *testing.B, writers int, streams func(w int) func() (string, ledger.Expected)) {
	var commits atomic.Int64
	s, err := boltlog.Open(filepath.Join(b.TempDir(), "ledger.db"), &boltlog.Options{
		OnCommit: func(events, appends int, took time.Duration) { commits.Add(1) },
	})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var next atomic.Int64
	waits := make([][]time.Duration, writers)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range writers {
		next1 := streams(w)
		wg.Go(func() {
			lat := make([]time.Duration, 0, b.N/writers+1)
			for next.Add(1) <= int64(b.N) {
				stream, exp := next1()
				t := time.Now()
				if _, err := s.Append(ctx, stream, exp, benchEvent("invoice.created")); err != nil {
					b.Error(err)
					return
				}
				lat = append(lat, time.Since(t))
			}
			waits[w] = lat
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	reportRate(b, b.N, elapsed)
	reportWaits(b, slices.Concat(waits...))
	b.ReportMetric(float64(b.N)/float64(commits.Load()), "events/commit")
}

func reportRate(b *testing.B, n int, elapsed time.Duration) {
	b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
}

func reportWaits(b *testing.B, all []time.Duration) {
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
}

// benchRecord is one sealed record as the log stores it.
func benchRecord(seq uint64) []byte {
	ne := benchEvent("invoice.created")
	rec, _ := ledger.Seal(nil, fmt.Sprintf("bench-%04d", seq%64), seq, seq/64+1, ledger.Hash{}, &ne)
	return rec
}

// BenchmarkBoltUpdatePerEvent is the first reference: one bbolt Update, so one
// fsync'd commit, per event, from one writer.
func BenchmarkBoltUpdatePerEvent(b *testing.B) {
	db, err := bbolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, &bbolt.Options{FreelistType: bbolt.FreelistMapType, InitialMmapSize: 256 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rec := benchRecord(1)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		err := db.Update(func(tx *bbolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("log"))
			if err != nil {
				return err
			}
			return bk.Put(binary.BigEndian.AppendUint64(nil, uint64(i+1)), rec)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, b.N, time.Since(start))
}

// BenchmarkBoltRawCeiling is the second reference: bbolt writing the same
// bytes 1,000 records per transaction into one bucket, no index, no hashing:
// the most a bbolt log on this disk can do.
func BenchmarkBoltRawCeiling(b *testing.B) {
	db, err := bbolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, &bbolt.Options{FreelistType: bbolt.FreelistMapType, InitialMmapSize: 256 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rec := benchRecord(1)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i += 1000 {
		err := db.Update(func(tx *bbolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("log"))
			if err != nil {
				return err
			}
			bk.FillPercent = 1.0
			for j := i; j < min(i+1000, b.N); j++ {
				if err := bk.Put(binary.BigEndian.AppendUint64(nil, uint64(j+1)), rec); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, b.N, time.Since(start))
}

const bigLog = 1_000_000

var (
	bigLogOnce sync.Once
	bigLogPath string
	bigLogErr  error
)

// buildBigLog writes a 1,000,000-event log (1,000 streams, ~300-byte
// payloads) through the store in large multi-stream appends, once per process.
func buildBigLog(b *testing.B) string {
	bigLogOnce.Do(func() {
		dir, err := os.MkdirTemp("", "payledger-bench-")
		if err != nil {
			bigLogErr = err
			return
		}
		cleanups = append(cleanups, func() { os.RemoveAll(dir) })
		bigLogPath = filepath.Join(dir, "ledger.db")
		s, err := boltlog.Open(bigLogPath, nil)
		if err != nil {
			bigLogErr = err
			return
		}
		defer s.Close()
		start := time.Now()
		const streams, perWrite = 100, 100
		for n, round := 0, 0; n < bigLog; round++ {
			writes := make([]ledger.Write, streams)
			for i := range writes {
				events := make([]ledger.NewEvent, perWrite)
				for j := range events {
					events[j] = benchEvent("invoice.created")
				}
				writes[i] = ledger.Write{Stream: fmt.Sprintf("bench-%04d", (round*streams+i)%1000), Expected: ledger.Any, Events: events}
			}
			if _, err := s.AppendWrites(ctx, writes...); err != nil {
				bigLogErr = err
				return
			}
			n += streams * perWrite
		}
		b.Logf("built a %d-event log in %s", bigLog, time.Since(start).Round(time.Millisecond))
	})
	if bigLogErr != nil {
		b.Fatal(bigLogErr)
	}
	return bigLogPath
}

// BenchmarkVerify1M reads and verifies a 1,000,000-event log end to end
// (hashes, chain, stream versions, index, head), read-only as
// `payledger verify` does.
func BenchmarkVerify1M(b *testing.B) {
	path := buildBigLog(b)
	s, err := boltlog.Open(path, &boltlog.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		h, err := s.Verify(ctx)
		if err != nil || h.Seq != bigLog {
			b.Fatalf("verify: %v at %d", err, h.Seq)
		}
	}
	reportRate(b, b.N*bigLog, time.Since(start))
}

// BenchmarkEvents1M decodes every event of the 1,000,000-event log through
// the Events iterator (what export and projection rebuilds do).
func BenchmarkEvents1M(b *testing.B) {
	path := buildBigLog(b)
	s, err := boltlog.Open(path, &boltlog.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		n := 0
		for _, err := range s.Events(ctx, 1) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != bigLog {
			b.Fatalf("read %d events", n)
		}
	}
	reportRate(b, b.N*bigLog, time.Since(start))
}
