package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
)

// maxResponse is how much of a response an attempt reads (and discards),
// so the connection can be reused.
const maxResponse = 64 << 10

// result is the outcome of one attempt, for the result writer.
type result struct {
	key        dkey
	noop       bool // not attempted: the delivery was no longer pending
	dropped    bool // aborted by shutdown: nothing to record
	start      time.Time
	status     int
	latency    time.Duration
	err        string
	retryAfter time.Duration
	disabled   bool // not attempted: the target is disabled
	refused    bool // not attempted: the URL breaks the SSRF policy for good
	host       string
	outcome    string // set when recorded: the delivery's status after it
	// unreadable is set when a record that recording the attempt reads
	// does not decode, aside is that record's key: the delivery's own
	// (the attempt is set aside) or the next of its resource (the attempt
	// is recorded, the next is set aside). The rest of the batch is
	// recorded.
	unreadable error
	aside      dkey
}

// unreadable reports whether err is a stored record's that does not
// decode, rather than bbolt's or the transaction's.
func unreadable(err error) bool {
	return errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnsupportedVersion)
}

// signer holds a merchant's signing keys as of the dispatcher's views.
type signer struct {
	cur       []byte
	prev      []byte
	prevUntil time.Time
}

func (d *Dispatcher) signer(merchant string) (*signer, error) {
	d.signersMu.Lock()
	s, gen := d.signers[merchant], d.signersGen
	d.signersMu.Unlock()
	if s != nil {
		return s, nil
	}
	var err error
	s = &signer{}
	err = d.db.View(func(tx *bbolt.Tx) error {
		m, ok, err := merchantView(tx, merchant)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("merchant %q: %w", merchant, ErrNotFound)
		}
		s.cur = d.cfg.Keys.SigningKey(merchant, m.SecretVersion)
		if m.PreviousSecretVersion != 0 && m.PreviousValidUntil != nil {
			s.prev = d.cfg.Keys.SigningKey(merchant, m.PreviousSecretVersion)
			s.prevUntil = *m.PreviousValidUntil
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Keep it only if no ingest dropped signers since the lookup: one that
	// did may have committed a rotation after the view above was read, and
	// caching the old secret would sign every later webhook with it.
	d.signersMu.Lock()
	if d.signersGen == gen {
		d.signers[merchant] = s
	}
	d.signersMu.Unlock()
	return s, nil
}

func (s *signer) keys(now time.Time) [][]byte {
	if s.prev != nil && now.Before(s.prevUntil) {
		return [][]byte{s.cur, s.prev}
	}
	return [][]byte{s.cur}
}

// attempt makes one attempt of a delivery. ctx ends only when Run aborts
// the attempts still under way at shutdown: an attempt it cuts off is
// dropped, neither a failure nor a success, whatever the receiver did with
// the request (only a 2xx it answered makes a delivery delivered).
//
// Only a pending delivery in the due index (its resource's head) is
// attempted; any other is a noop, which takes it off the schedule. The
// schedule can name one that is not: when the transaction recording a
// batch of attempts fails, commitResults puts every key of it back, and
// one of them may have stopped being its resource's head meanwhile (an
// earlier delivery of the resource redelivered while it was in flight).
// Attempting it would send a later status before an earlier one.
func (d *Dispatcher) attempt(ctx context.Context, k dkey) result {
	res := result{key: k}
	var r record
	err := d.db.View(func(tx *bbolt.Tx) error {
		raw := tx.Bucket(bDeliveries).Get(k[:])
		if raw == nil {
			return ErrNotFound
		}
		if err := decodeDelivery(raw, &r); err != nil {
			return err
		}
		r.Body = append([]byte(nil), tx.Bucket(bBodies).Get(k[:])...)
		return nil
	})
	if err != nil || r.Status != StatusPending || r.Due == 0 {
		res.noop = true
		return res
	}
	res.start = time.Now()
	if d.isDisabled(r.MerchantID, r.URL) {
		res.disabled = true
		res.err = "target disabled: it answered 410 Gone; change the URL or redeliver to enable it"
		return res
	}
	u, err := url.Parse(r.URL)
	if err == nil {
		err = checkScheme(u, d.cfg.AllowPrivate)
	}
	if err = redactErr(err); err != nil {
		res.refused = true
		res.err = err.Error()
		d.cfg.Logger.Warn("webhook target refused", "delivery", r.ID, "merchant", r.MerchantID, "err", err)
		return res
	}
	sg, err := d.signer(r.MerchantID)
	if err != nil {
		res.err = "signing: " + err.Error()
		return res
	}
	actx, cancel := context.WithTimeout(ctx, d.cfg.AttemptTimeout)
	defer cancel()
	var body io.Reader
	if len(r.Body) > 0 && r.Method != http.MethodGet {
		body = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(actx, r.Method, r.URL, body)
	if err != nil {
		res.refused = true
		res.err = redactErr(err).Error()
		return res
	}
	keys, ts, client := sg.keys(res.start), res.start.Unix(), d.client
	if r.Method == http.MethodGet {
		// A status_url call: signed over its URL, which carries the status.
		req.Header.Set(HeaderSignature, Sign(keys, r.WebhookID, ts, statusContent(sentURL(req.URL))))
		client = resigning(d.client, func(u *url.URL) string {
			return Sign(keys, r.WebhookID, ts, statusContent(sentURL(u)))
		})
	} else {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(HeaderSignature, Sign(keys, r.WebhookID, ts, r.Body))
	}
	req.Header.Set("User-Agent", d.cfg.UserAgent)
	req.Header.Set(HeaderID, r.WebhookID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))

	resp, err := client.Do(req)
	err = redactErr(err) // for the log, the record and OnAttempt
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
		resp.Body.Close()
		res.status = resp.StatusCode
		if res.status == http.StatusTooManyRequests || res.status == http.StatusServiceUnavailable {
			res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
		if res.status < 200 || res.status > 299 {
			res.err = "HTTP " + strconv.Itoa(res.status)
		}
	}
	res.latency = time.Since(res.start)
	if err != nil {
		if ctx.Err() != nil {
			res.dropped = true // aborted by shutdown, not the receiver's fault
			return res
		}
		res.err = attemptError(err, d.cfg.AttemptTimeout)
		if errors.Is(err, ErrRefused) {
			d.cfg.Logger.Warn("webhook target refused", "delivery", r.ID, "merchant", r.MerchantID, "err", err)
		}
	}
	if d.cfg.OnAttempt != nil {
		d.cfg.OnAttempt(AttemptEvent{
			DeliveryID: r.ID, MerchantID: r.MerchantID, Attempt: r.AttemptCount + 1,
			Start: res.start, StatusCode: res.status, Latency: res.latency, Err: err,
		})
	}
	return res
}

// resigning is c (its transport shared) with each redirect hop, once c's
// policy lets it through, signed anew for its own URL by sign: a status
// call's signature covers its URL, so the one made for the first hop
// would not verify at the next.
func resigning(c *http.Client, sign func(*url.URL) string) *http.Client {
	rc := *c
	rc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := c.CheckRedirect(req, via); err != nil {
			return err
		}
		req.Header.Set(HeaderSignature, sign(req.URL))
		return nil
	}
	return &rc
}

func attemptError(err error, timeout time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("timeout after %s", timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// "Post \"https://...\": dial tcp ...": keep the cause, the URL is on the delivery.
		return strings.TrimPrefix(ue.Err.Error(), "webhooks: ")
	}
	return err.Error()
}

// maxRetryAfter bounds what parseRetryAfter returns; Config.MaxRetryAfter
// caps the wait further.
const maxRetryAfter = 365 * 24 * time.Hour

// parseRetryAfter reads Retry-After as seconds or an HTTP date; zero when
// absent or unreadable, at most maxRetryAfter.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(maxRetryAfter/time.Second) {
			n = int64(maxRetryAfter / time.Second)
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, maxRetryAfter)
		}
	}
	return 0
}

