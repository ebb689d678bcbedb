package audit

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
)

// checker makes the checks that need every event in sequence order but no
// storage: postings, invoice lifecycles, stream creation events and
// checkpoints. It keeps about two hundred bytes per invoice and a
// hundred per payment: what their events' postings depend on.
type checker struct {
	trusted []ed25519.PublicKey

	events, streams uint64
	last            uint64 // the last sequence seen
	types           map[string]uint64

	invoices map[idKey]invoiceState
	payments map[idKey]paymentState
	names    map[string]string // merchant and gateway ids and currencies, interned: invoices and payments share one copy
	expect   *expectPaid       // a payment.processed that paid its invoice, awaiting invoice.paid
	created  createdPayment    // the last payment.created, which its invoice.payment_added follows

	postingEvents uint64
	totals        map[string]*Flow
	merchants     map[string]map[string]*Flow
	sums          []curSum                                // scratch: one event's sums
	amounts       []decimal.Decimal                       // scratch: one event's posting amounts
	lines         []commands.PostingLine[decimal.Decimal] // scratch: the postings the commands' rule wants

	// Checkpoints: the hashes of the last ringSize events, to check a
	// checkpoint's hash as soon as it is seen; older ones wait in deferred.
	ring        []ledger.Hash
	deferred    []pendingCheckpoint
	checkpoints uint64
	lastCP      CheckpointInfo
	keys        map[string]uint64
}

const ringSize = 1 << 14

type invoiceState struct {
	lastSeq  uint64
	version  uint64
	paidBy   idKey
	merchant string // every event of the invoice and of its payments is this merchant's
	expires  time.Time
	status   uint8
	late     bool
	added    uint16 // invoice.payment_added events

	// Its USDT split, which a payment.processed of allocation invoice posts.
	gross, merchantUSDT, fee compact
}

// createdPayment is a payment.created: its sequence and payment.
type createdPayment struct {
	seq     uint64
	payment idKey
}

// paymentState is what the checks keep of a payment: its invoice, and what
// its postings depend on besides the invoice (commands.ProcessingTerms).
type paymentState struct {
	invoice           idKey
	gateway, currency string
	expected          compact // payment_amount
}

// compact is money as the checker keeps it per invoice and per payment: the
// coefficient and exponent when the coefficient fits an int64 (every
// amount but the largest), so that a long log's amounts cost no big.Int
// each; else the decimal.
type compact struct {
	m   int64
	e   int32
	big *decimal.Decimal
}

func compactOf(d decimal.Decimal) compact {
	if d.NumDigits() <= 18 {
		return compact{m: d.CoefficientInt64(), e: d.Exponent()}
	}
	return compact{big: &d}
}

func (a compact) decimal() decimal.Decimal {
	if a.big != nil {
		return *a.big
	}
	return decimal.New(a.m, a.e)
}

// Invoice statuses of the fold (docs/payments.md).
const (
	stPending uint8 = 1 + iota
	stSuccess
	stExpired
	stCancelled
)

var statusNames = [...]string{
	stPending:   commands.InvoiceStatusPending,
	stSuccess:   commands.InvoiceStatusSuccess,
	stExpired:   commands.InvoiceStatusExpired,
	stCancelled: commands.InvoiceStatusCancelled,
}

type expectPaid struct {
	seq     uint64 // of the payment.processed
	payment string // its stream
	invoice idKey
	stream  string          // the invoice's stream
	at      time.Time       // its at: the invoice.paid's paid_at
	paid    decimal.Decimal // its paid_amount: the invoice.paid's
}

type pendingCheckpoint struct {
	eventSeq uint64
	seq      uint64
	hash     ledger.Hash
}

type curSum struct {
	cur string
	sum decimal.Decimal
}

// Flow is what moved through a set of accounts in one currency: the sum of
// the debits (positive) and of the credits (negative). Net = Debits + Credits.
type Flow struct {
	Debits  decimal.Decimal `json:"debits"`
	Credits decimal.Decimal `json:"credits"`
}

// Net is Debits + Credits: zero wherever double entry holds.
func (f Flow) Net() decimal.Decimal { return f.Debits.Add(f.Credits) }

