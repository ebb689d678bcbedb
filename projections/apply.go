package projections

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
)

// state applies events to the views of one transaction. It is a write-back
// cache: the mutable views an event touches are loaded once, changed in
// memory, and written (with their index moves and counter changes) by flush.
// An invoice created and paid within one batch is thus encoded once, and
// never re-read from the JSON just written. Write-once indexes are put
// directly.
type state struct {
	tx *bbolt.Tx
	b  buckets

	checkpoint uint64
	events     uint64

	invoices  map[string]*invoiceEntry
	payments  map[string]*paymentEntry
	widgets   map[string]*widgetEntry
	merchants map[string]*merchantEntry

	counters       map[string]int64
	balances       map[string]decimal.Decimal // balance key -> delta
	merchantTotals map[string]decimal.Decimal
	totals         map[string]decimal.Decimal

	key []byte // scratch
}

type buckets struct {
	meta, invoices, payments, widgets, merchants, apiKeys, apiKeyIDs, rates,
	externalIDs, paymentIDs, tracking, paymentSeq, invoicePayments, invByTime,
	invByStatus, widByTime, counters, due, balances, merchantTotals, totals *bbolt.Bucket
}

func openBuckets(tx *bbolt.Tx) (buckets, error) {
	var b buckets
	ptrs := []**bbolt.Bucket{&b.meta, &b.invoices, &b.payments, &b.widgets, &b.merchants, &b.apiKeys,
		&b.apiKeyIDs, &b.rates, &b.externalIDs, &b.paymentIDs, &b.tracking, &b.paymentSeq,
		&b.invoicePayments, &b.invByTime, &b.invByStatus, &b.widByTime, &b.counters, &b.due,
		&b.balances, &b.merchantTotals, &b.totals}
	for i, name := range allBuckets {
		bk := tx.Bucket(name)
		if bk == nil {
			return b, fmt.Errorf("projections: bucket %s missing (Init not run)", name)
		}
		*ptrs[i] = bk
	}
	return b, nil
}

type invoiceEntry struct {
	v          InvoiceView
	stored     bool // in the bucket before this batch
	origStatus string
	origDue    time.Time // zero: not in the due index
	dirty      bool
}

type paymentEntry struct {
	v          PaymentView
	stored     bool
	origStatus string
	dirty      bool
}

type widgetEntry struct {
	v          WidgetView
	stored     bool
	origStatus string
	origDue    time.Time
	dirty      bool
}

type merchantEntry struct {
	v     MerchantView
	dirty bool
}

func newState(tx *bbolt.Tx) (*state, error) {
	b, err := openBuckets(tx)
	if err != nil {
		return nil, err
	}
	return &state{
		tx:             tx,
		b:              b,
		checkpoint:     u64(b.meta.Get(keyCheckpoint)),
		events:         u64(b.meta.Get(keyEvents)),
		invoices:       make(map[string]*invoiceEntry),
		payments:       make(map[string]*paymentEntry),
		widgets:        make(map[string]*widgetEntry),
		merchants:      make(map[string]*merchantEntry),
		counters:       make(map[string]int64),
		balances:       make(map[string]decimal.Decimal),
		merchantTotals: make(map[string]decimal.Decimal),
		totals:         make(map[string]decimal.Decimal),
	}, nil
}

// apply applies one event whose data decodeData returned (nil: an unknown
// type, skipped). Events at or below the checkpoint are skipped; an event
// that does not follow the checkpoint is ErrSequenceGap.
func (s *state) apply(e *ledger.Event, data any) error {
	if e.Seq <= s.checkpoint {
		return nil
	}
	if e.Seq != s.checkpoint+1 {
		return fmt.Errorf("%w: sequence %d after checkpoint %d", ErrSequenceGap, e.Seq, s.checkpoint)
	}
	if data != nil {
		if err := s.dispatch(e, data); err != nil {
			return fmt.Errorf("sequence %d (%s on %s): %w", e.Seq, e.Type, e.Stream, err)
		}
	}
	s.checkpoint = e.Seq
	s.events++
	return nil
}

