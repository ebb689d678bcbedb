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
	"testing"
	"time"
)

// docs:begin (docs/webhooks.md shows this code; TestDocsVerifyCode keeps them equal)

// VerifyPayledgerWebhook checks a payledger webhook with only the standard
// library (imports: crypto/hmac, crypto/sha256, encoding/base64, errors,
// net/http, strconv, strings, time). secret is your signing secret,
// "whsec_..."; body is the raw request body, read before any JSON decoding.
func VerifyPayledgerWebhook(secret string, h http.Header, body []byte, now time.Time) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return errors.New("malformed secret")
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
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
	mac.Write(body)
	want := mac.Sum(nil)
	// Several signatures while payledger rotates your secret: any one will do.
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
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
	var got []error
	rc := newReceiver(t, false, nil)
	rc.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		err := VerifyPayledgerWebhook(e.kr.SigningSecret("m1", 1), r.Header, body, time.Now())
		got = append(got, err)
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
	waitFor(t, 10*time.Second, func() error {
		if len(rc.accepted()) == 1 {
			return nil
		}
		return errors.New("not delivered")
	})
	stop()
	_ = d
	if len(got) != 1 || got[0] != nil {
		t.Fatalf("documented verification of a real webhook: %v", got)
	}
	r := rc.accepted()[0]
	h := hdr(r.ID, r.Timestamp, r.Signature)
	secret := e.kr.SigningSecret("m1", 1)
	if err := VerifyPayledgerWebhook(secret, h, []byte(strings.Replace(string(r.Body), "pending", "success", 1)), time.Now()); err == nil {
		t.Error("tampered body accepted")
	}
	if err := VerifyPayledgerWebhook(e.kr.SigningSecret("m1", 2), h, r.Body, time.Now()); err == nil {
		t.Error("wrong secret accepted")
	}
	if err := VerifyPayledgerWebhook(secret, h, r.Body, time.Now().Add(10*time.Minute)); err == nil {
		t.Error("replay accepted")
	}
	if err := Verify(secret, h, r.Body, 5*time.Minute); err != nil {
		t.Errorf("webhooks.Verify: %v", err)
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

var _ = httptest.NewServer
