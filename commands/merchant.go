package commands

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/internal/publicaddr"
	"github.com/payledger/payledger/ledger"
)

// DefaultInvoiceLifetime is how long an invoice stays payable unless the
// merchant's setting says otherwise.
const DefaultInvoiceLifetime = 20 * time.Minute

// Merchant is the merchant aggregate, folded from its stream.
type Merchant struct {
	ID                string
	Name              string
	WebhookURL        string
	CommissionPercent decimal.Decimal
	InvoiceLifetime   time.Duration
	InvoicingEnabled  bool
	Methods           []string // enabled method codes; empty: all
	Disabled          bool
	Keys              map[string]bool // key id -> active
	SecretVersion     int
	Version           uint64
}

// MethodEnabled reports whether the merchant accepts a payment method.
func (m *Merchant) MethodEnabled(code string) bool {
	if len(m.Methods) == 0 {
		return true
	}
	for _, c := range m.Methods {
		if c == code {
			return true
		}
	}
	return false
}

func (m *Merchant) apply(e ledger.Event) error {
	m.Version = e.Version
	switch e.Type {
	case TypeMerchantRegistered:
		var d MerchantRegistered
		if err := unmarshal(e, &d); err != nil {
			return err
		}
		m.ID, m.Name, m.WebhookURL = d.MerchantID, d.Name, d.WebhookURL
		m.CommissionPercent = d.CommissionPercent
		m.InvoiceLifetime = time.Duration(d.InvoiceLifetime) * time.Second
		m.InvoicingEnabled = d.InvoicingEnabled
		m.Methods = d.Methods
		m.Keys = map[string]bool{}
	case TypeMerchantSettings:
		var d MerchantSettingsChanged
		if err := unmarshal(e, &d); err != nil {
			return err
		}
		if d.Name != nil {
			m.Name = *d.Name
		}
		if d.WebhookURL != nil {
			m.WebhookURL = *d.WebhookURL
		}
		if d.CommissionPercent != nil {
			m.CommissionPercent = *d.CommissionPercent
		}
		if d.InvoiceLifetime != nil {
			m.InvoiceLifetime = time.Duration(*d.InvoiceLifetime) * time.Second
		}
		if d.InvoicingEnabled != nil {
			m.InvoicingEnabled = *d.InvoicingEnabled
		}
		if d.Methods != nil {
			m.Methods = *d.Methods
		}
		if d.Disabled != nil {
			m.Disabled = *d.Disabled
		}
	case TypeAPIKeyIssued:
		var d APIKeyIssued
		if err := unmarshal(e, &d); err != nil {
			return err
		}
		m.Keys[d.KeyID] = true
	case TypeAPIKeyRevoked:
		var d APIKeyRevoked
		if err := unmarshal(e, &d); err != nil {
			return err
		}
		m.Keys[d.KeyID] = false
	case TypeSigningSecretRotated:
		var d SigningSecretRotated
		if err := unmarshal(e, &d); err != nil {
			return err
		}
		m.SecretVersion = d.Version
	}
	return nil
}

// LoadMerchant folds a merchant's stream. It returns ErrNotFound for an
// unknown merchant.
//
// Every invoice reads its merchant, so the folded state is cached by stream
// version: a load reads only the events after the cached version (usually
// none) and returns a copy, so the result is exactly what folding the whole
// stream would give.
func (s *Service) LoadMerchant(ctx context.Context, id string) (*Merchant, error) {
	stream := StreamID(StreamMerchant, id)
	s.merchantsMu.Lock()
	cached := s.merchants[id]
	s.merchantsMu.Unlock()
	m, from := &Merchant{}, uint64(1)
	if cached != nil {
		m, from = cached.clone(), cached.Version+1
	}
	evs, err := s.store.ReadStream(ctx, stream, from)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", stream, err)
	}
	for _, e := range evs {
		if err := m.apply(e); err != nil {
			return nil, fmt.Errorf("load %s version %d: %w", stream, e.Version, err)
		}
	}
	if m.Version == 0 {
		return nil, fmt.Errorf("merchant %s: %w", id, ErrNotFound)
	}
	if len(evs) > 0 {
		s.merchantsMu.Lock()
		if c := s.merchants[id]; c == nil || c.Version < m.Version {
			s.merchants[id] = m.clone()
		}
		s.merchantsMu.Unlock()
	}
	return m, nil
}

