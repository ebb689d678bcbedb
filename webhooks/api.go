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

// ListDeliveries returns a page of a merchant's deliveries, newest event
// first, without their attempts. A page past the end is empty.
//
// Errors: ErrInvalidQuery (unknown status), ErrCorrupt.
func (d *Dispatcher) ListDeliveries(merchantID string, q ListQuery) (projections.Page[Delivery], error) {
	if q.Status != "" && !validStatus(q.Status) {
		return projections.Page[Delivery]{}, fmt.Errorf("%w: status %q (pending, delivered or failed)", ErrInvalidQuery, q.Status)
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
	err := d.db.View(func(tx *bbolt.Tx) error {
		total := int(u64(tx.Bucket(bCounters).Get([]byte(ctr))))
		out.Details.TotalObjects = total
		out.Details.TotalPages = (total + size - 1) / size
		if page > out.Details.TotalPages { // not (page-1)*size >= total: that overflows
			return nil
		}
		skip := (page - 1) * size
		c := tx.Bucket(index).Cursor()
		deliveries, bodies := tx.Bucket(bDeliveries), tx.Bucket(bBodies)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(out.Items) < size; k, _ = c.Next() {
			if len(k) != len(prefix)+8+9 {
				continue
			}
			if skip > 0 {
				skip--
				continue
			}
			var r record
			dk := k[len(prefix)+8:]
			if err := decodeDelivery(deliveries.Get(dk), &r); err != nil {
				return err
			}
			r.Body = bytes.Clone(bodies.Get(dk))
			out.Items = append(out.Items, r.Delivery)
		}
		return nil
	})
	return out, err
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
// Redeliver does, and returns how many.
//
// Errors: ErrInvalidQuery (zero since, unknown status), ErrCorrupt.
func (d *Dispatcher) RedeliverSince(merchantID string, since time.Time, status string) (int, error) {
	if since.IsZero() {
		return 0, fmt.Errorf("%w: no since time", ErrInvalidQuery)
	}
	if status != "" && !validStatus(status) {
		return 0, fmt.Errorf("%w: status %q (pending, delivered or failed)", ErrInvalidQuery, status)
	}
	// Collect first (a snapshot), then redeliver in chunks: a redelivery
	// moves deliveries between the status indexes being read.
	var keys []dkey
	prefix := append(join(merchantID), 0)
	err := d.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bByTime).Cursor()
		deliveries := tx.Bucket(bDeliveries)
		limit := ^sortTime(since)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != len(prefix)+17 {
				continue
			}
			if u64(k[len(prefix):len(prefix)+8]) > limit {
				break // older than since: the index is newest first
			}
			var dk dkey
			copy(dk[:], k[len(prefix)+8:])
			if status != "" {
				var r record
				if err := decodeDelivery(deliveries.Get(dk[:]), &r); err != nil {
					return err
				}
				if r.Status != status {
					continue
				}
			}
			keys = append(keys, dk)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	// Oldest first, so each resource's queue fills in event order.
	for i, j := 0, len(keys)-1; i < j; i, j = i+1, j-1 {
		keys[i], keys[j] = keys[j], keys[i]
	}
	n := 0
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), redeliverChunk)]
		keys = keys[len(chunk):]
		err := d.update(func(w *wtx) error {
			for _, k := range chunk {
				r, err := w.get(k)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if err := w.redeliver(k, r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		n += len(chunk)
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
