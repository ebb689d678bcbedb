package webhooks

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/bbolt"
)

// scheduler holds, in memory, the due index of the deliveries that may be
// attempted (each the earliest pending delivery of its resource) and starts
// their attempts when due, at most perHost at a time to one host and
// maxActive in all. A host at its limit keeps its own due deliveries
// waiting; the others go on.
type scheduler struct {
	mu        sync.Mutex
	h         entryHeap
	byKey     map[dkey]*entry // in the heap or waiting for a slot
	inflight  map[dkey]bool
	hosts     map[string]*hostQueue
	starved   map[string]bool // hosts with waiting entries held back by maxActive
	active    int
	maxActive int
	perHost   int
	closed    bool
	wake      chan struct{}
	launch    func(*entry)
	// launching counts the entries begun and not yet launched (launch is
	// called after s.mu is released): stop waits for them, so that once it
	// returns no attempt can start.
	launching sync.WaitGroup
}

type entry struct {
	key  dkey
	due  time.Time
	host string
	idx  int // in the heap; -1 when not
	// q is the host queue the entry waits in for a slot (nil when not),
	// between prev and next.
	q          *hostQueue
	prev, next *entry
}

// hostQueue is a host's attempts in flight and its due entries waiting for
// a slot, in the order they became due. An entry unscheduled or moved
// while it waits leaves the queue at once.
type hostQueue struct {
	active     int
	head, tail *entry
	n          int // entries waiting
}

func (q *hostQueue) push(e *entry) {
	e.q, e.prev, e.next = q, q.tail, nil
	if q.tail != nil {
		q.tail.next = e
	} else {
		q.head = e
	}
	q.tail = e
	q.n++
}

func (q *hostQueue) unlink(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		q.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		q.tail = e.prev
	}
	e.q, e.prev, e.next = nil, nil, nil
	q.n--
}

func newScheduler(maxActive, perHost int, launch func(*entry)) *scheduler {
	return &scheduler{
		byKey: make(map[dkey]*entry), inflight: make(map[dkey]bool),
		hosts: make(map[string]*hostQueue), starved: make(map[string]bool),
		maxActive: maxActive, perHost: perHost, wake: make(chan struct{}, 1), launch: launch,
	}
}

// load fills the heap from the due index. A key of another length is
// ErrCorrupt: skipping it could leave a delivery, and every later one of
// its resource, never attempted, and nothing would say so.
func (s *scheduler) load(tx *bbolt.Tx) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return tx.Bucket(bDue).ForEach(func(k, v []byte) error {
		if len(k) != 17 {
			return fmt.Errorf("%w: %s key %x of %d bytes, want 17", ErrCorrupt, bDue, k, len(k))
		}
		var key dkey
		copy(key[:], k[8:])
		due := time.Unix(0, int64(u64(k[:8])^(1<<63)))
		s.upsert(key, due, string(v))
		return nil
	})
}

func (s *scheduler) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// apply brings the schedule in line with a committed transaction: done
// are the keys whose attempts it recorded (no longer in flight); ops are
// its due-index changes, in order. Changes to a key in flight are ignored:
// the transaction recording its attempt states where it stands.
func (s *scheduler) apply(ops []memOp, done []dkey) {
	if len(ops) == 0 && len(done) == 0 {
		return
	}
	s.mu.Lock()
	for _, k := range done {
		delete(s.inflight, k)
	}
	for _, op := range ops {
		if s.inflight[op.key] {
			continue
		}
		if op.due.IsZero() {
			s.remove(op.key)
		} else {
			s.upsert(op.key, op.due, op.host)
		}
	}
	// Start what is due now from here, sparing a hop through run's
	// goroutine: the commit-to-attempt latency is mostly such hops.
	var start []*entry
	if !s.closed {
		start = s.popDue(time.Now(), nil)
	}
	s.mu.Unlock()
	s.start(start)
	s.signal()
}

// start launches entries begun under s.mu, after it is released.
func (s *scheduler) start(begun []*entry) {
	for _, e := range begun {
		s.launch(e)
		s.launching.Done()
	}
}

