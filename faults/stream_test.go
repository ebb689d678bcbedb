package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/stream"
)

// follower reads the PAYLEDGER stream of one NATS server and checks each
// message it has not checked yet: its hash and headers
// (stream.DecodeMessage), stream sequence = log sequence, and the chain to
// the message before.
type follower struct {
	url  string
	head ledger.Head // last message checked
}

func (f *follower) connect(ctx context.Context) (*nats.Conn, jetstream.Stream, error) {
	nc, err := nats.Connect(f.url, nats.Timeout(5*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	s, err := js.Stream(ctx, stream.DefaultStream)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, s, nil
}

// state is the stream's first and last sequence and message count.
func (f *follower) state() (jetstream.StreamState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, s, err := f.connect(ctx)
	if err != nil {
		return jetstream.StreamState{}, err
	}
	defer nc.Close()
	info, err := s.Info(ctx)
	if err != nil {
		return jetstream.StreamState{}, err
	}
	return info.State, nil
}

// caughtUp checks that the stream ends exactly at head (nothing missing,
// nothing beyond: stream sequence N is log sequence N), with one message
// per sequence from 1.
func (f *follower) caughtUp(head uint64) error {
	st, err := f.state()
	if err != nil {
		return err
	}
	if st.LastSeq != head || st.Msgs != head || (head > 0 && st.FirstSeq != 1) {
		return fmt.Errorf("stream holds %d messages, %d to %d; the log's head is %d", st.Msgs, st.FirstSeq, st.LastSeq, head)
	}
	return nil
}

// checkTo reads and checks every message after the last checked one up to
// seq, and advances. each, if set, sees every event checked.
func (f *follower) checkTo(t *testing.T, seq uint64, each func(ledger.Event)) {
	t.Helper()
	if seq <= f.head.Seq {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nc, s, err := f.connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   f.head.Seq + 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	for f.head.Seq < seq {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			t.Fatalf("read the stream after %d: %v", f.head.Seq, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		want := f.head.Seq + 1
		if meta.Sequence.Stream != want {
			t.Fatalf("stream: after %d comes %d", f.head.Seq, meta.Sequence.Stream)
		}
		e, err := stream.DecodeMessage(m.Headers(), m.Data(), want)
		if err != nil {
			t.Fatalf("stream message %d: %v", want, err)
		}
		if e.PrevHash != f.head.Hash {
			t.Fatalf("stream message %d: previous hash %s, the message before has %s", want, e.PrevHash, f.head.Hash)
		}
		if each != nil {
			each(e)
		}
		f.head = ledger.Head{Seq: e.Seq, Hash: e.Hash}
	}
}

// catchUp waits until the stream of a running node ends at the log head
// /readyz reports (the node may append on its own, signed checkpoints say,
// so the two are read until they agree), checks every message it has not
// checked yet, and that the stream holds, at its sequence, the head that a
// killed (or stopped) process had committed.
func (f *follower) catchUp(t *testing.T, base string, killed ledger.Head) {
	t.Helper()
	if f.head.Seq >= killed.Seq && killed.Seq > 0 {
		t.Fatalf("stream checked up to %d before the fault, at or beyond the log's head %d then", f.head.Seq, killed.Seq)
	}
	waitFor(t, time.Minute, "the stream to catch up with the log", func() error {
		head, err := readyHead(base)
		if err != nil {
			return err
		}
		return f.caughtUp(head)
	})
	head, err := readyHead(base)
	if err != nil {
		t.Fatal(err)
	}
	var atKilled ledger.Hash
	f.checkTo(t, max(head, killed.Seq), func(e ledger.Event) {
		if e.Seq == killed.Seq {
			atKilled = e.Hash
		}
	})
	if atKilled != killed.Hash {
		t.Fatalf("stream sequence %d has hash %s; the log's head before the fault was %s", killed.Seq, atKilled, killed.Hash)
	}
	counts.add("stream checks (stream caught up with the log head)", 1)
}

// compareStreamWithLog reads the whole stream from 1 and the log's events
// side by side: the same events, sequence by sequence and hash by hash,
// and no message beyond the log's head. It returns how many it compared.
func compareStreamWithLog(t *testing.T, url string, events func(yield func(ledger.Event, error) bool), head ledger.Head) int {
	t.Helper()
	f := &follower{url: url}
	if err := f.caughtUp(head.Seq); err != nil {
		t.Fatalf("stream against the log: %v", err)
	}
	var fromStream []ledger.Event
	f.checkTo(t, head.Seq, func(e ledger.Event) { fromStream = append(fromStream, e) })
	n := 0
	for e, err := range events {
		if err != nil {
			t.Fatal(err)
		}
		if n >= len(fromStream) {
			t.Fatalf("the log has event %d, the stream ends at %d", e.Seq, len(fromStream))
		}
		s := fromStream[n]
		if s.Seq != e.Seq || s.ID != e.ID || s.Hash != e.Hash || s.PrevHash != e.PrevHash || s.Type != e.Type {
			t.Fatalf("sequence %d: the stream holds %s %s %s, the log %s %s %s", e.Seq, s.ID, s.Type, s.Hash, e.ID, e.Type, e.Hash)
		}
		n++
		if e.Seq == head.Seq {
			break
		}
	}
	if n != len(fromStream) || f.head != head {
		t.Fatalf("compared %d events; the stream has %d ending at %v, the log's head is %v", n, len(fromStream), f.head, head)
	}
	counts.add("events compared, stream = log", int64(n))
	return n
}
