package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
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
// id + "." + timestamp + "." + content. content is a webhook's body
// (Standard Webhooks), or for a status_url call, which has none, its
// method and URL (statusContent).
func Sign(keys [][]byte, id string, timestamp int64, content []byte) string {
	ts := strconv.FormatInt(timestamp, 10)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(mac(k, id, ts, content)))
	}
	return b.String()
}

// statusContent is what a status_url call is signed over in place of a
// body: "GET " and the absolute URL it is sent to, query included. The
// query is what reports the status; signed, it cannot be changed, and a
// captured call's headers verify for that exact URL only.
func statusContent(absURL string) []byte {
	return []byte(http.MethodGet + " " + absURL)
}

// sentURL is the absolute URL a request for u is sent to, as its receiver
// sees it: scheme, host (the Host header) and request target (path and
// query); no userinfo, no fragment.
func sentURL(u *url.URL) string {
	return u.Scheme + "://" + u.Host + u.RequestURI()
}

// receivedURL is the absolute URL a server's request r was sent to:
// r.URL's scheme and host where set (a receiver behind a proxy sets them
// to its public ones), else https if r came over TLS (http if not) and
// the Host header; then the request target as received.
func receivedURL(r *http.Request) string {
	scheme, host := r.URL.Scheme, r.URL.Host
	if scheme == "" {
		scheme = "http"
		if r.TLS != nil {
			scheme = "https"
		}
	}
	if host == "" {
		host = r.Host
	}
	target := r.RequestURI
	if !strings.HasPrefix(target, "/") {
		// Absolute form, "*", or a request built by hand.
		target = r.URL.RequestURI()
	}
	return scheme + "://" + host + target
}

func mac(key []byte, id, ts string, content []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(content)
	return m.Sum(nil)
}

// Verify checks a request payledger sent, as its receiver got it: secret
// is the merchant's signing secret ("whsec_" + base64), r the request
// (its headers, method and URL; its body is not read) and body the body
// read from it, exactly as received. A webhook (POST) is signed over its
// body, as Standard Webhooks has it. A status_url call (GET) is signed
// over "GET " and its absolute URL, query included, and body is ignored:
// the URL is r's as receivedURL reads it, so a receiver behind a proxy
// that terminates TLS or changes the Host sets r.URL.Scheme and
// r.URL.Host to its status_url's before calling Verify. The request is
// genuine if any one of its signatures matches (during a secret rotation
// payledger sends two). tolerance bounds how far webhook-timestamp may be
// from now, against replays; zero or negative skips that check. Verify
// does not remember webhook-ids: a receiver does, and does not act twice
// on one (docs/webhooks.md).
//
// Errors: ErrSecret, ErrMissingHeader, ErrTimestamp, ErrSignature.
func Verify(secret string, r *http.Request, body []byte, tolerance time.Duration) error {
	return verifyAt(secret, r.Header, signedContent(r, body), tolerance, time.Now())
}

// signedContent is what a request r with body is signed over.
func signedContent(r *http.Request, body []byte) []byte {
	if r.Method == http.MethodGet {
		return statusContent(receivedURL(r))
	}
	return body
}

func verifyAt(secret string, headers http.Header, content []byte, tolerance time.Duration, now time.Time) error {
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
	want := mac(key, id, ts, content)
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