func (s *state) dispatch(e *ledger.Event, data any) error {
	switch d := data.(type) {
	case *commands.MerchantRegistered:
		return s.merchantRegistered(e, d)
	case *commands.MerchantSettingsChanged:
		return s.merchantSettings(e, d)
	case *commands.APIKeyIssued:
		return s.apiKeyIssued(e, d)
	case *commands.APIKeyRevoked:
		return s.apiKeyRevoked(e, d)
	case *commands.SigningSecretRotated:
		return s.secretRotated(e, d)
	case *commands.RateSet:
		return s.rateSet(e, d)
	case *commands.InvoiceCreated:
		return s.invoiceCreated(e, d)
	case *commands.InvoiceCancelled:
		return s.invoiceEnded(e, commands.InvoiceStatusCancelled, func(v *InvoiceView) { v.CancelReason = d.Reason })
	case *commands.InvoiceExpired:
		return s.invoiceEnded(e, commands.InvoiceStatusExpired, nil)
	case *commands.InvoicePaid:
		return s.invoicePaid(e, d)
	case *commands.PaymentCreated:
		return s.paymentCreated(e, d)
	case *commands.PaymentStatusChanged:
		return s.paymentStatus(e, d)
	case *commands.PaymentProcessed:
		return s.paymentProcessed(e, d)
	case *commands.WidgetCreated:
		return s.widgetCreated(e, d)
	case *commands.WidgetStatusChanged:
		return s.widgetStatus(e, d)
	}
	return fmt.Errorf("projections: no handler for %T", data)
}

// streamID returns the id part of a "<prefix>-<id>" stream.
func streamID(e *ledger.Event, prefix string) (string, error) {
	id, ok := strings.CutPrefix(e.Stream, prefix+"-")
	if !ok || id == "" {
		return "", fmt.Errorf("%w: %s event on stream %q", ErrMalformedEvent, e.Type, e.Stream)
	}
	return id, nil
}

// ---- merchants, keys, rates ----

func (s *state) merchant(id string) (*merchantEntry, error) {
	if m, ok := s.merchants[id]; ok {
		return m, nil
	}
	raw := s.b.merchants.Get([]byte(id))
	if raw == nil {
		return nil, fmt.Errorf("%w: merchant %q not registered", ErrInconsistent, id)
	}
	m := &merchantEntry{}
	if err := json.Unmarshal(raw, &m.v); err != nil {
		return nil, fmt.Errorf("%w: merchant %q: %v", ErrCorrupt, id, err)
	}
	s.merchants[id] = m
	return m, nil
}

