package boltlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/ledger"
)

// These tests drive the writer's commit directly, so they can build a commit
// group exactly; they live inside the package and so cannot use boltlogtest.

var errPoison = errors.New("poisoned")

type gateProjector struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gateProjector) Init(*bbolt.Tx) (uint64, error) { return 1 << 62, nil }
func (g *gateProjector) Apply(_ *bbolt.Tx, events []ledger.Event) error {
	switch events[len(events)-1].Type {
	case "poison":
		return errPoison
	case "gate":
		g.once.Do(func() { close(g.entered) })
		<-g.release
	}
	return nil
}

func newEv(typ string, claims ...string) ledger.NewEvent {
	return ledger.NewEvent{ID: ulid.Make(), Type: typ, Time: time.Now(), Claims: claims, Data: json.RawMessage(`{}`)}
}

func req(stream string, exp ledger.Expected, events ...ledger.NewEvent) *request {
	return &request{writes: []ledger.Write{{Stream: stream, Expected: exp, Events: events}}, done: make(chan struct{})}
}

func openInternal(t *testing.T, opts *Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		ro, err := Open(path, &Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer ro.Close()
		if _, err := ro.Verify(context.Background()); err != nil {
			t.Errorf("verify: %v", err)
		}
	})
	return s, path
}

func TestCommitGroupIsolatesFailures(t *testing.T) {
	s, _ := openInternal(t, &Options{Projectors: []Projector{&gateProjector{}}})
	okA := req("a", ledger.NoStream, newEv("ok", "key"))
	dupA := req("a", ledger.NoStream, newEv("ok"))                                       // conflicts with okA, in the same group
	poisonC := req("c", ledger.NoStream, newEv("ok"), newEv("poison"))                   // fails after writing began
	afterC := req("c", ledger.NoStream, newEv("ok"))                                     // conflicted only with the dropped poisonC
	okB := req("b", ledger.Exactly(0), newEv("ok"))                                      //
	stolen := req("d", ledger.NoStream, newEv("ok", "key"))                              // okA took the key earlier in the group
	badImport := &request{imports: []ledger.Event{{Seq: 99}}, done: make(chan struct{})} // does not continue the chain
	batch := []*request{okA, dupA, poisonC, afterC, okB, stolen, badImport}
	s.commit(batch, &arena{})
	for i, r := range batch {
		select {
		case <-r.done:
		default:
			t.Fatalf("request %d not answered", i)
		}
	}
	for name, r := range map[string]*request{"okA": okA, "afterC": afterC, "okB": okB} {
		if r.err != nil || len(r.events) != 1 {
			t.Errorf("%s: %v", name, r.err)
		}
	}
	if !errors.Is(dupA.err, ledger.ErrVersionConflict) || dupA.events != nil {
		t.Errorf("dupA: %v", dupA.err)
	}
	if !errors.Is(poisonC.err, errPoison) || poisonC.events != nil {
		t.Errorf("poisonC: %v", poisonC.err)
	}
	var ce *ledger.ClaimError
	if !errors.As(stolen.err, &ce) || ce.Holder != "a" {
		t.Errorf("stolen: %v", stolen.err)
	}
	var ve *ledger.VerifyError
	if !errors.As(badImport.err, &ve) {
		t.Errorf("badImport: %v", badImport.err)
	}
	if h := s.Head(); h.Seq != 3 {
		t.Fatalf("head %d after a group with three good appends", h.Seq)
	}
	// The sequence numbers follow the group's order, without holes.
	if okA.events[0].Seq != 1 || afterC.events[0].Seq != 2 || okB.events[0].Seq != 3 {
		t.Fatalf("sequences %d %d %d", okA.events[0].Seq, afterC.events[0].Seq, okB.events[0].Seq)
	}
}

