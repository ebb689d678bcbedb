package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
)

// The merchant's event feed, GET /api/v1/events: its own invoice, payment
// and widget events from the log, in log order, from any sequence (SPEC §9:
// a merchant replays or follows its history without NATS credentials).
// Events of its account (keys, secrets, settings) are not in it.
//
// A request scans at most feedScan records and answers the merchant's
// among them with next_after, the last sequence scanned: polling with
// after=next_after reads every event once, in order, however many other
// merchants' events lie between. With wait (seconds) a request that found
// nothing at the head waits for the next append: a long poll, ended early
// when the server shuts down.
const (
	feedScan         = 10_000
	feedDefaultLimit = 100
	feedMaxLimit     = 500
	feedMaxWait      = 20 * time.Second // below the server's write timeout
)

// feedPrefixes are the streams whose events a merchant reads.
var feedPrefixes = []string{commands.StreamInvoice + "-", commands.StreamPayment + "-", commands.StreamWidget + "-"}

// eventFeed is the answer: the events (as payledger export and the stream
// carry them, without claims), the sequence to poll after next, and the
// log's head when the scan began.
type eventFeed struct {
	Items     []ledger.Event `json:"items"`
	NextAfter uint64         `json:"next_after"`
	Head      uint64         `json:"head"`
}

// listEvents is GET /api/v1/events?after=&limit=&wait=.
func (s *Server) listEvents(c *call) (int, any, error) {
	if wait, ok := s.feedLimit.Allow(c.merchantID, s.now()); !ok {
		return 0, nil, rateLimited(wait, "Too many event feed requests; poll with wait instead")
	}
	q := c.r.URL.Query()
	after, err := uintParam(q, "after", 0, 0, ^uint64(0))
	if err != nil {
		return 0, nil, err
	}
	limit, err := uintParam(q, "limit", feedDefaultLimit, 1, feedMaxLimit)
	if err != nil {
		return 0, nil, err
	}
	waitS, err := uintParam(q, "wait", 0, 0, uint64(feedMaxWait/time.Second))
	if err != nil {
		return 0, nil, err
	}
	// The head only grows: a position past it was not read from this log
	// (one restored from an older backup, say). Answering it empty would
	// skip, silently, the events the log takes at the sequences between.
	if head := s.store.Head().Seq; after > head {
		return 0, nil, badField("after", "less_than_equal", fmt.Sprintf(
			"after %d is past the log's head %d: this log holds fewer events than were read from it (restored from an older backup?); read again from a sequence at or before %d", after, head, head))
	}
	feed, err := s.scanEvents(c, after, int(limit))
	if err != nil {
		return 0, nil, err
	}
	if len(feed.Items) > 0 || waitS == 0 || feed.NextAfter < feed.Head { // found some, no wait, or more to scan
		return http.StatusOK, feed, nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, time.Duration(waitS)*time.Second)
	defer cancel()
	go func() {
		select {
		case <-s.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	s.metrics.feedWaiting.Inc()
	_, err = s.store.Wait(ctx, feed.NextAfter)
	s.metrics.feedWaiting.Dec()
	if err != nil {
		if c.ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
			return http.StatusOK, feed, nil // nothing new in time, or the server stops: answer empty
		}
		return 0, nil, err
	}
	if feed, err = s.scanEvents(c, feed.NextAfter, int(limit)); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, feed, nil
}

// errFeedFull stops a scan once the page is full.
var errFeedFull = errors.New("feed page full")

// scanEvents reads the merchant's events after a sequence: at most limit of
// them, scanning at most feedScan records.
func (s *Server) scanEvents(c *call, after uint64, limit int) (eventFeed, error) {
	head := s.store.Head().Seq
	feed := eventFeed{Items: []ledger.Event{}, NextAfter: after, Head: head}
	if after >= head {
		return feed, nil
	}
	scanned := 0
	err := s.store.ScanRaw(c.ctx, after+1, func(seq uint64, rec []byte) error {
		if seq > head || scanned == feedScan {
			return errFeedFull
		}
		scanned++
		// Others' records cost only this look at their header: no hash,
		// no allocation.
		stream, merchant, err := ledger.RecordOwner(rec)
		if err != nil {
			return fmt.Errorf("sequence %d: %w", seq, err)
		}
		if string(merchant) == c.merchantID && ours(stream) {
			e, err := ledger.Decode(rec)
			if err != nil {
				return fmt.Errorf("sequence %d: %w", seq, err)
			}
			e.Claims = nil
			feed.Items = append(feed.Items, e)
		}
		feed.NextAfter = seq
		if len(feed.Items) == limit {
			return errFeedFull
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFeedFull) {
		return eventFeed{}, fmt.Errorf("read events after %d: %w", after, err)
	}
	return feed, nil
}

// ours reports whether a stream is one whose events the feed carries.
func ours(stream []byte) bool {
	for _, p := range feedPrefixes {
		if strings.HasPrefix(string(stream), p) {
			return true
		}
	}
	return false
}

// uintParam reads an optional whole-number query parameter from min to max
// (def when absent): a 400 naming the parameter otherwise.
func uintParam(q url.Values, name string, def, min, max uint64) (uint64, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n < min || n > max {
		return 0, badField(name, "int_parsing", fmt.Sprintf("%s must be a whole number from %d to %d", name, min, max))
	}
	return n, nil
}
