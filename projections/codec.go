package projections

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"
)

// Views are stored in a compact binary form (views formats 5 on):
// a tag byte naming the view, then every field in the struct's declaration
// order, without names:
//
//	string          uvarint length, then the bytes as they are
//	uint64          uvarint
//	int, int64      varint
//	bool            0 or 1
//	time            varint Unix seconds, uvarint nanoseconds (below 1e9),
//	                varint zone offset in seconds (0: UTC; whole minutes,
//	                at most a day each way)
//	*time.Time      0 (nil), or 1 and the time
//	[]string        uvarint count+1 (0: nil), then the strings
//	[]APIKeyInfo    uvarint count+1 (0: nil), then each one's fields
//	map[string]string  uvarint count, then key and value of each, keys in
//	                ascending order, each once
//
// An invoice view is about 40% of its JSON, and a replay's file is 40%
// smaller (BenchmarkRebuild: 331 bytes an event against 550); decoding a
// view copies its strings in one allocation instead of one per field.
// EncodeView and DecodeView are the only ways in and out.
//
// Decoding allocates at most about 32 bytes for each byte of the value,
// whatever the value says: a list's count is refused before anything is
// allocated for it when the bytes left cannot hold that many of its
// smallest elements, and times share their zones (TestDecodeViewAllocationBounded).
const (
	tagInvoice  byte = 1
	tagPayment  byte = 2
	tagWidget   byte = 3
	tagMerchant byte = 4
	tagAPIKey   byte = 5
	tagRate     byte = 6
	// tagPaying is not a view's: it starts v_meta's keyPaying record
	// (views format 7, apply.go's appendPaying).
	tagPaying byte = 7
	// tagGateway: views format 8.
	tagGateway byte = 8
)

// errViewCodec is what a value that is not a well-formed encoding of the
// view asked for decodes to; callers wrap it in ErrCorrupt.
var errViewCodec = errors.New("malformed view")

// EncodeView returns the stored form of a view: *InvoiceView, *PaymentView,
// *WidgetView, *MerchantView, *APIKey, *Rate or *GatewayView. Any other value is an
// error, and so is a time whose zone offset is not whole minutes or is
// more than a day (the views' times are UTC).
func EncodeView(v any) ([]byte, error) { return encodeView(nil, v) }

// DecodeView decodes a stored view into v, as EncodeView wrote it.
func DecodeView(raw []byte, v any) error {
	switch v := v.(type) {
	case *InvoiceView:
		return decodeInvoice(raw, v)
	case *PaymentView:
		return decodePayment(raw, v)
	case *WidgetView:
		return decodeWidget(raw, v)
	case *MerchantView:
		return decodeMerchant(raw, v)
	case *APIKey:
		return decodeAPIKey(raw, v)
	case *Rate:
		return decodeRate(raw, v)
	case *GatewayView:
		return decodeGateway(raw, v)
	}
	return fmt.Errorf("projections: DecodeView of a %T", v)
}

