package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"sync"
	"time"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/internal/ids"
	"github.com/payledger/payledger/loadgen"
	"github.com/payledger/payledger/node"
	"github.com/payledger/payledger/stream"
)

func init() {
	register(&command{name: "bench", summary: "load-test create-invoice and get-invoice against a server, with a bare net/http ceiling", run: runBench})
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", stderr)
	// No PAYLEDGER_SERVER here: admin and backup read it, and a load test
	// must not land on the server they point at because it was set for them.
	server := fs.String("server", "", "server URL; empty: start a node in this process on a temporary data dir")
	apiKey := fs.String("api-key", "", "merchant API key (needed with --server)")
	fs.bindEnv(map[string]string{"api-key": "PAYLEDGER_API_KEY"})
	conns := fs.Int("connections", 64, "concurrent keep-alive connections")
	duration := fs.Duration("duration", 10*time.Second, "measured duration of each run")
	requests := fs.Int64("requests", 0, "end each run once this many requests were measured, or at --duration if sooner (0: at --duration)")
	warmup := fs.Duration("warmup", 2*time.Second, "load before measuring (0: none)")
	mode := fs.String("mode", "create,get", "runs, comma separated: create, get")
	dataDir := fs.String("data-dir", "", "data dir for the in-process node (default: a temporary dir, removed after)")
	noNATS := fs.Bool("no-nats", false, "in-process node without the embedded NATS relay")
	noCeiling := fs.Bool("no-ceiling", false, "skip the bare net/http ceiling run")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process (client and in-process node) to the file")
	traceFile := fs.String("trace", "", "write an execution trace of this process (go tool trace) to the file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: payledger bench [--server URL --api-key KEY] [--mode create,get] [--connections N] [--duration D] [flags]")
		fmt.Fprintln(stderr, "\nLoad-tests create-invoice (POST /api/v1/create-invoice) and get-invoice (GET")
		fmt.Fprintln(stderr, "/api/v1/invoices/ID), each run over --connections keep-alive connections for")
		fmt.Fprintln(stderr, "--duration after --warmup, and prints each run's requests a second, p50, p99, p99.9")
		fmt.Fprintln(stderr, "and max latency, and errors, beside the ceiling of a bare net/http server on this")
		fmt.Fprintln(stderr, "machine (--no-ceiling skips it). Without --server it starts a node in this process")
		fmt.Fprintln(stderr, "on a temporary data dir. Every create makes an invoice: not against a production server.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *requests < 0 {
		return &exitError{code: 2, err: fmt.Errorf("--requests %d: want 0 or more", *requests)}
	}
	modes := strings.Split(*mode, ",")
	for i, m := range modes {
		if modes[i] = strings.TrimSpace(m); modes[i] != "create" && modes[i] != "get" {
			return &exitError{code: 2, err: fmt.Errorf("unknown mode %q (want create, get)", m)}
		}
	}
	stopCPU, err := startProfile(*cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile)
	if err != nil {
		return err
	}
	defer stopCPU()
	stopTrace, err := startProfile(*traceFile, trace.Start, trace.Stop)
	if err != nil {
		return err
	}
	defer stopTrace()
	base, key := strings.TrimRight(*server, "/"), *apiKey
	logStats := func() string { return "" }
	if base == "" {
		dir := *dataDir
		if dir == "" {
			tmp, err := os.MkdirTemp("", "payledger-bench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			dir = tmp
		}
		nctx, cancel := context.WithCancel(ctx)
		// The per-key rate limit is off: the bench measures the server, and
		// a 429 costs less than an answer.
		n, err := node.Open(nctx, node.Config{DataDir: dir, Addr: "127.0.0.1:0", NoNATS: *noNATS, Out: io.Discard,
			Logger:  slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			NATS:    stream.Config{Port: -1},
			KeyRate: -1})
		if err != nil {
			cancel()
			return err
		}
		served := make(chan error, 1)
		go func() { served <- n.Serve(nctx) }()
		defer func() { cancel(); <-served }()
		if _, err := n.Service.SetRate(ctx, benchRate()); err != nil {
			return err
		}
		m, err := n.CreateMerchant(ctx, "Bench shop", "2")
		if err != nil {
			return err
		}
		base, key = n.BaseURL(), m.APIKey
		logStats = func() string { return commitStats(n) }
		fmt.Fprintf(stdout, "in-process node at %s (data dir %s, NATS relay %v, no per-key rate limit)\n", base, dir, !*noNATS)
	} else if key == "" {
		return &exitError{code: 2, err: fmt.Errorf("--api-key is required with --server")}
	} else {
		fmt.Fprintf(stdout, "server %s: its CPU is not measured (another process); CPU a request is shown for the in-process ceiling only\n", base)
	}
	external := *server != ""
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	createBody := func(w, i int) []byte {
		return fmt.Appendf(nil, `{"amount":"1500.00","currency_code":"UAH","customer_id":"c-%d-%d","external_id":"bench-%s-%d-%d","purpose":"bench"}`, w, i, run, w, i)
	}
	headers := map[string]string{"X-Api-Key": key}
	cfg := loadConfig(*conns, *duration, *warmup)
	cfg.MaxRequests = *requests

	// One invoice to size the ceiling's body and to read in the get run.
	req, _ := loadgen.Post(base+"/api/v1/create-invoice", createBody(-1, 0), headers)
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		return err
	}
	sample, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("create-invoice answered %d: %s", resp.StatusCode, sample)
	}
	var inv struct {
		ID string `json:"invoice_id"`
	}
	if err := json.Unmarshal(sample, &inv); err != nil {
		return err
	}

	var ceiling loadgen.Result
	if !*noCeiling {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: loadgen.CeilingHandler(sample), ReadHeaderTimeout: 5 * time.Second}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); _ = srv.Serve(ln) }()
		url := "http://" + ln.Addr().String() + "/"
		ceiling, err = loadgen.Run(ctx, cfg, func(w, i int) (*http.Request, error) { return loadgen.Post(url, createBody(w, i), headers) })
		_ = srv.Close()
		wg.Wait()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "ceiling (bare net/http, %d-byte JSON body, %d connections): %s\n", len(sample), *conns, ceiling)
	}
	failed := int64(0)
	for _, m := range modes {
		mk := func(w, i int) (*http.Request, error) {
			return loadgen.Post(base+"/api/v1/create-invoice", createBody(w, i), headers)
		}
		if m == "get" { // the modes were checked above
			mk = func(w, i int) (*http.Request, error) {
				r, err := http.NewRequest(http.MethodGet, base+"/api/v1/invoices/"+inv.ID, nil)
				if err == nil {
					r.Header.Set("X-Api-Key", key)
				}
				return r, err
			}
		}
		before := logStats()
		res, err := loadgen.Run(ctx, cfg, mk)
		if err != nil {
			return err
		}
		if external {
			// This process's CPU is the load generator's alone: not what a
			// request costs the server.
			res.CPU = 0
		}
		if after := logStats(); after != "" && after != before {
			fmt.Fprintf(stdout, "  log since start: %s\n", after)
		}
		fmt.Fprintf(stdout, "%s (durable, %d connections): %s", m, *conns, res)
		if ceiling.Throughput > 0 {
			fmt.Fprintf(stdout, "; %.2f of the ceiling", res.Throughput/ceiling.Throughput)
		}
		fmt.Fprintln(stdout)
		if res.FirstError != "" {
			fmt.Fprintf(stdout, "  first error: %s\n", res.FirstError)
		}
		failed += res.Errors
	}
	if failed > 0 {
		// Error answers (a 429, say) are cheaper than answers: the rates
		// above are not the server's.
		return &exitError{code: 1, err: fmt.Errorf("%d requests failed; the figures above are not clean", failed)}
	}
	return nil
}

