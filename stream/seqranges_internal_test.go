package stream

import (
	"math/rand/v2"
	"testing"
)

// TestSeqRanges checks the handled set against a plain map, with sequences
// added in order, out of order and again, and its bound.
func TestSeqRanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	var s seqRanges
	want := map[uint64]bool{}
	for range 20_000 {
		seq := 1 + rng.Uint64N(3_000)
		s.add(seq)
		want[seq] = true
	}
	for seq := uint64(0); seq <= 3_001; seq++ {
		if s.has(seq) != want[seq] {
			t.Fatalf("has(%d) = %v, want %v", seq, s.has(seq), want[seq])
		}
	}
	for i := 1; i < len(s.r); i++ {
		if s.r[i-1][1]+1 >= s.r[i][0] || s.r[i][0] > s.r[i][1] {
			t.Fatalf("ranges %v and %v overlap, touch or are reversed", s.r[i-1], s.r[i])
		}
	}
	// In order: one range however many.
	var inOrder seqRanges
	for seq := uint64(1); seq <= 100_000; seq++ {
		inOrder.add(seq)
	}
	if len(inOrder.r) != 1 || inOrder.r[0] != [2]uint64{1, 100_000} {
		t.Fatalf("in-order sequences make %d ranges: %v", len(inOrder.r), inOrder.r[:min(3, len(inOrder.r))])
	}
	// Every other sequence (two workers on one durable): bounded, the
	// oldest forgotten.
	var shared seqRanges
	for seq := uint64(1); seq <= 2*(maxRanges+10); seq += 2 {
		shared.add(seq)
	}
	if len(shared.r) != maxRanges || shared.has(1) || !shared.has(2*(maxRanges+10)-1) {
		t.Fatalf("%d ranges; has(1) %v; has(last) %v", len(shared.r), shared.has(1), shared.has(2*(maxRanges+10)-1))
	}
}
