package api

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func TestIdempotencyKey(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	send := func(key, body string) resp {
		return h.do(req{method: "POST", path: "/api/v1/create-invoice", body: body,
			header: map[string]string{"X-Api-Key": m.Key, "Idempotency-Key": key}})
	}
	first := send("k-1", seed003Request)
	if first.Status != http.StatusCreated || first.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first: %d %v %s", first.Status, first.Header, first.Body)
	}
	head := h.head()
	again := send("k-1", seed003Request)
	if again.Status != http.StatusCreated || again.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(again.Body, first.Body) {
		t.Errorf("replay: %d %v\n%s\nwant %s", again.Status, again.Header, again.Body, first.Body)
	}
	if h.head() != head {
		t.Error("replay appended")
	}
	other := send("k-1", strings.Replace(seed003Request, "order-2026-0001", "order-2", 1))
	if other.Status != http.StatusConflict || other.errCode(t) != CodeIdempotencyReused {
		t.Errorf("reuse with another body: %d %s", other.Status, other.Body)
	}
	// Without the key the natural key decides.
	if r := h.api(m, "POST", "/api/v1/create-invoice", seed003Request); r.errCode(t) != CodeDuplicateExternalID {
		t.Errorf("no key: %s", r.Body)
	}
	// Keys are per merchant: another merchant's same key is a new request.
	m2 := h.newMerchant(`{"name": "two"}`)
	r := h.do(req{method: "POST", path: "/api/v1/create-invoice", body: seed003Request,
		header: map[string]string{"X-Api-Key": m2.Key, "Idempotency-Key": "k-1"}})
	if r.Status != http.StatusCreated || r.Header.Get("Idempotent-Replayed") != "" {
		t.Errorf("other merchant, same key: %d %s", r.Status, r.Body)
	}
	// Error answers are replayed too; a bad key is refused.
	bad := send("k-bad", `{"amount": 5}`)
	if bad.Status != 400 || send("k-bad", `{"amount": 5}`).Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("400 not replayed")
	}
	if r := send(strings.Repeat("x", 300), seed003Request); r.Status != 400 || r.details(t)[0].Path != "Idempotency-Key" {
		t.Errorf("long key: %d %s", r.Status, r.Body)
	}
	// The record expires after the TTL, but the request key its invoice
	// claimed in the log does not: the same request still gets its invoice
	// (as it is now); another request under the key is new.
	h.clock.Advance(DefaultIdempotencyTTL + time.Minute)
	if r := send("k-1", strings.Replace(seed003Request, "order-2026-0001", "order-3", 1)); r.Status != http.StatusCreated || r.Header.Get("Idempotent-Replayed") != "" {
		t.Errorf("after TTL, another request: %d %v %s", r.Status, r.Header, r.Body)
	}
	h.clock.Advance(DefaultIdempotencyTTL + time.Minute)
	exp := send("k-1", seed003Request)
	if exp.Status != http.StatusCreated || exp.Header.Get("Idempotent-Replayed") != "true" || exp.JSON(t)["invoice_id"] != first.JSON(t)["invoice_id"] {
		t.Errorf("after TTL: %d %v %s", exp.Status, exp.Header, exp.Body)
	}
}

// TestIdempotencyConcurrent sends one key from many goroutines: one payment.
func TestIdempotencyConcurrent(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	id, _ := h.api(m, "POST", "/api/v1/create-invoice", seed003Request).JSON(t)["invoice_id"].(string)
	rs := h.concurrently(8, func(int) resp {
		return h.do(req{method: "POST", path: "/api/v1/invoices/" + id + "/payments", body: `{"method": "visamaster.uah"}`,
			header: map[string]string{"X-Api-Key": m.Key, "Idempotency-Key": "pay-once"}})
	})
	for i, r := range rs {
		if r.Status != http.StatusCreated || !bytes.Equal(r.Body, rs[0].Body) {
			t.Errorf("request %d: %d %s (first %s)", i, r.Status, r.Body, rs[0].Body)
		}
	}
	l := h.api(m, "GET", "/api/v1/invoices/"+id+"/payments", "")
	if c := strings.Count(string(l.Body), `"gatewayId"`); c != 1 {
		t.Errorf("%d payments made, want 1: %s", c, l.Body)
	}
}

