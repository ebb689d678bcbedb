// Package loadgen drives an HTTP endpoint with a fixed number of keep-alive
// connections in a closed loop and reports throughput and latency
// percentiles. It backs `payledger bench`.
//
// In a closed loop a connection sends its next request only once the last
// is answered, so a stall holds back the requests that would have been sent
// meanwhile rather than timing them (coordinated omission): the percentiles
// are those of this load, lower in a stall than clients arriving at a fixed
// rate would see.
package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payledger/payledger/internal/proccpu"
)

// Request makes the i-th request of worker w. It must be safe for concurrent
// use by different workers.
type Request func(w, i int) (*http.Request, error)

// Config is one load run. The zero value of each optional field is the default.
type Config struct {
	Connections int           // concurrent keep-alive connections (workers); default 64
	Duration    time.Duration // how long to drive load; default 10s
	Warmup      time.Duration // load driven before measuring; default 1s
	MaxRequests int64         // stop after this many measured requests (0: no limit)
	// OK decides whether a response counts as a success; default: 2xx.
	OK func(status int) bool
}

// Result is what a run measured.
type Result struct {
	Requests   int64
	Errors     int64 // transport errors and non-OK statuses while measuring
	Elapsed    time.Duration
	Throughput float64 // successful requests per second
	P50, P99   time.Duration
	P999, Max  time.Duration
	// CPU is the CPU time this whole process used while measuring (0 where
	// the system does not report it): the load generator's own, and the
	// server's too when it runs in the same process, as payledger bench's
	// in-process node does.
	CPU        time.Duration
	FirstError string // the first of Errors ("" when none)
}

// CPUPerRequest is CPU divided among the measured requests (0 if unknown).
func (r Result) CPUPerRequest() time.Duration {
	if r.CPU <= 0 || r.Requests == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Requests)
}

func (r Result) String() string {
	s := fmt.Sprintf("%d requests in %s: %.0f req/s, p50 %s, p99 %s, p99.9 %s, max %s, errors %d",
		r.Requests, r.Elapsed.Round(time.Millisecond), r.Throughput, r.P50, r.P99, r.P999, r.Max, r.Errors)
	if c := r.CPUPerRequest(); c > 0 {
		s += fmt.Sprintf(", %.0f CPU-µs a request", float64(c)/float64(time.Microsecond))
	}
	return s
}

// Run drives load until the duration passes, MaxRequests are measured, or
// ctx ends.
func Run(ctx context.Context, cfg Config, mk Request) (Result, error) {
	if cfg.Connections <= 0 {
		cfg.Connections = 64
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Warmup < 0 {
		cfg.Warmup = 0
	} else if cfg.Warmup == 0 {
		cfg.Warmup = time.Second
	}
	if cfg.OK == nil {
		cfg.OK = func(s int) bool { return s >= 200 && s < 300 }
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        cfg.Connections,
		MaxIdleConnsPerHost: cfg.Connections,
		MaxConnsPerHost:     cfg.Connections,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	var measuring atomic.Bool
	var measured, errs atomic.Int64
	var firstErr atomic.Value
	// stop ends the run: closed once, by the timer or by the first worker
	// to count MaxRequests (several may reach it together).
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	lat := make([][]time.Duration, cfg.Connections)
	var wg sync.WaitGroup
	for w := 0; w < cfg.Connections; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]time.Duration, 0, 1<<14)
			for i := 0; ; i++ {
				select {
				case <-stop:
					lat[w] = buf
					return
				case <-ctx.Done():
					lat[w] = buf
					return
				default:
				}
				// Errors, like latencies, count only while measuring: the
				// first error reported is one of those counted.
				req, err := mk(w, i)
				if err != nil {
					if measuring.Load() {
						firstErr.CompareAndSwap(nil, err.Error())
						errs.Add(1)
					}
					continue
				}
				start := time.Now()
				resp, err := client.Do(req.WithContext(ctx))
				fail := ""
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if !cfg.OK(resp.StatusCode) {
						fail = fmt.Sprintf("status %d from %s %s", resp.StatusCode, req.Method, req.URL.Path)
					}
				} else {
					fail = err.Error()
				}
				d := time.Since(start)
				if !measuring.Load() {
					continue
				}
				if fail != "" {
					firstErr.CompareAndSwap(nil, fail)
					errs.Add(1)
					continue
				}
				buf = append(buf, d)
				if n := measured.Add(1); cfg.MaxRequests > 0 && n >= cfg.MaxRequests {
					halt()
				}
			}
		}()
	}
	timer := time.NewTimer(cfg.Warmup)
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
	measuring.Store(true)
	began, cpu0 := time.Now(), proccpu.Used()
	timer.Reset(cfg.Duration)
	select {
	case <-timer.C:
		halt()
	case <-stop:
	case <-ctx.Done():
	}
	elapsed, cpu := time.Since(began), proccpu.Used()-cpu0
	measuring.Store(false)
	wg.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	res := Result{Requests: int64(len(all)), Errors: errs.Load(), Elapsed: elapsed}
	if cpu0 > 0 {
		res.CPU = cpu
	}
	if v := firstErr.Load(); v != nil {
		res.FirstError = v.(string)
	}
	if len(all) > 0 {
		res.Throughput = float64(len(all)) / elapsed.Seconds()
		res.P50, res.P99, res.P999 = pct(all, 0.50), pct(all, 0.99), pct(all, 0.999)
		res.Max = all[len(all)-1]
	}
	return res, ctx.Err()
}

// pct is the q quantile of sorted by nearest rank: the smallest sample with
// at least q of all the samples at or below it, rank ceil(n·q). Rounding n·q
// to the nearest rank instead reports a rank too low when its fraction is
// under a half (the 1,598th of 1,600 samples as p99.9). n·q is taken in
// thousandths, rounded, so float error (100 × 0.99 = 99.000…01) cannot add a
// rank; q has at most three decimals.
func pct(sorted []time.Duration, q float64) time.Duration {
	milli := int64(math.Round(float64(len(sorted)) * q * 1000))
	rank := int((milli + 999) / 1000)
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// CeilingHandler is the reference a run is compared against: a bare net/http
// handler that reads the body and answers a fixed JSON body.
func CeilingHandler(body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
}

// Post builds a POST request with a JSON body and headers.
func Post(url string, body []byte, headers map[string]string) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return req, nil
}
