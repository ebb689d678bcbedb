package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/internal/proccpu"
	"github.com/payledger/payledger/keyring"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
)

// benchEnv is a log with merchants whose webhook URL is one local
// receiver that answers 204 and notes when each invoice first arrived.
type benchEnv struct {
	store     *boltlog.Store
	svc       *commands.Service
	kr        *keyring.Keyring
	rate      commandsDecimal
	merchants []string
	rcv       *httptest.Server
	first     sync.Map // invoice id -> time.Time of the first attempt's arrival
	arrived   atomic.Int64
}

func newBenchEnv(b *testing.B, merchants int) *benchEnv {
	b.Helper()
	store, err := boltlog.Open(filepath.Join(b.TempDir(), "ledger.db"), &boltlog.Options{Projectors: []boltlog.Projector{&projections.Projector{}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	var master [32]byte
	be := &benchEnv{store: store, svc: commands.NewService(store, commands.Config{AllowPrivateWebhooks: true}), kr: keyring.New(master)}
	be.rcv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		var body struct {
			InvoiceID string `json:"invoice_id"`
		}
		raw, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(raw, &body)
		if _, loaded := be.first.LoadOrStore(body.InvoiceID, at); !loaded {
			be.arrived.Add(1)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(be.rcv.Close)
	ctx := context.Background()
	rate, err := be.svc.SetRate(ctx, commands.SetRate{Meta: benchMeta(), Currency: "UAH", Rate: "41.50"})
	if err != nil {
		b.Fatal(err)
	}
	be.rate = rate.Rate
	for i := range merchants {
		id, name, hook := fmt.Sprintf("m%d", i), "bench", be.rcv.URL+"/hook"
		if err := be.svc.RegisterMerchant(ctx, commands.RegisterMerchant{Meta: benchMeta(), MerchantID: id,
			Settings: commands.MerchantSettings{Name: &name, WebhookURL: &hook},
			Key:      commands.APIKeyIssued{KeyID: ulid.Make().String(), KeyHash: keyring.HashAPIKey("k" + id), Prefix: "pl_b"},
			Secret:   commands.SecretMaterial{SecretHash: keyring.SecretHash(be.kr.SigningSecret(id, 1))},
		}); err != nil {
			b.Fatal(err)
		}
		be.merchants = append(be.merchants, id)
	}
	return be
}

func benchMeta() commands.Meta { return commands.Meta{CommandID: ulid.Make(), Time: time.Now()} }

// invoices creates n invoices from 32 goroutines, as fast as the log
// commits them, calling committed with each invoice id and the time its
// append returned.
func (be *benchEnv) invoices(b *testing.B, n int, committed func(id string, at time.Time)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				id := ulid.Make()
				inv, err := be.svc.CreateInvoice(context.Background(), commands.CreateInvoice{Meta: benchMeta(), InvoiceID: id,
					MerchantID: be.merchants[w%len(be.merchants)], Amount: "100.00", Currency: "UAH", ExternalID: id.String(), Rate: be.rate})
				if err != nil {
					b.Error(err)
					return
				}
				if committed != nil {
					committed(inv.InvoiceID, time.Now())
				}
			}
		}()
	}
	wg.Wait()
}

func (be *benchEnv) run(b *testing.B) (*Dispatcher, func()) {
	d, err := Open(filepath.Join(b.TempDir(), FileName), Config{Keys: be.kr, AllowPrivate: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, FromLog(be.store, 0, DefaultLinger)) }()
	return d, func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
		d.Close()
	}
}

func (be *benchEnv) waitArrived(b *testing.B, n int) {
	deadline := time.Now().Add(5 * time.Minute)
	for be.arrived.Load() < int64(n) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d webhooks arrived", be.arrived.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkWebhookThroughput: b.N invoices committed beforehand, then the
// dispatcher starts: ingest (views, bodies, deliveries), signing, POST to
// a local receiver and recording the attempt, until every one arrived and
// is recorded delivered. Reports deliveries/s.
func BenchmarkWebhookThroughput(b *testing.B) {
	be := newBenchEnv(b, 8)
	be.invoices(b, b.N, nil)
	b.ResetTimer()
	start, cpu0 := time.Now(), proccpu.Used()
	d, stop := be.run(b)
	be.waitArrived(b, b.N)
	for {
		if st := d.Stats(); st.Delivered >= uint64(b.N) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	took, cpu := time.Since(start), proccpu.Used()-cpu0
	b.StopTimer()
	stop()
	b.ReportMetric(float64(b.N)/took.Seconds(), "deliveries/s")
	// CPU per delivery (dispatcher and receiver, user + system) does not
	// depend on what else the machine runs: 2 cores / this = capacity.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/delivery")
}

// BenchmarkWebhookLatency: b.N invoices committed by 32 concurrent clients
// while the dispatcher runs; the time from each append's return (its
// commit) to the first attempt's arrival at the receiver. Reports p50 and
// p99 in milliseconds, and the delivery rate that load made.
func BenchmarkWebhookLatency(b *testing.B) {
	be := newBenchEnv(b, 8)
	_, stop := be.run(b)
	defer stop()
	var mu sync.Mutex
	commit := make(map[string]time.Time, b.N)
	b.ResetTimer()
	start := time.Now()
	be.invoices(b, b.N, func(id string, at time.Time) {
		mu.Lock()
		commit[id] = at
		mu.Unlock()
	})
	be.waitArrived(b, b.N)
	took := time.Since(start)
	b.StopTimer()
	lat := make([]time.Duration, 0, b.N)
	for id, c := range commit {
		v, ok := be.first.Load(id)
		if !ok {
			b.Fatalf("invoice %s never arrived", id)
		}
		// An attempt can arrive before the append returns to its caller:
		// that counts as zero.
		lat = append(lat, max(v.(time.Time).Sub(c), 0))
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(b.N)/took.Seconds(), "deliveries/s")
}