// encodeView appends v's stored form to dst.
func encodeView(dst []byte, v any) ([]byte, error) {
	w := binEnc{b: dst}
	switch v := v.(type) {
	case *InvoiceView:
		w.b = append(w.b, tagInvoice)
		w.str(v.InvoiceID)
		w.str(v.ExternalID)
		w.str(v.Amount)
		w.str(v.Currency)
		w.str(v.ConversionRate)
		w.str(v.MerchantUSDT)
		w.str(v.Status)
		w.str(v.CustomerID)
		w.str(v.Purpose)
		w.str(v.CallbackURL)
		w.str(v.SuccessURL)
		w.str(v.FailURL)
		w.time(v.CreatedAt)
		w.time(v.ExpiresAt)
		w.timePtr(v.PaidAt)
		w.str(v.MerchantID)
		w.str(v.Source)
		w.uint(v.Version)
		w.str(v.Method)
		w.str(v.Tracking)
		w.str(v.PaymentID)
		w.str(v.StatusURL)
		w.str(v.Account)
		w.str(v.Sender)
		w.strMap(v.ExtraFields)
		w.str(v.WidgetID)
		w.str(v.MerchantExternalID)
		w.str(v.CommissionPercent)
		w.str(v.GrossUSDT)
		w.str(v.FeeUSDT)
		w.boolean(v.Late)
		w.str(v.PaidBy)
		w.str(v.PaidAmount)
		w.str(v.Overpaid)
		w.str(v.CancelReason)
		w.time(v.UpdatedAt)
	case *PaymentView:
		w.b = append(w.b, tagPayment)
		w.str(v.ID)
		w.str(v.GatewayID)
		w.str(v.Status)
		w.str(v.Extra.AccountNumber)
		w.str(v.Extra.AccountName)
		w.str(v.Extra.BankName)
		w.str(v.PaymentCurrency)
		w.str(v.PaymentAmount)
		w.str(v.DestinationCurrency)
		w.str(v.DestinationAmount)
		w.time(v.CreatedAt)
		w.str(v.Stream)
		w.str(v.InvoiceID)
		w.str(v.MerchantID)
		w.str(v.Method)
		w.str(v.Allocation)
		w.boolean(v.Late)
		w.str(v.PaidAmount)
		w.str(v.Reason)
		w.time(v.UpdatedAt)
		w.uint(v.Version)
		w.uint(v.HeldReceipts) // views format 9
		w.str(v.HeldAmount)
	case *WidgetView:
		w.b = append(w.b, tagWidget)
		w.str(v.ID)
		w.str(v.Type)
		w.str(v.Status)
		w.strs(v.Currencies)
		w.str(v.Description)
		w.str(v.LogoURL)
		w.str(v.ReturnURL)
		w.str(v.SupportURL)
		w.str(v.MerchantExternalID)
		w.str(v.FiatCurrency)
		w.str(v.FiatAmount)
		w.time(v.CreatedAt)
		w.timePtr(v.ExpiresAt)
		w.str(v.MerchantID)
		w.uint(v.Version)
		w.time(v.UpdatedAt)
	case *MerchantView:
		w.b = append(w.b, tagMerchant)
		w.str(v.ID)
		w.str(v.Name)
		w.str(v.WebhookURL)
		w.str(v.CommissionPercent)
		w.int(v.InvoiceLifetimeSeconds)
		w.boolean(v.InvoicingEnabled)
		w.strs(v.Methods)
		w.boolean(v.Disabled)
		if v.APIKeys == nil {
			w.b = append(w.b, 0)
		} else {
			w.uint(uint64(len(v.APIKeys)) + 1)
			for _, k := range v.APIKeys {
				w.str(k.KeyID)
				w.str(k.Prefix)
				w.str(k.Label)
				w.time(k.IssuedAt)
				w.timePtr(k.RevokedAt)
			}
		}
		w.int(int64(v.SecretVersion))
		w.int(int64(v.PreviousSecretVersion))
		w.timePtr(v.PreviousValidUntil)
		w.time(v.RegisteredAt)
		w.time(v.UpdatedAt)
		w.uint(v.Version)
	case *APIKey:
		w.b = append(w.b, tagAPIKey)
		w.str(v.MerchantID)
		w.str(v.KeyID)
		w.boolean(v.Revoked)
	case *Rate:
		w.b = append(w.b, tagRate)
		w.str(v.Currency)
		w.str(v.Rate)
		w.time(v.SetAt)
	case *GatewayView:
		w.b = append(w.b, tagGateway)
		w.str(v.ID)
		w.boolean(v.Enabled)
		w.time(v.ChangedAt)
	default:
		return dst, fmt.Errorf("projections: EncodeView of a %T", v)
	}
	if w.err != nil {
		return dst, w.err
	}
	return w.b, nil
}

// binEnc appends the binary form's fields to b; err is the first field
// the form cannot hold.
type binEnc struct {
	b   []byte
	err error
}

func (w *binEnc) uint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }
func (w *binEnc) int(v int64)   { w.b = binary.AppendVarint(w.b, v) }

func (w *binEnc) str(s string) {
	w.b = binary.AppendUvarint(w.b, uint64(len(s)))
	w.b = append(w.b, s...)
}

func (w *binEnc) boolean(v bool) {
	if v {
		w.b = append(w.b, 1)
	} else {
		w.b = append(w.b, 0)
	}
}

func (w *binEnc) time(t time.Time) {
	_, off := t.Zone()
	if !zoneOffsetOK(int64(off)) && w.err == nil {
		w.err = fmt.Errorf("projections: EncodeView of a time with zone offset %ds", off)
	}
	w.int(t.Unix())
	w.uint(uint64(t.Nanosecond()))
	w.int(int64(off))
}