func (s *state) merchantRegistered(e *ledger.Event, d *commands.MerchantRegistered) error {
	id, err := streamID(e, commands.StreamMerchant)
	if err != nil {
		return err
	}
	if d.MerchantID != id {
		return fmt.Errorf("%w: merchant_id %q on stream %q", ErrMalformedEvent, d.MerchantID, e.Stream)
	}
	if _, ok := s.merchants[id]; ok || s.b.merchants.Get([]byte(id)) != nil {
		return fmt.Errorf("%w: merchant %q registered twice", ErrInconsistent, id)
	}
	s.merchants[id] = &merchantEntry{dirty: true, v: MerchantView{
		ID:                     id,
		Name:                   d.Name,
		WebhookURL:             d.WebhookURL,
		CommissionPercent:      d.CommissionPercent.String(),
		InvoiceLifetimeSeconds: d.InvoiceLifetime,
		InvoicingEnabled:       d.InvoicingEnabled,
		Methods:                nonNil(d.Methods),
		APIKeys:                []APIKeyInfo{},
		RegisteredAt:           utc(d.RegisteredAt),
		UpdatedAt:              utc(e.Time),
		Version:                e.Version,
	}}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// touch loads the merchant of a merchant-stream event and stamps it.
func (s *state) touchMerchant(e *ledger.Event) (*MerchantView, error) {
	id, err := streamID(e, commands.StreamMerchant)
	if err != nil {
		return nil, err
	}
	m, err := s.merchant(id)
	if err != nil {
		return nil, err
	}
	m.dirty = true
	m.v.Version = e.Version
	m.v.UpdatedAt = utc(e.Time)
	return &m.v, nil
}

func (s *state) merchantSettings(e *ledger.Event, d *commands.MerchantSettingsChanged) error {
	v, err := s.touchMerchant(e)
	if err != nil {
		return err
	}
	if d.Name != nil {
		v.Name = *d.Name
	}
	if d.WebhookURL != nil {
		v.WebhookURL = *d.WebhookURL
	}
	if d.CommissionPercent != nil {
		v.CommissionPercent = d.CommissionPercent.String()
	}
	if d.InvoiceLifetime != nil {
		v.InvoiceLifetimeSeconds = *d.InvoiceLifetime
	}
	if d.InvoicingEnabled != nil {
		v.InvoicingEnabled = *d.InvoicingEnabled
	}
	if d.Methods != nil {
		v.Methods = nonNil(*d.Methods)
	}
	if d.Disabled != nil {
		v.Disabled = *d.Disabled
	}
	return nil
}

func (s *state) apiKeyIssued(e *ledger.Event, d *commands.APIKeyIssued) error {
	if d.KeyID == "" || d.KeyHash == "" {
		return fmt.Errorf("%w: api key without id or hash", ErrMalformedEvent)
	}
	v, err := s.touchMerchant(e)
	if err != nil {
		return err
	}
	if s.b.apiKeys.Get([]byte(d.KeyHash)) != nil {
		return fmt.Errorf("%w: api key hash issued twice", ErrInconsistent)
	}
	v.APIKeys = append(v.APIKeys, APIKeyInfo{KeyID: d.KeyID, Prefix: d.Prefix, Label: d.Label, IssuedAt: utc(d.IssuedAt)})
	rec, _ := json.Marshal(APIKey{MerchantID: v.ID, KeyID: d.KeyID})
	if err := s.b.apiKeys.Put([]byte(d.KeyHash), rec); err != nil {
		return err
	}
	return s.b.apiKeyIDs.Put(key(v.ID, d.KeyID), []byte(d.KeyHash))
}

func (s *state) apiKeyRevoked(e *ledger.Event, d *commands.APIKeyRevoked) error {
	v, err := s.touchMerchant(e)
	if err != nil {
		return err
	}
	found := false
	for i := range v.APIKeys {
		if v.APIKeys[i].KeyID == d.KeyID {
			v.APIKeys[i].RevokedAt = timePtr(d.RevokedAt)
			found = true
		}
	}
	hash := s.b.apiKeyIDs.Get(key(v.ID, d.KeyID))
	if !found || hash == nil {
		return fmt.Errorf("%w: merchant %q has no api key %q", ErrInconsistent, v.ID, d.KeyID)
	}
	rec, _ := json.Marshal(APIKey{MerchantID: v.ID, KeyID: d.KeyID, Revoked: true})
	return s.b.apiKeys.Put(slices.Clone(hash), rec)
}

func (s *state) secretRotated(e *ledger.Event, d *commands.SigningSecretRotated) error {
	v, err := s.touchMerchant(e)
	if err != nil {
		return err
	}
	if v.SecretVersion != 0 {
		v.PreviousSecretVersion = v.SecretVersion
	}
	v.SecretVersion = d.Version
	v.PreviousValidUntil = nil
	if !d.PreviousValidUntil.IsZero() {
		v.PreviousValidUntil = timePtr(d.PreviousValidUntil)
	}
	return nil
}

func (s *state) rateSet(e *ledger.Event, d *commands.RateSet) error {
	if d.Currency == "" {
		return fmt.Errorf("%w: rate without currency", ErrMalformedEvent)
	}
	rec, err := json.Marshal(Rate{Currency: d.Currency, Rate: commands.FormatRate(d.Rate), SetAt: utc(d.SetAt)})
	if err != nil {
		return err
	}
	return s.b.rates.Put([]byte(d.Currency), rec)
}

// ---- invoices ----

func invoiceDue(v *InvoiceView) time.Time {
	if v.Status == commands.InvoiceStatusPending {
		return v.ExpiresAt
	}
	return time.Time{}
}

func (s *state) invoice(id string) (*invoiceEntry, error) {
	if en, ok := s.invoices[id]; ok {
		return en, nil
	}
	raw := s.b.invoices.Get([]byte(id))
	if raw == nil {
		return nil, fmt.Errorf("%w: invoice %q not created", ErrInconsistent, id)
	}
	en := &invoiceEntry{stored: true}
	if err := json.Unmarshal(raw, &en.v); err != nil {
		return nil, fmt.Errorf("%w: invoice %q: %v", ErrCorrupt, id, err)
	}
	en.origStatus = en.v.Status
	en.origDue = invoiceDue(&en.v)
	s.invoices[id] = en
	return en, nil
}

func (s *state) invoiceCreated(e *ledger.Event, d *commands.InvoiceCreated) error {
	id, err := streamID(e, commands.StreamInvoice)
	if err != nil {
		return err
	}
	if d.InvoiceID != id || d.MerchantID == "" {
		return fmt.Errorf("%w: invoice_id %q, merchant_id %q on stream %q", ErrMalformedEvent, d.InvoiceID, d.MerchantID, e.Stream)
	}
	if _, ok := s.invoices[id]; ok || s.b.invoices.Get([]byte(id)) != nil {
		return fmt.Errorf("%w: invoice %q created twice", ErrInconsistent, id)
	}
	v := InvoiceView{
		InvoiceID:          id,
		ExternalID:         d.ExternalID,
		Amount:             fiatAmount(d.Amount, d.Currency),
		Currency:           d.Currency,
		ConversionRate:     commands.FormatRate(d.ConversionRate),
		MerchantUSDT:       usdt(d.MerchantUSDT),
		Status:             commands.InvoiceStatusPending,
		CustomerID:         d.CustomerID,
		Purpose:            d.Purpose,
		CallbackURL:        d.CallbackURL,
		SuccessURL:         d.SuccessURL,
		FailURL:            d.FailURL,
		CreatedAt:          utc(d.CreatedAt),
		ExpiresAt:          utc(d.ExpiresAt),
		MerchantID:         d.MerchantID,
		Source:             d.Source,
		Version:            e.Version,
		Method:             d.Method,
		Tracking:           d.Tracking,
		PaymentID:          d.PaymentID,
		StatusURL:          d.StatusURL,
		Account:            d.Account,
		Sender:             d.Sender,
		ExtraFields:        d.ExtraFields,
		WidgetID:           d.WidgetID,
		MerchantExternalID: d.MerchantExternalID,
		CommissionPercent:  d.CommissionPercent.String(),
		GrossUSDT:          usdt(d.GrossUSDT),
		FeeUSDT:            usdt(d.FeeUSDT),
		UpdatedAt:          utc(e.Time),
	}
	s.invoices[id] = &invoiceEntry{v: v, dirty: true}
	// Write-once indexes.
	idb := []byte(id)
	if d.ExternalID != "" {
		if err := s.b.externalIDs.Put(key(d.MerchantID, d.ExternalID), idb); err != nil {
			return err
		}
	}
	if d.PaymentID != "" {
		if err := s.b.paymentIDs.Put(key(d.MerchantID, d.PaymentID), idb); err != nil {
			return err
		}
	}
	if d.Tracking != "" {
		if err := s.b.tracking.Put([]byte(d.Tracking), idb); err != nil {
			return err
		}
	}
	if err := s.b.invByTime.Put(invTimeKey(d.MerchantID, v.CreatedAt, id), nil); err != nil {
		return err
	}
	s.counters[ctrInvoices+d.MerchantID]++
	return nil
}

// touchInvoice loads the invoice of an invoice-stream event and stamps it.
func (s *state) touchInvoice(e *ledger.Event) (*InvoiceView, error) {
	id, err := streamID(e, commands.StreamInvoice)
	if err != nil {
		return nil, err
	}
	en, err := s.invoice(id)
	if err != nil {
		return nil, err
	}
	en.dirty = true
	en.v.Version = e.Version
	en.v.UpdatedAt = utc(e.Time)
	return &en.v, nil
}

func (s *state) invoiceEnded(e *ledger.Event, status string, f func(*InvoiceView)) error {
	v, err := s.touchInvoice(e)
	if err != nil {
		return err
	}
	v.Status = status
	if f != nil {
		f(v)
	}
	return nil
}

func (s *state) invoicePaid(e *ledger.Event, d *commands.InvoicePaid) error {
	v, err := s.touchInvoice(e)
	if err != nil {
		return err
	}
	v.Status = commands.InvoiceStatusSuccess
	v.PaidAt = timePtr(d.PaidAt)
	v.Late = d.Late
	v.PaidBy = d.PaymentID
	v.PaidAmount = ""
	if !d.PaidAmount.IsZero() {
		v.PaidAmount = d.PaidAmount.String()
	}
	v.Overpaid = ""
	if !d.Overpaid.IsZero() {
		v.Overpaid = d.Overpaid.String()
	}
	return nil
}

// ---- payments ----

func (s *state) payment(stream string) (*paymentEntry, error) {
	if en, ok := s.payments[stream]; ok {
		return en, nil
	}
	raw := s.b.payments.Get([]byte(stream))
	if raw == nil {
		return nil, fmt.Errorf("%w: payment %q not created", ErrInconsistent, stream)
	}
	en := &paymentEntry{stored: true}
	if err := json.Unmarshal(raw, &en.v); err != nil {
		return nil, fmt.Errorf("%w: payment %q: %v", ErrCorrupt, stream, err)
	}
	en.origStatus = en.v.Status
	s.payments[stream] = en
	return en, nil
}

func (s *state) paymentCreated(e *ledger.Event, d *commands.PaymentCreated) error {
	id, err := streamID(e, commands.StreamPayment)
	if err != nil {
		return err
	}
	if d.PaymentID != id || d.InvoiceID == "" || d.MerchantID == "" {
		return fmt.Errorf("%w: payment_id %q, invoice_id %q, merchant_id %q on stream %q",
			ErrMalformedEvent, d.PaymentID, d.InvoiceID, d.MerchantID, e.Stream)
	}
	if _, ok := s.payments[e.Stream]; ok || s.b.payments.Get([]byte(e.Stream)) != nil {
		return fmt.Errorf("%w: payment %q created twice", ErrInconsistent, e.Stream)
	}
	s.payments[e.Stream] = &paymentEntry{dirty: true, v: PaymentView{
		ID:                  strconv.FormatUint(e.Seq, 10),
		GatewayID:           d.GatewayID,
		Status:              commands.PaymentStatusPending,
		Extra:               PaymentExtra(d.Extra),
		PaymentCurrency:     d.PaymentCurrency,
		PaymentAmount:       fiatAmount(d.PaymentAmount, d.PaymentCurrency),
		DestinationCurrency: d.DestinationCurrency,
		DestinationAmount:   usdt(d.DestinationAmount),
		CreatedAt:           utc(d.CreatedAt),
		Stream:              e.Stream,
		InvoiceID:           d.InvoiceID,
		MerchantID:          d.MerchantID,
		Method:              d.Method,
		UpdatedAt:           utc(e.Time),
		Version:             e.Version,
	}}
	sk := seqKey(e.Seq)
	if err := s.b.paymentSeq.Put(sk, []byte(e.Stream)); err != nil {
		return err
	}
	k := append(prefixKey(d.InvoiceID), sk...)
	return s.b.invoicePayments.Put(k, []byte(e.Stream))
}

func (s *state) touchPayment(e *ledger.Event) (*PaymentView, error) {
	if _, err := streamID(e, commands.StreamPayment); err != nil {
		return nil, err
	}
	en, err := s.payment(e.Stream)
	if err != nil {
		return nil, err
	}
	en.dirty = true
	en.v.Version = e.Version
	en.v.UpdatedAt = utc(e.Time)
	return &en.v, nil
}

// paymentTypeStatus is the status each status-change event type records.
var paymentTypeStatus = map[string]string{
	commands.TypePaymentConfirmed: commands.PaymentStatusConfirmed,
	commands.TypePaymentRejected:  commands.PaymentStatusRejected,
	commands.TypePaymentCancelled: commands.PaymentStatusCancelled,
	commands.TypePaymentFailed:    commands.PaymentStatusError,
}

func (s *state) paymentStatus(e *ledger.Event, d *commands.PaymentStatusChanged) error {
	status := paymentTypeStatus[e.Type]
	if d.Status != "" && d.Status != status {
		return fmt.Errorf("%w: status %q in a %s event", ErrMalformedEvent, d.Status, e.Type)
	}
	v, err := s.touchPayment(e)
	if err != nil {
		return err
	}
	v.Status = status
	v.Reason = d.Reason
	return nil
}

func (s *state) paymentProcessed(e *ledger.Event, d *commands.PaymentProcessed) error {
	v, err := s.touchPayment(e)
	if err != nil {
		return err
	}
	v.Status = commands.PaymentStatusProcessed
	v.Allocation = d.Allocation
	v.Late = d.Late
	v.PaidAmount = fiatAmount(d.PaidAmount, v.PaymentCurrency)
	v.Reason = ""
	return s.post(d.Postings)
}

// ---- balances ----

// accountOwner splits a posting account into the merchant it belongs to and
// the account's name: "merchant_available:m1" is m1's "merchant_available".
// Only merchant_* accounts carry a merchant suffix (gateway_clearing's
// suffix is a gateway id); every other account is a system account, kept
// whole under systemMerchant.
func accountOwner(account string) (merchant, name string) {
	if strings.HasPrefix(account, "merchant_") {
		if n, m, ok := strings.Cut(account, ":"); ok && m != "" {
			return m, n
		}
	}
	return systemMerchant, account
}

// post adds an event's postings to the balances, after checking that they
// sum to zero in every currency.
func (s *state) post(ps []commands.Posting) error {
	if len(ps) == 0 {
		return nil
	}
	var sums map[string]decimal.Decimal
	for _, p := range ps {
		if p.Account == "" || p.Currency == "" {
			return fmt.Errorf("%w: posting without account or currency", ErrMalformedEvent)
		}
		if sums == nil {
			sums = make(map[string]decimal.Decimal, 2)
		}
		sums[p.Currency] = sums[p.Currency].Add(p.Amount)
	}
	for cur, sum := range sums {
		if !sum.IsZero() {
			return fmt.Errorf("%w: %s postings sum to %s", ErrUnbalanced, cur, sum)
		}
	}
	for _, p := range ps {
		m, name := accountOwner(p.Account)
		bk := string(appendSep(s.key[:0], m, name, p.Currency))
		s.balances[bk] = s.balances[bk].Add(p.Amount)
		mk := string(appendSep(s.key[:0], m, p.Currency))
		s.merchantTotals[mk] = s.merchantTotals[mk].Add(p.Amount)
		s.totals[p.Currency] = s.totals[p.Currency].Add(p.Amount)
	}
	return nil
}

// ---- widgets ----

func widgetDue(v *WidgetView) time.Time {
	if v.Status == commands.WidgetStatusActive && v.ExpiresAt != nil {
		return *v.ExpiresAt
	}
	return time.Time{}
}

func (s *state) widget(id string) (*widgetEntry, error) {
	if en, ok := s.widgets[id]; ok {
		return en, nil
	}
	raw := s.b.widgets.Get([]byte(id))
	if raw == nil {
		return nil, fmt.Errorf("%w: widget %q not created", ErrInconsistent, id)
	}
	en := &widgetEntry{stored: true}
	if err := json.Unmarshal(raw, &en.v); err != nil {
		return nil, fmt.Errorf("%w: widget %q: %v", ErrCorrupt, id, err)
	}
	en.origStatus = en.v.Status
	en.origDue = widgetDue(&en.v)
	s.widgets[id] = en
	return en, nil
}

func (s *state) widgetCreated(e *ledger.Event, d *commands.WidgetCreated) error {
	id, err := streamID(e, commands.StreamWidget)
	if err != nil {
		return err
	}
	if d.WidgetID != id || d.MerchantID == "" {
		return fmt.Errorf("%w: widget_id %q, merchant_id %q on stream %q", ErrMalformedEvent, d.WidgetID, d.MerchantID, e.Stream)
	}
	if _, ok := s.widgets[id]; ok || s.b.widgets.Get([]byte(id)) != nil {
		return fmt.Errorf("%w: widget %q created twice", ErrInconsistent, id)
	}
	v := WidgetView{
		ID:                 id,
		Type:               d.Kind,
		Status:             commands.WidgetStatusActive,
		Currencies:         nonNil(d.Currencies),
		Description:        d.Description,
		LogoURL:            d.LogoURL,
		ReturnURL:          d.ReturnURL,
		SupportURL:         d.SupportURL,
		MerchantExternalID: d.MerchantExternalID,
		FiatCurrency:       d.FiatCurrency,
		CreatedAt:          utc(d.CreatedAt),
		MerchantID:         d.MerchantID,
		Version:            e.Version,
		UpdatedAt:          utc(e.Time),
	}
	if d.FiatCurrency != "" || !d.FiatAmount.IsZero() {
		v.FiatAmount = fiatAmount(d.FiatAmount, d.FiatCurrency)
	}
	if !d.ExpiresAt.IsZero() {
		v.ExpiresAt = timePtr(d.ExpiresAt)
	}
	s.widgets[id] = &widgetEntry{v: v, dirty: true}
	if err := s.b.widByTime.Put(invTimeKey(d.MerchantID, v.CreatedAt, id), nil); err != nil {
		return err
	}
	s.counters[ctrWidgets+d.MerchantID]++
	return nil
}

var widgetStatuses = map[string]bool{
	commands.WidgetStatusActive:   true,
	commands.WidgetStatusDisabled: true,
	commands.WidgetStatusExpired:  true,
}

func (s *state) widgetStatus(e *ledger.Event, d *commands.WidgetStatusChanged) error {
	status := d.Status
	if e.Type == commands.TypeWidgetExpired {
		if status != "" && status != commands.WidgetStatusExpired {
			return fmt.Errorf("%w: status %q in a %s event", ErrMalformedEvent, status, e.Type)
		}
		status = commands.WidgetStatusExpired
	}
	if !widgetStatuses[status] {
		return fmt.Errorf("%w: widget status %q", ErrMalformedEvent, status)
	}
	id, err := streamID(e, commands.StreamWidget)
	if err != nil {
		return err
	}
	en, err := s.widget(id)
	if err != nil {
		return err
	}
	en.dirty = true
	en.v.Version = e.Version
	en.v.UpdatedAt = utc(e.Time)
	en.v.Status = status
	return nil
}

// ---- flush ----

// flush writes every changed view, its index moves and counter changes, the
// balance deltas and the checkpoint. Keys are written in sorted order, which
// keeps bbolt's page accesses local.
func (s *state) flush() error {
	for _, id := range sortedDirty(s.merchants, func(m *merchantEntry) bool { return m.dirty }) {
		m := s.merchants[id]
		if err := putJSON(s.b.merchants, []byte(id), &m.v); err != nil {
			return err
		}
		m.dirty = false
	}
	for _, id := range sortedDirty(s.invoices, func(en *invoiceEntry) bool { return en.dirty }) {
		if err := s.flushInvoice(id, s.invoices[id]); err != nil {
			return err
		}
	}
	for _, id := range sortedDirty(s.payments, func(en *paymentEntry) bool { return en.dirty }) {
		en := s.payments[id]
		if err := putJSON(s.b.payments, []byte(id), &en.v); err != nil {
			return err
		}
		if !en.stored || en.origStatus != en.v.Status {
			if en.stored {
				s.counters[ctrPaymentStatus+en.v.MerchantID+"\x00"+en.origStatus]--
			}
			s.counters[ctrPaymentStatus+en.v.MerchantID+"\x00"+en.v.Status]++
		}
		en.stored, en.origStatus, en.dirty = true, en.v.Status, false
	}
	for _, id := range sortedDirty(s.widgets, func(en *widgetEntry) bool { return en.dirty }) {
		if err := s.flushWidget(id, s.widgets[id]); err != nil {
			return err
		}
	}
	if err := flushCounters(s.b.counters, s.counters); err != nil {
		return err
	}
	for _, m := range []struct {
		b *bbolt.Bucket
		d map[string]decimal.Decimal
	}{{s.b.balances, s.balances}, {s.b.merchantTotals, s.merchantTotals}, {s.b.totals, s.totals}} {
		if err := flushDecimals(m.b, m.d); err != nil {
			return err
		}
	}
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], s.checkpoint)
	if err := s.b.meta.Put(keyCheckpoint, n[:]); err != nil {
		return err
	}
	binary.BigEndian.PutUint64(n[:], s.events)
	return s.b.meta.Put(keyEvents, n[:])
}