// TestCloseCommitsQueued holds the writer, queues appends, closes the store
// and checks that every queued append is committed, not dropped.
func TestCloseCommitsQueued(t *testing.T) {
	g := &gateProjector{entered: make(chan struct{}), release: make(chan struct{})}
	s, path := openInternal(t, &Options{Projectors: []Projector{g}})
	ctx := context.Background()
	gateErr := make(chan error, 1)
	go func() { _, err := s.Append(ctx, "gate", ledger.Any, newEv("gate")); gateErr <- err }()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("writer never reached the gate")
	}
	const n = 50
	errs := make(chan error, n)
	for range n {
		go func() { _, err := s.Append(ctx, "s", ledger.Any, newEv("queued")); errs <- err }()
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(s.reqs) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d appends queued", len(s.reqs), n)
		}
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	close(g.release)
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("queued append: %v", err)
		}
	}
	if err := <-gateErr; err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	ro, err := Open(path, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if h := ro.Head(); h.Seq != n+1 {
		t.Fatalf("head %d after close, want %d", h.Seq, n+1)
	}
}

// TestFailedCommit: a commit that fails before bbolt made it visible (a
// full disk) refuses that append only; one that fails after (the sync of
// the meta page) leaves an unknown outcome, so the store refuses every
// later append rather than write over what later transactions read. Either
// way the file reopens verified, and in the second case holds the append.
func TestFailedCommit(t *testing.T) {
	ctx := context.Background()
	invisible := func(tx *bbolt.Tx) error {
		_ = tx.Rollback()
		return fmt.Errorf("write: %w", syscall.ENOSPC)
	}
	for _, tc := range []struct {
		name    string
		empty   bool // the failed commit is the log's first
		visible bool
		fail    func(tx *bbolt.Tx) error
		want    error
	}{
		{"before it became visible", false, false, invisible, ledger.ErrStorageFull},
		{"before it became visible, on an empty log", true, false, invisible, ledger.ErrStorageFull},
		{"after it became visible", false, true, func(tx *bbolt.Tx) error {
			if err := tx.Commit(); err != nil {
				return err
			}
			return fmt.Errorf("fdatasync: %w", syscall.EIO)
		}, ledger.ErrFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, path := openInternal(t, nil)
			var before uint64
			if !tc.empty {
				if _, err := s.Append(ctx, "a", ledger.NoStream, newEv("ok")); err != nil {
					t.Fatal(err)
				}
				before = 1
			}
			s.commitTx = tc.fail // read by the writer after it receives the append
			_, err := s.Append(ctx, "b", ledger.NoStream, newEv("ok", "key-b"), newEv("ok"))
			s.commitTx = (*bbolt.Tx).Commit
			if !errors.Is(err, tc.want) {
				t.Fatalf("append b: %v, want %v", err, tc.want)
			}
			if h := s.Head(); h.Seq != before {
				t.Fatalf("head %d after a failed commit", h.Seq)
			}
			retry, errRetry := s.Append(ctx, "b", ledger.NoStream, newEv("ok", "key-b"))
			_, errOther := s.Append(ctx, "c", ledger.NoStream, newEv("ok"))
			if !tc.visible {
				if errRetry != nil || retry[0].Seq != before+1 || errOther != nil || s.Failed() != nil {
					t.Fatalf("after a failed invisible commit: retry %v, other append %v, failed %v", errRetry, errOther, s.Failed())
				}
				return
			}
			if !errors.Is(errRetry, ledger.ErrFailed) || !errors.Is(errOther, ledger.ErrFailed) || !errors.Is(s.Failed(), ledger.ErrFailed) {
				t.Fatalf("after a visible failed commit: retry %v, other append %v, failed %v", errRetry, errOther, s.Failed())
			}
			// Reopened, the log has the commit (the disk kept it here) and
			// takes appends again.
			s2 := reopenVerified(t, s, path, 3)
			if _, err := s2.Append(ctx, "b", ledger.NoStream, newEv("ok")); !errors.Is(err, ledger.ErrVersionConflict) {
				t.Fatalf("retry after reopen: %v, want a version conflict (b holds the failed-but-kept append)", err)
			}
			if evs, err := s2.Append(ctx, "c", ledger.NoStream, newEv("ok")); err != nil || evs[0].Seq != 4 {
				t.Fatalf("append after reopen: %v", err)
			}
		})
	}
}

// reopenVerified closes s, opens its file again (Open checks the head
// against the last record), verifies the whole log and checks its head.
func reopenVerified(t *testing.T, s *Store, path string, head uint64) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	if h := s2.Head(); h.Seq != head {
		t.Fatalf("reopened head %d, want %d", h.Seq, head)
	}
	if _, err := s2.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s2
}