// asRead is a pure condition on the merchant's stream: that it is still at
// the version this fold read. A creation decided on the merchant's
// settings appends with it, so an operator's change committed in between
// (a suspension, invoicing switched off, a method disabled, another
// commission) fails the append with a version conflict and the command
// decides again on the merchant as changed: nothing is created after the
// change on the settings before it. A pure condition bumps no version, so
// creations never conflict with one another through it; only the
// operator's rare merchant events move the stream.
func (m *Merchant) asRead() ledger.Write {
	return ledger.Write{Stream: StreamID(StreamMerchant, m.ID), Expected: ledger.Exactly(m.Version)}
}

func (m *Merchant) clone() *Merchant {
	c := *m
	c.Methods = append([]string(nil), m.Methods...)
	c.Keys = make(map[string]bool, len(m.Keys))
	for k, v := range m.Keys {
		c.Keys[k] = v
	}
	return &c
}

// MerchantSettings are a merchant's settings; nil fields are left as they are
// (on registration, nil means the default).
type MerchantSettings struct {
	Name              *string
	WebhookURL        *string
	CommissionPercent *string
	InvoiceLifetime   *time.Duration
	InvoicingEnabled  *bool
	Methods           *[]string
	Disabled          *bool
}

// RegisterMerchant is the operator's command to add a merchant with its first
// API key and signing secret (both made by the adapter: only hashes come here).
type RegisterMerchant struct {
	Meta
	MerchantID string
	Settings   MerchantSettings
	Key        APIKeyIssued   // the first key (hash only)
	Secret     SecretMaterial // the first signing secret (hash only)
	// RequestKey: see Service.requestClaim; scoped to the admin API
	// (AdminRequestClaim), as the merchant id is new.
	RequestKey string
}

// SecretMaterial identifies a signing secret by its hash.
type SecretMaterial struct {
	SecretHash string
}

// validMerchantID reports whether id can name a merchant: it is part of NATS
// subjects (no '.', '*', '>' or white space), of view keys, which use NUL as
// a separator, so no control characters either, and of the log's claim
// keys, which use '/' ("external_id/<merchant>/<external id>": with '/' in
// merchant ids, merchant "a" with external id "b/c" and merchant "a/b" with
// "c" would take one claim).
func validMerchantID(id string) bool {
	if id == "" || len(id) > 64 || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(".*>/", r) {
			return false
		}
	}
	return true
}