func (w *binEnc) timePtr(t *time.Time) {
	if t == nil {
		w.b = append(w.b, 0)
		return
	}
	w.b = append(w.b, 1)
	w.time(*t)
}

func (w *binEnc) strs(s []string) {
	if s == nil {
		w.b = append(w.b, 0)
		return
	}
	w.uint(uint64(len(s)) + 1)
	for _, e := range s {
		w.str(e)
	}
}

func (w *binEnc) strMap(m map[string]string) {
	w.uint(uint64(len(m)))
	if len(m) == 0 {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		w.str(k)
		w.str(m[k])
	}
}

// binDec reads the binary form. Strings are substrings of s, one copy of
// the whole value: the caller's bytes may be bbolt's, valid only in their
// transaction. The first malformed field sets bad; later reads return
// zero values, and done reports it.
type binDec struct {
	b   []byte // the value
	s   string // the same bytes, copied once
	i   int
	bad bool
}

func newBinDec(raw []byte, tag byte) *binDec {
	d := &binDec{b: raw}
	if len(raw) == 0 || raw[0] != tag {
		d.bad = true
		return d
	}
	d.s, d.i = string(raw), 1
	return d
}

// done reports whether every field was well formed and the value had
// nothing after the last.
func (d *binDec) done() error {
	if d.bad || d.i != len(d.b) {
		return errViewCodec
	}
	return nil
}

func (d *binDec) uint() uint64 { return readVarint(d, binary.Uvarint) }
func (d *binDec) int() int64   { return readVarint(d, binary.Varint) }

func readVarint[T uint64 | int64](d *binDec, read func([]byte) (T, int)) T {
	if d.bad {
		return 0
	}
	v, n := read(d.b[d.i:])
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.i += n
	return v
}

func (d *binDec) byte() byte {
	if d.bad || d.i >= len(d.b) {
		d.bad = true
		return 0
	}
	d.i++
	return d.b[d.i-1]
}

// raw returns a string field's bytes, in the value itself.
func (d *binDec) raw() []byte {
	n := d.uint()
	if d.bad || n > uint64(len(d.b)-d.i) {
		d.bad = true
		return nil
	}
	d.i += int(n)
	return d.b[d.i-int(n) : d.i]
}

func (d *binDec) str() string {
	b := d.raw()
	if d.bad {
		return ""
	}
	return d.s[d.i-len(b) : d.i]
}

func (d *binDec) boolean() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.bad = true
	return false
}

// maxZoneOffset bounds a stored zone offset: a day each way, more than any
// zone has had.
const maxZoneOffset = 24 * 60 * 60

// zoneOffsetOK reports whether a time's zone offset has a stored form:
// whole minutes, as RFC 3339 writes them, and at most a day each way.
func zoneOffsetOK(off int64) bool {
	return off%60 == 0 && off >= -maxZoneOffset && off <= maxZoneOffset
}

// zones holds the locations of the zone offsets a stored time can have,
// each made when first read. time.FixedZone makes a new one (160 bytes)
// for any offset but whole hours from -12 to +14: a value of short times
// in such zones (3 bytes each) would otherwise allocate 50 times its size.
// At most 2,881 are ever made.
var zones [2*maxZoneOffset/60 + 1]atomic.Pointer[time.Location]

// zone returns the location of a stored offset, zoneOffsetOK.
func zone(off int64) *time.Location {
	z := &zones[(off+maxZoneOffset)/60]
	if l := z.Load(); l != nil {
		return l
	}
	z.CompareAndSwap(nil, time.FixedZone("", int(off)))
	return z.Load()
}

func (d *binDec) time() time.Time {
	sec, nsec, off := d.int(), d.uint(), d.int()
	if d.bad || nsec >= 1e9 || !zoneOffsetOK(off) {
		d.bad = true
		return time.Time{}
	}
	// time.Unix accepts any seconds; those past what a Time holds wrap.
	if sec < minUnix || sec > maxUnix {
		d.bad = true
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec))
	if off == 0 {
		return t.UTC()
	}
	return t.In(zone(off))
}

// Bounds on stored seconds: far past any real time, and well inside what
// time.Time's internal seconds (counted from year 1) hold without overflow.
const (
	minUnix = math.MinInt64 / 4
	maxUnix = math.MaxInt64 / 4
)

