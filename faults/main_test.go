package faults

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// profile sizes the suite. The reduced one keeps `go test ./...` and CI's
// race run quick; PAYLEDGER_FAULTS=full runs the full counts.
type profile struct {
	Name string
	// Kills is how many times serve is killed with SIGKILL under load.
	Kills int
	// Loaders is how many concurrent HTTP clients create invoices.
	Loaders int
	// KillAcks: a kill comes once this cycle's acknowledged creates reach a
	// random number in [KillAcks[0], KillAcks[1]]. Every third cycle kills
	// early instead, after 1 to 20, close to the start.
	KillAcks [2]int
	// OutageRounds is how many times NATS and the webhook receiver are taken
	// away and brought back; OutageAcks is the acknowledged creates between
	// each step of a round.
	OutageRounds int
	OutageAcks   int
	// DiskCycles is how many times the disk fills up and frees again;
	// FullRefusals is how many refused creates to see while it is full.
	DiskCycles   int
	FullRefusals int
}

var (
	reduced = profile{Name: "reduced", Kills: 3, Loaders: 8, KillAcks: [2]int{100, 300},
		OutageRounds: 1, OutageAcks: 100, DiskCycles: 1, FullRefusals: 20}
	full = profile{Name: "full", Kills: 20, Loaders: 16, KillAcks: [2]int{300, 1500},
		OutageRounds: 5, OutageAcks: 400, DiskCycles: 3, FullRefusals: 100}
)

var (
	prof profile
	seed uint64
)

func TestMain(m *testing.M) {
	flag.Parse()
	prof = reduced
	if os.Getenv("PAYLEDGER_FAULTS") == "full" {
		prof = full
	}
	seed = uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("PAYLEDGER_FAULTS_SEED"), 10, 64); err == nil {
		seed = s
	}
	start := time.Now()
	code := m.Run()
	if testing.Verbose() || os.Getenv("PAYLEDGER_FAULTS_REPORT") != "" {
		w := io.Writer(os.Stdout)
		if p := os.Getenv("PAYLEDGER_FAULTS_REPORT"); p != "" {
			if f, err := os.Create(p); err == nil {
				defer f.Close()
				w = io.MultiWriter(os.Stdout, f)
			}
		}
		counts.print(w, time.Since(start))
	}
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// rng returns a random source for one test, derived from the suite's seed
// (PAYLEDGER_FAULTS_SEED reproduces a run's choices).
func rng(t *testing.T) *rand.Rand {
	t.Logf("profile %s, seed %d (PAYLEDGER_FAULTS_SEED=%d reproduces the choices)", prof.Name, seed, seed)
	var h uint64 = 14695981039346656037
	for _, c := range []byte(t.Name()) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return rand.New(rand.NewPCG(seed, h))
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// payledgerBin builds cmd/payledger once per test binary (without the race
// detector: the child is the binary operators run) and returns its path.
func payledgerBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "payledger-faults-bin-")
		if binErr != nil {
			return
		}
		goTool, err := exec.LookPath("go")
		if err != nil {
			binErr = fmt.Errorf("the fault suite builds payledger with the go command: %w", err)
			return
		}
		binPath = filepath.Join(binDir, "payledger")
		out, err := exec.Command(goTool, "build", "-o", binPath, "github.com/payledger/payledger/cmd/payledger").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build ./cmd/payledger: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// counts are what the suite injected and checked, summed over its tests and
// printed at the end (with -v, or into PAYLEDGER_FAULTS_REPORT) for
// docs/reliability.md.
var counts = &tally{m: map[string]int64{}}

type tally struct {
	mu sync.Mutex
	m  map[string]int64
}

func (c *tally) add(name string, n int64) {
	c.mu.Lock()
	c.m[name] += n
	c.mu.Unlock()
}

// countNames orders the summary; anything else follows in no set order.
var countNames = []string{
	"serve starts", "SIGKILLs of serve", "graceful stops",
	"invoices acknowledged (2xx)", "reads of acknowledged invoices after a fault (GET 200)", "acknowledged invoices missing",
	"creates without an answer (connection cut)", "  of which committed (retry got 409)", "  of which not committed (retry got 201)",
	"log verifications (payledger verify)", "events compared, stream = log", "stream checks (stream caught up with the log head)",
	"webhooks delivered (distinct webhook-id)", "webhook duplicates (same webhook-id again)", "webhooks with a bad signature",
	"NATS outages", "webhook receiver outages", "webhook attempts that failed while the receiver was away",
	"disk-full cycles", "creates refused while the disk was full", "  refused creates retried after space returned: created (201)", "  refused creates retried: already there (409)",
	"signed requests checked",
	"payment creations retried with their Idempotency-Key after a kill", "  of which the kill had cut off",
	"  of which answered as replays", "  of which acknowledged, then their idempotency record deleted",
}

func (c *tally) print(w io.Writer, took time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(w, "\nfaults summary (profile %s, seed %d, %s):\n", prof.Name, seed, took.Round(100*time.Millisecond))
	seen := map[string]bool{}
	for _, n := range countNames {
		seen[n] = true
		fmt.Fprintf(w, "  %-66s %d\n", n, c.m[n])
	}
	for n, v := range c.m {
		if !seen[n] {
			fmt.Fprintf(w, "  %-66s %d\n", n, v)
		}
	}
}