// RegisterMerchant creates the merchant's stream.
//
// Errors: *ValidationError, ErrConflict (the id exists), *RepeatedError
// (ErrRepeated: naming the merchant an earlier command with the request key
// registered), infrastructure errors.
func (s *Service) RegisterMerchant(ctx context.Context, c RegisterMerchant) error {
	if err := checkMeta(c.Meta); err != nil {
		return err
	}
	v := &ValidationError{}
	if !validMerchantID(c.MerchantID) {
		v.Add("merchant_id", "invalid", "merchant id must be 1 to 64 bytes of UTF-8 without spaces, control characters, '.', '*', '>' or '/'")
	}
	if c.Settings.Name == nil || strings.TrimSpace(*c.Settings.Name) == "" {
		v.Add("name", "missing", "name is required")
	}
	d := MerchantRegistered{
		MerchantID:        c.MerchantID,
		CommissionPercent: decimal.Zero,
		InvoiceLifetime:   int64(DefaultInvoiceLifetime / time.Second),
		InvoicingEnabled:  true,
		RegisteredAt:      c.Time.UTC(),
	}
	ch := validateSettings(c.Settings, s.allowPrivate, v)
	if ch.Name != nil {
		d.Name = *ch.Name
	}
	if ch.WebhookURL != nil {
		d.WebhookURL = *ch.WebhookURL
	}
	if ch.CommissionPercent != nil {
		d.CommissionPercent = *ch.CommissionPercent
	}
	if ch.InvoiceLifetime != nil {
		d.InvoiceLifetime = *ch.InvoiceLifetime
	}
	if ch.InvoicingEnabled != nil {
		d.InvoicingEnabled = *ch.InvoicingEnabled
	}
	if ch.Methods != nil {
		d.Methods = *ch.Methods
	}
	if c.Key.KeyID == "" || len(c.Key.KeyHash) != 64 {
		v.Add("api_key", "invalid", "an API key id and SHA-256 hash are required")
	}
	if len(c.Secret.SecretHash) != 64 {
		v.Add("signing_secret", "invalid", "a signing secret hash is required")
	}
	if err := v.Err(); err != nil {
		return err
	}
	claims, err := s.adminRequestClaim(c.RequestKey)
	if err != nil {
		return err
	}
	ids := &eventIDs{meta: c.Meta}
	key := c.Key
	key.IssuedAt = c.Time.UTC()
	events := []ledger.NewEvent{
		ids.event(TypeMerchantRegistered, c.MerchantID, d, claims...),
		ids.event(TypeAPIKeyIssued, c.MerchantID, key),
		ids.event(TypeSigningSecretRotated, c.MerchantID, SigningSecretRotated{Version: 1, SecretHash: c.Secret.SecretHash, RotatedAt: c.Time.UTC()}),
	}
	_, err = s.store.AppendWrites(ctx, ledger.Write{Stream: StreamID(StreamMerchant, c.MerchantID), Expected: ledger.NoStream, Events: events})
	if err = s.repeated(err, claims); err != nil {
		if errors.Is(err, ErrRepeated) {
			return err
		}
		return fmt.Errorf("register merchant %s: %w", c.MerchantID, mapConflict(err))
	}
	return nil
}

// ChangeMerchantSettings is the operator's command to change settings.
type ChangeMerchantSettings struct {
	Meta
	MerchantID string
	Settings   MerchantSettings
}

// ChangeMerchantSettings records the settings that differ.
//
// Errors: ErrNotFound, *ValidationError, ErrConflict.
func (s *Service) ChangeMerchantSettings(ctx context.Context, c ChangeMerchantSettings) error {
	if err := checkMeta(c.Meta); err != nil {
		return err
	}
	v := &ValidationError{}
	ch := validateSettings(c.Settings, s.allowPrivate, v)
	if err := v.Err(); err != nil {
		return err
	}
	ch.ChangedAt = c.Time.UTC()
	_, err := s.run(ctx, func() (decision, error) {
		m, err := s.LoadMerchant(ctx, c.MerchantID)
		if err != nil {
			return decision{}, err
		}
		return single(c.Meta, StreamID(StreamMerchant, m.ID), m.ID, m.Version, TypeMerchantSettings, ch), nil
	})
	return err
}