func (f *Flow) add(d decimal.Decimal) {
	if d.IsNegative() {
		f.Credits = f.Credits.Add(d)
	} else {
		f.Debits = f.Debits.Add(d)
	}
}

// CheckpointInfo describes a verified checkpoint.
type CheckpointInfo struct {
	EventSeq  uint64      `json:"event_seq"` // where the checkpoint.signed event is
	Seq       uint64      `json:"seq"`       // the head it signed
	Hash      ledger.Hash `json:"hash"`
	PublicKey string      `json:"public_key"`
}

func newChecker(trusted []ed25519.PublicKey) *checker {
	return &checker{
		trusted:   trusted,
		types:     map[string]uint64{},
		invoices:  map[idKey]invoiceState{},
		payments:  map[idKey]paymentState{},
		names:     map[string]string{},
		totals:    map[string]*Flow{},
		merchants: map[string]map[string]*Flow{},
		ring:      make([]ledger.Hash, ringSize),
		keys:      map[string]uint64{},
	}
}

// idKey is an aggregate id as a map key: its 16 bytes when it is a ULID in
// its canonical text (UUID text for invoices, base32 for payments), else
// the text itself.
type idKey struct {
	b [16]byte
	s string
}

func uuidKey(id string) idKey {
	if len(id) == 36 && id[8] == '-' && id[13] == '-' && id[18] == '-' && id[23] == '-' {
		var b [16]byte
		h := id[:8] + id[9:13] + id[14:18] + id[19:23] + id[24:]
		if _, err := hex.Decode(b[:], []byte(h)); err == nil && commands.UUID(b) == id {
			return idKey{b: b}
		}
	}
	return idKey{s: id}
}

func (k idKey) uuid() string {
	if k.s != "" {
		return k.s
	}
	return commands.UUID(k.b)
}

func ulidKey(id string) idKey {
	if u, err := ulid.ParseStrict(id); err == nil && u.String() == id {
		return idKey{b: u}
	}
	return idKey{s: id}
}

func (k idKey) ulid() string {
	if k.s != "" {
		return k.s
	}
	return ulid.ULID(k.b).String()
}

// creationTypes is the first event of each kind of stream (docs/events.md,
// invariant 2), by stream prefix.
var creationTypes = map[string]string{
	commands.StreamMerchant: commands.TypeMerchantRegistered,
	commands.StreamInvoice:  commands.TypeInvoiceCreated,
	commands.StreamPayment:  commands.TypePaymentCreated,
	commands.StreamWidget:   commands.TypeWidgetCreated,
}

var creationPrefix = map[string]string{}

func init() {
	for p, t := range creationTypes {
		creationPrefix[t] = p
	}
}

// event checks one event; events come in sequence order with the chain
// already checked (or being checked alongside). It returns the first
// *Fault it finds.
func (c *checker) event(e *ledger.Event) *Fault {
	c.events++
	c.last = e.Seq
	if e.Version == 1 {
		c.streams++
	}
	c.types[e.Type]++
	c.ring[e.Seq%ringSize] = e.Hash

	if x := c.expect; x != nil && (e.Type != commands.TypeInvoicePaid || e.Stream != x.stream) {
		return fault(CheckInvoices, x.seq, x.payment, "payment.processed paid invoice %s but the next event is not its invoice.paid (they are one append)", x.invoice.uuid())
	}
	if f := c.creation(e); f != nil {
		return f
	}
	switch {
	case e.Stream == StreamCheckpoints || e.Type == TypeCheckpointSigned:
		return c.checkpoint(e)
	case strings.HasPrefix(e.Stream, commands.StreamInvoice+"-"):
		return c.invoice(e)
	case e.Type == commands.TypePaymentCreated:
		return c.paymentCreated(e)
	case e.Type == commands.TypePaymentProcessed:
		return c.paymentProcessed(e)
	case e.Type == commands.TypePaymentReceiptHeld:
		return c.receiptHeld(e)
	}
	return nil
}

