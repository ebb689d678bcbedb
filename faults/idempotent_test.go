package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/node"
)

// TestKillIdempotentRetries kills `payledger serve` with SIGKILL while
// clients create payments, one Idempotency-Key per invoice, and then sends
// every request again with its key, as a client retrying after a timeout
// would. Wherever the kill fell (before the commit, after it, or before the
// request was sent) the retry answers 201 with one payment, the one an
// earlier answer named if there was one, and every invoice ends with
// exactly one payment.
//
// A kill rarely lands between a commit and its idempotency record's save
// (the full profile's 79 cut-off requests never did), so every other cycle
// also deletes the idempotency file before the restart: every record lost,
// as if each kill had fallen in that window. The request keys the payments
// claimed in the log must then answer every retry.
func TestKillIdempotentRetries(t *testing.T) {
	t.Parallel()
	r := rng(t)
	dir := t.TempDir()
	sh := startShop(t, dir)
	sv, a := sh.sv, sh.a
	const perCycle = 200
	var retried, unanswered, replayed, recordsLost int64

	for cycle := range prof.Kills {
		invoices := make([]string, perCycle)
		for i := range invoices {
			inv := a.must(t, http.StatusCreated, "POST", "/api/v1/create-invoice", string(invoiceBody(fmt.Sprintf("idem%d-%d", cycle, i))))
			invoices[i] = inv["invoice_id"].(string)
		}
		pay := func(id string) (answer, error) {
			return a.do("POST", "/api/v1/invoices/"+id+"/payments", []byte(`{"method": "visamaster.uah"}`),
				map[string]string{"Idempotency-Key": "pay-" + id})
		}

		// Load until a random number of payments is acknowledged, then kill.
		var (
			mu       sync.Mutex
			answered = map[string]string{} // invoice -> payment id a 201 named
			cut      = map[string]bool{}   // sent, no answer
		)
		next := make(chan string, len(invoices))
		for _, id := range invoices {
			next <- id
		}
		close(next)
		target := 1 + r.IntN(perCycle/2)
		acked := make(chan struct{}, perCycle)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range prof.Loaders {
			wg.Go(func() {
				for id := range next {
					if ctx.Err() != nil {
						return
					}
					ans, err := pay(id)
					mu.Lock()
					switch {
					case err != nil && !isRefused(err):
						cut[id] = true
					case err == nil && ans.Status == http.StatusCreated:
						answered[id] = paymentID(t, ans)
						acked <- struct{}{}
					case err == nil:
						t.Errorf("payment for %s: %d %s", id, ans.Status, ans.Body)
					}
					mu.Unlock()
				}
			})
		}
		for range target {
			select {
			case <-acked:
			case <-time.After(time.Minute):
				t.Fatalf("cycle %d: fewer than %d payments acknowledged in a minute", cycle, target)
			}
		}
		sv.kill()
		cancel()
		wg.Wait()
		a.hc.CloseIdleConnections()
		sv.verifyOffline()
		lost := cycle%2 == 1
		if lost {
			if err := os.Remove(filepath.Join(dir, node.IdempotencyFile)); err != nil {
				t.Fatal(err)
			}
			recordsLost += int64(len(answered))
		}
		sv.start()

		// Every request again, with its key.
		for _, id := range invoices {
			ans, err := pay(id)
			if err != nil || ans.Status != http.StatusCreated {
				t.Fatalf("retry for %s: %v %d %s", id, err, ans.Status, ans.Body)
			}
			pid := paymentID(t, ans)
			if first, ok := answered[id]; ok && pid != first {
				t.Errorf("retry for %s answered payment %s, the first answer %s", id, pid, first)
			}
			if ans.Header.Get("Idempotent-Replayed") == "true" {
				replayed++
			}
			list := a.must(t, http.StatusOK, "GET", "/api/v1/invoices/"+id+"/payments", "")
			if items, _ := list["items"].([]any); len(items) != 1 {
				t.Errorf("invoice %s has %d payments after retries: %v", id, len(items), list)
			}
		}
		retried += perCycle
		unanswered += int64(len(cut))
		t.Logf("kill %d after %d acknowledged payments (idempotency records deleted: %v): %d requests cut off; every retry found or made one payment",
			cycle+1, len(answered), lost, len(cut))
	}
	counts.add("payment creations retried with their Idempotency-Key after a kill", retried)
	counts.add("  of which the kill had cut off", unanswered)
	counts.add("  of which answered as replays", replayed)
	counts.add("  of which acknowledged, then their idempotency record deleted", recordsLost)
}

func paymentID(t *testing.T, a answer) string {
	t.Helper()
	var p struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(a.Body, &p); err != nil || p.ID == "" {
		t.Fatalf("payment answer %d: %s", a.Status, a.Body)
	}
	return p.ID
}
