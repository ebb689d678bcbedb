package faults

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/payledger/payledger/http/api"
	"github.com/payledger/payledger/keyring"
)

// TestSignedRequestsSkewAndReplay signs create-invoice requests (X-Timestamp,
// X-Signature with the merchant's signing secret) against a real serve
// process: timestamps 2 minutes off either way are accepted, 4 minutes off
// refused; a signature used once is refused when replayed (also with its
// clock skewed), and so is a signed request whose body was changed; nothing
// refused appends an event. After a restart (which forgets the replay
// cache) a replayed create is still refused, by its external_id.
func TestSignedRequestsSkewAndReplay(t *testing.T) {
	t.Parallel()
	sh := startShop(t, t.TempDir())
	sv, a, m, recv := sh.sv, sh.a, sh.m, sh.recv
	key, err := keyring.SigningKeyFromSecret(m.Secret)
	if err != nil {
		t.Fatal(err)
	}
	const path = "/api/v1/create-invoice"
	sign := func(ts time.Time, body []byte) map[string]string {
		ms := strconv.FormatInt(ts.UnixMilli(), 10)
		return map[string]string{"X-Timestamp": ms, "X-Signature": api.Sign(key, ms, "POST", path, body)}
	}
	send := func(hdr map[string]string, body []byte) answer {
		t.Helper()
		r, err := a.do("POST", path, body, hdr)
		if err != nil {
			t.Fatal(err)
		}
		counts.add("signed requests checked", 1)
		return r
	}
	refused := func(what string, r answer, code string) {
		t.Helper()
		if r.Status != http.StatusUnauthorized || r.errorCode() != code {
			t.Errorf("%s: %d %s, want 401 %s", what, r.Status, r.Body, code)
		}
	}
	head := func() uint64 {
		t.Helper()
		h, err := readyHead(sv.base())
		if err != nil {
			t.Fatal(err)
		}
		return h
	}

	var accepted []string
	var lastBody []byte
	var lastHdr map[string]string
	for i, skew := range []time.Duration{0, 2 * time.Minute, -2 * time.Minute, 2*time.Minute - 5*time.Second, -(2*time.Minute - 5*time.Second)} {
		ext := fmt.Sprintf("sig-ok-%d", i)
		body := invoiceBody(ext)
		hdr := sign(time.Now().Add(skew), body)
		if r := send(hdr, body); r.Status != http.StatusCreated {
			t.Errorf("signed, clock %s off: %d %s, want 201", skew, r.Status, r.Body)
		}
		accepted = append(accepted, ext)
		lastBody, lastHdr = body, hdr
	}

	before := head()
	for i, skew := range []time.Duration{4 * time.Minute, -4 * time.Minute, 3*time.Minute + 10*time.Second, -(3*time.Minute + 10*time.Second)} {
		body := invoiceBody(fmt.Sprintf("sig-skewed-%d", i))
		refused(fmt.Sprintf("signed, clock %s off", skew), send(sign(time.Now().Add(skew), body), body), api.CodeSignatureExpired)
	}
	// The same signed request again, at once and with the body changed.
	refused("replay", send(lastHdr, lastBody), api.CodeSignatureReplayed)
	refused("replay with another body", send(lastHdr, invoiceBody("sig-tampered")), api.CodeSignatureInvalid)
	// A replay of a request signed 2 minutes ago.
	old := invoiceBody("sig-old")
	oldHdr := sign(time.Now().Add(-2*time.Minute), old)
	if r := send(oldHdr, old); r.Status != http.StatusCreated {
		t.Errorf("signed 2 minutes ago: %d %s", r.Status, r.Body)
	}
	accepted = append(accepted, "sig-old")
	after := head()
	refused("replay of a request signed 2 minutes ago", send(oldHdr, old), api.CodeSignatureReplayed)
	if h := head(); h != after {
		t.Errorf("refused signed requests appended %d events", h-after)
	}
	if after != before+1 {
		t.Errorf("between the refusals one create was accepted, the log grew by %d events", after-before)
	}

	// A restart forgets the replay cache (documented): the replayed create
	// is then refused by its external_id.
	if took, err := sv.stop(45 * time.Second); err != nil {
		t.Fatalf("graceful stop: %v (after %s)", err, took)
	}
	counts.add("graceful stops", 1)
	sv.verifyOffline()
	sv.start()
	a.hc.CloseIdleConnections()
	r := send(oldHdr, old)
	switch {
	case r.Status == http.StatusConflict && r.errorCode() == api.CodeDuplicateExternalID:
		t.Logf("replay after a restart: 409 %s (the replay cache is in memory; the external_id stopped it)", api.CodeDuplicateExternalID)
	case r.Status == http.StatusUnauthorized && r.errorCode() == api.CodeSignatureReplayed:
		t.Logf("replay after a restart: 401 %s", api.CodeSignatureReplayed)
	default:
		t.Errorf("replay after a restart: %d %s, want 409 DUPLICATE_EXTERNAL_ID (or 401 SIGNATURE_REPLAYED)", r.Status, r.Body)
	}
	recv.waitAll(t, time.Minute, accepted)
	recv.record(t)
	counts.add("invoices acknowledged (2xx)", int64(len(accepted)))
}