// creation checks invariant 2: a stream of a known kind starts with its
// creation event and has only one; a creation event is on a stream of its kind.
func (c *checker) creation(e *ledger.Event) *Fault {
	prefix, _, ok := strings.Cut(e.Stream, "-")
	want, known := creationTypes[prefix]
	switch {
	case !ok || !known:
		if p, isCreation := creationPrefix[e.Type]; isCreation {
			return fault(CheckStreams, e.Seq, e.Stream, "%s on a stream that is not %s-<id>", e.Type, p)
		}
	case e.Version == 1 && e.Type != want:
		return fault(CheckStreams, e.Seq, e.Stream, "the stream starts with %s, not %s", e.Type, want)
	case e.Version > 1 && e.Type == want:
		return fault(CheckStreams, e.Seq, e.Stream, "a second %s (version %d)", want, e.Version)
	}
	if e.Stream == StreamCheckpoints && e.Type != TypeCheckpointSigned || e.Type == TypeCheckpointSigned && e.Stream != StreamCheckpoints {
		return fault(CheckStreams, e.Seq, e.Stream, "%s on stream %s: stream %s holds %s and nothing else", e.Type, e.Stream, StreamCheckpoints, TypeCheckpointSigned)
	}
	return nil
}

func decode(e *ledger.Event, check string, v any) *Fault {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fault(check, e.Seq, e.Stream, "%s data does not decode: %v", e.Type, err)
	}
	return nil
}

// invoice folds an invoice stream's events with the lifecycle of
// docs/payments.md: pending -> success | expired | cancelled, and
// expired -> success for a late payment, paid at most once, and paid only
// by the payment.processed appended with it, at its time and of its amount.
func (c *checker) invoice(e *ledger.Event) *Fault {
	id := strings.TrimPrefix(e.Stream, commands.StreamInvoice+"-")
	k := uuidKey(id)
	st := c.invoices[k]
	if e.Type != commands.TypeInvoiceCreated && e.Merchant != st.merchant {
		return fault(CheckInvoices, e.Seq, e.Stream, "%s of merchant %q on invoice %s of merchant %q", e.Type, e.Merchant, id, st.merchant)
	}
	switch e.Type {
	case commands.TypeInvoiceCreated:
		var d struct {
			InvoiceID    string          `json:"invoice_id"`
			MerchantID   string          `json:"merchant_id"`
			ExpiresAt    time.Time       `json:"expires_at"`
			GrossUSDT    decimal.Decimal `json:"gross_usdt"`
			MerchantUSDT decimal.Decimal `json:"merchant_usdt"`
			FeeUSDT      decimal.Decimal `json:"fee_usdt"`
		}
		if f := decode(e, CheckInvoices, &d); f != nil {
			return f
		}
		if d.InvoiceID != id || d.MerchantID == "" || d.MerchantID != e.Merchant {
			return fault(CheckInvoices, e.Seq, e.Stream, "invoice.created names invoice %q of merchant %q (envelope merchant %q)", d.InvoiceID, d.MerchantID, e.Merchant)
		}
		st = invoiceState{status: stPending, merchant: c.intern(d.MerchantID), expires: d.ExpiresAt,
			gross: compactOf(d.GrossUSDT), merchantUSDT: compactOf(d.MerchantUSDT), fee: compactOf(d.FeeUSDT)}
	case commands.TypeInvoiceCancelled, commands.TypeInvoiceExpired:
		if _, ok := commands.NextInvoiceStatus(statusNames[st.status], e.Type); !ok {
			return fault(CheckInvoices, e.Seq, e.Stream, "%s of a %s invoice: only a pending invoice is cancelled or expires", e.Type, statusNames[st.status])
		}
		st.status = stCancelled
		if e.Type == commands.TypeInvoiceExpired {
			st.status = stExpired
		}
	case commands.TypeInvoicePaymentAdded:
		var d struct {
			PaymentID string `json:"payment_id"`
		}
		if f := decode(e, CheckInvoices, &d); f != nil {
			return f
		}
		pk := ulidKey(strings.TrimPrefix(d.PaymentID, commands.StreamPayment+"-"))
		if c.created.seq != e.Seq-1 || c.created.payment != pk || c.payments[pk].invoice != k {
			return fault(CheckInvoices, e.Seq, e.Stream, "invoice.payment_added of %q is not appended right after that payment's payment.created for this invoice", d.PaymentID)
		}
		if st.added >= commands.MaxPaymentsPerInvoice {
			return fault(CheckInvoices, e.Seq, e.Stream, "invoice %s given a payment past the %d the commands allow", id, commands.MaxPaymentsPerInvoice)
		}
		st.added++
		// No view shows it: the view's version stays its last shown event's.
		c.invoices[k] = st
		return nil
	case commands.TypeInvoicePaid:
		var d struct {
			PaymentID  string          `json:"payment_id"`
			PaidAt     time.Time       `json:"paid_at"`
			Late       bool            `json:"late"`
			PaidAmount decimal.Decimal `json:"paid_amount"`
		}
		if f := decode(e, CheckInvoices, &d); f != nil {
			return f
		}
		if _, ok := commands.NextInvoiceStatus(statusNames[st.status], e.Type); !ok {
			return fault(CheckInvoices, e.Seq, e.Stream, "invoice.paid of a %s invoice: an invoice is paid once, and only while pending or expired", statusNames[st.status])
		}
		x := c.expect
		if x == nil || x.seq != e.Seq-1 || x.invoice != k || x.payment != d.PaymentID {
			return fault(CheckInvoices, e.Seq, e.Stream, "invoice.paid by %q is not appended with that payment's payment.processed (allocation invoice) for this invoice", d.PaymentID)
		}
		c.expect = nil
		// commands.decideProcessing gives both events the same time and
		// amount, in every version of it.
		if !d.PaidAt.Equal(x.at) {
			return fault(CheckInvoices, e.Seq, e.Stream, "invoice.paid at %s, but its payment.processed (sequence %d) is at %s: they are one decision, at one time",
				d.PaidAt.Format(time.RFC3339Nano), x.seq, x.at.Format(time.RFC3339Nano))
		}
		if !d.PaidAmount.Equal(x.paid) {
			return fault(CheckInvoices, e.Seq, e.Stream, "invoice.paid of paid_amount %s, but its payment.processed (sequence %d) has paid_amount %s: they are one decision, of one amount",
				d.PaidAmount, x.seq, x.paid)
		}
		if f := lateFault(e, d.Late, d.PaidAt, id, st); f != nil {
			return f
		}
		st.status, st.late = stSuccess, d.Late
		st.paidBy = ulidKey(strings.TrimPrefix(d.PaymentID, commands.StreamPayment+"-"))
	default:
		return fault(CheckInvoices, e.Seq, e.Stream, "%s is not an invoice event", e.Type)
	}
	st.version, st.lastSeq = e.Version, e.Seq
	c.invoices[k] = st
	return nil
}