// TestIdempotencyLostRecordPayment is the crash window between a payment's
// commit and its idempotency record's save: with the record gone, a retry
// with the same key and body answers the payment the first attempt made
// (claimed in the log by its request key) and appends nothing, even once
// the invoice is paid. Another body under the key is another request.
func TestIdempotencyLostRecordPayment(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	id, _ := h.api(m, "POST", "/api/v1/create-invoice", seed003Request).JSON(t)["invoice_id"].(string)
	path := "/api/v1/invoices/" + id + "/payments"
	pay := func(key, body string) resp {
		return h.do(req{method: "POST", path: path, body: body,
			header: map[string]string{"X-Api-Key": m.Key, "Idempotency-Key": key}})
	}
	first := pay("pay-1", `{"method": "visamaster.uah"}`)
	if first.Status != http.StatusCreated {
		t.Fatalf("first: %d %s", first.Status, first.Body)
	}
	pid, _ := first.JSON(t)["id"].(string)

	h.loseIdempotencyRecords(t)
	head := h.head()
	again := pay("pay-1", `{"method": "visamaster.uah"}`)
	if again.Status != http.StatusCreated || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry after a lost record: %d %v %s", again.Status, again.Header, again.Body)
	}
	jsonEqual(t, again.Body, string(first.Body))
	if h.head() != head {
		t.Errorf("retry appended: head %d -> %d", head, h.head())
	}
	// The answer is stored again: a third try replays it from the record.
	if r := pay("pay-1", `{"method": "visamaster.uah"}`); r.Status != http.StatusCreated || !bytes.Equal(r.Body, again.Body) {
		t.Errorf("replay of the recovered answer: %d %s", r.Status, r.Body)
	}

	// Paid since: the retry still finds its payment rather than
	// INVOICE_NOT_PAYABLE.
	h.clock.Advance(time.Minute)
	if r := h.admin("POST", "/admin/v1/payments/"+pid+"/process", ""); r.Status != http.StatusOK {
		t.Fatalf("process: %d %s", r.Status, r.Body)
	}
	h.loseIdempotencyRecords(t)
	late := pay("pay-1", `{"method": "visamaster.uah"}`)
	if late.Status != http.StatusCreated || late.JSON(t)["id"] != pid || late.JSON(t)["status"] != "PROCESSED" {
		t.Errorf("retry after payment: %d %s", late.Status, late.Body)
	}
	if l := h.api(m, "GET", path, ""); strings.Count(string(l.Body), `"gatewayId"`) != 1 {
		t.Errorf("want 1 payment: %s", l.Body)
	}

	// The key is scoped to the merchant: another merchant's request with the
	// same key and body is its own (here: not found, the invoice is m's).
	m2 := h.newMerchant(`{"name": "two"}`)
	r := h.do(req{method: "POST", path: path, body: `{"method": "visamaster.uah"}`,
		header: map[string]string{"X-Api-Key": m2.Key, "Idempotency-Key": "pay-1"}})
	if r.Status != http.StatusNotFound {
		t.Errorf("other merchant, same key: %d %s", r.Status, r.Body)
	}
}

// loseIdempotencyRecords empties the idempotency store: what a crash
// between a command's commit and its record's save leaves.
func (h *harness) loseIdempotencyRecords(t *testing.T) {
	t.Helper()
	if err := h.srv.cfg.IdempotencyDB.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketIdem, bucketIdemExp} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestIdempotencyLostRecordCreations: with the record lost, a retried
