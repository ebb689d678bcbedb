package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks headers (https://www.standardwebhooks.com).
const (
	HeaderID        = "webhook-id"        // the event id: the same on every attempt and redelivery
	HeaderTimestamp = "webhook-timestamp" // unix seconds of the attempt
	HeaderSignature = "webhook-signature" // space-separated "v1,<base64 HMAC-SHA256>"
)

// Sign returns the webhook-signature value for a message: one
// "v1,<base64>" per key, space-separated, each an HMAC-SHA256 over
// id + "." + timestamp + "." + body.
func Sign(keys [][]byte, id string, timestamp int64, body []byte) string {
	ts := strconv.FormatInt(timestamp, 10)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(mac(k, id, ts, body)))
	}
	return b.String()
}

func mac(key []byte, id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a webhook's signature as a merchant should: secret is the
// merchant's signing secret ("whsec_" + base64), headers and body are the
// request's exactly as received. The webhook is genuine if any one of its
// signatures matches (during a secret rotation payledger sends two).
// tolerance bounds how far webhook-timestamp may be from now, against
// replays; zero or negative skips that check.
//
// Errors: ErrSecret, ErrMissingHeader, ErrTimestamp, ErrSignature.
func Verify(secret string, headers http.Header, body []byte, tolerance time.Duration) error {
	return verifyAt(secret, headers, body, tolerance, time.Now())
}

func verifyAt(secret string, headers http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	raw, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return fmt.Errorf("%w: no whsec_ prefix", ErrSecret)
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) == 0 {
		return fmt.Errorf("%w: not base64", ErrSecret)
	}
	id, ts, sigs := headers.Get(HeaderID), headers.Get(HeaderTimestamp), headers.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return ErrMissingHeader
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not unix seconds", ErrTimestamp, ts)
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
			return fmt.Errorf("%w: %s off", ErrTimestamp, d.Round(time.Second))
		}
	}
	want := mac(key, id, ts, body)
	for sig := range strings.FieldsSeq(sigs) {
		v, b64, ok := strings.Cut(sig, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrSignature
}