// intern returns the checker's copy of s.
func (c *checker) intern(s string) string {
	if v, ok := c.names[s]; ok {
		return v
	}
	c.names[s] = s
	return s
}

// lateFault reports an event e at time at, for invoice id in state st
// (before e), flagged late where the commands would not flag it, or the
// other way round (commands.PaidLate).
func lateFault(e *ledger.Event, late bool, at time.Time, id string, st invoiceState) *Fault {
	status := statusNames[st.status]
	if late == commands.PaidLate(status, at, st.expires) {
		return nil
	}
	not := ""
	if !late {
		not = "not "
	}
	return fault(CheckInvoices, e.Seq, e.Stream, "%s %sflagged late at %s, for invoice %s in status %s with expires_at %s",
		e.Type, not, at.Format(time.RFC3339Nano), id, status, st.expires.Format(time.RFC3339Nano))
}

func (c *checker) paymentCreated(e *ledger.Event) *Fault {
	var d struct {
		PaymentID       string          `json:"payment_id"`
		InvoiceID       string          `json:"invoice_id"`
		MerchantID      string          `json:"merchant_id"`
		GatewayID       string          `json:"gateway_id"`
		PaymentCurrency string          `json:"payment_currency"`
		PaymentAmount   decimal.Decimal `json:"payment_amount"`
		CreatedAt       time.Time       `json:"created_at"`
	}
	if f := decode(e, CheckInvoices, &d); f != nil {
		return f
	}
	if e.Stream != commands.StreamID(commands.StreamPayment, d.PaymentID) || d.MerchantID == "" || d.MerchantID != e.Merchant {
		return fault(CheckInvoices, e.Seq, e.Stream, "payment.created names payment %q of merchant %q (envelope merchant %q)", d.PaymentID, d.MerchantID, e.Merchant)
	}
	ik := uuidKey(d.InvoiceID)
	inv, ok := c.invoices[ik]
	switch {
	case !ok:
		return fault(CheckInvoices, e.Seq, e.Stream, "payment for invoice %s, which does not exist", d.InvoiceID)
	case d.MerchantID != inv.merchant:
		return fault(CheckInvoices, e.Seq, e.Stream, "payment.created of merchant %q for invoice %s of merchant %q", d.MerchantID, d.InvoiceID, inv.merchant)
	case !commands.PaymentCreationAllowed(statusNames[inv.status]):
		return fault(CheckInvoices, e.Seq, e.Stream, "payment created for a %s invoice %s: only a pending invoice takes payments", statusNames[inv.status], d.InvoiceID)
	case !d.CreatedAt.Before(inv.expires):
		return fault(CheckInvoices, e.Seq, e.Stream, "payment created at %s for invoice %s, which expires at %s: a payment is created only before", d.CreatedAt.Format(time.RFC3339Nano), d.InvoiceID, inv.expires.Format(time.RFC3339Nano))
	}
	c.payments[ulidKey(d.PaymentID)] = paymentState{invoice: ik, gateway: c.intern(d.GatewayID), currency: c.intern(d.PaymentCurrency),
		expected: compactOf(d.PaymentAmount)}
	c.created = createdPayment{seq: e.Seq, payment: ulidKey(d.PaymentID)}
	return nil
}