func validateSettings(in MerchantSettings, allowPrivate bool, v *ValidationError) MerchantSettingsChanged {
	var out MerchantSettingsChanged
	if in.Name != nil {
		n := strings.TrimSpace(*in.Name)
		if n == "" || utf8.RuneCountInString(n) > 200 {
			v.Add("name", "invalid", "name must be 1 to 200 characters")
		}
		out.Name = &n
	}
	if in.WebhookURL != nil {
		u := *in.WebhookURL
		checkTarget("webhook_url", u, allowPrivate, v) // "" clears it
		out.WebhookURL = &u
	}
	if in.CommissionPercent != nil {
		d, err := decimal.NewFromString(*in.CommissionPercent)
		switch {
		case err != nil || !isPlainDecimal(*in.CommissionPercent):
			v.Add("commission_percent", "invalid", "commission_percent must be a decimal string such as \"2\" or \"1.5\"")
		case d.IsNegative() || d.GreaterThanOrEqual(decimal.NewFromInt(100)):
			v.Add("commission_percent", "out_of_range", "commission_percent must be at least 0 and below 100")
		case -d.Exponent() > 4:
			v.Add("commission_percent", "too_precise", "commission_percent must have at most 4 decimal places")
		}
		out.CommissionPercent = &d
	}
	if in.InvoiceLifetime != nil {
		secs := int64(*in.InvoiceLifetime / time.Second)
		if secs < 60 || secs > 30*24*3600 {
			v.Add("invoice_lifetime_seconds", "out_of_range", "invoice lifetime must be between 60 seconds and 30 days")
		}
		out.InvoiceLifetime = &secs
	}
	if in.InvoicingEnabled != nil {
		b := *in.InvoicingEnabled
		out.InvoicingEnabled = &b
	}
	if in.Methods != nil {
		ms := append([]string{}, (*in.Methods)...)
		for i, code := range ms {
			if _, ok := LookupMethod(code); !ok {
				v.Add(fmt.Sprintf("methods[%d]", i), "invalid", fmt.Sprintf("unknown payment method %q", code))
			}
		}
		out.Methods = &ms
	}
	if in.Disabled != nil {
		b := *in.Disabled
		out.Disabled = &b
	}
	return out
}

// IssueAPIKey adds a key to a merchant (the adapter made the key; only its hash comes here).
type IssueAPIKey struct {
	Meta
	MerchantID string
	Key        APIKeyIssued
	// RequestKey: see Service.requestClaim; scoped to the admin API
	// (AdminRequestClaim).
	RequestKey string
}

// IssueAPIKey records a new key.
//
// Errors: ErrNotFound, *ValidationError, ErrConflict, *RepeatedError
// (ErrRepeated: an earlier command with the request key issued a key).
func (s *Service) IssueAPIKey(ctx context.Context, c IssueAPIKey) error {
	if err := checkMeta(c.Meta); err != nil {
		return err
	}
	if c.Key.KeyID == "" || len(c.Key.KeyHash) != 64 {
		return &ValidationError{Fields: []FieldError{{Path: "api_key", Type: "invalid", Message: "an API key id and SHA-256 hash are required"}}}
	}
	key := c.Key
	key.IssuedAt = c.Time.UTC()
	return s.merchantEvent(ctx, c.Meta, c.MerchantID, c.RequestKey, func(m *Merchant) (string, any, error) {
		if _, dup := m.Keys[key.KeyID]; dup {
			return "", nil, fmt.Errorf("api key %s: %w", key.KeyID, ErrConflict)
		}
		return TypeAPIKeyIssued, key, nil
	})
}

// RevokeAPIKey disables a key.
type RevokeAPIKey struct {
	Meta
	MerchantID string
	KeyID      string
}

// RevokeAPIKey records the revocation.
//
// Errors: ErrNotFound (merchant), ErrKeyNotFound, ErrConflict.
func (s *Service) RevokeAPIKey(ctx context.Context, c RevokeAPIKey) error {
	if err := checkMeta(c.Meta); err != nil {
		return err
	}
	return s.merchantEvent(ctx, c.Meta, c.MerchantID, "", func(m *Merchant) (string, any, error) {
		if active, ok := m.Keys[c.KeyID]; !ok || !active {
			return "", nil, fmt.Errorf("api key %s: %w", c.KeyID, ErrKeyNotFound)
		}
		return TypeAPIKeyRevoked, APIKeyRevoked{KeyID: c.KeyID, RevokedAt: c.Time.UTC()}, nil
	})
}

