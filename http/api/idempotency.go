package api

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/keyring"
	"github.com/payledger/payledger/projections"
)

// Idempotency-Key handling.
//
// A non-GET request with an Idempotency-Key header is run once per (scope,
// key), where the scope is the authenticated merchant (or the operator): the
// first response (any status below 500 without Retry-After, so not a 429 or
// a 409 CONFLICT, which ask to be retried) is stored with a
// fingerprint of the request (method, path and query, body). The same key
// with the same fingerprint gets that response again with the header
// "Idempotent-Replayed: true"; with another fingerprint it gets 409
// IDEMPOTENCY_KEY_REUSED. Concurrent requests with one key wait for the
// first. Records expire after Config.IdempotencyTTL.
//
// Stored bodies are sealed with AES-256-GCM under a key derived from the
// node's master key: responses can carry API keys and signing secrets (admin
// API), which must never lie in a file in the clear.
//
// A crash between the command's commit and the record's save loses the
// record: the retry runs the command again. Every creation (invoice,
// e-invoice, widget, widget invoice, payment) carries a request key
// (requestKey) that its event claims in the log, so the retry answers with
// what the first attempt made. The operator's creations (merchant, API key,
// secret rotation, rate) claim theirs too; as an API key is shown once and
// kept nowhere, their retry answers 409 IDEMPOTENCY_KEY_REUSED naming the
// merchant, except a rotation's, whose secret is derived, and a rate's,
// answered from the recorded rate (admin.go).

// idemRecordVersion is the stored records' layout (sealer.encode). Version
// 1 authenticated only the sealed part (content type and body) and the id,
// not the created time, fingerprint and status before it; version 2
// authenticates every byte. Records are written in version 2; a version 1
// record left by an older build is still read, as that build trusted it,
// until it expires (IdempotencyTTL after it was made): treating it as
// absent would decide its request again on a retry, which the request keys
// above make safe for a creation but not for a change (a retried PATCH or
// status change would be applied again, over a later one).
const (
	idemRecordVersion byte = 2
	idemRecordV1      byte = 1
)

// idemRecord is a stored response.
type idemRecord struct {
	Created     time.Time
	Fingerprint [32]byte
	Status      int
	ContentType string
	Body        []byte
	v1          bool // read from a version 1 record: Created, Fingerprint and Status unauthenticated
}

// live reports whether the record still answers at now: made less than ttl
// ago. A version 1 record's time is not authenticated, so one dated after
// now (edited to outlive its ttl) answers nothing; a version 2 one's is, and
// a clock stepped back keeps it.
func (r *idemRecord) live(now time.Time, ttl time.Duration) bool {
	if r.v1 && r.Created.After(now) {
		return false
	}
	return now.Sub(r.Created) < ttl
}

// idemStore keeps records; implementations: bbolt and memory.
type idemStore interface {
	get(id []byte, now time.Time, ttl time.Duration) (*idemRecord, bool, error)
	put(id []byte, rec *idemRecord, now time.Time, ttl time.Duration) error
	ping() error
}

func idemID(scope, key string) []byte {
	b := make([]byte, 0, len(scope)+1+len(key))
	b = append(b, scope...)
	b = append(b, 0)
	return append(b, key...)
}

// validIdempotencyKey accepts 1 to 255 printable ASCII characters other
// than space (HTTP trims spaces around a header value anyway).
func validIdempotencyKey(k string) bool {
	if len(k) == 0 || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// inflight serialises requests that share an idempotency key.
type inflight struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

func (f *inflight) acquire(id string) (wait <-chan struct{}, leader bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]chan struct{}{}
	}
	if ch, ok := f.m[id]; ok {
		return ch, false
	}
	f.m[id] = make(chan struct{})
	return nil, true
}