// popDue takes the entries due at now off the heap: those a slot is free
// for are begun and returned, the others wait in their host's queue.
// s.mu must be held.
func (s *scheduler) popDue(now time.Time, start []*entry) []*entry {
	for len(s.h) > 0 && !s.h[0].due.After(now) {
		e := heap.Pop(&s.h).(*entry)
		q := s.hostQ(e.host)
		if q.active < s.perHost && s.active < s.maxActive {
			s.begin(e, q)
			start = append(start, e)
			continue
		}
		q.push(e)
		if q.active < s.perHost {
			s.starved[e.host] = true
		}
	}
	return start
}

func (s *scheduler) remove(k dkey) {
	e := s.byKey[k]
	if e == nil {
		return
	}
	s.detach(e)
	delete(s.byKey, k)
}

// detach takes e off the heap, or out of the host queue it waits in.
func (s *scheduler) detach(e *entry) {
	if e.idx >= 0 {
		heap.Remove(&s.h, e.idx)
		return
	}
	q := e.q
	if q == nil {
		return
	}
	q.unlink(e)
	if q.n == 0 {
		delete(s.starved, e.host)
		if q.active == 0 {
			delete(s.hosts, e.host)
		}
	}
}

func (s *scheduler) upsert(k dkey, due time.Time, host string) {
	if e := s.byKey[k]; e != nil {
		if e.idx >= 0 {
			e.due, e.host = due, host
			heap.Fix(&s.h, e.idx)
			return
		}
		// Waiting for a slot: back to the heap at its new time.
		s.detach(e)
		e.due, e.host = due, host
		heap.Push(&s.h, e)
		return
	}
	e := &entry{key: k, due: due, host: host}
	heap.Push(&s.h, e)
	s.byKey[k] = e
}

func (s *scheduler) hostQ(h string) *hostQueue {
	q := s.hosts[h]
	if q == nil {
		q = &hostQueue{}
		s.hosts[h] = q
	}
	return q
}

// begin marks e in flight; the caller launches it after unlocking, with
// start. s.mu must be held and the scheduler not closed.
func (s *scheduler) begin(e *entry, q *hostQueue) {
	s.launching.Add(1)
	delete(s.byKey, e.key)
	s.inflight[e.key] = true
	q.active++
	s.active++
}

// run starts due attempts until ctx ends.
func (s *scheduler) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var start []*entry
	for {
		start = start[:0]
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		now := time.Now()
		start = s.popDue(now, start)
		wait := time.Hour
		if len(s.h) > 0 {
			wait = s.h[0].due.Sub(now)
		}
		s.mu.Unlock()
		s.start(start)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}
	}
}

// done frees an attempt's slot (its HTTP exchange is over) and starts
// what waited for it.
func (s *scheduler) done(host string) {
	var start []*entry
	s.mu.Lock()
	q := s.hostQ(host)
	q.active--
	s.active--
	if !s.closed {
		start = s.drainHost(host, q, start)
		for h := range s.starved {
			if s.active >= s.maxActive {
				break
			}
			start = s.drainHost(h, s.hostQ(h), start)
		}
	}
	if q.active == 0 && q.n == 0 {
		delete(s.hosts, host)
	}
	s.mu.Unlock()
	s.start(start)
}

func (s *scheduler) drainHost(h string, q *hostQueue, start []*entry) []*entry {
	for q.head != nil && q.active < s.perHost && s.active < s.maxActive {
		e := q.head
		q.unlink(e)
		s.begin(e, q)
		start = append(start, e)
	}
	if q.n == 0 || q.active >= s.perHost {
		delete(s.starved, h)
	} else {
		s.starved[h] = true
	}
	return start
}

// stop makes the scheduler launch nothing more, and returns once what was
// begun before has been launched: after it, no attempt starts. (Entries
// are begun from other goroutines too, as commits apply their changes.)
func (s *scheduler) stop() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.signal()
	s.launching.Wait()
}

// inFlight and queued are for stats.
func (s *scheduler) counts() (inflight, due int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.inflight), len(s.byKey)
}

type entryHeap []*entry

func (h entryHeap) Len() int { return len(h) }
func (h entryHeap) Less(i, j int) bool {
	if h[i].due.Equal(h[j].due) {
		return string(h[i].key[:]) < string(h[j].key[:])
	}
	return h[i].due.Before(h[j].due)
}
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.idx = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.idx = -1
	return e
}
