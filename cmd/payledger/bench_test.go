package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/node"
)

// TestBench runs the load tool briefly against its in-process node: the
// ceiling, then create and get, each with throughput, latency percentiles,
// the process's CPU time a request, its share of the ceiling, and no failed
// request; with a CPU profile and an execution trace written.
//
// Each run ends after benchRequests requests, --duration being only its
// deadline: a fixed window (300 ms) measured no create at all on a loaded
// host, where a commit's fsync outlasted it.
func TestBench(t *testing.T) {
	// Set for admin and backup: bench must not take them as its target.
	t.Setenv("PAYLEDGER_SERVER", "http://127.0.0.1:1")
	t.Setenv("PAYLEDGER_API_KEY", "pl_not_a_key")
	dir := t.TempDir()
	prof, trc := filepath.Join(dir, "cpu.pprof"), filepath.Join(dir, "bench.trace")
	code, out, errs := runCmd(t, "bench", "--connections", "4", "--duration", "60s", "--requests", strconv.Itoa(benchRequests), "--warmup", "100ms",
		"--cpuprofile", prof, "--trace", trc)
	if code != 0 {
		t.Fatalf("bench: exit %d\n%s\n%s", code, out, errs)
	}
	// Complete files: a gzipped profile, and a trace with its header.
	if b, err := os.ReadFile(prof); err != nil || !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		t.Errorf("--cpuprofile: %v, %d bytes", err, len(b))
	}
	if b, err := os.ReadFile(trc); err != nil || !bytes.HasPrefix(b, []byte("go 1.")) || len(b) < 1<<10 {
		t.Errorf("--trace: %v, %d bytes: %.20q", err, len(b), b)
	}
	for _, want := range []string{"in-process node at http://127.0.0.1:", "NATS relay true",
		"ceiling (bare net/http, ", "log since start: ", "events a commit"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The share of the ceiling must be there, but may read 0.00: printed to
	// two decimals, a slow disk's creates can be under 0.005 of it.
	line := regexp.MustCompile(`(?m)^(create|get) \(durable, 4 connections\): (\d+) requests in .*: ([\d.]+) req/s, p50 \S+, p99 \S+, p99\.9 \S+, max \S+, errors 0, (\d+) CPU-µs a request; ([\d.]+) of the ceiling$`)
	runs := line.FindAllStringSubmatch(out, -1)
	if len(runs) != 2 || runs[0][1] != "create" || runs[1][1] != "get" {
		t.Fatalf("want a create and a get line with no errors:\n%s", out)
	}
	for _, r := range runs {
		if n, _ := strconv.Atoi(r[2]); n < benchRequests {
			t.Errorf("%s: %d requests, want --requests %d", r[1], n, benchRequests)
		}
		if n, _ := strconv.Atoi(r[4]); n == 0 {
			t.Errorf("%s: no CPU time a request", r[1])
		}
	}
}

// benchRequests is how many requests the tests' bench runs measure.
const benchRequests = 20

func TestBenchUsage(t *testing.T) {
	if code, _, errs := runCmd(t, "bench", "--server", "http://127.0.0.1:1"); code != 2 || !strings.Contains(errs, "--api-key") {
		t.Errorf("--server without --api-key: exit %d, %s", code, errs)
	}
	if code, _, errs := runCmd(t, "bench", "--mode", "create,nope"); code != 2 || !strings.Contains(errs, `unknown mode "nope"`) {
		t.Errorf("unknown mode: exit %d, %s", code, errs)
	}
	if code, _, errs := runCmd(t, "bench", "--requests", "-1"); code != 2 || !strings.Contains(errs, "--requests -1") {
		t.Errorf("--requests -1: exit %d, %s", code, errs)
	}
	// A profile or trace that cannot be written fails before any load.
	missing := filepath.Join(t.TempDir(), "no", "such", "dir", "x")
	for _, flag := range []string{"--cpuprofile", "--trace"} {
		if code, out, errs := runCmd(t, "bench", flag, missing); code != 1 || !strings.Contains(errs, "no such file") || out != "" {
			t.Errorf("%s to a missing directory: exit %d, stdout %q, stderr %s", flag, code, out, errs)
		}
	}
}

// TestBenchExternalServer runs the load tool against a node it did not
// start (--server, --api-key): create and get succeed, and no CPU a request
// is printed for them, since this process's CPU would be the load
// generator's alone.
func TestBenchExternalServer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, err := node.Open(ctx, node.Config{DataDir: t.TempDir(), Addr: "127.0.0.1:0", AdminToken: "admin-secret", NoNATS: true,
		Out: io.Discard, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), KeyRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- n.Serve(ctx) }()
	defer func() { cancel(); <-served }()
	base := n.BaseURL()
	admin := map[string]string{"Authorization": "Bearer admin-secret"}
	m, err := httpJSON("POST", base+"/admin/v1/merchants", admin, `{"name": "Bench shop", "commission_percent": "2"}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := httpJSON("POST", base+"/admin/v1/rates", admin, `{"currency": "UAH", "rate": "41.50"}`); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(t, "bench", "--server", base+"/", "--api-key", m["api_key"].(string),
		"--connections", "4", "--duration", "60s", "--requests", strconv.Itoa(benchRequests), "--warmup", "100ms")
	if code != 0 {
		t.Fatalf("bench: exit %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(out, "server "+base+": its CPU is not measured") {
		t.Errorf("output does not say the server's CPU is not measured:\n%s", out)
	}
	runs := regexp.MustCompile(`(?m)^(create|get) \(durable, 4 connections\): (\d+) requests in .*, errors 0(.*)$`).FindAllStringSubmatch(out, -1)
	if len(runs) != 2 {
		t.Fatalf("want a create and a get line with no errors:\n%s", out)
	}
	for _, r := range runs {
		if n, _ := strconv.Atoi(r[2]); n < benchRequests || strings.Contains(r[3], "CPU") {
			t.Errorf("%s: %s requests, after the errors %q", r[1], r[2], r[3])
		}
	}
}

// TestBenchWarmupZero: --warmup 0 drives no load before measuring; loadgen
// takes a zero warmup for its default of 1 s, so bench must say none.
func TestBenchWarmupZero(t *testing.T) {
	if got := loadConfig(4, time.Second, 0).Warmup; got >= 0 {
		t.Errorf("--warmup 0 gives loadgen a warmup of %s, want a negative one (none)", got)
	}
	if got := loadConfig(4, time.Second, 3*time.Second).Warmup; got != 3*time.Second {
		t.Errorf("--warmup 3s gives %s", got)
	}
}