func (f *inflight) release(id string) {
	f.mu.Lock()
	ch := f.m[id]
	delete(f.m, id)
	f.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// idempotent runs serve once per key, replaying the stored response afterwards.
func (s *Server) idempotent(w http.ResponseWriter, c *call, key string, serve func(http.ResponseWriter)) {
	r := c.r
	if !validIdempotencyKey(key) {
		const msg = "Idempotency-Key must be 1 to 255 printable ASCII characters other than space"
		s.writeError(w, r, newError(CodeIdempotencyKeyBad, msg, Detail{Path: "Idempotency-Key", Type: "invalid", Message: msg}))
		return
	}
	scope := "admin"
	if c.merchantID != "" {
		scope = "merchant/" + c.merchantID
	}
	id := idemID(scope, key)
	fp := fingerprint(r, c.body)
	c.requestKey = requestKey(key, fp)
	for {
		wait, leader := s.inflight.acquire(string(id))
		if !leader {
			select {
			case <-wait:
				continue
			case <-c.ctx.Done():
				s.writeError(w, r, c.ctx.Err())
				return
			}
		}
		break
	}
	defer s.inflight.release(string(id))
	now := s.now()
	rec, ok, err := s.idem.get(id, now, s.cfg.IdempotencyTTL)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("idempotency lookup: %w", err))
		return
	}
	if ok {
		if rec.Fingerprint != fp {
			s.writeError(w, r, newError(CodeIdempotencyReused,
				"Idempotency-Key was already used with another request; use a new key for a new request",
				Detail{Path: "Idempotency-Key", Type: "reused", Message: "this key was used with a different method, path or body"}))
			return
		}
		hd := w.Header()
		hd.Set("Content-Type", rec.ContentType)
		hd.Set("Cache-Control", "no-store")
		hd.Set("Idempotent-Replayed", "true")
		w.WriteHeader(rec.Status)
		_, _ = w.Write(rec.Body)
		return
	}
	rw := &capture{header: http.Header{}}
	serve(rw)
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	for k, v := range rw.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rw.status)
	_, _ = w.Write(rw.buf.Bytes())
	if rw.status >= 500 || rw.status == http.StatusTooManyRequests || rw.header.Get("Retry-After") != "" {
		return // transient (5xx, 429, 409 CONFLICT): the client retries with the same key
	}
	rec = &idemRecord{Created: now, Fingerprint: fp, Status: rw.status, ContentType: rw.header.Get("Content-Type"), Body: rw.buf.Bytes()}
	if err := s.idem.put(id, rec, now, s.cfg.IdempotencyTTL); err != nil {
		s.log.ErrorContext(c.ctx, "idempotency record not saved; a retry will run the request again",
			"request_id", requestID(c.ctx), "err", err)
	}
}

// requestKey identifies a request with an Idempotency-Key for a command to
// claim in the log (commands.CreatePayment.RequestKey): the key and the
// request's fingerprint, hashed, so the key itself never enters the log.
// The command scopes it to the merchant. idempotent sets it on the call.
func requestKey(key string, fp [32]byte) string {
	h := sha256.New()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write(fp[:])
	return hex.EncodeToString(h.Sum(nil))
}

// repeated reports whether a command's error says its request is a retry
// whose idempotency record was lost (commands.RepeatedError, see the top
// of this file), and returns the id of what the first attempt made: a
// stream named prefix-<id>. The answer is then a replay.
func repeated(c *call, err error, prefix string) (id string, ok bool, _ error) {
	var rep *commands.RepeatedError
	if !errors.As(err, &rep) {
		return "", false, nil
	}
	id, found := strings.CutPrefix(rep.Stream, prefix+"-")
	if !found {
		return "", false, fmt.Errorf("repeated request made %s, not a %s: %w", rep.Stream, prefix, projections.ErrCorrupt)
	}
	c.replayed = true
	return id, true, nil
}

func fingerprint(r *http.Request, body []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(r.Method))
	h.Write([]byte{0})
	h.Write([]byte(r.URL.RequestURI()))
	h.Write([]byte{0})
	h.Write(body)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// capture records a response in memory.
type capture struct {
	header http.Header
	status int
	buf    bytes.Buffer
}

func (c *capture) Header() http.Header { return c.header }
func (c *capture) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}
func (c *capture) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return c.buf.Write(b)
}

// sealer encrypts stored responses.
type sealer struct{ aead cipher.AEAD }