// RotateSigningSecret starts a new signing secret version; the previous one
// keeps signing alongside it for Overlap.
type RotateSigningSecret struct {
	Meta
	MerchantID string
	// Secret gives the material of the secret of a version. The command
	// calls it with the version it decides, once per attempt (again after a
	// concurrent rotation took that version), so the hash recorded is always
	// the hash of that version's secret: it must be deterministic, as the
	// adapter's derivation from the master key is.
	Secret  func(version int) SecretMaterial
	Overlap time.Duration
	// RequestKey: see Service.requestClaim; scoped to the admin API
	// (AdminRequestClaim).
	RequestKey string
}

// RotateSigningSecret records the rotation and returns it. When an earlier
// command with the request key rotated the merchant's secret, it returns
// that rotation, as recorded, with a *RepeatedError: the caller can answer
// the retry as the first attempt was answered.
//
// Errors: ErrNotFound, *ValidationError, ErrConflict, *RepeatedError
// (ErrRepeated).
func (s *Service) RotateSigningSecret(ctx context.Context, c RotateSigningSecret) (SigningSecretRotated, error) {
	if err := checkMeta(c.Meta); err != nil {
		return SigningSecretRotated{}, err
	}
	if c.Secret == nil {
		return SigningSecretRotated{}, errors.New("commands: rotate signing secret without a secret")
	}
	var d SigningSecretRotated
	err := s.merchantEvent(ctx, c.Meta, c.MerchantID, c.RequestKey, func(m *Merchant) (string, any, error) {
		version := m.SecretVersion + 1
		sm := c.Secret(version)
		if len(sm.SecretHash) != 64 {
			return "", nil, &ValidationError{Fields: []FieldError{{Path: "signing_secret", Type: "invalid", Message: "a signing secret hash is required"}}}
		}
		d = SigningSecretRotated{Version: version, SecretHash: sm.SecretHash, RotatedAt: c.Time.UTC()}
		if c.Overlap > 0 {
			d.PreviousValidUntil = c.Time.Add(c.Overlap).UTC()
		}
		return TypeSigningSecretRotated, d, nil
	})
	if first, ok, err := firstOfRepeat[SigningSecretRotated](ctx, s, err, StreamID(StreamMerchant, c.MerchantID), c.RequestKey, "rotation"); ok {
		return first, err
	}
	if err != nil {
		return SigningSecretRotated{}, err
	}
	return d, nil
}

// merchantEvent appends one event decided from the merchant's state. With
// a request key (see adminRequestClaim) the event claims it, and a command
// whose key an earlier one claimed fails with a *RepeatedError.
//
// The claim is checked in each attempt, after the merchant is read: the
// log lets a stream take again a claim it holds, so a concurrent retry
// that appended to this stream first shows up only as a version conflict,
// and the next attempt must see its claim. Read after the stream, the
// claim is either visible or was taken after the read, when the append
// fails on the version.
func (s *Service) merchantEvent(ctx context.Context, meta Meta, merchantID, requestKey string, decide func(*Merchant) (string, any, error)) error {
	_, err := s.run(ctx, func() (decision, error) {
		m, err := s.LoadMerchant(ctx, merchantID)
		if err != nil {
			return decision{}, err
		}
		claims, err := s.adminRequestClaim(requestKey)
		if err != nil {
			return decision{}, err
		}
		typ, data, err := decide(m)
		if err != nil {
			return decision{}, err
		}
		return single(meta, StreamID(StreamMerchant, m.ID), m.ID, m.Version, typ, data, claims...), nil
	})
	return err
}

// SetRate is the operator's command to set a currency's rate per USDT.
type SetRate struct {
	Meta
	Currency string
	Rate     string
	// RequestKey: see Service.requestClaim; scoped to the admin API
	// (AdminRequestClaim).
	RequestKey string
}