// writeResults records attempts in batches, one transaction each, until
// results is closed and drained.
func (d *Dispatcher) writeResults(results <-chan result) {
	batch := make([]result, 0, 256)
	for first := range results {
		batch = append(batch[:0], first)
	drain:
		for len(batch) < 1024 {
			select {
			case r, ok := <-results:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		d.commitResults(batch)
	}
}

func (d *Dispatcher) commitResults(batch []result) {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	var w *wtx
	done := make([]dkey, len(batch))
	for i := range batch {
		done[i] = batch[i].key
	}
	err := d.db.Update(func(tx *bbolt.Tx) error {
		w = newWtx(tx, &d.cfg, time.Now())
		for i := range batch {
			if err := d.recordResult(w, &batch[i]); err != nil {
				return err
			}
		}
		return w.flush()
	})
	if err != nil {
		// Nothing was recorded: try these deliveries again later (attempt
		// makes no request for one that is no longer its resource's head
		// by then, and takes it off the schedule).
		d.cfg.Logger.Error("record webhook attempts", "n", len(batch), "err", err)
		w = &wtx{}
		retry := time.Now().Add(d.cfg.BackoffBase)
		for i := range batch {
			w.ops = append(w.ops, memOp{key: batch[i].key, due: retry, host: batch[i].host})
			batch[i].outcome = ""
			batch[i].unreadable = nil
		}
	}
	for i := range batch {
		// The key, the answer's status and the error only: the record is what
		// could not be read, and a body or URL has no place in a log.
		switch res := &batch[i]; {
		case res.unreadable == nil:
		case res.aside == res.key:
			d.cfg.Logger.Error("webhook attempt not recorded: its delivery record does not decode; out of the schedule until the dispatcher runs again",
				"key", fmt.Sprintf("%x", res.key[:]), "status", res.status, "err", res.unreadable)
		default:
			d.cfg.Logger.Error("webhook delivery set aside: its record does not decode; it and the later deliveries of its invoice or payment wait until the dispatcher runs again",
				"key", fmt.Sprintf("%x", res.aside[:]), "err", res.unreadable)
		}
		d.stats.count(&batch[i])
	}
	d.afterCommit(w, done)
}

// recordResult records one attempt and decides what comes next: done,
// failed, or the next attempt's time. A record that does not decode sets
// something aside (res.unreadable, res.aside) rather than fail the
// transaction: that would leave the batch's other attempts unrecorded, to
// be sent again, each time a batch held this one.
//
// An attempt whose own record does not decode is set aside, nothing
// written for it. It leaves the schedule: its attempt could only be set
// aside again. Its w_due entry stays, so the next Run loads it and tries
// again (with no request while the record stays unreadable).
//
// A delivery that ends (delivered or failed) lets the next of its
// resource go, which reads that one's record. It is read before anything
// is written (bbolt cannot undo half a transaction's writes): if it does
// not decode, the attempt is recorded and the delivery ended all the
// same, but it stays its resource's head, in w_due, so the next one and
// those behind it wait. It leaves the schedule; the next Run loads it, and
// its attempt (no request: it is no longer pending) moves the queue on
// once the next record reads.
func (d *Dispatcher) recordResult(w *wtx, res *result) error {
	r, err := w.get(res.key)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if unreadable(err) {
		res.unreadable, res.aside = err, res.key
		w.ops = append(w.ops, memOp{key: res.key})
		return nil
	}
	if err != nil {
		return err
	}
	recorded := false
	defer func() {
		if recorded {
			res.outcome = r.Status
		}
		// Whatever happened, say where this key stands: it was in flight,
		// so earlier schedule changes to it were not applied.
		if r.Status == StatusPending && r.Due != 0 {
			w.ops = append(w.ops, memOp{key: res.key, due: time.Unix(0, r.Due), host: r.Host})
		} else {
			w.ops = append(w.ops, memOp{key: res.key})
		}
	}()
	if r.Status != StatusPending {
		if r.Due != 0 {
			// Ended, its resource's queue not moved on past it.
			return d.moveOn(w, res, r)
		}
		return nil
	}
	if res.noop {
		return nil
	}
	var status, reason string
	switch {
	case res.status >= 200 && res.status <= 299:
		status = StatusDelivered
	case res.status == http.StatusGone, res.disabled:
		status, reason = StatusFailed, ReasonTargetDisabled
	case res.refused:
		status, reason = StatusFailed, ReasonTargetRefused
	case r.Round+1 >= d.cfg.MaxAttempts:
		status, reason = StatusFailed, ReasonGaveUp
	}
	moveOn := status != ""
	if moveOn {
		k, err := w.readMoveOn(res.key, r)
		if unreadable(err) {
			res.unreadable, res.aside = err, k
			moveOn = false
		} else if err != nil {
			return err
		}
	}
	recorded = true
	r.AttemptCount++
	r.Round++
	a := Attempt{
		N: r.AttemptCount, At: res.start.UTC(), StatusCode: res.status,
		LatencyMS: float64(res.latency.Microseconds()) / 1000, Error: res.err, Redelivery: r.Redeliv,
	}
	raw, err := encodeRecord(a)
	if err != nil {
		return err
	}
	if err := w.attempts.Put(attemptKey(res.key, r.AttemptCount), raw); err != nil {
		return err
	}
	r.Redeliv = false
	r.LastAttemptAt = timePtr(res.start)
	r.LastStatus, r.LastError = res.status, res.err
	w.touch(res.key, r)
	if res.status == http.StatusGone {
		if err := w.setDisabled(r.MerchantID, r.URL, disabledTarget{At: w.now, DeliveryID: r.ID}); err != nil {
			return err
		}
	}
	if status != "" {
		if err := w.end(res.key, r, status, reason); err != nil {
			return err
		}
		if moveOn {
			return w.moveOn(res.key, r)
		}
		return nil
	}
	wait := d.cfg.jittered(d.cfg.Backoff(r.Round))
	if ra := min(res.retryAfter, d.cfg.MaxRetryAfter); ra > wait {
		wait = ra
	}
	next := w.now.Add(wait)
	if r.Due != 0 {
		return w.setDue(res.key, r, next)
	}
	r.NextAttemptAt = timePtr(next) // waits behind an earlier delivery
	return nil
}

// moveOn moves the queue of an ended delivery's resource on past it, once
// the next delivery's record reads; else sets that one aside again.
func (d *Dispatcher) moveOn(w *wtx, res *result, r *record) error {
	k, err := w.readMoveOn(res.key, r)
	if unreadable(err) {
		res.unreadable, res.aside = err, k
		return nil
	}
	if err != nil {
		return err
	}
	return w.moveOn(res.key, r)
}

// Stats are counters since Open, for metrics.
type Stats struct {
	Checkpoint uint64 // last event sequence ingested
	Attempts   uint64 // attempts made (not counting fast failures of disabled targets)
	Delivered  uint64
	Failed     uint64
	InFlight   int // attempts under way (running only)
	Due        int // deliveries scheduled or waiting for a host slot (running only)
}

type stats struct {
	attempts, delivered, failed atomic.Uint64
}

func (s *stats) count(r *result) {
	if r.noop || r.dropped {
		return
	}
	if !r.disabled && !r.refused {
		s.attempts.Add(1)
	}
	switch r.outcome {
	case StatusDelivered:
		s.delivered.Add(1)
	case StatusFailed:
		s.failed.Add(1)
	}
}

// Stats returns the dispatcher's counters.
func (d *Dispatcher) Stats() Stats {
	st := Stats{
		Checkpoint: d.checkpoint.Load(),
		Attempts:   d.stats.attempts.Load(),
		Delivered:  d.stats.delivered.Load(),
		Failed:     d.stats.failed.Load(),
	}
	d.schedMu.Lock()
	s := d.sched
	d.schedMu.Unlock()
	if s != nil {
		st.InFlight, st.Due = s.counts()
	}
	return st
}