func newSealer(kr *keyring.Keyring) *sealer {
	// A derived key of its own: "_idempotency" is no merchant id (those are UUIDs).
	block, err := aes.NewCipher(kr.SigningKey("_idempotency", 1))
	if err != nil {
		panic(fmt.Sprintf("api: idempotency cipher: %v", err)) // 32-byte key: cannot fail
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(fmt.Sprintf("api: idempotency cipher: %v", err))
	}
	return &sealer{aead: aead}
}

// encode lays a record out as: version (1) | created unix ms (8) |
// fingerprint (32) | status (2) | nonce (12) | sealed(len(ct) (2) | ct | body).
// The sealing authenticates the whole record: its additional data is the
// head before the nonce (version, created, fingerprint, status) followed by
// the record's id, so a record edited in the file, or moved to another key,
// does not open.
func (s *sealer) encode(id []byte, rec *idemRecord) []byte {
	nonce := make([]byte, idemNonceLen)
	if _, err := rand.Read(nonce); err != nil {
		panic(fmt.Sprintf("api: random nonce: %v", err)) // crypto/rand never fails on supported systems
	}
	return s.seal(id, rec, nonce)
}

const (
	idemNonceLen = 12
	idemAuthHead = 1 + 8 + 32 + 2 // version, created, fingerprint, status
	idemHead     = idemAuthHead + idemNonceLen
)

// seal is encode with a given nonce.
func (s *sealer) seal(id []byte, rec *idemRecord, nonce []byte) []byte {
	plain := make([]byte, 0, 2+len(rec.ContentType)+len(rec.Body))
	plain = binary.BigEndian.AppendUint16(plain, uint16(len(rec.ContentType)))
	plain = append(plain, rec.ContentType...)
	plain = append(plain, rec.Body...)
	out := make([]byte, 0, idemHead+len(plain)+s.aead.Overhead())
	out = append(out, idemRecordVersion)
	out = binary.BigEndian.AppendUint64(out, uint64(rec.Created.UnixMilli()))
	out = append(out, rec.Fingerprint[:]...)
	out = binary.BigEndian.AppendUint16(out, uint16(rec.Status))
	out = append(out, nonce...)
	return s.aead.Seal(out, nonce, plain, idemAD(id, out[:idemAuthHead]))
}

// idemAD is a record's additional data: its fixed-length head, then its id.
func idemAD(id, head []byte) []byte {
	ad := make([]byte, 0, len(head)+len(id))
	return append(append(ad, head...), id...)
}

// decode opens a record stored under id, of version 2 or of version 1
// (same layout, only its id as additional data). Anything that does not
// open (edited, truncated, another key's) is ErrIdempotencyRecord, which
// the stores treat as no record: see the top of this file for why a lost
// record is safe for a creation.
func (s *sealer) decode(id, raw []byte) (*idemRecord, error) {
	if len(raw) < idemHead {
		return nil, ErrIdempotencyRecord
	}
	var ad []byte
	switch raw[0] {
	case idemRecordVersion:
		ad = idemAD(id, raw[:idemAuthHead])
	case idemRecordV1:
		ad = id
	default:
		return nil, ErrIdempotencyRecord
	}
	plain, err := s.aead.Open(nil, raw[idemAuthHead:idemHead], raw[idemHead:], ad)
	if err != nil || len(plain) < 2 {
		return nil, ErrIdempotencyRecord
	}
	n := int(binary.BigEndian.Uint16(plain))
	if len(plain) < 2+n {
		return nil, ErrIdempotencyRecord
	}
	rec := &idemRecord{Created: time.UnixMilli(int64(binary.BigEndian.Uint64(raw[1:9])))}
	copy(rec.Fingerprint[:], raw[9:41])
	rec.Status = int(binary.BigEndian.Uint16(raw[41:43]))
	rec.ContentType = string(plain[2 : 2+n])
	rec.Body = plain[2+n:]
	rec.v1 = raw[0] == idemRecordV1
	return rec, nil
}

// boltIdem keeps records in a bbolt file: bucket "idempotency" maps scope 0
// key to a record; "idempotency_exp" orders them by creation for expiry.
type boltIdem struct {
	db   *bbolt.DB
	seal *sealer

	mu        sync.Mutex
	lastSweep time.Time
}