// postingData is one posting as the checks read it: the amount raw, to
// check it is a decimal string.
type postingData struct {
	Account  string          `json:"account"`
	Currency string          `json:"currency"`
	Amount   json.RawMessage `json:"amount"`
}

// processedData is a payment.processed's data as the checks read it.
type processedData struct {
	At         time.Time       `json:"at"`
	PaidAmount decimal.Decimal `json:"paid_amount"`
	Allocation string          `json:"allocation"`
	Late       bool            `json:"late"`
	Postings   []postingData   `json:"postings"`
}

// paysInvoice: the payment paid its invoice (allocation invoice), so the
// invoice.paid appended with it must be the very next event
// (commands.ProcessPayment appends both, payment.processed first).
func (d *processedData) paysInvoice() bool { return d.Allocation == commands.AllocInvoice }

// AwaitsInvoicePaid reports whether e is a payment.processed that paid its
// invoice (allocation invoice): commands.ProcessPayment appends it together
// with that invoice's invoice.paid, right after it, and the invoices check
// faults a log in which that invoice.paid does not follow, or which ends
// before it (the same rule, paysInvoice). A log whose last event this is
// therefore ends part way through an append: the relay publishes each
// event as its own message, so a restore from the stream can end there
// (payledger restore says so). Errors: a *Fault of the postings check when
// e's data does not decode.
func AwaitsInvoicePaid(e *ledger.Event) (bool, error) {
	if e.Type != commands.TypePaymentProcessed {
		return false, nil
	}
	var d processedData
	if f := decode(e, CheckPostings, &d); f != nil {
		return false, f
	}
	return d.paysInvoice(), nil
}

// plainDecimal is money as the log writes it: a decimal string, no exponent.
var plainDecimal = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)

