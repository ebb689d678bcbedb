// Package commands is payledger's domain: every command loads its aggregate
// from the event log, validates, decides the events, and appends them with the
// version it read (optimistic concurrency). Decisions are deterministic: the
// time, the ids and the rates come in with the command, never from a clock,
// a random source or the network, so the same command on the same history
// decides the same events.
//
// The package depends only on the ledger's envelope types and declares the
// store it needs (Store); the bbolt log satisfies it.
package commands

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/ledger"
)

// Store is what the domain needs of the event log.
type Store interface {
	// AppendWrites appends to one or more streams atomically if each is at
	// its expected version (ledger.ErrVersionConflict otherwise) and its
	// claims are free (ledger.ErrClaimed otherwise).
	AppendWrites(ctx context.Context, writes ...ledger.Write) ([]ledger.Event, error)
	// ReadStream returns a stream's events from a version on.
	ReadStream(ctx context.Context, stream string, from uint64) ([]ledger.Event, error)
	// StreamVersion returns a stream's version (0: no events) without
	// reading its events.
	StreamVersion(stream string) (uint64, error)
	// ClaimHolder returns the stream that holds a unique key, if any.
	ClaimHolder(key string) (stream string, ok bool, err error)
}

// Meta is what every command carries besides its own fields: when it
// happened, a unique id from which its events' ids are derived, and the
// request id it came with.
type Meta struct {
	CommandID   ulid.ULID // unique per command; the adapter makes it
	Time        time.Time // the command's time; the adapter reads its clock
	Correlation string    // request id, recorded as the events' correlation id
}

// Config tunes a Service. The zero value is the default.
type Config struct {
	// Gateways are the payment gateways; default: the sandbox alone.
	Gateways *Gateways
	// MaxRetries bounds how often a command is re-decided after a version
	// conflict. Default 64.
	MaxRetries int
	// AllowPrivateWebhooks accepts the URLs payledger calls (a merchant's
	// webhook_url, an invoice's callback_url, an e-invoice's status_url)
	// over plain http and at loopback and private address literals, which
	// the webhook dispatcher then reaches (serve's --allow-private-webhooks,
	// also the dispatcher's webhooks.Config.AllowPrivate). Without it such
	// URLs are refused by the command, rather than stored to fail at every
	// delivery.
	AllowPrivateWebhooks bool
}

// Service executes commands against the log.
type Service struct {
	store    Store
	gateways *Gateways
	retries  int
	// allowPrivate is Config.AllowPrivateWebhooks (see checkTarget).
	allowPrivate bool

	merchantsMu sync.Mutex
	merchants   map[string]*Merchant // folded merchant streams, by id (see LoadMerchant)

	switchesMu sync.Mutex
	switches   GatewaySwitches // the folded gateways stream (see GatewaySwitches)

	dueMu    sync.RWMutex
	dueHooks []func() // called after something with an expiry was created (OnDue)
}

// NewService returns a Service over store.
func NewService(store Store, cfg Config) *Service {
	s := &Service{store: store, gateways: cfg.Gateways, retries: cfg.MaxRetries, allowPrivate: cfg.AllowPrivateWebhooks, merchants: map[string]*Merchant{}}
	if s.gateways == nil {
		s.gateways = DefaultGateways()
	}
	if s.retries <= 0 {
		s.retries = 64
	}
	return s
}

// AllowPrivateWebhooks reports Config.AllowPrivateWebhooks: whether
// webhook_url, callback_url and status_url may be plain http or name a
// loopback or private address.
func (s *Service) AllowPrivateWebhooks() bool { return s.allowPrivate }

// OnDue registers f to be called after every command that created
// something that expires by itself: an invoice (from the API, an e-invoice,
// or a widget) or a widget. The expiry scheduler registers its Kick, so it
// looks again at once rather than after the wait it had set itself, which
// the new item may fall due before. f must not block.
func (s *Service) OnDue(f func()) {
	s.dueMu.Lock()
	s.dueHooks = append(s.dueHooks, f)
	s.dueMu.Unlock()
}

// created tells the OnDue hooks that an item with an expiry was appended.
func (s *Service) created() {
	s.dueMu.RLock()
	defer s.dueMu.RUnlock()
	for _, f := range s.dueHooks {
		f()
	}
}

// Gateways returns the service's gateway registry.
func (s *Service) Gateways() *Gateways { return s.gateways }

// decision is what a command decides: writes to append atomically.
type decision struct {
	writes []ledger.Write
}