var (
	bucketIdem    = []byte("idempotency")
	bucketIdemExp = []byte("idempotency_exp")
)

func newBoltIdem(db *bbolt.DB, seal *sealer) (*boltIdem, error) {
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketIdem, bucketIdemExp} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("api: prepare idempotency database: %w", err)
	}
	return &boltIdem{db: db, seal: seal}, nil
}

func (b *boltIdem) get(id []byte, now time.Time, ttl time.Duration) (*idemRecord, bool, error) {
	var rec *idemRecord
	err := b.db.View(func(tx *bbolt.Tx) error {
		raw := tx.Bucket(bucketIdem).Get(id)
		if raw == nil {
			return nil
		}
		r, err := b.seal.decode(id, raw)
		if err != nil {
			return nil // treated as absent; the next put overwrites it
		}
		if r.live(now, ttl) {
			rec = r
		}
		return nil
	})
	return rec, rec != nil, err
}

// put stores a record through bbolt's Batch, so concurrent saves share a
// commit. The batch function may run twice: every write in it is idempotent.
func (b *boltIdem) put(id []byte, rec *idemRecord, now time.Time, ttl time.Duration) error {
	val := b.seal.encode(id, rec)
	expKey := binary.BigEndian.AppendUint64(nil, uint64(rec.Created.UnixMilli()))
	expKey = append(expKey, id...)
	b.mu.Lock()
	sweep := now.Sub(b.lastSweep) > time.Minute
	if sweep {
		b.lastSweep = now
	}
	b.mu.Unlock()
	return b.db.Batch(func(tx *bbolt.Tx) error {
		recs, exp := tx.Bucket(bucketIdem), tx.Bucket(bucketIdemExp)
		if err := recs.Put(id, val); err != nil {
			return err
		}
		if err := exp.Put(expKey, nil); err != nil {
			return err
		}
		if !sweep {
			return nil
		}
		// Drop up to 1000 expired records, oldest first.
		limit := uint64(now.Add(-ttl).UnixMilli())
		c := exp.Cursor()
		n := 0
		for k, _ := c.First(); len(k) >= 8 && binary.BigEndian.Uint64(k) < limit && n < 1000; k, _ = c.First() {
			n++
			rid := append([]byte(nil), k[8:]...)
			if raw := recs.Get(rid); raw != nil {
				if r, err := b.seal.decode(rid, raw); err != nil || r.Created.UnixMilli() == int64(binary.BigEndian.Uint64(k)) {
					if err := recs.Delete(rid); err != nil {
						return err
					}
				}
			}
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *boltIdem) ping() error {
	return b.db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketIdem) == nil {
			return errors.New("api: idempotency bucket missing")
		}
		return nil
	})
}

// memIdem keeps records in memory (no IdempotencyDB configured).
type memIdem struct {
	seal      *sealer
	mu        sync.Mutex
	m         map[string][]byte
	created   map[string]time.Time
	lastSweep time.Time
}

func newMemIdem(seal *sealer) *memIdem {
	return &memIdem{seal: seal, m: map[string][]byte{}, created: map[string]time.Time{}}
}

func (m *memIdem) get(id []byte, now time.Time, ttl time.Duration) (*idemRecord, bool, error) {
	m.mu.Lock()
	raw := m.m[string(id)]
	m.mu.Unlock()
	if raw == nil {
		return nil, false, nil
	}
	rec, err := m.seal.decode(id, raw)
	if err != nil || !rec.live(now, ttl) {
		return nil, false, nil
	}
	return rec, true, nil
}

func (m *memIdem) put(id []byte, rec *idemRecord, now time.Time, ttl time.Duration) error {
	val := m.seal.encode(id, rec)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[string(id)] = val
	m.created[string(id)] = rec.Created
	if now.Sub(m.lastSweep) > time.Minute {
		m.lastSweep = now
		for k, t := range m.created {
			if now.Sub(t) >= ttl {
				delete(m.m, k)
				delete(m.created, k)
			}
		}
	}
	return nil
}

func (m *memIdem) ping() error { return nil }