// paymentProcessed checks the postings: each event's sum to zero in every
// currency, every merchant account in them is the event's merchant's, so
// that one event never moves another merchant's money, and they are
// exactly those of the commands' allocation rule for the event's
// allocation and paid_amount, its payment and its invoice. It notes a
// payment that paid its invoice, whose invoice.paid must come next.
func (c *checker) paymentProcessed(e *ledger.Event) *Fault {
	var d processedData
	if f := decode(e, CheckPostings, &d); f != nil {
		return f
	}
	pay, f := c.paymentPostings(e, d.Postings)
	if f != nil {
		return f
	}
	inv := pay.invoice
	st := c.invoices[inv]
	t := commands.ProcessingTerms[decimal.Decimal]{Gateway: pay.gateway, Currency: pay.currency, Expected: pay.expected.decimal(),
		Merchant: st.merchant, GrossUSDT: st.gross.decimal(), MerchantUSDT: st.merchantUSDT.decimal(), FeeUSDT: st.fee.decimal()}
	lines, ok := commands.AppendProcessingPostings(c.lines[:0], &t, d.Allocation, d.PaidAmount)
	c.lines = lines
	if !ok {
		return fault(CheckPostings, e.Seq, e.Stream, "allocation %q of paid_amount %s, for a payment of %s %s: the commands make no such allocation",
			d.Allocation, d.PaidAmount, t.Expected, t.Currency)
	}
	if f := c.rulePostings(e, "allocation "+d.Allocation, d.Postings, lines); f != nil {
		return f
	}
	if d.paysInvoice() {
		// Only this allocation's flag is checked: logs written before
		// every payment.processed was flagged (commands.PaidLate) left a
		// late duplicate or underpayment unflagged.
		if f := lateFault(e, d.Late, d.At, inv.uuid(), st); f != nil {
			return f
		}
		c.expect = &expectPaid{seq: e.Seq, payment: e.Stream, invoice: inv,
			stream: commands.StreamID(commands.StreamInvoice, inv.uuid()), at: d.At, paid: d.PaidAmount}
	}
	return nil
}

// paymentPostings checks a payment event's (payment.processed,
// payment.receipt_held) payment and postings: the payment exists and is
// the event's merchant's; each posting is an account, a currency and a
// decimal string; every merchant account is the event's merchant's, so
// that one event never moves another merchant's money; and the postings
// sum to zero in every currency. It adds them to the totals, leaves their
// amounts in c.amounts and returns the payment.
func (c *checker) paymentPostings(e *ledger.Event, ps []postingData) (paymentState, *Fault) {
	pk := ulidKey(strings.TrimPrefix(e.Stream, commands.StreamPayment+"-"))
	pay, ok := c.payments[pk]
	inv := pay.invoice
	if !ok {
		return pay, fault(CheckInvoices, e.Seq, e.Stream, "%s of a payment that was never created", e.Type)
	}
	if m := c.invoices[inv].merchant; e.Merchant != m {
		return pay, fault(CheckInvoices, e.Seq, e.Stream, "%s of merchant %q for invoice %s of merchant %q", e.Type, e.Merchant, inv.uuid(), m)
	}
	if len(ps) > 0 && e.Merchant == "" {
		return pay, fault(CheckPostings, e.Seq, e.Stream, "postings on an event without a merchant")
	}
	c.sums, c.amounts = c.sums[:0], c.amounts[:0]
	for i, p := range ps {
		var s string
		if p.Account == "" || p.Currency == "" || json.Unmarshal(p.Amount, &s) != nil || !plainDecimal.MatchString(s) {
			return pay, fault(CheckPostings, e.Seq, e.Stream, "posting %d: want an account, a currency and a decimal string amount, got %q %q %s", i+1, p.Account, p.Currency, p.Amount)
		}
		amount, err := decimal.NewFromString(s)
		if err != nil {
			return pay, fault(CheckPostings, e.Seq, e.Stream, "posting %d: amount %q: %v", i+1, s, err)
		}
		if name, owner, ok := strings.Cut(p.Account, ":"); ok && strings.HasPrefix(name, "merchant_") && owner != e.Merchant {
			return pay, fault(CheckPostings, e.Seq, e.Stream, "posting %d moves %s %s on %s, an account of merchant %q, in an event of merchant %q", i+1, amount, p.Currency, p.Account, owner, e.Merchant)
		}
		c.amounts = append(c.amounts, amount)
		j := slices.IndexFunc(c.sums, func(cs curSum) bool { return cs.cur == p.Currency })
		if j < 0 {
			c.sums = append(c.sums, curSum{cur: p.Currency})
			j = len(c.sums) - 1
		}
		c.sums[j].sum = c.sums[j].sum.Add(amount)
		flow(c.totals, p.Currency).add(amount)
		m := c.merchants[e.Merchant]
		if m == nil {
			m = map[string]*Flow{}
			c.merchants[e.Merchant] = m
		}
		flow(m, p.Currency).add(amount)
	}
	for _, cs := range c.sums {
		if !cs.sum.IsZero() {
			return pay, fault(CheckPostings, e.Seq, e.Stream, "%s postings sum to %s, not zero", cs.cur, cs.sum)
		}
	}
	if len(ps) > 0 {
		c.postingEvents++
	}
	return pay, nil
}