// create-invoice, e-invoice, widget or widget invoice gets what the first
// attempt made (not DUPLICATE_EXTERNAL_ID, "Transaction already exists" or a
// second widget or invoice), and appends nothing.
func TestIdempotencyLostRecordCreations(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	wid, _ := h.api(m, "POST", "/api/v1/widgets", `{"type": "single", "fiat_currency": "UAH", "fiat_amount": "10.00"}`).JSON(t)["external_id"].(string)
	if wid == "" {
		t.Fatal("no widget")
	}
	for _, tc := range []struct {
		path, body, key string
		dupWithoutKey   bool // without the key, a natural key refuses the retry (409)
	}{
		{"/api/v1/create-invoice", seed003Request, "inv-1", true},
		{"/api/einvoice/create", seed001Request, "einv-1", true},
		{"/api/v1/widgets", `{"type": "single", "fiat_currency": "UAH", "fiat_amount": "25.00"}`, "wid-1", false},
		{"/api/v1/widgets/" + wid + "/invoices", `{"customer_id": "c-1"}`, "winv-1", false},
	} {
		send := func() resp {
			return h.do(req{method: "POST", path: tc.path, body: tc.body,
				header: map[string]string{"X-Api-Key": m.Key, "Idempotency-Key": tc.key}})
		}
		first := send()
		if first.Status >= 300 {
			t.Fatalf("%s: %d %s", tc.path, first.Status, first.Body)
		}
		h.loseIdempotencyRecords(t)
		head := h.head()
		again := send()
		if again.Status != first.Status || again.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("%s retry: %d %v %s", tc.path, again.Status, again.Header, again.Body)
		}
		jsonEqual(t, again.Body, string(first.Body))
		if h.head() != head {
			t.Errorf("%s retry appended", tc.path)
		}
		if tc.dupWithoutKey {
			if r := h.api(m, "POST", tc.path, tc.body); r.Status != http.StatusConflict {
				t.Errorf("%s without the key: %d %s", tc.path, r.Status, r.Body)
			}
		}
	}
}

