package boltlog_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
)

// crashChildEnv switches the test binary into the crash test's child: the
// value is the log to append to.
const crashChildEnv = "PAYLEDGER_CRASH_CHILD"

// crashData is each crash-test event's body: in child run R, writer W's
// G-th append held K events, this is its J-th.
type crashData struct {
	R          string
	W, G, K, J int
}

// crashChild appends from several goroutines until it is killed, printing
// one line per acknowledged event ("seq stream id version") as soon as its
// append returns. Each append writes its lines with one write(2) of less
// than PIPE_BUF bytes, so a kill never leaves half an append's lines.
func crashChild() {
	s, err := boltlog.Open(os.Getenv(crashChildEnv), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child: open:", err)
		os.Exit(3)
	}
	run := ulid.Make().String()
	var mu sync.Mutex
	for w := range 8 {
		go func() {
			for g := 0; ; g++ {
				k := 1 + g%3
				events := make([]ledger.NewEvent, k)
				for j := range events {
					data, _ := json.Marshal(crashData{run, w, g, k, j})
					events[j] = ledger.NewEvent{ID: ulid.Make(), Type: "crash.test", Time: time.Now(), Data: data}
				}
				own := fmt.Sprintf("w%d", w)
				var got []ledger.Event
				if g%5 == 4 && k > 1 { // some appends span two streams atomically
					got, err = s.AppendWrites(ctx,
						ledger.Write{Stream: own, Expected: ledger.Any, Events: events[:1]},
						ledger.Write{Stream: "shared", Expected: ledger.Any, Events: events[1:]})
				} else {
					got, err = s.Append(ctx, own, ledger.Any, events...)
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, "crash child: append:", err)
					os.Exit(4)
				}
				var line strings.Builder
				for _, e := range got {
					fmt.Fprintf(&line, "%d %s %s %d\n", e.Seq, e.Stream, e.ID, e.Version)
				}
				mu.Lock()
				os.Stdout.WriteString(line.String())
				mu.Unlock()
			}
		}()
	}
	// Never outlive a parent that failed to kill us.
	time.Sleep(time.Minute)
	fmt.Fprintln(os.Stderr, "crash child: not killed within a minute")
	os.Exit(5)
}

type acked struct {
	stream  string
	id      ulid.ULID
	version uint64
}

// TestCrashRecovery kills a child process that appends continuously, at
// random points, with SIGKILL, many times over one log. After every kill the
// log must open, verify, and hold every event the child saw acknowledged,
// with whole appends only.
func TestCrashRecovery(t *testing.T) {
	iterations := 30
	if testing.Short() || raceEnabled {
		iterations = 20
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>7))
	path := filepath.Join(t.TempDir(), "ledger.db")
	all := map[uint64]acked{}
	var head uint64
	start := time.Now()
	for it := range iterations {
		// Kill after a random number of acknowledged events: 0 kills the
		// child while it opens (or catches up), large values mid-commit.
		target := rng.IntN(400)
		if it == 0 {
			target++ // the very first open creates the file; let it finish
		}
		lines := runAndKill(t, path, target)
		for _, l := range lines {
			var (
				seq, version uint64
				stream, id   string
			)
			if _, err := fmt.Sscanf(l, "%d %s %s %d", &seq, &stream, &id, &version); err != nil {
				t.Fatalf("child printed %q: %v", l, err)
			}
			a := acked{stream: stream, id: ulid.MustParse(id), version: version}
			if prev, dup := all[seq]; dup && prev != a {
				t.Fatalf("sequence %d acknowledged twice: %+v and %+v", seq, prev, a)
			}
			all[seq] = a
		}
		head = checkAfterCrash(t, path, all)
	}
	// Events committed but killed before their acknowledgement was printed
	// show that kills landed between commit and reply.
	t.Logf("%d kills, %d acknowledged events, %d in the log, %s", iterations, len(all), head, time.Since(start).Round(time.Millisecond))
}

// runAndKill starts the child, waits until it has acknowledged target
// events, kills it with SIGKILL and returns every line it printed.
func runAndKill(t *testing.T, path string, target int) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var got []string
	deadline := time.After(20 * time.Second)
	for len(got) < target {
		select {
		case l, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("child exited after %d acknowledgements: %s", len(got), stderr.String())
			}
			got = append(got, l)
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("child acknowledged only %d of %d events in time: %s", len(got), target, stderr.String())
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for l := range lines { // what was printed before the kill was acknowledged too
		got = append(got, l)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != -1 { // -1: killed by a signal
		t.Fatalf("child ended with %v, not by the kill: %s", err, stderr.String())
	}
	return got
}

func checkAfterCrash(t *testing.T, path string, all map[uint64]acked) uint64 {
	t.Helper()
	s, err := boltlog.Open(path, nil) // a writable open checks the tail and head
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()
	h, err := s.Verify(ctx)
	if err != nil {
		t.Fatalf("verify after kill: %v", err)
	}
	if h != s.Head() {
		t.Fatalf("verified to %v, head %v", h, s.Head())
	}
	for seq, a := range all {
		e, err := s.Get(seq)
		if err != nil {
			t.Fatalf("acknowledged sequence %d: %v", seq, err)
		}
		if e.Stream != a.stream || e.ID != a.id || e.Version != a.version {
			t.Fatalf("sequence %d holds %s/%d %s, acknowledged %s/%d %s", seq, e.Stream, e.Version, e.ID, a.stream, a.version, a.id)
		}
	}
	// Nothing partial: every append is there whole or not at all.
	type key struct {
		r    string
		w, g int
	}
	groups := map[key][2]int{} // events seen, events the append had
	for e, err := range s.Events(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		var d crashData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatalf("sequence %d: %v", e.Seq, err)
		}
		g := groups[key{d.R, d.W, d.G}]
		groups[key{d.R, d.W, d.G}] = [2]int{g[0] + 1, d.K}
	}
	for k, g := range groups {
		if g[0] != g[1] {
			t.Fatalf("run %s writer %d append %d: %d of its %d events in the log", k.r, k.w, k.g, g[0], g[1])
		}
	}
	if h.Seq < uint64(len(all)) {
		t.Fatalf("head %d below %d acknowledged events", h.Seq, len(all))
	}
	return h.Seq
}