// rulePostings returns a postings fault unless an event's postings ps
// (their amounts in c.amounts, paymentPostings') are exactly, in order,
// the lines of the commands' rule (what names them in the fault): the
// commands have always written them in that order.
func (c *checker) rulePostings(e *ledger.Event, what string, ps []postingData, lines []commands.PostingLine[decimal.Decimal]) *Fault {
	for i := range min(len(lines), len(ps)) {
		l, p := &lines[i], &ps[i]
		if !l.IsAccount(p.Account) || p.Currency != l.Currency || !c.amounts[i].Equal(l.Amount) {
			return fault(CheckPostings, e.Seq, e.Stream, "%s (%s) posting %d is %s %s %s, want %s", e.Type, what, i+1,
				p.Account, p.Currency, c.amounts[i], describeLines(lines))
		}
	}
	if len(ps) != len(lines) {
		return fault(CheckPostings, e.Seq, e.Stream, "%s (%s) with %d postings, want %d: %s", e.Type, what, len(ps), len(lines), describeLines(lines))
	}
	return nil
}

// describeLines describes the rule's postings, for a fault.
func describeLines(lines []commands.PostingLine[decimal.Decimal]) string {
	parts := make([]string, len(lines))
	for i := range lines {
		parts[i] = lines[i].FullAccount() + " " + lines[i].Currency + " " + lines[i].Amount.String()
	}
	return strings.Join(parts, ", ")
}

// receiptHeld checks a payment.receipt_held: its payment and postings as
// paymentPostings does, that it posts something (the money it records,
// above zero), and that its postings are exactly the two lines of money
// held (commands.AppendSuspensePostings): its payment's gateway debited
// and the merchant's suspense credited with paid_amount, in the payment's
// currency. That the payment was CANCELLED, REJECTED, ERROR or PROCESSED
// (commands.ReceiptHoldAllowed) is the projector's rule, which the
// projections check's rebuild applies.
func (c *checker) receiptHeld(e *ledger.Event) *Fault {
	var d struct {
		PaidAmount decimal.Decimal `json:"paid_amount"`
		Postings   []postingData   `json:"postings"`
	}
	if f := decode(e, CheckPostings, &d); f != nil {
		return f
	}
	pay, f := c.paymentPostings(e, d.Postings)
	if f != nil {
		return f
	}
	if len(d.Postings) == 0 {
		return fault(CheckPostings, e.Seq, e.Stream, "%s without postings: the money it records is posted nowhere", e.Type)
	}
	if !d.PaidAmount.IsPositive() {
		return fault(CheckPostings, e.Seq, e.Stream, "%s of paid_amount %s: it records no money", e.Type, d.PaidAmount)
	}
	c.lines = commands.AppendSuspensePostings(c.lines[:0], pay.gateway, c.invoices[pay.invoice].merchant, pay.currency, d.PaidAmount)
	return c.rulePostings(e, "paid_amount "+d.PaidAmount.String(), d.Postings, c.lines)
}

func flow(m map[string]*Flow, cur string) *Flow {
	f := m[cur]
	if f == nil {
		f = &Flow{}
		m[cur] = f
	}
	return f
}

