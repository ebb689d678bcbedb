package ratelimit

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

var t0 = time.Date(2026, 2, 25, 12, 0, 0, 0, time.UTC)

// TestAllow: burst tokens at once, then limit a second; a refusal says how
// long to wait.
func TestAllow(t *testing.T) {
	l := New(1, 2)
	for i := range 2 {
		if _, ok := l.Allow("k", t0); !ok {
			t.Fatalf("request %d refused", i)
		}
	}
	wait, ok := l.Allow("k", t0)
	if ok || wait != time.Second || RetryAfter(wait) != 1 {
		t.Fatalf("3rd request: ok %v, wait %s", ok, wait)
	}
	if _, ok := l.Allow("other", t0); !ok {
		t.Error("another key shares the bucket")
	}
	if _, ok := l.Allow("k", t0.Add(time.Second)); !ok {
		t.Error("refused after the wait")
	}
}

// TestBlockedCharge: Blocked takes nothing; Charge takes a token each, into
// debt by at most the burst.
func TestBlockedCharge(t *testing.T) {
	l := New(0.5, 3)
	for range 10 {
		if _, blocked := l.Blocked("a", t0); blocked {
			t.Fatal("blocked before any charge")
		}
	}
	if l.Len() != 0 {
		t.Errorf("Blocked made %d buckets", l.Len())
	}
	for i := range 3 {
		if _, blocked := l.Blocked("a", t0); blocked {
			t.Fatalf("blocked after %d charges", i)
		}
		if got := l.Charge("a", t0); got != (i == 2) {
			t.Fatalf("charge %d: exhausted %v", i+1, got)
		}
	}
	wait, blocked := l.Blocked("a", t0)
	if !blocked || wait != 2*time.Second {
		t.Fatalf("after the burst: blocked %v, wait %s", blocked, wait)
	}
	if _, blocked := l.Blocked("b", t0); blocked {
		t.Error("another key is blocked")
	}
	if _, blocked := l.Blocked("a", t0.Add(2*time.Second)); blocked {
		t.Error("still blocked after the wait")
	}
	// Charges that passed Blocked together put the bucket into debt,
	// bounded by the burst.
	for range 20 {
		l.Charge("c", t0)
	}
	if wait, _ := l.Blocked("c", t0); wait != 8*time.Second {
		t.Errorf("debt of 20 charges on burst 3: wait %s, want 8s (tokens -3)", wait)
	}
	inf := New(rate.Inf, 1)
	for range 5 {
		inf.Charge("x", t0)
	}
	if _, blocked := inf.Blocked("x", t0); blocked || inf.Len() != 0 {
		t.Error("an unlimited set limits or keeps buckets")
	}
}

// TestBounded: however many keys come, the set holds at most its bound;
// full buckets go first, and a key whose bucket was emptied is kept over
// keys closer to full.
func TestBounded(t *testing.T) {
	l := NewMax(1, 10, 64)
	// An emptied bucket, then many keys with one token taken.
	for range 10 {
		l.Charge("attacker", t0)
	}
	for i := range 10_000 {
		l.Charge(fmt.Sprint("k", i), t0)
		if n := l.Len(); n > 64 {
			t.Fatalf("%d keys held, bound 64", n)
		}
	}
	if _, blocked := l.Blocked("attacker", t0); !blocked {
		t.Error("the emptied bucket was dropped before fuller ones")
	}
	// A minute later every one-token bucket has filled up: dropped at the
	// sweep, the empty one (refilling for 10s) long since too.
	if _, blocked := l.Blocked("attacker", t0.Add(2*time.Minute)); blocked || l.Len() != 0 {
		t.Errorf("after two minutes: blocked %v, %d keys", blocked, l.Len())
	}
}

// TestSweepKeepsUnfilled: a slowly refilling bucket is kept for as long as
// it is not full again, however long it is idle.
func TestSweepKeepsUnfilled(t *testing.T) {
	l := New(0.001, 2) // a token every 1000s
	l.Charge("slow", t0)
	l.Charge("slow", t0)
	at := t0.Add(30 * time.Minute)
	if _, blocked := l.Blocked("slow", at); blocked {
		t.Fatal("not refilled one token after 1800s")
	}
	if l.Len() != 1 {
		t.Fatal("a half-full bucket was dropped")
	}
	l.Charge("slow", at)
	if _, blocked := l.Blocked("slow", at); !blocked {
		t.Error("the kept bucket lost its count")
	}
}

// TestEmpty: Empty, the lock-free check before Blocked's, says whether any
// bucket is held; Blocked on an empty set blocks nothing, and the set is
// empty again once its buckets have refilled and been swept.
func TestEmpty(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := New(1, 2)
	if !l.Empty() {
		t.Fatal("a new set is not empty")
	}
	if _, blocked := l.Blocked("a", now); blocked || !l.Empty() {
		t.Fatal("Blocked on an empty set blocked, or stored a bucket")
	}
	for range 3 {
		l.Charge("a", now)
	}
	if l.Empty() {
		t.Fatal("empty after charges")
	}
	if _, blocked := l.Blocked("a", now); !blocked {
		t.Fatal("an exhausted key is not blocked")
	}
	// Two minutes on the bucket is full again, and the sweep drops it.
	later := now.Add(2 * time.Minute)
	if _, blocked := l.Blocked("a", later); blocked {
		t.Fatal("still blocked after refilling")
	}
	if !l.Empty() || l.Len() != 0 {
		t.Fatalf("after the sweep: empty %v, %d buckets", l.Empty(), l.Len())
	}
}
