package webhooks

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// FuzzVerify: Verify never panics on what a receiver is sent (secret,
// headers, body) and names its refusal; a webhook signed with the key
// verifies, and changing one byte of its id, timestamp, body or the MAC a
// signature carries makes it fail.
func FuzzVerify(f *testing.F) {
	key := []byte("0123456789abcdef0123456789abcdef")
	f.Add(key, "01J00000000000000000000000", int64(1_700_000_000), []byte(`{"status":"PROCESSED"}`), "", "", 0, byte(1))
	f.Add([]byte("k"), "x", int64(-1), []byte{}, "whsec_", "v1,", 3, byte(0x80))
	f.Add(key, "id", int64(1<<62), []byte("{}"), "whsec_"+base64Std(key), "v1,AAAA v1 v2,"+base64Std(make([]byte, 32)), 40, byte(0xff))
	f.Add(key, "id", int64(0), []byte("{}"), "sk_live", "v1,=", 7, byte(' '))
	f.Fuzz(func(t *testing.T, key []byte, id string, ts int64, body []byte, secret, sigs string, at int, flip byte) {
		now := time.Unix(ts, 0)
		// Arbitrary input: refused with a named error, or genuinely signed.
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		h.Set(HeaderSignature, sigs)
		if err := verifyAt(secret, h, body, time.Minute, now); err != nil {
			if !errors.Is(err, ErrSecret) && !errors.Is(err, ErrMissingHeader) && !errors.Is(err, ErrTimestamp) && !errors.Is(err, ErrSignature) {
				t.Fatalf("unnamed error: %v", err)
			}
		}
		if len(key) == 0 || id == "" || len(body) == 0 {
			return
		}
		secret = "whsec_" + base64.StdEncoding.EncodeToString(key)
		h.Set(HeaderSignature, Sign([][]byte{key}, id, ts, body))
		if err := verifyAt(secret, h, body, time.Minute, now); err != nil {
			t.Fatalf("signed webhook: %v", err)
		}
		if flip == 0 {
			return
		}
		bad := bytes.Clone(body)
		bad[uint(at)%uint(len(bad))] ^= flip
		if err := verifyAt(secret, h, bad, time.Minute, now); !errors.Is(err, ErrSignature) {
			t.Fatalf("body byte %d changed: %v", uint(at)%uint(len(bad)), err)
		}
		b := []byte(id)
		b[uint(at)%uint(len(b))] ^= flip
		if err := verifyAt(secret, withHeader(h, HeaderID, string(b)), body, time.Minute, now); err == nil {
			t.Fatalf("id byte changed: %q verifies", b)
		}
		b = []byte(h.Get(HeaderTimestamp))
		b[uint(at)%uint(len(b))] ^= flip
		if err := verifyAt(secret, withHeader(h, HeaderTimestamp, string(b)), body, 0, now); err == nil {
			t.Fatalf("timestamp changed to %q verifies", b)
		}
		mac := mac(key, id, strconv.FormatInt(ts, 10), body)
		mac[uint(at)%uint(len(mac))] ^= flip
		forged := withHeader(h, HeaderSignature, "v1,"+base64.StdEncoding.EncodeToString(mac))
		if err := verifyAt(secret, forged, body, time.Minute, now); !errors.Is(err, ErrSignature) {
			t.Fatalf("MAC byte %d changed: %v", uint(at)%uint(len(mac)), err)
		}
	})
}

// FuzzParseRetryAfter: whatever a receiver answers in Retry-After, the
// wait read from it lies within [0, maxRetryAfter].
func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 2, 25, 12, 0, 0, 0, time.UTC)
	for _, s := range []string{
		"", "0", "-5", "120", " 120 ", "soon", "+7", "1e3", "99999999999999999999", "9223372036854775807",
		now.Add(90 * time.Second).Format(http.TimeFormat), now.Add(-time.Minute).Format(http.TimeFormat),
		"Fri, 31 Dec 9999 23:59:59 GMT", "Monday, 02-Jan-06 15:04:05 MST", "Mon Jan  2 15:04:05 2006",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if d := parseRetryAfter(v, now); d < 0 || d > maxRetryAfter {
			t.Fatalf("Retry-After %q: %v, want within [0, %v]", v, d, maxRetryAfter)
		}
	})
}

// FuzzDecodeRecord: attempt and disabled-target records (JSON after a
// version byte; delivery records have FuzzDecodeDelivery) decode or fail
// with a named error, and what decodes re-encodes to a record that decodes
// to the same.
func FuzzDecodeRecord(f *testing.F) {
	at := time.Date(2026, 2, 25, 12, 0, 0, 0, time.UTC)
	for _, v := range []any{
		Attempt{N: 3, At: at, StatusCode: 503, LatencyMS: 12.5, Error: "timeout after 10s", Redelivery: true},
		disabledTarget{At: at, DeliveryID: "01J00000000000000000000000"},
	} {
		raw, err := encodeRecord(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte{})
	f.Add([]byte{recordV1})
	f.Add([]byte{2, '{', '}'})
	f.Fuzz(func(t *testing.T, raw []byte) {
		check := func(v, again any) {
			if err := decodeRecord(raw, v); err != nil {
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
					t.Fatalf("unnamed error: %v", err)
				}
				return
			}
			b, err := encodeRecord(v)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", v, err)
			}
			if err := decodeRecord(b, again); err != nil || !reflect.DeepEqual(v, again) {
				t.Fatalf("re-encoded: %v\n%+v\n%+v", err, again, v)
			}
		}
		check(&Attempt{}, &Attempt{})
		check(&disabledTarget{}, &disabledTarget{})
	})
}
