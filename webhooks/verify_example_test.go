package webhooks

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// docs:begin (docs/webhooks.md shows this code; TestDocsVerifyCode keeps them equal)

// VerifyPayledgerWebhook checks a request from payledger, a webhook or a
// status_url call, with only the standard library (imports: crypto/hmac,
// crypto/sha256, encoding/base64, errors, net/http, strconv, strings,
// time). secret is your signing secret, "whsec_..."; body is the raw
// request body, read before any JSON decoding.
func VerifyPayledgerWebhook(secret string, r *http.Request, body []byte, now time.Time) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return errors.New("malformed secret")
	}
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if id == "" || err != nil {
		return errors.New("missing webhook-id or webhook-timestamp")
	}
	// Refuse replays: the timestamp is that of the attempt.
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("timestamp too far from now")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	if r.Method == http.MethodGet {
		// A status_url call has no body: it is signed over "GET " and the
		// URL it was sent to, query (the status) included. Behind a proxy
		// that terminates TLS or changes the Host, put your status_url's
		// scheme and host here instead.
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		mac.Write([]byte("GET " + scheme + "://" + r.Host + r.RequestURI))
	} else {
		mac.Write(body)
	}
	want := mac.Sum(nil)
	// Several signatures while payledger rotates your secret: any one will do.
	for _, sig := range strings.Fields(r.Header.Get("webhook-signature")) {
		b64, ok := strings.CutPrefix(sig, "v1,")
		got, err := base64.StdEncoding.DecodeString(b64)
		if ok && err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no valid signature")
}

// docs:end

// The documented code accepts what the dispatcher sends and refuses
// forgeries, replays and tampering, like Verify.
func TestDocsVerifyCode(t *testing.T) {
	doc, err := os.ReadFile("../docs/webhooks.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("verify_example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	code := between(string(src), "// docs:begin", "// docs:end")
	code = code[strings.Index(code, "\n")+1:] // drop the marker line's remainder
	block := between(string(doc), "<!-- verify:begin -->\n```go\n", "```\n<!-- verify:end -->")
	if strings.TrimSpace(code) != strings.TrimSpace(block) {
		t.Fatalf("docs/webhooks.md's verification code differs from verify_example_test.go:\n--- docs\n%s\n--- test\n%s", block, code)
	}

	e := newEnv(t)
	var (
		mu  sync.Mutex // the webhooks and the status_url call may arrive at once
		got []error
	)
	rc := newReceiver(t, false, nil)
	rc.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		err := VerifyPayledgerWebhook(e.kr.SigningSecret("m1", 1), r, body, time.Now())
		mu.Lock()
		got = append(got, err)
		mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rc.serve(w, r)
	})
	e.merchant("m1", rc.URL())
	d, stop := e.dispatcher("", e.config())
	e.invoice("m1", "")
	// An e-invoice ended: two more webhooks, and a status_url call.
	e.cancelledEInvoice("m1", rc.URL()+"?shop=1")
	waitFor(t, 10*time.Second, func() error {
		if len(rc.accepted()) == 4 {
			return nil
		}
		return errors.New("not delivered")
	})
	stop()
	_ = d
	mu.Lock()
	results := append([]error(nil), got...)
	mu.Unlock()
	if len(results) != 4 || results[0] != nil || results[1] != nil || results[2] != nil || results[3] != nil {
		t.Fatalf("documented verification of real webhooks and a status_url call: %v", results)
	}
	var r, status received
	for _, a := range rc.accepted() {
		if a.Method == http.MethodGet {
			status = a
		} else if r.ID == "" {
			r = a
		}
	}
	h := hdr(r.ID, r.Timestamp, r.Signature)
	req := posted(h)
	secret := e.kr.SigningSecret("m1", 1)
	if err := VerifyPayledgerWebhook(secret, req, []byte(strings.Replace(string(r.Body), "pending", "success", 1)), time.Now()); err == nil {
		t.Error("tampered body accepted")
	}
	if err := VerifyPayledgerWebhook(e.kr.SigningSecret("m1", 2), req, r.Body, time.Now()); err == nil {
		t.Error("wrong secret accepted")
	}
	if err := VerifyPayledgerWebhook(secret, req, r.Body, time.Now().Add(10*time.Minute)); err == nil {
		t.Error("replay accepted")
	}
	if err := Verify(secret, req, r.Body, 5*time.Minute); err != nil {
		t.Errorf("webhooks.Verify: %v", err)
	}

	// The status_url call, as its server got it, and forged.
	call := func(target string) *http.Request {
		g := httptest.NewRequest(http.MethodGet, target, nil)
		g.Host = rc.srv.Listener.Addr().String()
		g.Header = hdr(status.ID, status.Timestamp, status.Signature)
		return g
	}
	if !strings.Contains(status.URL, "status=cancelled") {
		t.Fatalf("status_url call: %+v", status)
	}
	if err := VerifyPayledgerWebhook(secret, call(status.URL), nil, time.Now()); err != nil {
		t.Errorf("the status_url call again: %v", err)
	}
	if err := Verify(secret, call(status.URL), nil, 5*time.Minute); err != nil {
		t.Errorf("webhooks.Verify of the status_url call: %v", err)
	}
	forged := call(strings.Replace(status.URL, "status=cancelled", "status=success", 1))
	if err := VerifyPayledgerWebhook(secret, forged, nil, time.Now()); err == nil {
		t.Error("status_url call with a forged status accepted")
	}
	if err := Verify(secret, forged, nil, 5*time.Minute); !errors.Is(err, ErrSignature) {
		t.Errorf("webhooks.Verify of a forged status: %v", err)
	}
}

func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i+len(from):]
	if j := strings.Index(s, to); j >= 0 {
		return s[:j]
	}
	return ""
}