// SetRate records the rate and returns what it recorded. When an earlier
// command with the request key set a rate, it appends nothing and returns
// that rate, as recorded, with a *RepeatedError: the caller can answer the
// retry as the first attempt was answered, and a rate set in between stays.
//
// Every rate is on one stream, and the log lets a stream take again a
// claim it holds: so with a request key the claim is checked after the
// stream's version is read, and the append expects that version. A
// concurrent twin that appended first is then a version conflict, and the
// next attempt sees its claim (as merchantEvent does).
//
// Errors: *ValidationError (unknown currency, bad rate), *RepeatedError
// (ErrRepeated), ErrConflict.
func (s *Service) SetRate(ctx context.Context, c SetRate) (RateSet, error) {
	if err := checkMeta(c.Meta); err != nil {
		return RateSet{}, err
	}
	v := &ValidationError{}
	if _, ok := LookupCurrency(c.Currency); !ok || c.Currency == "USDT" {
		v.Add("currency", "invalid", fmt.Sprintf("unknown currency %q", c.Currency))
	}
	rate, ferr := ParseRate("rate", c.Rate)
	if ferr != nil {
		v.Fields = append(v.Fields, *ferr)
	}
	if err := v.Err(); err != nil {
		return RateSet{}, err
	}
	d := RateSet{Currency: c.Currency, Rate: rate, SetAt: c.Time.UTC()}
	_, err := s.run(ctx, func() (decision, error) {
		expected := ledger.Any
		var claims []string
		if c.RequestKey != "" {
			version, err := s.store.StreamVersion(StreamRates)
			if err != nil {
				return decision{}, fmt.Errorf("load %s: %w", StreamRates, err)
			}
			if claims, err = s.adminRequestClaim(c.RequestKey); err != nil {
				return decision{}, err
			}
			expected = ledger.Exactly(version)
		}
		ids := &eventIDs{meta: c.Meta}
		return decision{writes: []ledger.Write{{Stream: StreamRates, Expected: expected,
			Events: []ledger.NewEvent{ids.event(TypeRateSet, "", d, claims...)}}}}, nil
	})
	if first, ok, err := firstOfRepeat[RateSet](ctx, s, err, StreamRates, c.RequestKey, "rate"); ok {
		return first, err
	}
	if err != nil {
		return RateSet{}, fmt.Errorf("set rate %s: %w", c.Currency, err)
	}
	return d, nil
}

