package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Signed requests (SPEC §4). A merchant request may carry
//
//	X-Timestamp: <unix milliseconds>
//	X-Signature: hex(HMAC-SHA256(signing key, timestamp "\n" METHOD "\n" path?query "\n" body))
//
// where the signing key is keyring.SigningKey(merchant id, version) for the
// merchant's current signing secret version, or the previous one until its
// overlap ends. The timestamp must be within Config.SignatureWindow of the
// server's clock; a signature accepted once is refused for the rest of the
// window (SIGNATURE_REPLAYED). Without both headers the request is unsigned,
// which is allowed unless Config.RequireSignatures.
//
// The replay cache is in memory: a restart forgets it, so a signature
// captured less than the window before a restart could be replayed once
// after it. Idempotency keys and natural keys (external_id, payment_id) still
// stop a replayed create from creating twice.

// SignatureMessage is the text a merchant signs: exported for clients and
// tests in Go.
func SignatureMessage(timestampMillis, method, requestURI string, body []byte) []byte {
	msg := make([]byte, 0, len(timestampMillis)+len(method)+len(requestURI)+len(body)+3)
	msg = append(msg, timestampMillis...)
	msg = append(msg, '\n')
	msg = append(msg, method...)
	msg = append(msg, '\n')
	msg = append(msg, requestURI...)
	msg = append(msg, '\n')
	return append(msg, body...)
}

// Sign returns the X-Signature value for a request signed with key.
func Sign(key []byte, timestampMillis, method, requestURI string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(SignatureMessage(timestampMillis, method, requestURI, body))
	return hex.EncodeToString(m.Sum(nil))
}

func (s *Server) verifySignature(c *call) error {
	r := c.r
	ts, sig := r.Header.Get("X-Timestamp"), r.Header.Get("X-Signature")
	if ts == "" && sig == "" {
		if s.cfg.RequireSignatures {
			return newError(CodeSignatureRequired, "This server requires signed requests: send X-Timestamp and X-Signature")
		}
		return nil
	}
	if ts == "" || sig == "" {
		return newError(CodeSignatureInvalid, "A signed request needs both X-Timestamp and X-Signature")
	}
	now := s.now()
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return newError(CodeSignatureExpired, "X-Timestamp must be Unix time in milliseconds")
	}
	at := time.UnixMilli(ms)
	if d := now.Sub(at); d > s.cfg.SignatureWindow || d < -s.cfg.SignatureWindow {
		return newError(CodeSignatureExpired,
			fmt.Sprintf("X-Timestamp is more than %s away from the server's time", s.cfg.SignatureWindow))
	}
	mac, err := hex.DecodeString(strings.ToLower(sig))
	invalid := newError(CodeSignatureInvalid, "X-Signature does not match the request")
	if err != nil || len(mac) != sha256.Size {
		return invalid
	}
	m, err := s.views.Merchant(c.merchantID)
	if err != nil {
		return fmt.Errorf("load merchant for signature: %w", err)
	}
	versions := []int{m.SecretVersion}
	if m.PreviousSecretVersion > 0 && m.PreviousValidUntil != nil && now.Before(*m.PreviousValidUntil) {
		versions = append(versions, m.PreviousSecretVersion)
	}
	msg := SignatureMessage(ts, r.Method, r.URL.RequestURI(), c.body)
	ok := false
	for _, v := range versions {
		h := hmac.New(sha256.New, s.kr.SigningKey(c.merchantID, v))
		h.Write(msg)
		if hmac.Equal(h.Sum(nil), mac) {
			ok = true
		}
	}
	if !ok {
		return invalid
	}
	if !s.replays.first(c.merchantID+"/"+hex.EncodeToString(mac), at.Add(s.cfg.SignatureWindow), now) {
		return newError(CodeSignatureReplayed, "This signature was already used; sign every request afresh")
	}
	return nil
}

// replayCache remembers accepted signatures until their timestamp leaves
// the window.
type replayCache struct {
	mu        sync.Mutex
	m         map[string]time.Time
	lastSweep time.Time
}

func newReplayCache() *replayCache { return &replayCache{m: map[string]time.Time{}} }

// first records key until expires and reports whether it was new.
func (c *replayCache) first(key string, expires, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.lastSweep) > 30*time.Second {
		c.lastSweep = now
		for k, exp := range c.m {
			if now.After(exp) {
				delete(c.m, k)
			}
		}
	}
	if exp, ok := c.m[key]; ok && !now.After(exp) {
		return false
	}
	c.m[key] = expires
	return true
}