func (s *state) flushInvoice(id string, en *invoiceEntry) error {
	v := &en.v
	if err := putJSON(s.b.invoices, []byte(id), v); err != nil {
		return err
	}
	if !en.stored || en.origStatus != v.Status {
		if en.stored {
			if err := s.b.invByStatus.Delete(invStatusKey(v.MerchantID, en.origStatus, v.CreatedAt, id)); err != nil {
				return err
			}
			s.counters[ctrInvoiceStatus+v.MerchantID+"\x00"+en.origStatus]--
		}
		if err := s.b.invByStatus.Put(invStatusKey(v.MerchantID, v.Status, v.CreatedAt, id), nil); err != nil {
			return err
		}
		s.counters[ctrInvoiceStatus+v.MerchantID+"\x00"+v.Status]++
	}
	if due := invoiceDue(v); !due.Equal(en.origDue) {
		if err := moveDue(s.b.due, dueInvoice, id, v.MerchantID, en.origDue, due); err != nil {
			return err
		}
		en.origDue = due
	}
	en.stored, en.origStatus, en.dirty = true, v.Status, false
	return nil
}

func (s *state) flushWidget(id string, en *widgetEntry) error {
	v := &en.v
	if err := putJSON(s.b.widgets, []byte(id), v); err != nil {
		return err
	}
	if !en.stored || en.origStatus != v.Status {
		if en.stored {
			s.counters[ctrWidgetStatus+v.MerchantID+"\x00"+en.origStatus]--
		}
		s.counters[ctrWidgetStatus+v.MerchantID+"\x00"+v.Status]++
	}
	if due := widgetDue(v); !due.Equal(en.origDue) {
		if err := moveDue(s.b.due, dueWidget, id, v.MerchantID, en.origDue, due); err != nil {
			return err
		}
		en.origDue = due
	}
	en.stored, en.origStatus, en.dirty = true, v.Status, false
	return nil
}