// TestIdempotencyPersists reopens the server on the same idempotency file.
func TestIdempotencyPersists(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	hdr := map[string]string{"X-Api-Key": m.Key, "Idempotency-Key": "persist"}
	first := h.do(req{method: "POST", path: "/api/v1/create-invoice", body: seed003Request, header: hdr})
	srv2, err := New(h.srv.cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.ts.Config.Handler = srv2.Handler()
	again := h.do(req{method: "POST", path: "/api/v1/create-invoice", body: seed003Request, header: hdr})
	if again.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(first.Body, again.Body) {
		t.Errorf("not replayed by a new server: %s", again.Body)
	}
	// Stored responses are sealed: the api key of an admin response never
	// lies in the file in the clear.
	ar := h.do(req{method: "POST", path: "/admin/v1/merchants", body: `{"name": "sealed"}`,
		header: map[string]string{"Authorization": "Bearer " + testAdminToken, "Idempotency-Key": "m-1"}})
	key, _ := ar.JSON(t)["api_key"].(string)
	err = h.srv.cfg.IdempotencyDB.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketIdem).ForEach(func(k, v []byte) error {
			if bytes.Contains(v, []byte(key)) || bytes.Contains(v, []byte("invoice_id")) {
				t.Errorf("record %q holds the response in the clear", k)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRateLimits(t *testing.T) {
	t.Run("per key", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.KeyRate, c.KeyBurst = 1, 3 })
		m := h.newMerchant(`{"name": "limited"}`)
		for i := range 3 {
			if r := h.api(m, "GET", "/api/v1/invoices", ""); r.Status != http.StatusOK {
				t.Fatalf("request %d: %d", i, r.Status)
			}
		}
		r := h.api(m, "GET", "/api/v1/invoices", "")
		if r.Status != http.StatusTooManyRequests || r.errCode(t) != CodeRateLimited {
			t.Fatalf("4th request: %d %s", r.Status, r.Body)
		}
		if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("Retry-After %q", r.Header.Get("Retry-After"))
		}
		h.clock.Advance(2 * time.Second)
		if r := h.api(m, "GET", "/api/v1/invoices", ""); r.Status != http.StatusOK {
			t.Errorf("after waiting: %d", r.Status)
		}
	})
	t.Run("per customer_id", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.CustomerRate, c.CustomerBurst = 0.5, 2 })
		m := h.seedSetup()
		create := func(i int, customer string) resp {
			body := strings.NewReplacer("order-2026-0001", fmt.Sprintf("order-%d", i), "user_12345", customer).Replace(seed003Request)
			return h.api(m, "POST", "/api/v1/create-invoice", body)
		}
		for i := range 2 {
			if r := create(i, "user_1"); r.Status != http.StatusCreated {
				t.Fatalf("invoice %d: %d %s", i, r.Status, r.Body)
			}
		}
		head := h.head()
		r := create(2, "user_1")
		if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "2" {
			t.Errorf("3rd invoice for one customer: %d %v %s", r.Status, r.Header.Get("Retry-After"), r.Body)
		}
		if h.head() != head {
			t.Error("a rate-limited request appended")
		}
		if r := create(3, "user_2"); r.Status != http.StatusCreated {
			t.Errorf("another customer: %d %s", r.Status, r.Body)
		}
	})
	// One customer_id written another way (case, spaces around, a
	// zero-width space) is the same customer: it gets no fresh bucket. The
	// invoice keeps the id as sent; one whose key is empty is not limited
	// per customer.
	t.Run("per customer_id, however written", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.CustomerRate, c.CustomerBurst = 0.5, 2 })
		m := h.seedSetup()
		create := func(i int, customer string) resp {
			body := strings.NewReplacer("order-2026-0001", fmt.Sprintf("order-%d", i), `"user_12345"`, strconv.Quote(customer)).Replace(seed003Request)
			return h.api(m, "POST", "/api/v1/create-invoice", body)
		}
		for i, id := range []string{"carol@example.com", "Carol@Example.COM "} {
			r := create(i, id)
			if r.Status != http.StatusCreated {
				t.Fatalf("invoice %d: %d %s", i, r.Status, r.Body)
			}
			if got := r.JSON(t)["customer_id"]; got != id {
				t.Errorf("invoice %d: customer_id %q, want %q as sent", i, got, id)
			}
		}
		head := h.head()
		for i, id := range []string{"CAROL@example.com", " carol@example.com", "carol@example.com\u200b", "\ufeffcarol@\u200dexample.com\t"} {
			if r := create(10+i, id); r.Status != http.StatusTooManyRequests || r.errCode(t) != CodeRateLimited {
				t.Errorf("customer_id %q: %d %s, want 429 %s", id, r.Status, r.Body, CodeRateLimited)
			}
		}
		if h.head() != head {
			t.Error("a rate-limited request appended")
		}
		for i, id := range []string{"", "", "", " \u200b"} {
			if r := create(20+i, id); r.Status != http.StatusCreated {
				t.Errorf("customer_id %q (no per-customer limit): %d %s", id, r.Status, r.Body)
			}
		}
	})
	// customer_id may be 128 characters, so up to 512 bytes of UTF-8: a
	// long one is limited like any other.
	t.Run("per long customer_id", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.CustomerRate, c.CustomerBurst = 0.5, 2 })
		m := h.seedSetup()
		long := strings.Repeat("客", 128) // 384 bytes
		for i := range 2 {
			body := strings.NewReplacer("order-2026-0001", fmt.Sprintf("order-%d", i), "user_12345", long).Replace(seed003Request)
			if r := h.api(m, "POST", "/api/v1/create-invoice", body); r.Status != http.StatusCreated {
				t.Fatalf("invoice %d: %d %s", i, r.Status, r.Body)
			}
		}
		head := h.head()
		body := strings.NewReplacer("order-2026-0001", "order-2", "user_12345", long).Replace(seed003Request)
		if r := h.api(m, "POST", "/api/v1/create-invoice", body); r.Status != http.StatusTooManyRequests || r.errCode(t) != CodeRateLimited {
			t.Errorf("3rd invoice for one long customer_id: %d %s", r.Status, r.Body)
		}
		einv := `{"payment_id": "e-3", "currency": "visamaster.uah", "amount": "100.00", "account": "` + long + `"}`
		if r := h.api(m, "POST", "/api/einvoice/create", einv); r.Status != http.StatusTooManyRequests {
			t.Errorf("e-invoice for the same long account: %d %s", r.Status, r.Body)
		}
		if h.head() != head {
			t.Error("a rate-limited request appended")
		}
	})
}