func (d *binDec) timePtr() *time.Time {
	if !d.boolean() || d.bad {
		return nil
	}
	t := d.time()
	if d.bad {
		return nil
	}
	return &t
}

// The fewest bytes a list's element takes: a count above what the bytes
// left can hold is refused before anything is allocated for it.
const (
	minStr    = 1                      // an empty string
	minTime   = 3                      // seconds, nanoseconds and offset, a byte each
	minPair   = 3                      // a key of a byte and an empty value
	minAPIKey = 3*minStr + minTime + 1 // empty strings, a time, no revocation
)

func (d *binDec) strs() []string {
	n := d.uint()
	if d.bad || n == 0 {
		return nil
	}
	n--
	if n > uint64(len(d.b)-d.i)/minStr {
		d.bad = true
		return nil
	}
	s := make([]string, n)
	for i := range s {
		s[i] = d.str()
	}
	return s
}

func (d *binDec) strMap() map[string]string {
	n := d.uint()
	if d.bad || n == 0 {
		return nil
	}
	// Keys are distinct, so only the first can be empty: n pairs take at
	// least minPair*n-1 bytes.
	if n > (uint64(len(d.b)-d.i)+1)/minPair {
		d.bad = true
		return nil
	}
	// The pairs are read once before the map is sized by their count:
	// each key after the one before it, as EncodeView writes them.
	start := d.i
	var last []byte
	for i := range n {
		k := d.raw()
		d.raw()
		if d.bad || i > 0 && bytes.Compare(k, last) <= 0 {
			d.bad = true
			return nil
		}
		last = k
	}
	d.i = start
	m := make(map[string]string, n)
	for range n {
		k := d.str()
		m[k] = d.str()
	}
	return m
}

func decodeInvoice(raw []byte, v *InvoiceView) error {
	d := newBinDec(raw, tagInvoice)
	*v = InvoiceView{
		InvoiceID:          d.str(),
		ExternalID:         d.str(),
		Amount:             d.str(),
		Currency:           d.str(),
		ConversionRate:     d.str(),
		MerchantUSDT:       d.str(),
		Status:             d.str(),
		CustomerID:         d.str(),
		Purpose:            d.str(),
		CallbackURL:        d.str(),
		SuccessURL:         d.str(),
		FailURL:            d.str(),
		CreatedAt:          d.time(),
		ExpiresAt:          d.time(),
		PaidAt:             d.timePtr(),
		MerchantID:         d.str(),
		Source:             d.str(),
		Version:            d.uint(),
		Method:             d.str(),
		Tracking:           d.str(),
		PaymentID:          d.str(),
		StatusURL:          d.str(),
		Account:            d.str(),
		Sender:             d.str(),
		ExtraFields:        d.strMap(),
		WidgetID:           d.str(),
		MerchantExternalID: d.str(),
		CommissionPercent:  d.str(),
		GrossUSDT:          d.str(),
		FeeUSDT:            d.str(),
		Late:               d.boolean(),
		PaidBy:             d.str(),
		PaidAmount:         d.str(),
		Overpaid:           d.str(),
		CancelReason:       d.str(),
		UpdatedAt:          d.time(),
	}
	return viewDecoded(d, "invoice")
}

// payable is what a payment's creation needs of its invoice.
type payable struct {
	status, merchantID string
	expiresAt          time.Time
}

func payableOf(v *InvoiceView) payable {
	return payable{status: v.Status, merchantID: v.MerchantID, expiresAt: v.ExpiresAt}
}

// invoicePayable reads a stored invoice view's status, merchant and expiry,
// decoding no other field: the fields between them are skipped, not
// copied.
func invoicePayable(raw []byte) (payable, error) {
	d := binDec{b: raw, i: 1}
	if len(raw) == 0 || raw[0] != tagInvoice {
		d.bad = true
	}
	for range 6 { // invoice_id to merchant_usdt
		d.raw()
	}
	var p payable
	p.status = string(d.raw())
	for range 5 { // customer_id to fail_url
		d.raw()
	}
	d.time() // created_at
	p.expiresAt = d.time()
	d.timePtr() // paid_at
	p.merchantID = string(d.raw())
	if d.bad {
		return payable{}, fmt.Errorf("%w: invoice view of %d bytes", errViewCodec, len(raw))
	}
	return p, nil
}

