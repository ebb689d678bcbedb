// Package ratelimit keeps a token bucket per key (an API key, a merchant and
// customer_id, a widget), for the HTTP adapters.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Set is a token bucket per key. Buckets idle for Idle are dropped, so the
// set does not grow without bound.
type Set struct {
	limit rate.Limit
	burst int

	mu        sync.Mutex
	m         map[string]*entry
	lastSweep time.Time
}

type entry struct {
	lim  *rate.Limiter
	last time.Time
}

// Idle is how long a key's bucket is kept unused.
const Idle = 10 * time.Minute

// New returns a set of buckets of limit tokens a second, burst at most;
// rate.Inf allows everything.
func New(limit rate.Limit, burst int) *Set {
	return &Set{limit: limit, burst: burst, m: map[string]*entry{}}
}

// Allow takes a token for key at now. When none is left it reports how long
// until one is.
func (l *Set) Allow(key string, now time.Time) (wait time.Duration, ok bool) {
	if l.limit == rate.Inf {
		return 0, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > time.Minute {
		l.lastSweep = now
		for k, e := range l.m {
			if now.Sub(e.last) > Idle {
				delete(l.m, k)
			}
		}
	}
	e := l.m[key]
	if e == nil {
		e = &entry{lim: rate.NewLimiter(l.limit, l.burst)}
		l.m[key] = e
	}
	e.last = now
	res := e.lim.ReserveN(now, 1)
	if !res.OK() {
		return time.Second, false
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}

// RetryAfter is a refusal's wait as a Retry-After header gives it: whole
// seconds, rounded up, at least 1.
func RetryAfter(wait time.Duration) int {
	return max(1, int((wait+time.Second-1)/time.Second))
}