func TestSignedRequests(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	key := h.kr.SigningKey(m.ID, 1)
	signed := func(ts int64, path, body, sig string) resp {
		tss := strconv.FormatInt(ts, 10)
		if sig == "" {
			sig = Sign(key, tss, "POST", path, []byte(body))
		}
		return h.do(req{method: "POST", path: path, body: body, header: map[string]string{
			"X-Api-Key": m.Key, "X-Timestamp": tss, "X-Signature": sig}})
	}
	now := h.clock.Now().UnixMilli()
	const path = "/api/v1/widgets?x=1"
	body := `{"type": "unlimited", "description": "signed"}`

	ok := signed(now, path, body, "")
	if ok.Status != http.StatusCreated {
		t.Fatalf("valid signature: %d %s", ok.Status, ok.Body)
	}
	if r := signed(now, path, body, ""); r.Status != http.StatusUnauthorized || r.errCode(t) != CodeSignatureReplayed {
		t.Errorf("replayed: %d %s", r.Status, r.Body)
	}
	if r := signed(now-4*60*1000, path, body, ""); r.Status != http.StatusUnauthorized || r.errCode(t) != CodeSignatureExpired {
		t.Errorf("skewed past: %d %s", r.Status, r.Body)
	}
	if r := signed(now+4*60*1000, path, body, ""); r.Status != http.StatusUnauthorized || r.errCode(t) != CodeSignatureExpired {
		t.Errorf("skewed future: %d %s", r.Status, r.Body)
	}
	if r := signed(now+1, path, body, strings.Repeat("ab", 32)); r.Status != http.StatusUnauthorized || r.errCode(t) != CodeSignatureInvalid {
		t.Errorf("bad signature: %d %s", r.Status, r.Body)
	}
	// Signed for another body.
	sig := Sign(key, strconv.FormatInt(now+2, 10), "POST", path, []byte(body))
	if r := signed(now+2, path, `{"type": "unlimited", "description": "tampered"}`, sig); r.errCode(t) != CodeSignatureInvalid {
		t.Errorf("tampered body: %s", r.Body)
	}
	if r := h.do(req{method: "GET", path: "/api/v1/widgets", header: map[string]string{"X-Api-Key": m.Key, "X-Signature": "00"}}); r.errCode(t) != CodeSignatureInvalid {
		t.Errorf("signature without timestamp: %s", r.Body)
	}
	// After a rotation the previous key signs for the overlap, and the new one.
	if r := h.admin("POST", "/admin/v1/merchants/"+m.ID+"/secret/rotate", ""); r.Status != http.StatusOK {
		t.Fatal(r.Status)
	}
	if r := signed(now+3, "/api/v1/widgets", `{"type": "unlimited"}`, ""); r.Status != http.StatusCreated {
		t.Errorf("previous secret during overlap: %d %s", r.Status, r.Body)
	}
	key = h.kr.SigningKey(m.ID, 2)
	if r := signed(now+4, "/api/v1/widgets", `{"type": "unlimited"}`, ""); r.Status != http.StatusCreated {
		t.Errorf("new secret: %d %s", r.Status, r.Body)
	}
	h.clock.Advance(DefaultSecretOverlap + time.Minute)
	key = h.kr.SigningKey(m.ID, 1)
	later := h.clock.Now().UnixMilli()
	if r := signed(later, "/api/v1/widgets", `{"type": "unlimited"}`, ""); r.errCode(t) != CodeSignatureInvalid {
		t.Errorf("previous secret after overlap: %d %s", r.Status, r.Body)
	}
	// Required signatures.
	h2 := newHarness(t, func(c *Config) { c.RequireSignatures = true })
	m2 := h2.newMerchant(`{"name": "strict"}`)
	if r := h2.api(m2, "GET", "/api/v1/widgets", ""); r.Status != http.StatusUnauthorized || r.errCode(t) != CodeSignatureRequired {
		t.Errorf("unsigned with RequireSignatures: %d %s", r.Status, r.Body)
	}
}

