package projections

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
// never re-read from the JSON just written. Index writes are queued (ops)
// and applied at flush in key order. API keys, rates and gateway switches,
// rare, are written at once.
type state struct {
	tx *bbolt.Tx
	b  buckets

	checkpoint uint64
	events     uint64
	start      uint64 // the checkpoint when the transaction (or Apply) began

	// paying is the last payment.processed with allocation invoice this
	// transaction applied, or the one the last transaction ended with
	// (keyPaying): its sequence, its payment's stream, its at and its
	// paid_amount. The very next event must be the invoice.paid it leads
	// to (one append holds both, payment.processed first), with the same
	// time and amount: see apply, paidRightAfter and paidAsProcessed.
	paying awaitedPaid

	invoices  map[string]*invoiceEntry
	payments  map[string]*paymentEntry
	widgets   map[string]*widgetEntry
	merchants map[string]*merchantEntry

	counters       map[string]int64
	balances       map[string]*sum // balance key -> delta
	merchantTotals map[string]*sum
	totals         map[string]*sum

	// ops are index puts and deletes, applied at flush in key order: bbolt
	// splits nodes only at commit, so keys inserted out of order into a
	// large transaction would move ever larger nodes.
	ops [numIndexes][]op

	// carried, when set (a rebuild), keeps the views the last transaction
	// wrote, so that the next one takes them as they are instead of reading
	// and decoding them again.
	carried *carried

	// viewsOnly: flush writes the views and leaves out the index
	// operations, counters and sums (Projector.ViewsOnly).
	viewsOnly bool

	// appending: the events are one append's (Projector.ApplyAppend), not
	// a batch of a log that already holds them.
	appending bool

	lines []commands.PostingLine[num] // checkAllocated's, kept for the next event

	puts []viewPut // flush's views to write, kept for the next flush
	slab []byte    // keys and encoded views, carved off until commit (bbolt keeps the slices)
	key  []byte    // scratch
}

const slabSize = 1 << 20

// nextSlab returns a fresh slab twice the size of the last, from 16 KiB up
// to slabSize: an inline Apply of one event allocates little, a rebuild's
// large transactions soon get megabyte slabs.
func nextSlab(last []byte) []byte {
	return make([]byte, 0, min(max(2*cap(last), 16<<10), slabSize))
}

// hold copies b into the slab: keys and values bbolt keeps until commit, at
// the cost of one allocation per megabyte.
func (s *state) hold(b []byte) []byte {
	if cap(s.slab)-len(s.slab) < len(b) {
		if len(b) > slabSize/8 {
			return bytes.Clone(b)
		}
		s.slab = nextSlab(s.slab)
	}
	start := len(s.slab)
	s.slab = append(s.slab, b...)
	return s.slab[start:len(s.slab):len(s.slab)]
}

// encode encodes a view into the state's slab.
func (s *state) encode(v any) ([]byte, error) {
	e := encoder{slab: s.slab}
	b, err := e.encode(v)
	s.slab = e.slab
	return b, err
}

// encoder encodes views into a slab of its own.
type encoder struct{ slab []byte }

// encode encodes a view into the slab and returns exactly its bytes.
func (e *encoder) encode(v any) ([]byte, error) {
	if cap(e.slab)-len(e.slab) < 4<<10 {
		e.slab = nextSlab(e.slab)
	}
	start := len(e.slab)
	b, err := encodeView(e.slab, v)
	if err != nil {
		return nil, err
	}
	if cap(b) != cap(e.slab) { // outgrew the slab: b is its own allocation
		return b[start:], nil
	}
	e.slab = b
	return b[start:len(b):len(b)], nil
}

type op struct {
	key, val []byte
	n        int // order of arrival: among equal keys the last one wins, as it would applied one by one
	del      bool
}

// The index buckets written through ops.
const (
	ixExternalIDs = iota
	ixPaymentIDs
	ixTracking
	ixPaymentSeq
	ixInvoicePayments
	ixInvByTime
	ixInvByStatus
	ixWidByTime
	ixDue
	numIndexes
)

func (s *state) index(ix int) *bbolt.Bucket {
	switch ix {
	case ixExternalIDs:
		return s.b.externalIDs
	case ixPaymentIDs:
		return s.b.paymentIDs
	case ixTracking:
		return s.b.tracking
	case ixPaymentSeq:
		return s.b.paymentSeq
	case ixInvoicePayments:
		return s.b.invoicePayments
	case ixInvByTime:
		return s.b.invByTime
	case ixInvByStatus:
		return s.b.invByStatus
	case ixWidByTime:
		return s.b.widByTime
	default:
		return s.b.due
	}
}

func (s *state) put(ix int, k, v []byte) {
	s.ops[ix] = append(s.ops[ix], op{key: k, val: v, n: len(s.ops[ix])})
}

func (s *state) del(ix int, k []byte) {
	s.ops[ix] = append(s.ops[ix], op{key: k, del: true, n: len(s.ops[ix])})
}

// flushOps applies the index operations, which encodeAndSort sorted.
func (s *state) flushOps() error {
	for ix, ops := range s.ops {
		b := s.index(ix)
		for _, o := range ops {
			var err error
			if o.del {
				err = b.Delete(o.key)
			} else {
				err = b.Put(o.key, o.val)
			}
			if err != nil {
				return err
			}
		}
		clear(ops) // drop the references to this transaction's keys
		s.ops[ix] = ops[:0]
	}
	return nil
}

