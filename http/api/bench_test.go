package api

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkCreateInvoice drives create-invoice through the whole stack
// (HTTP, auth, decoding, command, durable append, read-back) from parallel
// clients; appends share group commits.
func BenchmarkCreateInvoice(b *testing.B) {
	h := newHarness(b, func(c *Config) { c.CustomerRate = -1 })
	m := h.seedSetup()
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := strings.Replace(seed003Request, "order-2026-0001", fmt.Sprintf("bench-%d", n.Add(1)), 1)
			r := h.api(m, "POST", "/api/v1/create-invoice", body)
			if r.Status != http.StatusCreated {
				b.Errorf("create: %d %s", r.Status, r.Body)
				return
			}
		}
	})
}

// BenchmarkGetInvoice reads one invoice back.
func BenchmarkGetInvoice(b *testing.B) {
	// The per-key limit (20,000/s) would measure itself, not the read path.
	h := newHarness(b, func(c *Config) { c.KeyRate = -1 })
	m := h.seedSetup()
	id, _ := h.api(m, "POST", "/api/v1/create-invoice", seed003Request).JSON(b)["invoice_id"].(string)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := h.api(m, "GET", "/api/v1/invoices/"+id, ""); r.Status != http.StatusOK {
				b.Errorf("get: %d", r.Status)
				return
			}
		}
	})
}
