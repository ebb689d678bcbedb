package webhooks

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// formatVersion is the layout of the w_ buckets. Persisted: bump it (never
// reuse a number) when a key or value layout changes.
//
//	1: the time indexes end in the dkey, so deliveries of one time listed
//	   oldest event first;
//	2: they end in the dkey inverted (indexKey), so they list newest first
//	   like the rest. Open rewrites a format 1 file's indexes (migrate1).
const formatVersion byte = 2

// Bucket names. Persisted: never rename. Keys join parts with 0x00 (ids and
// URLs never contain one); a dkey is 9 bytes (event sequence, kind).
var (
	bMeta       = []byte("w_meta")       // "format" -> 1 byte; "checkpoint" -> seq (8)
	bDeliveries = []byte("w_deliveries") // dkey -> record (without its body)
	bBodies     = []byte("w_bodies")     // dkey -> body bytes, as sent
	bIDs        = []byte("w_ids")        // event id (ULID text) -> seq (8)
	bAttempts   = []byte("w_attempts")   // dkey n (4) -> Attempt
	bQueue      = []byte("w_queue")      // resource key 0 dkey -> "": pending deliveries in event order
	bHead       = []byte("w_head")       // resource key -> dkey: the queue's head, which is in w_due
	bDue        = []byte("w_due")        // due time (8) dkey -> host
	bByTime     = []byte("w_ix_time")    // merchant 0 ^created (8) ^dkey -> ""
	bByStatus   = []byte("w_ix_status")  // merchant 0 status 0 ^created (8) ^dkey -> ""
	bCounters   = []byte("w_counters")   // "t" 0 merchant | "s" 0 merchant 0 status -> count (8)
	bDisabled   = []byte("w_disabled")   // merchant 0 url -> disabledTarget

	allBuckets = [][]byte{bMeta, bDeliveries, bBodies, bIDs, bAttempts, bQueue, bHead, bDue, bByTime, bByStatus, bCounters, bDisabled}

	keyFormat     = []byte("format")
	keyCheckpoint = []byte("checkpoint")
)

// disabledTarget records a target that answered 410 Gone.
type disabledTarget struct {
	At         time.Time `json:"at"`
	DeliveryID string    `json:"delivery_id"`
}

