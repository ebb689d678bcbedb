package webhooks

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/projections"
)

// Page sizes of ListDeliveries.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

// ListQuery selects deliveries: Status "" for all, else pending, delivered
// or failed; Page from 1; PageSize 1 to 100 (default 20).
type ListQuery struct {
	Status   string
	Page     int
	PageSize int
}

func validStatus(s string) bool {
	return s == StatusPending || s == StatusDelivered || s == StatusFailed
}

// status names status in e unless it is "" or a delivery's status.
func (e *QueryError) status(status string) {
	if status != "" && !validStatus(status) {
		e.add("status", "enum", "status must be one of pending, delivered, failed")
	}
}

// since names since in e if it is zero.
func (e *QueryError) since(since time.Time) {
	if since.IsZero() {
		e.add("since", "missing", "since is required: an RFC 3339 time such as 2026-02-25T12:00:00Z")
	}
}

// ListDeliveries returns a page of a merchant's deliveries, newest event
// first (by the event's time, then, for one time, by its sequence; an
// e-invoice event's status_url call after its webhook), without their
// attempts. A page past the end is empty.
//
// A delivery whose record does not decode is left out of its page, which
// then holds one fewer, and logged at Error with its key; one bad record
// does not make the merchant's list unreadable. The totals still count it
// and the pages stay where they are (page n is the n-th page_size of the
// index, read or not), so paging from 1 to TotalPages gives every other
// delivery once. Filling the page from the next one instead would list
// that one again on the next page.
//
// Errors: ErrInvalidQuery (unknown status).
func (d *Dispatcher) ListDeliveries(merchantID string, q ListQuery) (projections.Page[Delivery], error) {
	var bad QueryError
	bad.status(q.Status)
	if err := bad.err(); err != nil {
		return projections.Page[Delivery]{}, err
	}
	page, size := max(q.Page, 1), q.PageSize
	if size <= 0 {
		size = DefaultPageSize
	}
	size = min(size, MaxPageSize)
	out := projections.Page[Delivery]{Items: []Delivery{}, Details: projections.PageDetails{PageNumber: page, PageSize: size}}
	index, prefix, ctr := bByTime, join(merchantID), counterTotal(merchantID)
	if q.Status != "" {
		index, prefix, ctr = bByStatus, join(merchantID, q.Status), counterStatus(merchantID, q.Status)
	}
	prefix = append(prefix, 0)
	var unread []setAside
	err := d.db.View(func(tx *bbolt.Tx) error {
		unread = unread[:0]
		total := int(u64(tx.Bucket(bCounters).Get([]byte(ctr))))
		out.Details.TotalObjects = total
		out.Details.TotalPages = (total + size - 1) / size
		if page > out.Details.TotalPages { // not (page-1)*size >= total: that overflows
			return nil
		}
		skip, taken := (page-1)*size, 0
		c := tx.Bucket(index).Cursor()
		deliveries, bodies := tx.Bucket(bDeliveries), tx.Bucket(bBodies)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && taken < size; k, _ = c.Next() {
			if len(k) != len(prefix)+8+9 {
				continue
			}
			if skip > 0 {
				skip--
				continue
			}
			taken++
			var r record
			dk := indexKey(dkey(k[len(prefix)+8:]))
			if err := decodeDelivery(deliveries.Get(dk[:]), &r); unreadable(err) {
				unread = append(unread, setAside{key: dk, aside: dk, err: err})
				continue
			} else if err != nil {
				return err
			}
			r.Body = bytes.Clone(bodies.Get(dk[:]))
			out.Items = append(out.Items, r.Delivery)
		}
		return nil
	})
	if err != nil {
		return projections.Page[Delivery]{}, err
	}
	for _, u := range unread {
		// The key and the error only: no body, URL or secret in a log.
		d.cfg.Logger.Error("webhook delivery left out of a list: its record does not decode",
			"key", fmt.Sprintf("%x", u.key[:]), "err", u.err)
	}
	return out, nil
}

// setAside is a delivery that a read or a redelivery passed over: key's,
// because the record at aside (its own, or one it needs) does not decode.
type setAside struct {
	key, aside dkey
	err        error
}

// parseID maps a delivery id to its key.
func parseID(tx *bbolt.Tx, id string) (dkey, error) {
	kind := kindByteWebhook
	if base, ok := strings.CutSuffix(id, statusSuffix); ok {
		id, kind = base, kindByteStatus
	}
	if _, err := ulid.ParseStrict(id); err != nil {
		return dkey{}, ErrNotFound
	}
	seq := tx.Bucket(bIDs).Get([]byte(id))
	if len(seq) != 8 {
		return dkey{}, ErrNotFound
	}
	return makeKey(u64(seq), kind), nil
}

// Delivery returns one of a merchant's deliveries with its attempts.
//
// Errors: ErrNotFound (none, or another merchant's), ErrCorrupt.
func (d *Dispatcher) Delivery(merchantID, id string) (Delivery, error) {
	var out Delivery
	err := d.db.View(func(tx *bbolt.Tx) error {
		k, err := parseID(tx, id)
		if err != nil {
			return err
		}
		raw := tx.Bucket(bDeliveries).Get(k[:])
		if raw == nil {
			return ErrNotFound
		}
		var r record
		if err := decodeDelivery(raw, &r); err != nil {
			return err
		}
		if r.MerchantID != merchantID {
			return ErrNotFound
		}
		out = r.Delivery
		out.Body = bytes.Clone(tx.Bucket(bBodies).Get(k[:]))
		out.Attempts = []Attempt{}
		c := tx.Bucket(bAttempts).Cursor()
		for ak, v := c.Seek(k[:]); ak != nil && bytes.HasPrefix(ak, k[:]); ak, v = c.Next() {
			var a Attempt
			if err := decodeRecord(v, &a); err != nil {
				return err
			}
			out.Attempts = append(out.Attempts, a)
		}
		return nil
	})
	return out, err
}

