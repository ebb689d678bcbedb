package faults

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/webhooks"
)

// receiver is a merchant's webhook endpoint on a fixed loopback address:
// it checks every webhook's signature with webhooks.Verify and the
// merchant's signing secret, and remembers what arrived. It can be closed
// and opened again on the same address.
type receiver struct {
	t    *testing.T
	addr string

	mu      sync.Mutex
	secret  string
	srv     *http.Server
	byID    map[string]int    // webhook-id -> arrivals
	byExt   map[string]string // external_id -> invoice_id (from invoice webhooks)
	badSig  int
	badBody int
	clash   []string // an external id seen with two invoice ids
	total   int
	wg      sync.WaitGroup
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	// The first listener is the kernel's pick, kept: no other process can
	// take the address before the receiver listens, as it could a port
	// found free and let go.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, addr: ln.Addr().String(), byID: map[string]int{}, byExt: map[string]string{}}
	r.serveOn(ln)
	t.Cleanup(r.close)
	return r
}

func (r *receiver) url() string { return "http://" + r.addr + "/hooks/payledger" }

func (r *receiver) setSecret(s string) {
	r.mu.Lock()
	r.secret = s
	r.mu.Unlock()
}

// open listens on the receiver's address again, waiting for another
// process that took it meanwhile (a connection's ephemeral port, say) to
// let go.
func (r *receiver) open() {
	r.t.Helper()
	var ln net.Listener
	err := retryPortTaken(portWait, nil, func() (err error) {
		ln, err = net.Listen("tcp", r.addr)
		return err
	})
	if err != nil {
		r.t.Fatalf("receiver cannot listen on %s again: %v", r.addr, err)
	}
	r.serveOn(ln)
}

func (r *receiver) serveOn(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 5 * time.Second}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	r.wg.Go(func() { _ = srv.Serve(ln) })
}

// close takes the receiver away: the listener and every connection close,
// so attempts fail to connect until open.
func (r *receiver) close() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
	r.wg.Wait()
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total++
	if err := webhooks.Verify(r.secret, req, body, 5*time.Minute); err != nil {
		r.badSig++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	id := req.Header.Get(webhooks.HeaderID)
	r.byID[id]++
	var inv struct {
		ID  string `json:"invoice_id"`
		Ext string `json:"external_id"`
	}
	if err := json.Unmarshal(body, &inv); err != nil {
		r.badBody++
	} else if inv.ID != "" {
		if prev, ok := r.byExt[inv.Ext]; ok && prev != inv.ID {
			r.clash = append(r.clash, fmt.Sprintf("%s: %s and %s", inv.Ext, prev, inv.ID))
		}
		r.byExt[inv.Ext] = inv.ID
	}
	w.WriteHeader(http.StatusNoContent)
}

// missing lists the external ids whose invoice webhook has not arrived.
func (r *receiver) missing(exts []string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range exts {
		if _, ok := r.byExt[e]; !ok {
			out = append(out, e)
		}
	}
	sort.Strings(out)
	return out
}

// waitAll waits until a webhook arrived for every external id.
func (r *receiver) waitAll(t *testing.T, timeout time.Duration, exts []string) {
	t.Helper()
	waitFor(t, timeout, "every webhook", func() error {
		if m := r.missing(exts); len(m) > 0 {
			return fmt.Errorf("%d of %d webhooks have not arrived, e.g. %v", len(m), len(exts), m[:min(3, len(m))])
		}
		return nil
	})
}

// stats checks what arrived (signatures, bodies, one invoice per external
// id) and returns distinct webhooks and repeats.
func (r *receiver) stats(t *testing.T) (distinct, repeats int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.badSig > 0 || r.badBody > 0 {
		t.Errorf("%d webhooks with a bad signature, %d with a bad body (of %d)", r.badSig, r.badBody, r.total)
	}
	if len(r.clash) > 0 {
		t.Errorf("one external id, two invoices: %v", r.clash[:min(5, len(r.clash))])
	}
	for _, n := range r.byID {
		distinct++
		repeats += n - 1
	}
	return distinct, repeats
}

// record adds the receiver's totals to the summary.
func (r *receiver) record(t *testing.T) {
	t.Helper()
	d, rep := r.stats(t)
	r.mu.Lock()
	bad := r.badSig
	r.mu.Unlock()
	counts.add("webhooks delivered (distinct webhook-id)", int64(d))
	counts.add("webhook duplicates (same webhook-id again)", int64(rep))
	counts.add("webhooks with a bad signature", int64(bad))
	t.Logf("webhooks: %d distinct, %d repeats (at least once: allowed, deduplicated by webhook-id)", d, rep)
}

// invoiceOf is the invoice id a webhook carried for an external id.
func (r *receiver) invoiceOf(ext string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id, ok := r.byExt[ext]
	return id, ok
}

// noDeliveriesLeft waits until the node lists no webhook delivery pending
// or failed (GET /api/v1/webhooks/deliveries).
func noDeliveriesLeft(t *testing.T, a *client) {
	t.Helper()
	waitFor(t, time.Minute, "no delivery pending or failed", func() error {
		for _, st := range []string{"pending", "failed"} {
			r, err := a.do("GET", "/api/v1/webhooks/deliveries?status="+st+"&page_size=1", nil, nil)
			if err != nil {
				return err
			}
			if r.Status != http.StatusOK {
				return fmt.Errorf("deliveries: %d %s", r.Status, r.Body)
			}
			var page struct {
				Details struct {
					Total int `json:"total_objects"`
				} `json:"page_details"`
			}
			if err := json.Unmarshal(r.Body, &page); err != nil {
				return err
			}
			if page.Details.Total != 0 {
				return fmt.Errorf("%d deliveries %s", page.Details.Total, st)
			}
		}
		return nil
	})
}
