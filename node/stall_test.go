package node

import (
	"testing"
	"time"
)

// A follower counts as stalled only while it is behind the head and its
// position does not move; catching up or moving resets the clock.
func TestStall(t *testing.T) {
	var s stall
	t0 := time.Unix(1000, 0)
	steps := []struct {
		pos, head uint64
		at        time.Duration
		want      time.Duration
	}{
		{5, 10, 0, 0}, // first sight
		{5, 10, 3 * time.Second, 3 * time.Second}, // behind, not moving
		{6, 10, 4 * time.Second, 0},               // moved
		{6, 12, 9 * time.Second, 5 * time.Second},
		{12, 12, 20 * time.Second, 0},           // caught up
		{12, 15, 21 * time.Second, time.Second}, // behind again from the last sight
	}
	for i, st := range steps {
		if got := s.stalledFor(st.pos, st.head, t0.Add(st.at)); got != st.want {
			t.Fatalf("step %d: stalled for %s, want %s", i, got, st.want)
		}
	}
}