func benchRate() commands.SetRate {
	return commands.SetRate{Meta: commands.Meta{CommandID: ids.New(), Time: time.Now(), Correlation: "bench"}, Currency: "UAH", Rate: "41.50"}
}

// startProfile runs start on a new file at path (nothing when path is
// empty) and returns what stops it and closes the file.
func startProfile(path string, start func(io.Writer) error, stop func()) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { stop(); f.Close() }, nil
}

// commitStats summarises the in-process node's group commits from its metrics.
func commitStats(n *node.Node) string {
	mfs, err := n.Registry.Gather()
	if err != nil {
		return ""
	}
	var commits, events, seconds float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "payledger_log_commits_total":
				commits = m.GetCounter().GetValue()
			case "payledger_events_appended_total":
				events = m.GetCounter().GetValue()
			case "payledger_append_commit_seconds":
				seconds = m.GetHistogram().GetSampleSum()
			}
		}
	}
	if commits == 0 {
		return ""
	}
	return fmt.Sprintf("%.0f events in %.0f group commits (%.1f events a commit), mean commit %.2f ms",
		events, commits, events/commits, 1000*seconds/commits)
}

// loadConfig is the load generator's config for bench's flags. --warmup 0
// means no warmup, which loadgen spells as a negative one (its zero is its
// default).
func loadConfig(conns int, duration, warmup time.Duration) loadgen.Config {
	if warmup == 0 {
		warmup = -1
	}
	return loadgen.Config{Connections: conns, Duration: duration, Warmup: warmup}
}