// Redeliver starts a new round of attempts for a delivery, with the same
// webhook-id and body, whatever its status: attempted now if no earlier
// delivery of its resource is pending, else right after those. It
// re-enables a target disabled by a 410.
//
// Errors: ErrNotFound (none, or another merchant's), ErrCorrupt.
func (d *Dispatcher) Redeliver(merchantID, id string) (Delivery, error) {
	var out Delivery
	err := d.update(func(w *wtx) error {
		k, err := parseID(w.tx, id)
		if err != nil {
			return err
		}
		r, err := w.get(k)
		if err != nil {
			return err
		}
		if r.MerchantID != merchantID {
			return ErrNotFound
		}
		if err := w.redeliver(k, r); err != nil {
			return err
		}
		out = r.Delivery
		out.Body = bytes.Clone(w.bodies.Get(k[:]))
		return nil
	})
	return out, err
}

// redeliverChunk bounds the deliveries one RedeliverSince transaction takes.
const redeliverChunk = 1000

// RedeliverSince redelivers every delivery of the merchant whose event
// happened at or after since (of one status, or all with status ""), as
// Redeliver does, and returns how many it redelivered.
//
// A delivery whose record does not decode is set aside, not redelivered
// nor counted, and logged at Error with its key; so is one whose
// redelivery must read another's record that does not decode (it would go
// before it in its resource's queue), logged with that record's key and
// its own. The others are redelivered as if they were not there.
//
// Errors: ErrInvalidQuery (zero since, unknown status); any other error
// (bbolt's) is a *RedeliverError saying how many were redelivered before
// it: the chunks committed before it stay redelivered, and their count is
// also returned with the error.
func (d *Dispatcher) RedeliverSince(merchantID string, since time.Time, status string) (int, error) {
	var bad QueryError
	bad.since(since)
	bad.status(status)
	if err := bad.err(); err != nil {
		return 0, err
	}
	// Collect first (a snapshot), then redeliver in chunks: a redelivery
	// moves deliveries between the status indexes being read. The indexes
	// say each delivery's time and status: no record is read here.
	var keys []dkey
	index, prefix := bByTime, join(merchantID)
	if status != "" {
		index, prefix = bByStatus, join(merchantID, status)
	}
	prefix = append(prefix, 0)
	err := d.db.View(func(tx *bbolt.Tx) error {
		keys = keys[:0]
		c := tx.Bucket(index).Cursor()
		limit := ^sortTime(since)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != len(prefix)+17 {
				continue
			}
			if u64(k[len(prefix):len(prefix)+8]) > limit {
				break // older than since: the index is newest first
			}
			keys = append(keys, indexKey(dkey(k[len(prefix)+8:])))
		}
		return nil
	})
	if err != nil {
		return 0, &RedeliverError{Err: err}
	}
	// Oldest first, so each resource's queue fills in event order.
	for i, j := 0, len(keys)-1; i < j; i, j = i+1, j-1 {
		keys[i], keys[j] = keys[j], keys[i]
	}
	n := 0
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), redeliverChunk)]
		keys = keys[len(chunk):]
		var done int
		var unread []setAside
		err := d.update(func(w *wtx) error {
			done, unread = 0, unread[:0]
			for _, k := range chunk {
				r, err := w.get(k)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				aside := k
				if err == nil {
					// What redeliver reads, read before it writes: bbolt
					// cannot undo half of a transaction's writes.
					aside, err = w.readRedeliver(k, r)
				}
				if unreadable(err) {
					unread = append(unread, setAside{key: k, aside: aside, err: err})
					continue
				}
				if err != nil {
					return err
				}
				if err := w.redeliver(k, r); err != nil {
					return err
				}
				done++
			}
			return nil
		})
		if err != nil {
			return n, &RedeliverError{Redelivered: n, Err: err}
		}
		n += done
		for _, u := range unread {
			// The keys and the error only: no body, URL or secret in a log.
			if u.aside == u.key {
				d.cfg.Logger.Error("webhook delivery not redelivered: its record does not decode",
					"key", fmt.Sprintf("%x", u.key[:]), "err", u.err)
			} else {
				d.cfg.Logger.Error("webhook delivery not redelivered: the record of the delivery it would go before does not decode",
					"key", fmt.Sprintf("%x", u.aside[:]), "delivery", fmt.Sprintf("%x", u.key[:]), "err", u.err)
			}
		}
	}
	return n, nil
}

// update runs fn in a write transaction and applies its schedule changes.
func (d *Dispatcher) update(fn func(*wtx) error) error {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	var w *wtx
	err := d.db.Update(func(tx *bbolt.Tx) error {
		w = newWtx(tx, &d.cfg, time.Now())
		if err := fn(w); err != nil {
			return err
		}
		return w.flush()
	})
	if err != nil {
		return err
	}
	d.afterCommit(w, nil)
	return nil
}