// run decides and appends, re-deciding on a version conflict: decide reads
// the aggregates afresh each time. A claim conflict is returned as is, for the
// caller to map. A decision with no writes appends nothing.
func (s *Service) run(ctx context.Context, decide func() (decision, error)) ([]ledger.Event, error) {
	for attempt := 0; ; attempt++ {
		d, err := decide()
		if err != nil {
			return nil, err
		}
		if len(d.writes) == 0 {
			return nil, nil
		}
		evs, err := s.store.AppendWrites(ctx, d.writes...)
		if err == nil {
			return evs, nil
		}
		if !errors.Is(err, ledger.ErrVersionConflict) {
			return nil, err
		}
		if attempt >= s.retries {
			return nil, fmt.Errorf("%w: %w", ErrConflict, err)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// requestClaim returns what a creation with a request key claims in the
// log. A request key, with the merchant, identifies the request a command
// comes from (the HTTP adapter derives it from the Idempotency-Key header
// and the request's fingerprint), so a retry of the request, even one whose
// idempotency record a crash lost, creates nothing: when an earlier command
// with the key made a stream, requestClaim fails with a *RepeatedError
// naming it. No key: no claim.
func (s *Service) requestClaim(merchantID, key string) ([]string, error) {
	if key == "" {
		return nil, nil
	}
	if merchantID == "" {
		return nil, &ValidationError{Fields: []FieldError{{Path: "merchant_id", Type: "missing", Message: "a request key needs the merchant"}}}
	}
	return s.freeClaim(RequestClaim(merchantID, key))
}

// adminRequestClaim is requestClaim for the operator's creations (a
// merchant, an API key, a signing secret), whose request keys are scoped
// to the admin API rather than to a merchant.
func (s *Service) adminRequestClaim(key string) ([]string, error) {
	if key == "" {
		return nil, nil
	}
	return s.freeClaim(AdminRequestClaim(key))
}

// freeClaim returns claim for an event to take, or a *RepeatedError naming
// the stream that holds it.
func (s *Service) freeClaim(claim string) ([]string, error) {
	holder, ok, err := s.store.ClaimHolder(claim)
	if err != nil {
		return nil, fmt.Errorf("request key: %w", err)
	}
	if ok {
		return nil, &RepeatedError{Stream: holder}
	}
	return []string{claim}, nil
}

// RequestClaim is the unique key a command with a request key claims.
func RequestClaim(merchantID, requestKey string) string {
	return "request/" + merchantID + "/" + requestKey
}

// AdminRequestClaim is the unique key an operator's command with a request
// key claims. Its prefix is not RequestClaim's: no merchant's request can
// take it.
func AdminRequestClaim(requestKey string) string {
	return "admin-request/" + requestKey
}

// claimedEvent finds the event of stream that took claim and decodes its
// data into v; ok is false when no event of the stream carries the claim.
func (s *Service) claimedEvent(ctx context.Context, stream, claim string, v any) (ok bool, _ error) {
	evs, err := s.store.ReadStream(ctx, stream, 1)
	if err != nil {
		return false, fmt.Errorf("load %s: %w", stream, err)
	}
	for _, e := range evs {
		if slices.Contains(e.Claims, claim) {
			return true, unmarshal(e, v)
		}
	}
	return false, nil
}

// firstOfRepeat answers an operator's command that err says repeats an
// earlier one with its request key (a *RepeatedError naming stream): ok,
// and the data of the event of stream that took the key's admin claim,
// with err, for the caller to answer the retry as the first attempt was
// answered. Any other err: not ok.
func firstOfRepeat[T any](ctx context.Context, s *Service, err error, stream, requestKey, what string) (_ T, ok bool, _ error) {
	var first, zero T
	var rep *RepeatedError
	if !errors.As(err, &rep) || rep.Stream != stream {
		return zero, false, err
	}
	found, ferr := s.claimedEvent(ctx, rep.Stream, AdminRequestClaim(requestKey), &first)
	if ferr != nil {
		return zero, true, fmt.Errorf("%s of a repeated request: %w", what, ferr)
	}
	if !found {
		// Not a *RepeatedError: the caller has no first answer to give.
		return zero, true, fmt.Errorf("%s of a repeated request: no event of %s carries its claim", what, rep.Stream)
	}
	return first, true, err
}

// repeated answers a command with a request key (claims from requestClaim
// or adminRequestClaim, the key's claim first) refused after its key was
// checked. When a twin now holds the key (a command of the same request,
// raced in, that committed after the check), the answer is the twin's
// result, a *RepeatedError naming the stream it made, as for a retry sent
// after the twin, which requestClaim answers before deciding anything:
// whatever refused this command. The twin's own success often did (its
// claims taken: the key, an external_id, a payment_id; its stream made: a
// widget's or merchant's own id, a version conflict; its invoice changed:
// the last payment place taken, the invoice paid by its payment), and a
// change made since (the invoice cancelled, the merchant suspended) would
// not have refused the retry either. Every command with a request key
// passes each refusal after its key check through here. Another request
// (the same Idempotency-Key with another body) has another request key,
// so it keeps its own refusal.
//
// Only refusals are looked up (refusal: a business rejection of this
// package, the log's version or claim conflict), so nothing is looked up
// on success or on any other error. Infrastructure errors (the context
// ended; the log closed, failed, full or damaged; a gateway's failure)
// pass through as they are: answered with a twin's result they would be
// hidden, the request served as a success while its node fails. A claim
// conflict on the key names its holder; another refusal looks the key up,
// and a lookup that fails leaves err, noting the failure.
func (s *Service) repeated(err error, claims []string) error {
	if err == nil || len(claims) == 0 || !refusal(err) {
		return err
	}
	var ce *ledger.ClaimError
	if errors.As(err, &ce) && ce.Key == claims[0] {
		return &RepeatedError{Stream: ce.Holder}
	}
	holder, ok, lerr := s.store.ClaimHolder(claims[0])
	if lerr != nil {
		return fmt.Errorf("%w (and the request key's lookup: %v)", err, lerr)
	}
	if ok {
		return &RepeatedError{Stream: holder}
	}
	return err
}

// load reads a stream and folds it into state; it returns the version read.
func (s *Service) load(ctx context.Context, stream string, apply func(ledger.Event) error) (uint64, error) {
	evs, err := s.store.ReadStream(ctx, stream, 1)
	if err != nil {
		return 0, fmt.Errorf("load %s: %w", stream, err)
	}
	for _, e := range evs {
		if err := apply(e); err != nil {
			return 0, fmt.Errorf("load %s version %d: %w", stream, e.Version, err)
		}
	}
	return uint64(len(evs)), nil
}

// loadOwned folds the stream prefix-id with apply. It fails with ErrNotFound
// when the stream is empty, or when merchantID is not "" and is not the
// aggregate's owner: a merchant never learns another's aggregates exist.
func (s *Service) loadOwned(ctx context.Context, prefix, id, merchantID string, apply func(ledger.Event) error, owner func() string) error {
	v, err := s.load(ctx, StreamID(prefix, id), apply)
	if err != nil {
		return err
	}
	if v == 0 || (merchantID != "" && owner() != merchantID) {
		return fmt.Errorf("%s %s: %w", prefix, id, ErrNotFound)
	}
	return nil
}

// single decides one event, taking claims, on one stream at the version
// the decision read.
func single(meta Meta, stream, merchant string, version uint64, typ string, data any, claims ...string) decision {
	ids := &eventIDs{meta: meta}
	return decision{writes: []ledger.Write{{
		Stream: stream, Expected: ledger.Exactly(version),
		Events: []ledger.NewEvent{ids.event(typ, merchant, data, claims...)},
	}}}
}

// eventIDs derives event ids from the command: the same command always gets
// the same ids, so a retried decision is identical.
type eventIDs struct {
	meta Meta
	n    uint32
}

func (g *eventIDs) next() ulid.ULID {
	var buf [20]byte
	copy(buf[:16], g.meta.CommandID[:])
	binary.BigEndian.PutUint32(buf[16:], g.n)
	g.n++
	sum := sha256.Sum256(buf[:])
	var id ulid.ULID
	_ = id.SetTime(ulid.Timestamp(g.meta.Time))
	copy(id[6:], sum[:10])
	return id
}

// newEvent builds a NewEvent with data marshalled to JSON.
func (g *eventIDs) event(typ, merchant string, data any, claims ...string) ledger.NewEvent {
	b, err := json.Marshal(data)
	if err != nil {
		// Event data are plain structs of this package: a failure is a bug.
		panic(fmt.Sprintf("commands: marshal %s: %v", typ, err))
	}
	return ledger.NewEvent{
		ID:          g.next(),
		Type:        typ,
		Time:        g.meta.Time,
		Merchant:    merchant,
		Correlation: g.meta.Correlation,
		Claims:      claims,
		Data:        b,
	}
}

func checkMeta(m Meta) error {
	if m.CommandID == (ulid.ULID{}) || m.Time.IsZero() {
		return errors.New("commands: command without id or time")
	}
	return nil
}

// StreamID is the stream of an aggregate.
func StreamID(prefix, id string) string { return prefix + "-" + id }

// UUID renders a ULID as UUID text (8-4-4-4-12 lower-case hex).
func UUID(id ulid.ULID) string {
	const hexd = "0123456789abcdef"
	var b [36]byte
	j := 0
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j] = hexd[c>>4]
		b[j+1] = hexd[c&0xf]
		j += 2
	}
	return string(b[:])
}

// CanonicalUUID returns s in lower case if it is UUID text (8-4-4-4-12 hex
// digits) in any case, as UUID renders the ids it makes: a client may have
// upper-cased one. Anything else comes back as it is.
func CanonicalUUID(s string) string {
	if len(s) != 36 {
		return s
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return s
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return s
			}
		}
	}
	return strings.ToLower(s)
}

func isVersionConflict(err error) bool { return errors.Is(err, ledger.ErrVersionConflict) }

func unmarshal(e ledger.Event, v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("%s data: %w", e.Type, err)
	}
	return nil
}