type buckets struct {
	meta, invoices, payments, widgets, merchants, apiKeys, apiKeyIDs, rates,
	externalIDs, paymentIDs, tracking, paymentSeq, invoicePayments, invByTime,
	invByStatus, widByTime, counters, due, balances, merchantTotals, totals, gateways *bbolt.Bucket
}

// packPages makes bbolt fill pages to 95% instead of 50% when it splits
// nodes at commit. A rebuild writes every key in order, so half-empty pages
// would only double what it writes.
func (b *buckets) packPages() {
	for _, bk := range []*bbolt.Bucket{b.meta, b.invoices, b.payments, b.widgets, b.merchants, b.apiKeys,
		b.apiKeyIDs, b.rates, b.externalIDs, b.paymentIDs, b.tracking, b.paymentSeq, b.invoicePayments,
		b.invByTime, b.invByStatus, b.widByTime, b.counters, b.due, b.balances, b.merchantTotals, b.totals, b.gateways} {
		bk.FillPercent = 0.95
	}
}

func openBuckets(tx *bbolt.Tx) (buckets, error) {
	var b buckets
	ptrs := []**bbolt.Bucket{&b.meta, &b.invoices, &b.payments, &b.widgets, &b.merchants, &b.apiKeys,
		&b.apiKeyIDs, &b.rates, &b.externalIDs, &b.paymentIDs, &b.tracking, &b.paymentSeq,
		&b.invoicePayments, &b.invByTime, &b.invByStatus, &b.widByTime, &b.counters, &b.due,
		&b.balances, &b.merchantTotals, &b.totals, &b.gateways}
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
	v          *InvoiceView
	stored     bool // in the bucket before this batch
	origStatus string
	origDue    time.Time // zero: not in the due index
	dirty      bool
}

type paymentEntry struct {
	v          *PaymentView
	stored     bool
	origStatus string
	dirty      bool
}

type widgetEntry struct {
	v          *WidgetView
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
	s := &state{
		invoices:       make(map[string]*invoiceEntry),
		payments:       make(map[string]*paymentEntry),
		widgets:        make(map[string]*widgetEntry),
		merchants:      make(map[string]*merchantEntry),
		counters:       make(map[string]int64),
		balances:       make(map[string]*sum),
		merchantTotals: make(map[string]*sum),
		totals:         make(map[string]*sum),
	}
	return s, s.reset(tx)
}

// reset starts the state on a new transaction, keeping its maps' and
// slices' memory (a rebuild runs one transaction after another). The views
// cached so far are dropped: flush wrote them.
func (s *state) reset(tx *bbolt.Tx) error {
	b, err := openBuckets(tx)
	if err != nil {
		return err
	}
	s.tx, s.b = tx, b
	s.checkpoint = u64(b.meta.Get(keyCheckpoint))
	s.events = u64(b.meta.Get(keyEvents))
	s.start, s.paying = s.checkpoint, awaitedPaid{}
	// The last transaction may have ended right after a payment.processed
	// whose invoice.paid is then this one's first event (keyPaying).
	if raw := b.meta.Get(keyPaying); raw != nil {
		a, err := decodePaying(raw)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, keyPaying, err)
		}
		if a.seq == s.checkpoint {
			s.paying = a
		}
	}
	if c := s.carried; c != nil {
		c.keep(s)
	}
	clear(s.invoices)
	clear(s.payments)
	clear(s.widgets)
	clear(s.merchants)
	clear(s.counters)
	clear(s.balances)
	clear(s.merchantTotals)
	clear(s.totals)
	for ix := range s.ops {
		clear(s.ops[ix])
		s.ops[ix] = s.ops[ix][:0]
	}
	// The slab is kept: what was carved from it is never written again, so
	// bbolt's references into it stay valid, and the rest is free to use.
	return nil
}

// apply merges one prepared event (nil: an unknown type, skipped) into the
// views. Events at or below the checkpoint are skipped; an event that does
// not follow the checkpoint is ErrSequenceGap.
func (s *state) apply(e *ledger.Event, p any) error {
	if e.Seq <= s.checkpoint {
		return nil
	}
	if e.Seq != s.checkpoint+1 {
		return fmt.Errorf("%w: sequence %d after checkpoint %d", ErrSequenceGap, e.Seq, s.checkpoint)
	}
	if s.appending && s.paying.seq > s.start && s.paying.seq == s.checkpoint && e.Type != commands.TypeInvoicePaid {
		// In one append the commands write the invoice.paid right after
		// its payment.processed (whose invoice.paid it is, invoiceUpdate
		// checks: paidRightAfter). Only there: a log may already hold a
		// payment.processed without it (restored from the stream, which
		// carries each event on its own, up to a message the primary had
		// not yet followed with the next; or written before this rule),
		// and a projector that refused whatever comes next would refuse
		// every later append, and a rebuild of the log once anything
		// followed it. Such a log projects, and the audit reports it.
		return fmt.Errorf("sequence %d (%s on %s): %w: the %s (allocation invoice) of %s at sequence %d is not followed by its invoice.paid (one append holds both)",
			e.Seq, e.Type, e.Stream, ErrInconsistent, commands.TypePaymentProcessed, s.paying.stream, s.paying.seq)
	}
	if p != nil {
		if err := s.dispatch(e, p); err != nil {
			return fmt.Errorf("sequence %d (%s on %s): %w", e.Seq, e.Type, e.Stream, err)
		}
	}
	s.checkpoint = e.Seq
	s.events++
	return nil
}

