package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payledger/payledger/internal/proccpu"
)

func TestRunCountsRequestsAndErrors(t *testing.T) {
	var served atomic.Int64
	res := runAgainst(t, 4, 500, func(w http.ResponseWriter, r *http.Request) {
		if served.Add(1)%10 == 0 {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"ok":true}`))
	})
	if res.Requests < 500 || res.Errors == 0 || res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P999 {
		t.Fatalf("implausible result: %+v", res)
	}
	if res.FirstError == "" {
		t.Fatal("first error not reported")
	}
}

func TestCeilingHandler(t *testing.T) {
	rec := httptest.NewRecorder()
	CeilingHandler([]byte(`{"a":1}`)).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code != 200 || rec.Body.String() != `{"a":1}` || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %q", rec.Code, rec.Body.String())
	}
}

// TestRunMeasuresCPU: a handler that spends at least 300 µs of this
// process's CPU on each request shows at least that much a request.
func TestRunMeasuresCPU(t *testing.T) {
	if proccpu.Used() == 0 {
		t.Skip("no process CPU time on this system")
	}
	const spend = 300 * time.Microsecond
	res := runAgainst(t, 1, 200, func(w http.ResponseWriter, r *http.Request) {
		for start := proccpu.Used(); proccpu.Used()-start < spend; {
		}
		w.Write([]byte(`{"ok":true}`))
	})
	if got := res.CPUPerRequest(); got < spend || res.CPU < spend*time.Duration(res.Requests) {
		t.Fatalf("CPU %s for %d requests: %s a request, want at least %s", res.CPU, res.Requests, got, spend)
	}
	if want := fmt.Sprintf(", %.0f CPU-µs a request", float64(res.CPUPerRequest())/1e3); !strings.Contains(res.String(), want) {
		t.Errorf("String() = %q, want it to contain %q", res.String(), want)
	}
}

// runAgainst runs GETs with conns connections against a test server of h
// until maxRequests are measured (no warmup).
func runAgainst(t *testing.T, conns int, maxRequests int64, h http.HandlerFunc) Result {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := Run(context.Background(), Config{Connections: conns, Duration: 5 * time.Second, Warmup: -1, MaxRequests: maxRequests},
		func(w, i int) (*http.Request, error) { return http.NewRequest(http.MethodGet, srv.URL, nil) })
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestPercentileIsNearestRank: a percentile is the smallest sample with at
// least that share of the samples at or below it, never one rank lower.
func TestPercentileIsNearestRank(t *testing.T) {
	for _, c := range []struct {
		n    int
		q    float64
		want int // 1-based rank
	}{
		{1, 0.5, 1}, {4, 0.5, 2}, {5, 0.5, 3}, {100, 0.99, 99}, {1000, 0.999, 999},
		{10, 0.999, 10}, {1080, 0.99, 1070}, {1600, 0.999, 1599}, {150, 0.99, 149},
		{10000, 0.99, 9900}, {123457, 0.999, 123334},
	} {
		sorted := make([]time.Duration, c.n)
		for i := range sorted {
			sorted[i] = time.Duration(i + 1)
		}
		if got := pct(sorted, c.q); got != time.Duration(c.want) {
			t.Errorf("q %v of %d samples: rank %d, want %d", c.q, c.n, got, c.want)
		}
	}
}

// TestRunIgnoresWarmupErrors: failures while warming up are neither counted
// nor reported as the run's first error. The server fails its first
// warmupFailures requests, then succeeds; the first request cannot be
// built. A handful of local requests ends well within the warmup.
func TestRunIgnoresWarmupErrors(t *testing.T) {
	const warmupFailures = 10
	var failed atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failed.Add(1) <= warmupFailures {
			http.Error(w, "warming", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	var built atomic.Int64
	res, err := Run(context.Background(), Config{Connections: 2, Duration: 5 * time.Second, Warmup: time.Second, MaxRequests: 200},
		func(w, i int) (*http.Request, error) {
			if built.Add(1) == 1 {
				return nil, fmt.Errorf("cannot build a request")
			}
			return http.NewRequest(http.MethodGet, srv.URL, nil)
		})
	if err != nil {
		t.Fatal(err)
	}
	// The warmup did see errors: a build failure and the server's.
	if n := failed.Load(); n <= warmupFailures {
		t.Fatalf("the server answered %d requests, want its %d failures and more", n, warmupFailures)
	}
	if res.Errors != 0 || res.FirstError != "" || res.Requests < 200 {
		t.Fatalf("errors while warming up show in the run: %+v", res)
	}
}

// TestRunStopsOnceAtMaxRequests: when many connections pass MaxRequests
// together, the run stops once; two of them closing the stop channel
// panicked the process.
func TestRunStopsOnceAtMaxRequests(t *testing.T) {
	const conns = 32
	for range 20 {
		// Every request waits until all the connections have one in
		// flight, so they all come back, and count, at once.
		var arrived atomic.Int64
		release := make(chan struct{})
		res := runAgainst(t, conns, 1, func(w http.ResponseWriter, r *http.Request) {
			if arrived.Add(1) == conns {
				close(release)
			}
			<-release
			w.Write([]byte(`{"ok":true}`))
		})
		if res.Requests < 1 {
			t.Fatalf("measured %d requests", res.Requests)
		}
	}
}