func moveDue(b *bbolt.Bucket, kind byte, id, merchant string, from, to time.Time) error {
	if !from.IsZero() {
		if err := b.Delete(dueKey(from, kind, id)); err != nil {
			return err
		}
	}
	if !to.IsZero() {
		return b.Put(dueKey(to, kind, id), []byte(merchant))
	}
	return nil
}

func sortedDirty[E any](m map[string]E, dirty func(E) bool) []string {
	ids := make([]string, 0, len(m))
	for id, e := range m {
		if dirty(e) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func putJSON(b *bbolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}

// flushCounters adds the deltas to the stored counters; a counter back at
// zero is deleted, so views built along different paths compare equal.
func flushCounters(b *bbolt.Bucket, deltas map[string]int64) error {
	keys := make([]string, 0, len(deltas))
	for k, d := range deltas {
		if d != 0 {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		n := int64(u64(b.Get([]byte(k)))) + deltas[k]
		var err error
		switch {
		case n < 0:
			err = fmt.Errorf("%w: counter %q below zero", ErrCorrupt, k)
		case n == 0:
			err = b.Delete([]byte(k))
		default:
			err = b.Put([]byte(k), binary.BigEndian.AppendUint64(nil, uint64(n)))
		}
		if err != nil {
			return err
		}
	}
	clear(deltas)
	return nil
}

// flushDecimals adds decimal deltas to stored sums, kept as canonical
// decimal text (decimal.String: no trailing zeros), so that equal sums are
// equal bytes whatever path produced them.
func flushDecimals(b *bbolt.Bucket, deltas map[string]decimal.Decimal) error {
	keys := make([]string, 0, len(deltas))
	for k := range deltas {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		sum := deltas[k]
		if old := b.Get([]byte(k)); old != nil {
			d, err := decimal.NewFromString(string(old))
			if err != nil {
				return fmt.Errorf("%w: sum %q: %v", ErrCorrupt, k, err)
			}
			sum = sum.Add(d)
		}
		if err := b.Put([]byte(k), []byte(sum.String())); err != nil {
			return err
		}
	}
	clear(deltas)
	return nil
}