func decodePayment(raw []byte, v *PaymentView) error {
	d := newBinDec(raw, tagPayment)
	*v = PaymentView{
		ID:        d.str(),
		GatewayID: d.str(),
		Status:    d.str(),
		Extra: PaymentExtra{
			AccountNumber: d.str(),
			AccountName:   d.str(),
			BankName:      d.str(),
		},
		PaymentCurrency:     d.str(),
		PaymentAmount:       d.str(),
		DestinationCurrency: d.str(),
		DestinationAmount:   d.str(),
		CreatedAt:           d.time(),
		Stream:              d.str(),
		InvoiceID:           d.str(),
		MerchantID:          d.str(),
		Method:              d.str(),
		Allocation:          d.str(),
		Late:                d.boolean(),
		PaidAmount:          d.str(),
		Reason:              d.str(),
		UpdatedAt:           d.time(),
		Version:             d.uint(),
		HeldReceipts:        d.uint(),
		HeldAmount:          d.str(),
	}
	return viewDecoded(d, "payment")
}

func decodeWidget(raw []byte, v *WidgetView) error {
	d := newBinDec(raw, tagWidget)
	*v = WidgetView{
		ID:                 d.str(),
		Type:               d.str(),
		Status:             d.str(),
		Currencies:         d.strs(),
		Description:        d.str(),
		LogoURL:            d.str(),
		ReturnURL:          d.str(),
		SupportURL:         d.str(),
		MerchantExternalID: d.str(),
		FiatCurrency:       d.str(),
		FiatAmount:         d.str(),
		CreatedAt:          d.time(),
		ExpiresAt:          d.timePtr(),
		MerchantID:         d.str(),
		Version:            d.uint(),
		UpdatedAt:          d.time(),
	}
	return viewDecoded(d, "widget")
}

func decodeMerchant(raw []byte, v *MerchantView) error {
	d := newBinDec(raw, tagMerchant)
	*v = MerchantView{
		ID:                     d.str(),
		Name:                   d.str(),
		WebhookURL:             d.str(),
		CommissionPercent:      d.str(),
		InvoiceLifetimeSeconds: d.int(),
		InvoicingEnabled:       d.boolean(),
		Methods:                d.strs(),
		Disabled:               d.boolean(),
		APIKeys:                d.apiKeys(),
		SecretVersion:          d.smallInt(),
		PreviousSecretVersion:  d.smallInt(),
		PreviousValidUntil:     d.timePtr(),
		RegisteredAt:           d.time(),
		UpdatedAt:              d.time(),
		Version:                d.uint(),
	}
	return viewDecoded(d, "merchant")
}

func (d *binDec) apiKeys() []APIKeyInfo {
	n := d.uint()
	if d.bad || n == 0 {
		return nil
	}
	n--
	if n > uint64(len(d.b)-d.i)/minAPIKey {
		d.bad = true
		return nil
	}
	keys := make([]APIKeyInfo, n)
	for i := range keys {
		keys[i] = APIKeyInfo{KeyID: d.str(), Prefix: d.str(), Label: d.str(), IssuedAt: d.time(), RevokedAt: d.timePtr()}
	}
	return keys
}

// smallInt reads an int, refusing one the platform's int cannot hold.
func (d *binDec) smallInt() int {
	v := d.int()
	if int64(int(v)) != v {
		d.bad = true
		return 0
	}
	return int(v)
}

func decodeAPIKey(raw []byte, v *APIKey) error {
	d := newBinDec(raw, tagAPIKey)
	*v = APIKey{MerchantID: d.str(), KeyID: d.str(), Revoked: d.boolean()}
	return viewDecoded(d, "api key")
}

func decodeRate(raw []byte, v *Rate) error {
	d := newBinDec(raw, tagRate)
	*v = Rate{Currency: d.str(), Rate: d.str(), SetAt: d.time()}
	return viewDecoded(d, "rate")
}

func decodeGateway(raw []byte, v *GatewayView) error {
	d := newBinDec(raw, tagGateway)
	*v = GatewayView{ID: d.str(), Enabled: d.boolean(), ChangedAt: d.time()}
	return viewDecoded(d, "gateway")
}

func viewDecoded(d *binDec, kind string) error {
	if err := d.done(); err != nil {
		return fmt.Errorf("%w: %s view of %d bytes", err, kind, len(d.b))
	}
	return nil
}