// TestSignedReplayAfterRestart: a signed request accepted by one server is
// refused by the next one on the same files (a restart forgets the replay
// memory, so a signature stamped before the start is refused), and nothing
// is appended; a request signed after the start is accepted; a client whose
// clock is behind is refused until the server's clock passes its start by
// the lag; an Idempotency-Key retry signed afresh gets the first answer.
func TestSignedReplayAfterRestart(t *testing.T) {
	h := newHarness(t)
	m := h.seedSetup()
	key := h.kr.SigningKey(m.ID, 1)
	const path = "/api/v1/widgets"
	signed := func(ts time.Time, body string, extra map[string]string) resp {
		t.Helper()
		tss := strconv.FormatInt(ts.UnixMilli(), 10)
		hdr := map[string]string{"X-Api-Key": m.Key, "X-Timestamp": tss, "X-Signature": Sign(key, tss, "POST", path, []byte(body))}
		for k, v := range extra {
			hdr[k] = v
		}
		return h.do(req{method: "POST", path: path, body: body, header: hdr})
	}
	body := `{"type": "unlimited", "description": "before the restart"}`
	signedAt := h.clock.Now()
	if r := signed(signedAt, body, nil); r.Status != http.StatusCreated {
		t.Fatalf("signed: %d %s", r.Status, r.Body)
	}
	if r := signed(signedAt, body, nil); r.Status != http.StatusUnauthorized || r.errCode(t) != CodeSignatureReplayed {
		t.Errorf("replay: %d %s", r.Status, r.Body)
	}
	idemBody := `{"type": "unlimited", "description": "idempotent"}`
	idem := map[string]string{"Idempotency-Key": "widget-1"}
	first := signed(signedAt, idemBody, idem)
	if first.Status != http.StatusCreated {
		t.Fatalf("signed with an Idempotency-Key: %d %s", first.Status, first.Body)
	}

	// A restart: a new server on the same log and idempotency file, 10
	// seconds later, well inside the window of the first signature.
	h.clock.Advance(10 * time.Second)
	srv2, err := New(h.srv.cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.ts.Config.Handler = srv2.Handler()
	head := h.head()
	r := signed(signedAt, body, nil)
	if r.Status != http.StatusUnauthorized || r.errCode(t) != CodeSignatureExpired ||
		!strings.Contains(r.JSON(t)["error"].(map[string]any)["message"].(string), "signed before the server (re)started") {
		t.Errorf("replay after the restart: %d %s, want 401 %s", r.Status, r.Body, CodeSignatureExpired)
	}
	if h.head() != head {
		t.Errorf("the replay after the restart appended %d events", h.head()-head)
	}
	// Signed afresh after the start: accepted, once.
	restarted := h.clock.Now()
	if r := signed(restarted, body, nil); r.Status != http.StatusCreated {
		t.Errorf("signed after the restart: %d %s", r.Status, r.Body)
	}
	if r := signed(restarted, body, nil); r.errCode(t) != CodeSignatureReplayed {
		t.Errorf("replay of a request signed after the restart: %d %s", r.Status, r.Body)
	}
	// The Idempotency-Key retry, signed afresh, gets the first answer.
	again := signed(restarted.Add(time.Millisecond), idemBody, idem)
	if again.Status != http.StatusCreated || again.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(again.Body, first.Body) {
		t.Errorf("Idempotency-Key retry signed afresh: %d %s", again.Status, again.Body)
	}
	// A client whose clock is 30 seconds behind: refused until the server's
	// clock is 30 seconds past its start, then accepted.
	head = h.head()
	lag := 30 * time.Second
	if r := signed(h.clock.Now().Add(-lag), `{"type": "unlimited", "description": "lagging"}`, nil); r.errCode(t) != CodeSignatureExpired {
		t.Errorf("clock %s behind, just after the start: %d %s", lag, r.Status, r.Body)
	}
	if h.head() != head {
		t.Error("a refused lagging request appended")
	}
	h.clock.Advance(lag)
	if r := signed(h.clock.Now().Add(-lag), `{"type": "unlimited", "description": "lagging"}`, nil); r.Status != http.StatusCreated {
		t.Errorf("clock %s behind, %s after the start: %d %s", lag, lag, r.Status, r.Body)
	}
}

func TestPanicRecovered(t *testing.T) {
	h := newHarness(t)
	h.srv.mux.Handle("GET /panic", h.srv.endpoint(authNone, func(c *call) (int, any, error) { panic("boom") }))
	r := h.do(req{method: "GET", path: "/panic"})
	if r.Status != http.StatusInternalServerError || r.errCode(t) != CodeInternal {
		t.Errorf("panic: %d %s", r.Status, r.Body)
	}
	if !strings.Contains(h.logs.String(), r.Header.Get("X-Request-Id")) {
		t.Errorf("panic not logged with the request id: %s", h.logs.String())
	}
	h.srv.mux.Handle("GET /fail", h.srv.endpoint(authNone, func(c *call) (int, any, error) { return 0, nil, fmt.Errorf("disk on fire") }))
	r = h.do(req{method: "GET", path: "/fail"})
	if r.Status != http.StatusInternalServerError || strings.Contains(string(r.Body), "disk on fire") {
		t.Errorf("unknown error: %d %s", r.Status, r.Body)
	}
	if strings.Count(h.logs.String(), r.Header.Get("X-Request-Id")) != 1 {
		t.Errorf("unknown error not logged exactly once: %s", h.logs.String())
	}
}

// TestWebhooksMount checks the delivery routes are served behind the
// merchant's auth, with the merchant and the body handed over as they came.
func TestWebhooksMount(t *testing.T) {
	var calls int
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		id, ok := MerchantID(r)
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"merchant": %q, "ok": %v, "body": %q, "path": %q}`, id, ok, b, r.URL.Path)
	})
	h := newHarness(t, func(c *Config) { c.Webhooks = echo })
	m := h.newMerchant(`{"name": "hooks"}`)
	if r := h.do(req{method: "GET", path: "/api/v1/webhooks/deliveries"}); r.Status != http.StatusUnauthorized || calls != 0 {
		t.Errorf("no key: %d, %d calls", r.Status, calls)
	}
	r := h.api(m, "GET", "/api/v1/webhooks/deliveries?status=failed", "")
	if r.Status != http.StatusAccepted || r.JSON(t)["merchant"] != m.ID || r.JSON(t)["ok"] != true {
		t.Errorf("list: %d %s", r.Status, r.Body)
	}
	body := `{"since": "2026-02-25T12:00:00Z"}`
	send := func() resp {
		return h.do(req{method: "POST", path: "/api/v1/webhooks/redeliver", body: body,
			header: map[string]string{"X-Api-Key": m.Key, "Idempotency-Key": "redeliver-1"}})
	}
	first := send()
	if first.JSON(t)["body"] != body {
		t.Errorf("body not handed over: %s", first.Body)
	}
	again := send()
	if again.Header.Get("Idempotent-Replayed") != "true" || calls != 2 || !bytes.Equal(first.Body, again.Body) || again.Status != http.StatusAccepted {
		t.Errorf("replay: %d %v %s, %d calls", again.Status, again.Header, again.Body, calls)
	}
	if r := h.api(m, "DELETE", "/api/v1/webhooks/deliveries", ""); r.Status != http.StatusMethodNotAllowed {
		t.Errorf("wrong method: %d", r.Status)
	}
}
