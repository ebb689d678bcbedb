// Package ratelimit keeps a token bucket per key (an API key, a merchant and
// customer_id, a widget, a client address), for the HTTP adapters.
package ratelimit

import (
	"cmp"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Set is a token bucket per key, holding at most a bounded number of keys.
//
// A bucket that has filled up again is dropped (every minute, and whenever
// the set is full): it behaves exactly as a new one, so dropping it forgets
// nothing. When the set is still full, the buckets closest to full are
// dropped, an eighth of the set at a time; a dropped key starts again with a
// full burst.
type Set struct {
	limit   rate.Limit
	burst   float64
	maxKeys int

	mu        sync.Mutex
	m         map[string]bucket
	lastSweep time.Time
	size      atomic.Int64 // len(m), for Empty without the lock
}

// bucket is a key's tokens as of a time: no pointers, so a full set is
// cheap to hold and to scan.
type bucket struct {
	tokens float64
	at     int64 // Unix nanoseconds
}

// never is the wait of a bucket that does not refill (a zero limit).
const never = time.Hour

// DefaultMaxKeys is how many keys a Set from New holds at most: some 10 MB
// of buckets.
const DefaultMaxKeys = 100_000

// New returns a set of buckets of limit tokens a second, burst at most, for
// at most DefaultMaxKeys keys; rate.Inf allows everything. limit must not
// be negative.
func New(limit rate.Limit, burst int) *Set { return NewMax(limit, burst, DefaultMaxKeys) }

// NewMax is New for at most maxKeys keys (at least 8).
func NewMax(limit rate.Limit, burst, maxKeys int) *Set {
	return &Set{limit: limit, burst: float64(burst), maxKeys: max(8, maxKeys), m: map[string]bucket{}}
}

// Len is the number of buckets held.
func (l *Set) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// tokens is b's tokens at now (a new bucket's when b is the zero bucket of
// a key not held).
func (l *Set) tokens(b bucket, held bool, now time.Time) float64 {
	if !held {
		return l.burst
	}
	d := now.UnixNano() - b.at
	if d <= 0 {
		return b.tokens
	}
	return min(l.burst, b.tokens+float64(l.limit)*float64(d)/float64(time.Second))
}

// wait is how long until tokens reach 1.
func (l *Set) wait(tokens float64) time.Duration {
	if l.limit <= 0 {
		return never
	}
	return time.Duration(math.Ceil((1 - tokens) / float64(l.limit) * float64(time.Second)))
}

// Allow takes a token for key at now. When none is left it reports how long
// until one is.
func (l *Set) Allow(key string, now time.Time) (wait time.Duration, ok bool) {
	if l.limit == rate.Inf {
		return 0, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b, held := l.m[key]
	t := l.tokens(b, held, now)
	if t < 1 {
		return l.wait(t), false
	}
	l.store(key, held, bucket{tokens: t - 1, at: now.UnixNano()}, now)
	return 0, true
}

// Blocked reports whether key has no whole token left at now, and then how
// long until it has one. It takes nothing: with Charge it limits what fails
// (failed authentications) without slowing what succeeds.
func (l *Set) Blocked(key string, now time.Time) (wait time.Duration, blocked bool) {
	if l.limit == rate.Inf || l.Empty() {
		return 0, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b, held := l.m[key]
	if t := l.tokens(b, held, now); t < 1 {
		return l.wait(t), true
	}
	return 0, false
}

// Charge takes a token for key at now for something that already happened,
// even when none is left: the bucket goes into debt (by at most its burst),
// so requests that passed Blocked together all count. It reports whether key
// is now out of tokens.
func (l *Set) Charge(key string, now time.Time) (exhausted bool) {
	if l.limit == rate.Inf {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b, held := l.m[key]
	t := l.tokens(b, held, now)
	if t > -l.burst {
		t--
	}
	l.store(key, held, bucket{tokens: t, at: now.UnixNano()}, now)
	return t < 1
}

// store sets key's bucket, making room for a new key. l.mu is held.
func (l *Set) store(key string, held bool, b bucket, now time.Time) {
	if !held && len(l.m) >= l.maxKeys {
		l.makeRoom(now)
	}
	l.m[key] = b
	l.size.Store(int64(len(l.m)))
}

// Empty reports whether the set holds no bucket: every key has its full
// burst. It takes no lock, so the callers of Blocked on a hot path (every
// authenticated request) pay an atomic load while nothing has failed.
func (l *Set) Empty() bool { return l.size.Load() == 0 }

// sweep drops the full buckets once a minute. l.mu is held.
func (l *Set) sweep(now time.Time) {
	if now.Sub(l.lastSweep) <= time.Minute {
		return
	}
	l.lastSweep = now
	for k, b := range l.m {
		if l.tokens(b, true, now) >= l.burst {
			delete(l.m, k)
		}
	}
	l.size.Store(int64(len(l.m)))
}

// makeRoom brings a full set down to seven eighths of its bound: first the
// full buckets, then those with the most tokens. l.mu is held.
func (l *Set) makeRoom(now time.Time) {
	target := l.maxKeys - l.maxKeys/8
	type kt struct {
		key    string
		tokens float64
	}
	rest := make([]kt, 0, len(l.m))
	for k, b := range l.m {
		t := l.tokens(b, true, now)
		if t >= l.burst {
			delete(l.m, k)
			continue
		}
		rest = append(rest, kt{k, t})
	}
	defer func() { l.size.Store(int64(len(l.m))) }()
	if len(l.m) <= target {
		return
	}
	slices.SortFunc(rest, func(a, b kt) int { return cmp.Compare(b.tokens, a.tokens) })
	for _, e := range rest[:len(l.m)-target] {
		delete(l.m, e.key)
	}
}

// RetryAfter is a refusal's wait as a Retry-After header gives it: whole
// seconds, rounded up, at least 1.
func RetryAfter(wait time.Duration) int {
	return max(1, int((wait+time.Second-1)/time.Second))
}