// checkURL returns "" for an absolute http(s) URL (https only when httpsOnly),
// else what is wrong with it.
func checkURL(s string, httpsOnly bool) string {
	if len(s) > 2048 {
		return "must be at most 2048 characters"
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil {
		return "must be an absolute URL with a host"
	}
	switch u.Scheme {
	case "https":
	case "http":
		if httpsOnly {
			return "must use https"
		}
	default:
		return "must use https"
	}
	return ""
}

// checkTarget checks a URL that payledger calls (webhook_url, callback_url,
// status_url), if any: its host in ASCII (an internationalised name in its
// xn-- form, as the HTTP client sends it); without allowPrivate an absolute https URL whose
// host is not a loopback, private or other non-public address literal, in
// any form a resolver takes for one (see ipv4Literal; one trailing dot is
// dropped), nor localhost or a name under it (RFC 6761); with it, also
// http and any address, as the webhook dispatcher's AllowPrivate reaches
// them. A host name is not resolved here (what it resolves to may change):
// the dispatcher checks every address it connects to.
func checkTarget(field, s string, allowPrivate bool, v *ValidationError) {
	if s == "" {
		return
	}
	if msg := checkURL(s, !allowPrivate); msg != "" {
		v.Add(field, "invalid", field+" "+msg)
		return
	}
	u, err := url.Parse(s)
	if err != nil {
		return // checkURL parsed it
	}
	// The HTTP client sends an internationalised host in its punycode
	// (xn--) form, and a status_url call is signed over the URL as sent:
	// a host written in Unicode would be signed as one thing and received
	// as another, and never verify. The merchant writes the xn-- form.
	for _, r := range u.Host {
		if r >= utf8.RuneSelf {
			v.Add(field, "invalid", field+" host must be ASCII: write an internationalised domain name in its xn-- (punycode) form")
			return
		}
	}
	if allowPrivate {
		return
	}
	host := strings.TrimSuffix(u.Hostname(), ".")
	if name := strings.ToLower(host); name == "localhost" || strings.HasSuffix(name, ".localhost") {
		v.Add(field, "not_public", fmt.Sprintf("%s must name a public address, not %s (loopback name)", field, u.Hostname()))
		return
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		var numeric bool
		if a, numeric, err = ipv4Literal(host); !numeric {
			return // a name
		}
		if err != nil {
			v.Add(field, "invalid", fmt.Sprintf("%s host %s is not a valid IPv4 address: %v", field, u.Hostname(), err))
			return
		}
	}
	if reason := publicaddr.Reason(a); reason != "" {
		shown := u.Hostname()
		if shown != a.String() {
			shown += " = " + a.String()
		}
		v.Add(field, "not_public", fmt.Sprintf("%s must name a public address, not %s (%s)", field, shown, reason))
	}
}

// ipv4Literal parses host as an IPv4 address in the forms inet_aton and
// the WHATWG URL standard take besides the dotted quad: 1 to 4 parts
// separated by dots, each decimal, hexadecimal (0x) or octal (a leading
// 0), the last filling the bytes the others leave ("127.1",
// "2130706433", "0x7f000001", "017700000001", "0"). numeric is false for
// a host that is not made only of such numbers and dots (a name, left to
// the resolver); err is non-nil for one that is but is no address (a part
// out of range, an 8 or 9 in an octal part, more than 4 parts, an empty
// part).
func ipv4Literal(host string) (a netip.Addr, numeric bool, err error) {
	parts := strings.Split(host, ".")
	for _, p := range parts {
		if p != "" && !numericPart(p) {
			return netip.Addr{}, false, nil
		}
	}
	if len(parts) > 4 {
		return netip.Addr{}, true, fmt.Errorf("%d parts", len(parts))
	}
	var b [4]byte
	for i, p := range parts {
		if p == "" {
			return netip.Addr{}, true, errors.New("an empty part")
		}
		base, digits := 10, p
		switch {
		case len(p) >= 2 && (p[:2] == "0x" || p[:2] == "0X"):
			base, digits = 16, p[2:]
		case len(p) > 1 && p[0] == '0':
			base, digits = 8, p[1:]
		}
		n := uint64(0) // "0x" is 0, as WHATWG has it
		if digits != "" {
			if n, err = strconv.ParseUint(digits, base, 32); err != nil {
				return netip.Addr{}, true, fmt.Errorf("part %q out of range", p)
			}
		}
		if i < len(parts)-1 {
			if n > 255 {
				return netip.Addr{}, true, fmt.Errorf("part %q over 255", p)
			}
			b[i] = byte(n)
			continue
		}
		// The last part fills the remaining 5-len(parts) bytes.
		rest := 5 - len(parts)
		if rest < 4 && n>>(8*rest) != 0 {
			return netip.Addr{}, true, fmt.Errorf("part %q over %d bytes", p, rest)
		}
		for j := 3; j >= i; j-- {
			b[j] = byte(n)
			n >>= 8
		}
	}
	return netip.AddrFrom4(b), true, nil
}

// numericPart reports whether p is made of decimal digits, or is 0x (or
// 0X) and hexadecimal digits: a part ipv4Literal reads as a number.
func numericPart(p string) bool {
	if len(p) >= 2 && (p[:2] == "0x" || p[:2] == "0X") {
		p = p[2:]
		for i := 0; i < len(p); i++ {
			if !strings.ContainsRune("0123456789abcdefABCDEF", rune(p[i])) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// isPlainDecimal reports whether s is a plain decimal ("2", "1.5"), in the
// form money amounts take (money.go's scanDecimal).
func isPlainDecimal(s string) bool {
	_, _, ok := scanDecimal(s)
	return ok
}

func mapConflict(err error) error {
	if err != nil && (isVersionConflict(err)) {
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}
