package api

import (
	"container/heap"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/payledger/payledger/internal/ratelimit"
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
// window (SIGNATURE_REPLAYED). Without both headers the request is
// unsigned, which is allowed unless Config.RequireSignatures.
//
// The replay cache is bounded (Config.MaxSignaturesPerMerchant,
// Config.MaxSignatures) and never forgets a signature early: past a bound,
// new signed requests are refused with Retry-After until the earliest
// remembered one expires. Only a correctly signed request adds to it.
//
// The replay cache is in memory, so it does not outlive the process. A
// signed request whose timestamp is earlier than the moment New built the
// server is refused (SIGNATURE_TIMESTAMP_INVALID): any signature an earlier
// process accepted was stamped before that moment, unless the client's clock
// ran ahead of the server's, so none can be replayed after a restart, and no
// request pays a disk write. The cost: after a restart a client whose clock
// runs behind the server's by d has its requests refused for d (at most the
// window).

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
	// After the MAC: only a correctly signed request learns of the restart.
	if at.Before(s.started) {
		return newError(CodeSignatureExpired, "X-Timestamp is earlier than the server's start: the request was signed before the server (re)started; sign it again with the current time")
	}
	if err := s.replays.first(c.merchantID, mac, at.Add(s.cfg.SignatureWindow), now); err != nil {
		return err
	}
	return nil
}

// replayCache remembers accepted signatures until their timestamp leaves
// the window: per merchant, a set of MACs (their first 16 bytes: enough to
// tell them apart, and a replay is the same MAC) and a min-heap of their
// expiries. It never forgets a signature before it expires: when a merchant
// holds perMerchant of them, or the cache holds total, a new signed request
// is refused until the earliest one expires.
type replayCache struct {
	perMerchant, total int

	mu        sync.Mutex
	m         map[string]*merchantReplays
	n         int       // signatures held
	fullUntil time.Time // the cache holds total until then at least
	lastSweep time.Time
}

type merchantReplays struct {
	seen map[[16]byte]struct{}
	exp  expiryHeap
}

type replayEntry struct {
	exp time.Time
	mac [16]byte
}

// expiryHeap is a min-heap of entries by expiry (container/heap).
type expiryHeap []replayEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].exp.Before(h[j].exp) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(replayEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func newReplayCache(perMerchant, total int) *replayCache {
	return &replayCache{perMerchant: perMerchant, total: total, m: map[string]*merchantReplays{}}
}

// first records merchant's mac until expires. It refuses a mac already held
// (SIGNATURE_REPLAYED), and a new one when the merchant or the cache is
// full (429 RATE_LIMITED or 503 SERVICE_UNAVAILABLE, with Retry-After).
func (c *replayCache) first(merchant string, mac []byte, expires, now time.Time) error {
	var key [16]byte
	copy(key[:], mac)
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.lastSweep) > 30*time.Second {
		c.lastSweep = now
		c.sweep(now)
	}
	if mr := c.m[merchant]; mr != nil {
		c.expire(merchant, mr, now) // may drop it
	}
	if mr := c.m[merchant]; mr != nil {
		if _, ok := mr.seen[key]; ok {
			return newError(CodeSignatureReplayed, "This signature was already used; sign every request afresh")
		}
		if len(mr.seen) >= c.perMerchant {
			return rateLimited(mr.exp[0].exp.Sub(now)+time.Nanosecond,
				fmt.Sprintf("This merchant already has %d signed requests within the signature window", c.perMerchant))
		}
	}
	if c.n >= c.total {
		// Full until the earliest signature expires: nothing is added
		// meanwhile, so that stays the earliest.
		if !now.Before(c.fullUntil) {
			c.sweep(now)
			if c.n >= c.total {
				c.fullUntil = time.Time{}
				for _, o := range c.m {
					if c.fullUntil.IsZero() || o.exp[0].exp.Before(c.fullUntil) {
						c.fullUntil = o.exp[0].exp
					}
				}
				c.fullUntil = c.fullUntil.Add(time.Nanosecond) // held while !now.After(exp)
			}
		}
		if c.n >= c.total {
			e := newError(CodeUnavailable, "The server holds as many signed requests as it can remember; retry later")
			e.RetryAfter = ratelimit.RetryAfter(c.fullUntil.Sub(now))
			return e
		}
	}
	mr := c.m[merchant]
	if mr == nil {
		mr = &merchantReplays{seen: map[[16]byte]struct{}{}}
		c.m[merchant] = mr
	}
	mr.seen[key] = struct{}{}
	heap.Push(&mr.exp, replayEntry{exp: expires, mac: key})
	c.n++
	return nil
}

// expire drops merchant's signatures that have left the window. c.mu is held.
func (c *replayCache) expire(merchant string, mr *merchantReplays, now time.Time) {
	for len(mr.exp) > 0 && now.After(mr.exp[0].exp) {
		e := heap.Pop(&mr.exp).(replayEntry)
		delete(mr.seen, e.mac)
		c.n--
	}
	if len(mr.exp) == 0 {
		delete(c.m, merchant)
	}
}

// sweep expires every merchant's signatures. c.mu is held.
func (c *replayCache) sweep(now time.Time) {
	for id, mr := range c.m {
		c.expire(id, mr, now)
	}
}