// checkpoint checks a checkpoint.signed event: its data, that it signs a
// sequence before its own, its signature (with a trusted key, when some
// are given), that it was signed no later than the event's time and at
// most MaxCheckpointLag before it, and the chain's hash at that sequence (now, or at the end
// when it is further back than the ring remembers).
func (c *checker) checkpoint(e *ledger.Event) *Fault {
	cp, err := DecodeCheckpoint(e.Data)
	if err != nil {
		return &Fault{Seq: e.Seq, Stream: e.Stream, Check: CheckCheckpoints, Reason: err.Error(), Cause: err}
	}
	if cp.Seq == 0 || cp.Seq >= e.Seq {
		return fault(CheckCheckpoints, e.Seq, e.Stream, "checkpoint signs sequence %d, which is not before its own", cp.Seq)
	}
	pub, _ := cp.Key() // DecodeCheckpoint checked it
	if len(c.trusted) > 0 && !slices.ContainsFunc(c.trusted, func(k ed25519.PublicKey) bool { return sameKey(k, pub) }) {
		return fault(CheckCheckpoints, e.Seq, e.Stream, "checkpoint of sequence %d is signed by key %s, not by a trusted key", cp.Seq, cp.PublicKey)
	}
	if err := cp.Verify(pub); err != nil {
		return &Fault{Seq: e.Seq, Stream: e.Stream, Check: CheckCheckpoints, Cause: err,
			Reason: fmt.Sprintf("checkpoint of sequence %d: forged or damaged signature: %v", cp.Seq, err)}
	}
	switch lag := e.Time.Sub(cp.SignedAt); {
	case lag < 0:
		return fault(CheckCheckpoints, e.Seq, e.Stream, "checkpoint of sequence %d is signed at %s, after the time of the event that records it (%s)",
			cp.Seq, cp.SignedAt.Format(time.RFC3339Nano), e.Time.Format(time.RFC3339Nano))
	case lag > MaxCheckpointLag:
		return fault(CheckCheckpoints, e.Seq, e.Stream, "checkpoint of sequence %d is signed at %s, %s before the time of the event that records it (%s); at most %s is allowed",
			cp.Seq, cp.SignedAt.Format(time.RFC3339Nano), lag, e.Time.Format(time.RFC3339Nano), MaxCheckpointLag)
	}
	if e.Seq-cp.Seq < ringSize {
		if h := c.ring[cp.Seq%ringSize]; h != cp.Hash {
			return hashFault(e.Seq, cp.Seq, cp.Hash, h)
		}
	} else {
		c.deferred = append(c.deferred, pendingCheckpoint{eventSeq: e.Seq, seq: cp.Seq, hash: cp.Hash})
	}
	c.checkpoints++
	c.keys[cp.PublicKey]++
	c.lastCP = CheckpointInfo{EventSeq: e.Seq, Seq: cp.Seq, Hash: cp.Hash, PublicKey: cp.PublicKey}
	return nil
}

func hashFault(eventSeq, seq uint64, signed, chain ledger.Hash) *Fault {
	return fault(CheckCheckpoints, eventSeq, StreamCheckpoints,
		"checkpoint signs hash %s at sequence %d, but the chain has %s there", signed, seq, chain)
}

// finish makes the checks that need the whole log: an invoice.paid still
// awaited, the deferred checkpoint hashes (hashAt gives the chain's hash at
// each sequence asked, in increasing order), the totals, and a checkpoint
// by a trusted key.
func (c *checker) finish(hashAt func(seqs []uint64) (map[uint64]ledger.Hash, error)) error {
	if x := c.expect; x != nil {
		return fault(CheckInvoices, x.seq, x.payment, "payment.processed paid invoice %s but the log ends before its invoice.paid", x.invoice.uuid())
	}
	if len(c.deferred) > 0 {
		seqs := make([]uint64, len(c.deferred))
		for i, d := range c.deferred {
			seqs[i] = d.seq
		}
		slices.Sort(seqs)
		hashes, err := hashAt(slices.Compact(seqs))
		if err != nil {
			return err
		}
		for _, d := range c.deferred {
			if h := hashes[d.seq]; h != d.hash {
				return hashFault(d.eventSeq, d.seq, d.hash, h)
			}
		}
	}
	for _, m := range sortedKeys(c.merchants) {
		for _, cur := range sortedKeys(c.merchants[m]) {
			if n := c.merchants[m][cur].Net(); !n.IsZero() {
				return fault(CheckPostings, 0, "", "merchant %q: %s postings sum to %s, not zero", m, cur, n)
			}
		}
	}
	for _, cur := range sortedKeys(c.totals) {
		if n := c.totals[cur].Net(); !n.IsZero() {
			return fault(CheckPostings, 0, "", "%s postings sum to %s in total, not zero", cur, n)
		}
	}
	if len(c.trusted) > 0 && c.checkpoints == 0 {
		return fault(CheckCheckpoints, 0, StreamCheckpoints, "no checkpoint signed by the trusted key in %d events: nothing anchors the log to it", c.events)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