func (s *state) dispatch(e *ledger.Event, p any) error {
	switch p := p.(type) {
	case *pMerchant:
		return s.merchantEvent(e, p)
	case *pRate:
		return s.b.rates.Put([]byte(p.currency), p.rec)
	case *pGateway:
		return s.b.gateways.Put([]byte(p.id), p.rec)
	case *pInvoiceCreated:
		return s.invoiceCreated(p)
	case *pInvoiceUpdate:
		return s.invoiceUpdate(e, p)
	case *pPaymentCreated:
		return s.paymentCreated(e, p)
	case *pPaymentUpdate:
		return s.paymentUpdate(e, p)
	case *pReceiptHeld:
		return s.receiptHeld(e, p)
	case *pWidgetCreated:
		return s.widgetCreated(p)
	case *pWidgetUpdate:
		return s.widgetUpdate(e, p)
	}
	return fmt.Errorf("projections: no handler for %T", p)
}

// ---- merchants and keys ----

func (s *state) merchant(id string) (*merchantEntry, error) {
	if m, ok := s.merchants[id]; ok {
		return m, nil
	}
	raw := s.b.merchants.Get([]byte(id))
	if raw == nil {
		return nil, fmt.Errorf("%w: merchant %q not registered", ErrInconsistent, id)
	}
	m := &merchantEntry{}
	if err := DecodeView(raw, &m.v); err != nil {
		return nil, fmt.Errorf("%w: merchant %q: %v", ErrCorrupt, id, err)
	}
	s.merchants[id] = m
	return m, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

func (s *state) merchantEvent(e *ledger.Event, p *pMerchant) error {
	if d, ok := p.data.(*commands.MerchantRegistered); ok {
		if _, ok := s.merchants[p.id]; ok || s.b.merchants.Get([]byte(p.id)) != nil {
			return fmt.Errorf("%w: merchant %q registered twice", ErrInconsistent, p.id)
		}
		s.merchants[p.id] = &merchantEntry{dirty: true, v: MerchantView{
			ID:                     p.id,
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
	m, err := s.merchant(p.id)
	if err != nil {
		return err
	}
	m.dirty = true
	v := &m.v
	v.Version = e.Version
	v.UpdatedAt = utc(e.Time)
	switch d := p.data.(type) {
	case *commands.MerchantSettingsChanged:
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
	case *commands.APIKeyIssued:
		if d.KeyID == "" || d.KeyHash == "" {
			return fmt.Errorf("%w: api key without id or hash", ErrMalformedEvent)
		}
		if s.b.apiKeys.Get([]byte(d.KeyHash)) != nil || s.b.apiKeyIDs.Get(key(v.ID, d.KeyID)) != nil {
			return fmt.Errorf("%w: api key issued twice", ErrInconsistent)
		}
		v.APIKeys = append(v.APIKeys, APIKeyInfo{KeyID: d.KeyID, Prefix: d.Prefix, Label: d.Label, IssuedAt: utc(d.IssuedAt)})
		rec, _ := EncodeView(&APIKey{MerchantID: v.ID, KeyID: d.KeyID})
		if err := s.b.apiKeys.Put([]byte(d.KeyHash), rec); err != nil {
			return err
		}
		return s.b.apiKeyIDs.Put(key(v.ID, d.KeyID), []byte(d.KeyHash))
	case *commands.APIKeyRevoked:
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
		rec, _ := EncodeView(&APIKey{MerchantID: v.ID, KeyID: d.KeyID, Revoked: true})
		return s.b.apiKeys.Put(slices.Clone(hash), rec)
	case *commands.SigningSecretRotated:
		if v.SecretVersion != 0 {
			v.PreviousSecretVersion = v.SecretVersion
		}
		v.SecretVersion = d.Version
		v.PreviousValidUntil = nil
		if !d.PreviousValidUntil.IsZero() {
			v.PreviousValidUntil = timePtr(d.PreviousValidUntil)
		}
	}
	return nil
}

// ---- invoices ----

func invoiceDue(v *InvoiceView) time.Time {
	if v.Status == commands.InvoiceStatusPending {
		return v.ExpiresAt
	}
	return time.Time{}
}

// cached returns the write-back cache's entry for a view, reading and
// decoding the stored view into a new entry (made by entry) the first time
// the batch touches it. kind names the view in errors.
func cached[V, E any](cache map[string]*E, carried map[string]*V, b *bbolt.Bucket, kind, id string, entry func(*V) *E) (*E, error) {
	if en, ok := cache[id]; ok {
		return en, nil
	}
	if v, ok := carried[id]; ok {
		en := entry(v)
		cache[id] = en
		return en, nil
	}
	raw := b.Get([]byte(id))
	if raw == nil {
		return nil, fmt.Errorf("%w: %s %q not created", ErrInconsistent, kind, id)
	}
	v := new(V)
	if err := DecodeView(raw, v); err != nil {
		return nil, fmt.Errorf("%w: %s %q: %v", ErrCorrupt, kind, id, err)
	}
	en := entry(v)
	cache[id] = en
	return en, nil
}

func (s *state) invoice(id string) (*invoiceEntry, error) {
	return cached(s.invoices, s.carried.invoiceViews(), s.b.invoices, "invoice", id, func(v *InvoiceView) *invoiceEntry {
		return &invoiceEntry{v: v, stored: true, origStatus: v.Status, origDue: invoiceDue(v)}
	})
}

func (s *state) invoiceCreated(p *pInvoiceCreated) error {
	v := &p.v
	id := v.InvoiceID
	if _, ok := s.invoices[id]; ok || s.b.invoices.Get([]byte(id)) != nil {
		return fmt.Errorf("%w: invoice %q created twice", ErrInconsistent, id)
	}
	s.invoices[id] = &invoiceEntry{v: v, dirty: true}
	// Write-once indexes.
	idb := s.hold([]byte(id))
	if v.ExternalID != "" {
		s.put(ixExternalIDs, s.hold(appendSep(s.key[:0], v.MerchantID, v.ExternalID)), idb)
	}
	if v.PaymentID != "" {
		s.put(ixPaymentIDs, s.hold(appendSep(s.key[:0], v.MerchantID, v.PaymentID)), idb)
	}
	if v.Tracking != "" {
		s.put(ixTracking, s.hold([]byte(v.Tracking)), idb)
	}
	s.key = appendCreatedKey(s.key[:0], v.MerchantID, v.CreatedAt, id)
	s.put(ixInvByTime, s.hold(s.key), []byte{})
	s.counters[ctrInvoices+v.MerchantID]++
	return nil
}

func (s *state) invoiceUpdate(e *ledger.Event, p *pInvoiceUpdate) error {
	en, err := s.invoice(p.id)
	if err != nil {
		return err
	}
	if _, ok := commands.NextInvoiceStatus(en.v.Status, e.Type); !ok {
		return fmt.Errorf("%w: %s of an invoice in status %s", ErrIllegalTransition, e.Type, en.v.Status)
	}
	// The paying payment is one of the invoice's own, and its
	// payment.processed (allocation invoice) is the event right before:
	// the commands append the two together, so the payment is in hand (in
	// the batch's cache), not read.
	var pay *paymentEntry
	if pd := p.paid; pd != nil {
		if pay, err = s.payment(pd.by); err != nil {
			return fmt.Errorf("invoice %s paid by: %w", p.id, err)
		}
		if pay.v.InvoiceID != p.id {
			return fmt.Errorf("%w: invoice %s paid by %s, a payment of invoice %s", ErrInconsistent, p.id, pd.by, pay.v.InvoiceID)
		}
		if !s.paidRightAfter(e.Seq, pd.by) {
			return fmt.Errorf("%w: invoice %s paid by %s, which was not processed (allocation invoice) right before, in the same append", ErrInconsistent, p.id, pd.by)
		}
		if err := s.paidAsProcessed(pd); err != nil {
			return fmt.Errorf("invoice %s paid by %s: %w", p.id, pd.by, err)
		}
		if err := checkLate(e.Type, pd.late, pd.at, en.v); err != nil {
			return err
		}
	}
	en.dirty = true
	v := en.v
	v.Version = e.Version
	v.UpdatedAt = utc(e.Time)
	v.Status = p.status
	if p.status == commands.InvoiceStatusCancelled {
		v.CancelReason = p.reason
	}
	if pd := p.paid; pd != nil {
		at := pd.at
		v.PaidAt = &at
		v.Late = pd.late
		v.PaidBy = pd.by
		// Amounts are in the paying payment's currency (the invoice's, or
		// its method's): shown at its minor units, as the payment shows them.
		if !pd.amount.isZero() {
			v.PaidAmount = currencyAmount(pd.amount, pay.v.PaymentCurrency)
		}
		if !pd.excess.isZero() {
			v.Overpaid = currencyAmount(pd.excess, pay.v.PaymentCurrency)
		}
	}
	return nil
}

// checkLate returns ErrIllegalTransition when an event of type typ at time
// at for invoice inv (as it was before the event) is flagged late where
// the commands would not flag it, or the other way round (commands.PaidLate).
func checkLate(typ string, late bool, at time.Time, inv *InvoiceView) error {
	if late == commands.PaidLate(inv.Status, at, inv.ExpiresAt) {
		return nil
	}
	not := ""
	if !late {
		not = "not "
	}
	return fmt.Errorf("%w: %s %sflagged late at %s, for invoice %s in status %s with expires_at %s", ErrIllegalTransition,
		typ, not, at.Format(time.RFC3339Nano), inv.InvoiceID, inv.Status, inv.ExpiresAt.Format(time.RFC3339Nano))
}

// awaitedPaid is a payment.processed with allocation invoice, whose
// invoice.paid must come next, with its time and amount.
type awaitedPaid struct {
	seq    uint64
	stream string    // the payment's
	at     time.Time // its at: the invoice.paid's paid_at
	paid   num       // its paid_amount: the invoice.paid's
}

// appendPaying appends keyPaying's record of a (views format 7): tagPaying,
// then the sequence, the stream, at and the paid amount (as decimal text)
// in codec.go's binary form. Format 6's record was the sequence (8 bytes)
// and the stream; Init rebuilds such views from the log.
func appendPaying(dst []byte, a awaitedPaid) ([]byte, error) {
	w := binEnc{b: append(dst, tagPaying)}
	w.uint(a.seq)
	w.str(a.stream)
	w.time(a.at)
	w.str(a.paid.plain())
	return w.b, w.err
}

// decodePaying decodes appendPaying's record.
func decodePaying(raw []byte) (awaitedPaid, error) {
	d := newBinDec(raw, tagPaying)
	a := awaitedPaid{seq: d.uint(), stream: d.str(), at: d.time()}
	paid := d.raw()
	if err := d.done(); err != nil {
		return awaitedPaid{}, fmt.Errorf("%w: record of %d bytes", err, len(raw))
	}
	n, ok := parseNum(paid)
	if !ok {
		return awaitedPaid{}, fmt.Errorf("%w: paid amount %q", errViewCodec, paid)
	}
	a.paid = n
	return a, nil
}

// paidRightAfter reports whether the event before seq was the
// payment.processed, allocation invoice, of payment stream by: applied in
// this transaction, or the last one's last event (reset read keyPaying).
func (s *state) paidRightAfter(seq uint64, by string) bool {
	return s.paying.seq != 0 && s.paying.seq == seq-1 && s.paying.stream == by
}

// paidAsProcessed returns ErrInconsistent when an invoice.paid, right
// after its payment.processed (paidRightAfter), has another paid_at than
// that event's at, or another paid_amount: commands.decideProcessing sets
// both events' from the same values, in every version of it. Amounts are
// compared as numbers.
func (s *state) paidAsProcessed(pd *pInvoicePaid) error {
	x := &s.paying
	if !pd.at.Equal(x.at) {
		return fmt.Errorf("%w: paid_at %s, but the %s at sequence %d is at %s (the commands give both the same time)", ErrInconsistent,
			pd.at.Format(time.RFC3339Nano), commands.TypePaymentProcessed, x.seq, x.at.Format(time.RFC3339Nano))
	}
	if !pd.amount.equal(x.paid) {
		return fmt.Errorf("%w: paid_amount %s, but the %s at sequence %d has paid_amount %s (the commands give both the same amount)", ErrInconsistent,
			pd.amount.plain(), commands.TypePaymentProcessed, x.seq, x.paid.plain())
	}
	return nil
}

// invoicePayable returns what a payment's creation needs of invoice id: from
// the views in hand (this batch's, or a rebuild's last transaction's) when
// the invoice is there, else from its stored view's status, expiry and
// merchant alone (invoicePayable in codec.go). The rest of the view is not
// decoded: inline, a payment's creation touches its invoice for nothing
// else.
func (s *state) invoicePayable(id string) (payable, error) {
	if en, ok := s.invoices[id]; ok {
		return payableOf(en.v), nil
	}
	if v, ok := s.carried.invoiceViews()[id]; ok {
		return payableOf(v), nil
	}
	raw := s.b.invoices.Get([]byte(id))
	if raw == nil {
		return payable{}, fmt.Errorf("%w: invoice %q not created", ErrInconsistent, id)
	}
	p, err := invoicePayable(raw)
	if err != nil {
		return payable{}, fmt.Errorf("%w: invoice %q: %v", ErrCorrupt, id, err)
	}
	return p, nil
}

// ---- payments ----

func (s *state) payment(stream string) (*paymentEntry, error) {
	return cached(s.payments, s.carried.paymentViews(), s.b.payments, "payment", stream, func(v *PaymentView) *paymentEntry {
		return &paymentEntry{v: v, stored: true, origStatus: v.Status}
	})
}

func (s *state) paymentCreated(e *ledger.Event, p *pPaymentCreated) error {
	if _, ok := s.payments[e.Stream]; ok || s.b.payments.Get([]byte(e.Stream)) != nil {
		return fmt.Errorf("%w: payment %q created twice", ErrInconsistent, e.Stream)
	}
	inv, err := s.invoicePayable(p.v.InvoiceID)
	if err != nil {
		return err
	}
	switch {
	case inv.merchantID != p.v.MerchantID:
		return fmt.Errorf("%w: payment of merchant %q for invoice %s of merchant %q", ErrInconsistent, p.v.MerchantID, p.v.InvoiceID, inv.merchantID)
	case !commands.PaymentCreationAllowed(inv.status):
		return fmt.Errorf("%w: %s for an invoice in status %s", ErrIllegalTransition, e.Type, inv.status)
	case !p.v.CreatedAt.Before(inv.expiresAt):
		// The commands create a payment only before expires_at (its
		// created_at is the command's time).
		return fmt.Errorf("%w: %s at %s, not before the invoice's expires_at %s", ErrIllegalTransition, e.Type,
			p.v.CreatedAt.Format(time.RFC3339Nano), inv.expiresAt.Format(time.RFC3339Nano))
	}
	s.payments[e.Stream] = &paymentEntry{v: &p.v, dirty: true}
	stream := s.hold([]byte(e.Stream))
	s.key = binary.BigEndian.AppendUint64(s.key[:0], e.Seq)
	s.put(ixPaymentSeq, s.hold(s.key), stream)
	s.key = binary.BigEndian.AppendUint64(append(append(s.key[:0], p.v.InvoiceID...), 0), e.Seq)
	s.put(ixInvoicePayments, s.hold(s.key), stream)
	return nil
}

func (s *state) paymentUpdate(e *ledger.Event, p *pPaymentUpdate) error {
	en, err := s.payment(e.Stream)
	if err != nil {
		return err
	}
	if _, ok := commands.NextPaymentStatus(en.v.Status, e.Type); !ok {
		return fmt.Errorf("%w: %s of a payment in status %s", ErrIllegalTransition, e.Type, en.v.Status)
	}
	if pr := p.processed; pr != nil {
		var inv *InvoiceView
		if pr.allocation == commands.AllocInvoice {
			// Its invoice.paid comes next and reads the invoice anyway:
			// read here, it is in the cache for it.
			ien, err := s.invoice(en.v.InvoiceID)
			if err != nil {
				return fmt.Errorf("payment %s of invoice: %w", e.Stream, err)
			}
			inv = ien.v
			if err := checkLate(e.Type, pr.late, pr.at, inv); err != nil {
				return err
			}
		}
		if err := s.checkAllocated(en.v, inv, pr); err != nil {
			return err
		}
		if inv != nil {
			s.paying = awaitedPaid{seq: e.Seq, stream: e.Stream, at: pr.at, paid: pr.paid}
		}
	}
	en.dirty = true
	v := en.v
	v.Version = e.Version
	v.UpdatedAt = utc(e.Time)
	v.Status = p.status
	v.Reason = p.reason
	if pr := p.processed; pr != nil {
		v.Allocation = pr.allocation
		v.Late = pr.late
		v.PaidAmount = currencyAmount(pr.paid, v.PaymentCurrency)
		s.post(pr.postings)
	}
	return nil
}

// checkAllocated returns ErrInconsistent unless a payment.processed's
// postings are exactly, in order, those of the commands' allocation rule
// (commands.AppendProcessingPostings) for its allocation and paid_amount,
// with its payment's gateway, currency, expected amount and merchant and,
// for allocation invoice, its invoice's (inv; nil for the others) USDT
// split. In order: every version of the commands wrote one order, so an
// event in another is not theirs, and the comparison is one pass. It
// allocates nothing (a rebuild checks every processed payment): the
// amounts are nums, the views' decimal text parsed without the decimal
// package; the accounts are compared in their parts; the rule's lines go
// into s.lines.
func (s *state) checkAllocated(pay *PaymentView, inv *InvoiceView, pr *pProcessed) error {
	// The payment's merchant is its invoice's (paymentCreated).
	t := commands.ProcessingTerms[num]{Gateway: pay.GatewayID, Currency: pay.PaymentCurrency, Merchant: pay.MerchantID}
	parsed := viewNum(&t.Expected, pay.PaymentAmount)
	if inv != nil {
		parsed = parsed && viewNum(&t.GrossUSDT, inv.GrossUSDT) && viewNum(&t.MerchantUSDT, inv.MerchantUSDT) && viewNum(&t.FeeUSDT, inv.FeeUSDT)
	}
	if !parsed {
		return fmt.Errorf("%w: payment %s: an amount of its view or its invoice's does not parse", ErrCorrupt, pay.Stream)
	}
	lines, ok := commands.AppendProcessingPostings(s.lines[:0], &t, pr.allocation, pr.paid)
	s.lines = lines
	if !ok {
		return fmt.Errorf("%w: allocation %q of paid_amount %s, for a payment of %s %s: the commands make no such allocation",
			ErrInconsistent, pr.allocation, pr.paid.plain(), pay.PaymentAmount, pay.PaymentCurrency)
	}
	return matchLines("allocation", pr.allocation, lines, pr.lines)
}

// matchLines returns ErrInconsistent unless an event's postings (got) are
// exactly, in order, the rule's (want), amounts compared as numbers; kind
// and name name the rule in the error ("allocation" "invoice"). It
// allocates nothing when they match.
func matchLines(kind, name string, want []commands.PostingLine[num], got []mPosting) error {
	for i := range min(len(want), len(got)) {
		l, p := &want[i], &got[i]
		if !l.IsAccount(p.Account) || p.Currency != l.Currency || !p.Amount.equal(l.Amount) {
			return fmt.Errorf("%w: %s %s posting %d is %s %s %s, want %s", ErrInconsistent, kind, name, i+1,
				p.Account, p.Currency, p.Amount.plain(), wantLines(want))
		}
	}
	if len(got) != len(want) {
		return fmt.Errorf("%w: %s %s with %d postings, want %d: %s", ErrInconsistent, kind, name, len(got), len(want), wantLines(want))
	}
	return nil
}

// viewNum parses into n an amount a view keeps as decimal text. The
// number is the event's: a payment's amount is at its currency's minor
// units there (currencyAmount), which the commands never exceed (ParseAmount,
// ConvertBetween), and the invoice's USDT amounts are FormatRate's, exact.
func viewNum(n *num, text string) bool {
	var ok bool
	*n, ok = parseNum([]byte(text))
	return ok
}

// wantLines describes the rule's postings, for an error.
func wantLines(lines []commands.PostingLine[num]) string {
	var b strings.Builder
	for i := range lines {
		if i > 0 {
			b.WriteString(", ")
		}
		l := &lines[i]
		fmt.Fprintf(&b, "%s %s %s", l.FullAccount(), l.Currency, l.Amount.plain())
	}
	return b.String()
}

// receiptHeld applies a payment.receipt_held: the money is posted and the
// payment's view counts it; its status stays.
func (s *state) receiptHeld(e *ledger.Event, p *pReceiptHeld) error {
	en, err := s.payment(e.Stream)
	if err != nil {
		return err
	}
	if !commands.ReceiptHoldAllowed(en.v.Status) {
		return fmt.Errorf("%w: %s of a payment in status %s", ErrIllegalTransition, e.Type, en.v.Status)
	}
	// Exactly a suspense allocation's two lines (the commands' rule): the
	// payment's gateway's clearing debited and its merchant's suspense
	// credited with paid_amount, in the payment's currency.
	s.lines = commands.AppendSuspensePostings(s.lines[:0], en.v.GatewayID, en.v.MerchantID, en.v.PaymentCurrency, p.paid)
	if err := matchLines("postings of", e.Type, s.lines, p.lines); err != nil {
		return err
	}
	en.dirty = true
	v := en.v
	v.Version = e.Version
	v.UpdatedAt = utc(e.Time)
	v.HeldReceipts++
	total := p.paid.decimal()
	if v.HeldAmount != "" {
		prev, err := decimal.NewFromString(v.HeldAmount)
		if err != nil {
			return fmt.Errorf("%w: payment %s held_amount %q: %v", ErrCorrupt, e.Stream, v.HeldAmount, err)
		}
		total = total.Add(prev)
	}
	v.HeldAmount = currencyAmount(numOf(total), v.PaymentCurrency)
	s.post(p.postings)
	return nil
}

// post adds an event's postings to the balances and the posting totals.
func (s *state) post(ps []posting) {
	for i := range ps {
		p := &ps[i]
		addTo(s.balances, p.balanceKey, p.amount)
		addTo(s.merchantTotals, p.merchantTotal, p.amount)
		addTo(s.totals, p.currency, p.amount)
	}
}

// ---- widgets ----

// widgetDue is when a widget must expire: an active or a disabled one
// (either goes to expired, and a disabled one cannot be re-enabled after
// its expires_at), if it has an expires_at.
func widgetDue(v *WidgetView) time.Time {
	if v.Status != commands.WidgetStatusExpired && v.ExpiresAt != nil {
		return *v.ExpiresAt
	}
	return time.Time{}
}

func (s *state) widget(id string) (*widgetEntry, error) {
	return cached(s.widgets, s.carried.widgetViews(), s.b.widgets, "widget", id, func(v *WidgetView) *widgetEntry {
		return &widgetEntry{v: v, stored: true, origStatus: v.Status, origDue: widgetDue(v)}
	})
}

func (s *state) widgetCreated(p *pWidgetCreated) error {
	v := &p.v
	if _, ok := s.widgets[v.ID]; ok || s.b.widgets.Get([]byte(v.ID)) != nil {
		return fmt.Errorf("%w: widget %q created twice", ErrInconsistent, v.ID)
	}
	s.widgets[v.ID] = &widgetEntry{v: v, dirty: true}
	s.key = appendCreatedKey(s.key[:0], v.MerchantID, v.CreatedAt, v.ID)
	s.put(ixWidByTime, s.hold(s.key), []byte{})
	s.counters[ctrWidgets+v.MerchantID]++
	return nil
}

func (s *state) widgetUpdate(e *ledger.Event, p *pWidgetUpdate) error {
	en, err := s.widget(p.id)
	if err != nil {
		return err
	}
	if !commands.WidgetStatusAllowed(en.v.Status, p.status) {
		return fmt.Errorf("%w: %s to %s of a widget in status %s", ErrIllegalTransition, e.Type, p.status, en.v.Status)
	}
	en.dirty = true
	en.v.Version = e.Version
	en.v.UpdatedAt = utc(e.Time)
	en.v.Status = p.status
	return nil
}

// ---- flush ----

// flush writes every changed view, its index moves and counter changes, the
// balance deltas and the checkpoint. Keys are written in sorted order, which
// keeps bbolt's page accesses local. When there is much to write, the views
// are encoded and the index operations sorted on several goroutines, which
// a rebuild's decoders leave idle while the writer flushes.
func (s *state) flush() error {
	for _, id := range sortedDirty(s.merchants, func(m *merchantEntry) bool { return m.dirty }) {
		m := s.merchants[id]
		if err := putView(s.b.merchants, []byte(id), &m.v); err != nil {
			return err
		}
		m.dirty = false
	}
	puts := s.puts[:0]
	defer func() {
		clear(puts) // drop the references to this transaction's views and bytes
		s.puts = puts[:0]
	}()
	for _, id := range sortedDirty(s.invoices, func(en *invoiceEntry) bool { return en.dirty }) {
		en := s.invoices[id]
		s.moveInvoice(id, en)
		puts = append(puts, viewPut{b: s.b.invoices, key: id, v: en.v})
	}
	for _, id := range sortedDirty(s.payments, func(en *paymentEntry) bool { return en.dirty }) {
		en := s.payments[id]
		if !en.stored || en.origStatus != en.v.Status {
			if en.stored {
				s.counters[ctrPaymentStatus+en.v.MerchantID+"\x00"+en.origStatus]--
			}
			s.counters[ctrPaymentStatus+en.v.MerchantID+"\x00"+en.v.Status]++
		}
		en.stored, en.origStatus, en.dirty = true, en.v.Status, false
		puts = append(puts, viewPut{b: s.b.payments, key: id, v: en.v})
	}
	for _, id := range sortedDirty(s.widgets, func(en *widgetEntry) bool { return en.dirty }) {
		en := s.widgets[id]
		s.moveWidget(id, en)
		puts = append(puts, viewPut{b: s.b.widgets, key: id, v: en.v})
	}
	if err := s.encodeAndSort(puts); err != nil {
		return err
	}
	for _, p := range puts {
		// bbolt copies keys (not values): one scratch buffer serves them all.
		s.key = append(s.key[:0], p.key...)
		if err := p.b.Put(s.key, p.val); err != nil {
			return err
		}
	}
	if err := s.flushIndexes(); err != nil {
		return err
	}
	// bbolt keeps a value's slice until the commit: one buffer each.
	if err := s.b.meta.Put(keyCheckpoint, binary.BigEndian.AppendUint64(nil, s.checkpoint)); err != nil {
		return err
	}
	switch {
	case s.checkpoint == s.start:
		// Nothing applied: what the last transaction left stays.
	case s.paying.seq == s.checkpoint:
		// The transaction ends between a payment.processed (allocation
		// invoice) and its invoice.paid: the next one checks it here.
		rec, err := appendPaying(nil, s.paying)
		if err != nil {
			return fmt.Errorf("%s: %w", keyPaying, err)
		}
		if err := s.b.meta.Put(keyPaying, rec); err != nil {
			return err
		}
	default:
		// Its invoice.paid followed what an earlier transaction left here,
		// if anything.
		if err := s.b.meta.Delete(keyPaying); err != nil {
			return err
		}
	}
	return s.b.meta.Put(keyEvents, binary.BigEndian.AppendUint64(nil, s.events))
}

// flushIndexes writes the index operations, counters and sums, or, for a
// views-only projector, drops them.
func (s *state) flushIndexes() error {
	if s.viewsOnly {
		for ix := range s.ops {
			clear(s.ops[ix])
			s.ops[ix] = s.ops[ix][:0]
		}
		return nil
	}
	if err := s.flushOps(); err != nil {
		return err
	}
	if err := flushCounters(s.b.counters, s.counters); err != nil {
		return err
	}
	for _, m := range []struct {
		b *bbolt.Bucket
		d map[string]*sum
	}{{s.b.balances, s.balances}, {s.b.merchantTotals, s.merchantTotals}, {s.b.totals, s.totals}} {
		if err := flushSums(m.b, m.d); err != nil {
			return err
		}
	}
	return nil
}

// viewPut is a changed view, to encode into val and put.
type viewPut struct {
	b   *bbolt.Bucket
	key string
	v   any
	val []byte
}

// parallelMin is how many views a flush must encode before it uses more
// than one goroutine: an inline append's handful is not worth a goroutine.
const parallelMin = 2048

// encodeAndSort encodes the views into their vals and sorts the index
// operations of every bucket by key (see flushOps).
func (s *state) encodeAndSort(puts []viewPut) error {
	sortOps := func(ops []op) {
		slices.SortFunc(ops, func(x, y op) int {
			if c := bytes.Compare(x.key, y.key); c != 0 {
				return c
			}
			return x.n - y.n
		})
	}
	workers := runtime.GOMAXPROCS(0)
	if len(puts) < parallelMin || workers < 2 {
		for i := range puts {
			var err error
			if puts[i].val, err = s.encode(puts[i].v); err != nil {
				return err
			}
		}
		for _, ops := range s.ops {
			sortOps(ops)
		}
		return nil
	}
	// Tasks: the views in ranges of parallelMin, then one sort per bucket.
	var tasks []func(w *encoder) error
	for lo := 0; lo < len(puts); lo += parallelMin {
		part := puts[lo:min(lo+parallelMin, len(puts))]
		tasks = append(tasks, func(w *encoder) error {
			for i := range part {
				var err error
				if part[i].val, err = w.encode(part[i].v); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for _, ops := range s.ops {
		tasks = append(tasks, func(*encoder) error { sortOps(ops); return nil })
	}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		errs = make([]error, workers)
	)
	work := func(w int, enc *encoder) {
		for {
			i := int(next.Add(1) - 1)
			if i >= len(tasks) || errs[w] != nil {
				return
			}
			errs[w] = tasks[i](enc)
		}
	}
	for w := 1; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(w, &encoder{})
		}()
	}
	// The calling goroutine is worker 0: in a rebuild it is the writer, the
	// pipeline's critical path, and waiting for the others while the
	// decoders compete with them for the CPUs made the flush slower.
	own := encoder{slab: s.slab}
	work(0, &own)
	s.slab = own.slab
	wg.Wait()
	return errors.Join(errs...)
}

// moveInvoice records the index moves and counter changes of a changed invoice.
func (s *state) moveInvoice(id string, en *invoiceEntry) {
	v := en.v
	if !en.stored || en.origStatus != v.Status {
		if en.stored {
			s.key = appendStatusKey(s.key[:0], v.MerchantID, en.origStatus, v.CreatedAt, id)
			s.del(ixInvByStatus, s.hold(s.key))
			s.counters[ctrInvoiceStatus+v.MerchantID+"\x00"+en.origStatus]--
		}
		s.key = appendStatusKey(s.key[:0], v.MerchantID, v.Status, v.CreatedAt, id)
		s.put(ixInvByStatus, s.hold(s.key), []byte{})
		s.counters[ctrInvoiceStatus+v.MerchantID+"\x00"+v.Status]++
	}
	if due := invoiceDue(v); !due.Equal(en.origDue) {
		s.moveDue(dueInvoice, id, v.MerchantID, en.origDue, due)
		en.origDue = due
	}
	en.stored, en.origStatus, en.dirty = true, v.Status, false
}

// moveWidget records the index moves and counter changes of a changed widget.
func (s *state) moveWidget(id string, en *widgetEntry) {
	v := en.v
	if !en.stored || en.origStatus != v.Status {
		if en.stored {
			s.counters[ctrWidgetStatus+v.MerchantID+"\x00"+en.origStatus]--
		}
		s.counters[ctrWidgetStatus+v.MerchantID+"\x00"+v.Status]++
	}
	if due := widgetDue(v); !due.Equal(en.origDue) {
		s.moveDue(dueWidget, id, v.MerchantID, en.origDue, due)
		en.origDue = due
	}
	en.stored, en.origStatus, en.dirty = true, v.Status, false
}

func (s *state) moveDue(kind byte, id, merchant string, from, to time.Time) {
	if !from.IsZero() {
		s.key = appendDueKey(s.key[:0], from, kind, id)
		s.del(ixDue, s.hold(s.key))
	}
	if !to.IsZero() {
		s.key = appendDueKey(s.key[:0], to, kind, id)
		s.put(ixDue, s.hold(s.key), s.hold([]byte(merchant)))
	}
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

func putView(b *bbolt.Bucket, k []byte, v any) error {
	raw, err := EncodeView(v)
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