func initBuckets(tx *bbolt.Tx) (uint64, error) {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return 0, fmt.Errorf("create %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bMeta)
	switch f := meta.Get(keyFormat); {
	case f == nil:
		if err := meta.Put(keyFormat, []byte{formatVersion}); err != nil {
			return 0, err
		}
	case len(f) != 1:
		return 0, fmt.Errorf("%w: format record of %d bytes", ErrCorrupt, len(f))
	case f[0] == 1:
		if err := migrate1(tx); err != nil {
			return 0, fmt.Errorf("webhooks format 1 to %d: %w", formatVersion, err)
		}
		if err := meta.Put(keyFormat, []byte{formatVersion}); err != nil {
			return 0, err
		}
	case f[0] != formatVersion:
		return 0, fmt.Errorf("%w: webhooks format %d, this build reads %d", ErrUnsupportedVersion, f[0], formatVersion)
	}
	return u64(meta.Get(keyCheckpoint)), nil
}

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func join(parts ...string) []byte {
	var b []byte
	for i, p := range parts {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

// timeIndexKey is a time index's key: newest first, by the event's time
// and then, for one time, by the event's sequence (and kind).
func timeIndexKey(prefix []byte, created time.Time, k dkey) []byte {
	out := make([]byte, 0, len(prefix)+1+8+9)
	out = append(append(out, prefix...), 0)
	out = binary.BigEndian.AppendUint64(out, ^sortTime(created))
	ik := indexKey(k)
	return append(out, ik[:]...)
}

// indexKey inverts the bytes of a dkey, as the time indexes keep it; it is
// its own inverse, so it also reads a dkey back from an index key's tail.
func indexKey(k dkey) dkey {
	for i := range k {
		k[i] = ^k[i]
	}
	return k
}

// migrate1 rewrites a format 1 file's time indexes, whose keys end in the
// dkey as it is, to end in it inverted. It runs in Open's transaction,
// with the format record's change: all or nothing.
func migrate1(tx *bbolt.Tx) error {
	for _, name := range [][]byte{bByTime, bByStatus} {
		b := tx.Bucket(name)
		var old [][]byte
		if err := b.ForEach(func(k, _ []byte) error {
			old = append(old, bytes.Clone(k))
			return nil
		}); err != nil {
			return err
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		for _, k := range old {
			if len(k) < 1+8+9 {
				return fmt.Errorf("%w: %s key of %d bytes", ErrCorrupt, name, len(k))
			}
			tail := (*dkey)(k[len(k)-9:])
			*tail = indexKey(*tail)
			if err := b.Put(k, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func queueKey(resource string, k dkey) []byte {
	out := make([]byte, 0, len(resource)+10)
	out = append(append(out, resource...), 0)
	return append(out, k[:]...)
}

func dueKey(due int64, k dkey) []byte {
	out := make([]byte, 0, 17)
	out = binary.BigEndian.AppendUint64(out, uint64(due)^(1<<63))
	return append(out, k[:]...)
}

func attemptKey(k dkey, n int) []byte {
	return binary.BigEndian.AppendUint32(append(k[:0:0], k[:]...), uint32(n))
}

// memOp is a change to the in-memory schedule that a committed
// transaction implies: schedule key at due (zero due: unschedule).
type memOp struct {
	key  dkey
	due  time.Time
	host string
}

// wtx is one write transaction over the w_ buckets, with a cache of the
// records it touches (written once by flush) and the schedule changes to
// apply in memory after it commits.
type wtx struct {
	tx   *bbolt.Tx
	now  time.Time
	cfg  *Config
	recs map[dkey]*record
	// dirty in first-touch order, so flush writes deterministically.
	dirty    []dkey
	isDirty  map[dkey]bool
	ops      []memOp
	disabled map[string]bool // target key -> now disabled (true) or enabled (false)
	counters map[string]int64

	deliveries, bodies, ids, attempts, queue, head, due, byTime, byStatus, ctrs, disabledB *bbolt.Bucket
	// merchantURL caches merchants' webhook URLs within one ingest.
	merchantURL map[string]string
}

func newWtx(tx *bbolt.Tx, cfg *Config, now time.Time) *wtx {
	return &wtx{
		tx: tx, now: now, cfg: cfg,
		recs:       make(map[dkey]*record),
		isDirty:    make(map[dkey]bool),
		counters:   make(map[string]int64),
		deliveries: tx.Bucket(bDeliveries), bodies: tx.Bucket(bBodies), ids: tx.Bucket(bIDs), attempts: tx.Bucket(bAttempts),
		queue: tx.Bucket(bQueue), head: tx.Bucket(bHead), due: tx.Bucket(bDue),
		byTime: tx.Bucket(bByTime), byStatus: tx.Bucket(bByStatus), ctrs: tx.Bucket(bCounters),
		disabledB: tx.Bucket(bDisabled),
	}
}

func (w *wtx) get(k dkey) (*record, error) {
	if r, ok := w.recs[k]; ok {
		return r, nil
	}
	raw := w.deliveries.Get(k[:])
	if raw == nil {
		return nil, ErrNotFound
	}
	r := &record{}
	if err := decodeDelivery(raw, r); err != nil {
		return nil, fmt.Errorf("delivery %x: %w", k, err)
	}
	w.recs[k] = r
	return r, nil
}

func (w *wtx) touch(k dkey, r *record) {
	w.recs[k] = r
	if !w.isDirty[k] {
		w.isDirty[k] = true
		w.dirty = append(w.dirty, k)
	}
}

// flush writes the touched records and the counter changes.
func (w *wtx) flush() error {
	for _, k := range w.dirty {
		raw := appendRecord(make([]byte, 0, 256), w.recs[k])
		if err := w.deliveries.Put(append([]byte(nil), k[:]...), raw); err != nil {
			return err
		}
	}
	for ck, d := range w.counters {
		if d == 0 {
			continue
		}
		n := int64(u64(w.ctrs.Get([]byte(ck)))) + d
		var err error
		if n <= 0 {
			err = w.ctrs.Delete([]byte(ck))
		} else {
			err = w.ctrs.Put([]byte(ck), be64(uint64(n)))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func counterTotal(merchant string) string { return "t\x00" + merchant }
func counterStatus(merchant, status string) string {
	return "s\x00" + merchant + "\x00" + status
}

// insert stores a new pending delivery and queues it behind its
// resource's earlier deliveries.
func (w *wtx) insert(k dkey, r *record, eventID string) error {
	if w.deliveries.Get(k[:]) != nil {
		return nil // already made: ingest is idempotent by event
	}
	r.Status = StatusPending
	r.NextAttemptAt = timePtr(w.now)
	if len(r.Body) > 0 {
		// Kept apart: attempts send it as is and never decode it.
		if err := w.bodies.Put(append([]byte(nil), k[:]...), r.Body); err != nil {
			return err
		}
		r.Body = nil
	}
	w.touch(k, r)
	if err := w.ids.Put([]byte(eventID), be64(k.seq())); err != nil {
		return err
	}
	m := []byte(r.MerchantID)
	if err := w.byTime.Put(timeIndexKey(m, r.CreatedAt, k), nil); err != nil {
		return err
	}
	if err := w.byStatus.Put(timeIndexKey(join(r.MerchantID, r.Status), r.CreatedAt, k), nil); err != nil {
		return err
	}
	w.counters[counterTotal(r.MerchantID)]++
	w.counters[counterStatus(r.MerchantID, r.Status)]++
	if err := w.queue.Put(queueKey(r.Key, k), nil); err != nil {
		return err
	}
	return w.refreshHead(r.Key)
}

// setStatus moves a delivery to a status, with its index and counters.
func (w *wtx) setStatus(k dkey, r *record, status string) error {
	if r.Status == status {
		return nil
	}
	if err := w.byStatus.Delete(timeIndexKey(join(r.MerchantID, r.Status), r.CreatedAt, k)); err != nil {
		return err
	}
	if err := w.byStatus.Put(timeIndexKey(join(r.MerchantID, status), r.CreatedAt, k), nil); err != nil {
		return err
	}
	w.counters[counterStatus(r.MerchantID, r.Status)]--
	w.counters[counterStatus(r.MerchantID, status)]++
	r.Status = status
	w.touch(k, r)
	return nil
}

// setDue puts the delivery in the due index at t (moving it if there).
func (w *wtx) setDue(k dkey, r *record, t time.Time) error {
	if r.Due != 0 {
		if err := w.due.Delete(dueKey(r.Due, k)); err != nil {
			return err
		}
	}
	r.Due = t.UnixNano()
	r.NextAttemptAt = timePtr(t)
	if err := w.due.Put(dueKey(r.Due, k), []byte(r.Host)); err != nil {
		return err
	}
	w.touch(k, r)
	w.ops = append(w.ops, memOp{key: k, due: t, host: r.Host})
	return nil
}

// unsetDue takes the delivery out of the due index.
func (w *wtx) unsetDue(k dkey, r *record) error {
	if r.Due == 0 {
		return nil
	}
	if err := w.due.Delete(dueKey(r.Due, k)); err != nil {
		return err
	}
	r.Due = 0
	w.touch(k, r)
	w.ops = append(w.ops, memOp{key: k})
	return nil
}

// refreshHead keeps the rule that, of a resource's queued deliveries,
// exactly the earliest is in the due index: the others wait for it. The
// queue holds pending deliveries, and at its head at most one ended that
// it could not be moved on past (see recordResult).
func (w *wtx) refreshHead(resource string) error {
	cur, hasCur, head, hasHead := w.heads(resource, nil)
	if hasCur && hasHead && cur == head {
		return nil
	}
	if hasCur {
		rc, err := w.get(cur)
		if err != nil {
			return err
		}
		if err := w.unsetDue(cur, rc); err != nil {
			return err
		}
	}
	if !hasHead {
		return w.head.Delete([]byte(resource))
	}
	rh, err := w.get(head)
	if err != nil {
		return err
	}
	t := w.now
	if rh.NextAttemptAt != nil && rh.NextAttemptAt.After(t) {
		t = *rh.NextAttemptAt
	}
	if err := w.setDue(head, rh, t); err != nil {
		return err
	}
	return w.head.Put([]byte(resource), append([]byte(nil), head[:]...))
}

// heads reads the keys of a resource's current head (w_head) and of the
// earliest delivery in its queue, passing over without if it is there.
func (w *wtx) heads(resource string, without *dkey) (cur dkey, hasCur bool, head dkey, hasHead bool) {
	prefix := append([]byte(resource), 0)
	c := w.queue.Cursor()
	qk, _ := c.Seek(prefix)
	if without != nil && bytes.Equal(qk, queueKey(resource, *without)) {
		qk, _ = c.Next()
	}
	if qk != nil && bytes.HasPrefix(qk, prefix) && len(qk) == len(prefix)+9 {
		copy(head[:], qk[len(prefix):])
		hasHead = true
	}
	if cb := w.head.Get([]byte(resource)); len(cb) == 9 {
		copy(cur[:], cb)
		hasCur = true
	}
	return cur, hasCur, head, hasHead
}

// end gives a delivery its final status. It stays its resource's head,
// in the due index, until moveOn.
func (w *wtx) end(k dkey, r *record, status, reason string) error {
	if err := w.setStatus(k, r, status); err != nil {
		return err
	}
	r.FailReason = reason
	r.NextAttemptAt = nil
	if status == StatusDelivered {
		r.DeliveredAt = timePtr(w.now)
	} else {
		r.FailedAt = timePtr(w.now)
	}
	w.touch(k, r)
	return nil
}

// moveOn takes an ended delivery out of its resource's queue and the due
// index, and lets the next delivery of the resource go.
func (w *wtx) moveOn(k dkey, r *record) error {
	if err := w.queue.Delete(queueKey(r.Key, k)); err != nil {
		return err
	}
	if err := w.unsetDue(k, r); err != nil {
		return err
	}
	return w.refreshHead(r.Key)
}

// readMoveOn reads the records that moveOn(k, r) reads (the resource's
// next head, and its current one if another's), and writes nothing: on an
// error, the key of the record that gave it.
func (w *wtx) readMoveOn(k dkey, r *record) (dkey, error) {
	cur, hasCur, head, hasHead := w.heads(r.Key, &k)
	if hasCur && hasHead && cur == head {
		return dkey{}, nil
	}
	if hasCur {
		if _, err := w.get(cur); err != nil {
			return cur, err
		}
	}
	if hasHead {
		if _, err := w.get(head); err != nil {
			return head, err
		}
	}
	return dkey{}, nil
}

// readRedeliver reads the records that redeliver(k, r) reads besides r,
// and writes nothing: on an error, the key of the record that gave it. An
// ended delivery out of its resource's queue goes back in at its event's
// place, which reads the queue's current head, and the new one if that is
// not k.
func (w *wtx) readRedeliver(k dkey, r *record) (dkey, error) {
	if r.Status == StatusPending || r.Due != 0 {
		return dkey{}, nil // in the queue already
	}
	cur, hasCur, head, hasHead := w.heads(r.Key, nil)
	if !hasHead || bytes.Compare(k[:], head[:]) < 0 {
		head = k
	}
	if hasCur && cur == head {
		return dkey{}, nil
	}
	if hasCur {
		if _, err := w.get(cur); err != nil {
			return cur, err
		}
	}
	if head != k {
		if _, err := w.get(head); err != nil {
			return head, err
		}
	}
	return dkey{}, nil
}

func disabledKey(merchant, url string) string { return merchant + "\x00" + url }

func (w *wtx) setDisabled(merchant, url string, rec disabledTarget) error {
	raw, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	if w.disabled == nil {
		w.disabled = make(map[string]bool)
	}
	w.disabled[disabledKey(merchant, url)] = true
	return w.disabledB.Put([]byte(disabledKey(merchant, url)), raw)
}

func (w *wtx) enable(merchant, url string) error {
	k := []byte(disabledKey(merchant, url))
	if w.disabledB.Get(k) == nil {
		return nil
	}
	if w.disabled == nil {
		w.disabled = make(map[string]bool)
	}
	w.disabled[string(k)] = false
	return w.disabledB.Delete(k)
}

// enableMerchant re-enables every disabled target of a merchant (its
// webhook URL changed).
func (w *wtx) enableMerchant(merchant string) error {
	prefix := []byte(merchant + "\x00")
	var keys [][]byte
	c := w.disabledB.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	if w.disabled == nil && len(keys) > 0 {
		w.disabled = make(map[string]bool)
	}
	for _, k := range keys {
		w.disabled[string(k)] = false
		if err := w.disabledB.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// redeliver puts a delivery back to pending for a new round of attempts,
// in its resource's queue at its event's place, and re-enables its target.
func (w *wtx) redeliver(k dkey, r *record) error {
	if err := w.enable(r.MerchantID, r.URL); err != nil {
		return err
	}
	r.Round = 0
	r.Redeliveries++
	r.Redeliv = true
	r.FailReason = ""
	r.DeliveredAt, r.FailedAt = nil, nil
	w.touch(k, r)
	if r.Status == StatusPending {
		if r.Due != 0 {
			return w.setDue(k, r, w.now)
		}
		r.NextAttemptAt = timePtr(w.now)
		return nil
	}
	if err := w.setStatus(k, r, StatusPending); err != nil {
		return err
	}
	r.NextAttemptAt = timePtr(w.now)
	if r.Due != 0 {
		// Ended, and still its resource's head in the due index: the
		// queue was not moved on past it (see recordResult).
		return w.setDue(k, r, w.now)
	}
	if err := w.queue.Put(queueKey(r.Key, k), nil); err != nil {
		return err
	}
	return w.refreshHead(r.Key)
}
