package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// book is what the clients were told: the invoices acknowledged with a 2xx
// (which must survive anything), the creates that got no answer (the
// connection was cut: committed or not, nobody knows yet), and the refused
// ones by status.
type book struct {
	mu        sync.Mutex
	acked     map[string]string // external_id -> invoice_id
	ackOrder  []string          // external ids in acknowledgement order
	ambiguous map[string][]byte // external_id -> request body
	refused   map[string][]byte // external_id -> request body (a non-2xx answer)
	statuses  map[int]int       // non-2xx answers by status
	codes     map[string]int    // non-2xx answers by error code
	retryMiss int               // refused answers without Retry-After
	nAcked    atomic.Int64
	nRefused  atomic.Int64
}

func newBook() *book {
	return &book{acked: map[string]string{}, ambiguous: map[string][]byte{}, refused: map[string][]byte{},
		statuses: map[int]int{}, codes: map[string]int{}}
}

func (b *book) ack(ext, id string) {
	b.mu.Lock()
	if _, dup := b.acked[ext]; !dup {
		b.ackOrder = append(b.ackOrder, ext)
	}
	b.acked[ext] = id
	b.mu.Unlock()
	b.nAcked.Add(1)
}

// ackedSnapshot copies the acknowledged invoices.
func (b *book) ackedSnapshot() map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := make(map[string]string, len(b.acked))
	for k, v := range b.acked {
		m[k] = v
	}
	return m
}

func (b *book) takeAmbiguous() map[string][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.ambiguous
	b.ambiguous = map[string][]byte{}
	return m
}

func (b *book) takeRefused() map[string][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.refused
	b.refused = map[string][]byte{}
	return m
}

func (b *book) statusSummary() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var parts []string
	for s, n := range b.statuses {
		parts = append(parts, fmt.Sprintf("%d x%d", s, n))
	}
	for c, n := range b.codes {
		parts = append(parts, fmt.Sprintf("%s x%d", c, n))
	}
	sort.Strings(parts)
	return fmt.Sprint(parts)
}

// invoiceBody is a create-invoice request (seed 003) for one external id;
// each has its own customer_id, so the per-customer rate limit never bites.
func invoiceBody(ext string) []byte {
	return fmt.Appendf(nil, `{"amount": "1500.00", "currency_code": "UAH", "customer_id": "cust-%s", "external_id": %q, "purpose": "fault injection"}`, ext, ext)
}

// load drives create-invoice from n goroutines until ctx ends, recording
// every answer in bk. Each external id is prefix-w<worker>-<i>. The returned
// function waits for the goroutines.
func load(ctx context.Context, a *client, n int, prefix string, bk *book) (wait func()) {
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				ext := fmt.Sprintf("%s-w%d-%d", prefix, w, i)
				body := invoiceBody(ext)
				r, err := a.do("POST", "/api/v1/create-invoice", body, nil)
				switch {
				case err != nil && isRefused(err):
					// Never sent: the server is down. Back off a little
					// so a dead server does not spin the loop.
					select {
					case <-ctx.Done():
					case <-time.After(5 * time.Millisecond):
					}
				case err != nil:
					bk.mu.Lock()
					bk.ambiguous[ext] = body
					bk.mu.Unlock()
				case r.Status == http.StatusCreated:
					var inv struct {
						ID  string `json:"invoice_id"`
						Ext string `json:"external_id"`
					}
					if json.Unmarshal(r.Body, &inv) != nil || inv.ID == "" || inv.Ext != ext {
						bk.mu.Lock()
						bk.codes["2xx with a bad body"]++
						bk.mu.Unlock()
						continue
					}
					bk.ack(ext, inv.ID)
				default:
					bk.mu.Lock()
					bk.refused[ext] = body
					bk.statuses[r.Status]++
					bk.codes[r.errorCode()]++
					if r.Header.Get("Retry-After") == "" {
						bk.retryMiss++
					}
					bk.mu.Unlock()
					bk.nRefused.Add(1)
				}
			}
		})
	}
	return wg.Wait
}

// checkAcked GETs every acknowledged invoice: each must be there with its
// external id. It returns how many it found.
func checkAcked(t *testing.T, a *client, acked map[string]string) int {
	t.Helper()
	type item struct{ ext, id string }
	items := make(chan item)
	var found atomic.Int64
	var mu sync.Mutex
	var missing []string
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for it := range items {
				r, err := a.do("GET", "/api/v1/invoices/"+it.id, nil, nil)
				var inv struct {
					ID  string `json:"invoice_id"`
					Ext string `json:"external_id"`
				}
				if err == nil && r.Status == http.StatusOK && json.Unmarshal(r.Body, &inv) == nil && inv.ID == it.id && inv.Ext == it.ext {
					found.Add(1)
					continue
				}
				mu.Lock()
				if err != nil {
					missing = append(missing, fmt.Sprintf("%s (%s): %v", it.ext, it.id, err))
				} else {
					missing = append(missing, fmt.Sprintf("%s (%s): %d %s", it.ext, it.id, r.Status, r.Body))
				}
				mu.Unlock()
			}
		})
	}
	for ext, id := range acked {
		items <- item{ext, id}
	}
	close(items)
	wg.Wait()
	counts.add("reads of acknowledged invoices after a fault (GET 200)", found.Load())
	if len(missing) > 0 {
		counts.add("acknowledged invoices missing", int64(len(missing)))
		sort.Strings(missing)
		t.Errorf("%d of %d acknowledged invoices are not there, e.g. %v", len(missing), len(acked), missing[:min(5, len(missing))])
	}
	return int(found.Load())
}

// resolveAmbiguous sends again every create that got no answer: 409
// DUPLICATE_EXTERNAL_ID means the first had been committed (its webhook is
// then owed too), 201 that it had not (now it is, and acknowledged). It
// returns the external ids found committed.
func resolveAmbiguous(t *testing.T, a *client, bk *book) []string {
	t.Helper()
	var committed []string
	pending := bk.takeAmbiguous()
	for ext, body := range pending {
		r, err := a.do("POST", "/api/v1/create-invoice", body, nil)
		if err != nil {
			t.Fatalf("retry of %s: %v", ext, err)
		}
		switch {
		case r.Status == http.StatusConflict && r.errorCode() == "DUPLICATE_EXTERNAL_ID":
			committed = append(committed, ext)
		case r.Status == http.StatusCreated:
			bk.ack(ext, r.json(t)["invoice_id"].(string))
		default:
			t.Fatalf("retry of %s: %d %s", ext, r.Status, r.Body)
		}
	}
	counts.add("creates without an answer (connection cut)", int64(len(pending)))
	counts.add("  of which committed (retry got 409)", int64(len(committed)))
	counts.add("  of which not committed (retry got 201)", int64(len(pending)-len(committed)))
	return committed
}
