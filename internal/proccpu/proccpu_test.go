package proccpu

import (
	"testing"
	"time"
)

// TestUsedGrowsWithWork: spinning on this goroutine shows up as CPU time.
func TestUsedGrowsWithWork(t *testing.T) {
	start := Used()
	if start == 0 {
		t.Skip("no process CPU time on this system")
	}
	deadline := time.Now().Add(10 * time.Second)
	for Used()-start < 20*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("10 s of spinning used %s of CPU", Used()-start)
		}
	}
}
