package projections

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// binaryViews are the stored views, one of each.
var binaryViews = []any{&InvoiceView{}, &PaymentView{}, &WidgetView{}, &MerchantView{}, &APIKey{}, &Rate{}}

// viewOfTag is the view each tag names.
var viewOfTag = map[byte]any{tagInvoice: &InvoiceView{}, tagPayment: &PaymentView{}, tagWidget: &WidgetView{},
	tagMerchant: &MerchantView{}, tagAPIKey: &APIKey{}, tagRate: &Rate{}}

// newLike returns a new zero value of the type v points to.
func newLike(v any) any { return reflect.New(reflect.TypeOf(v).Elem()).Interface() }

// filled returns a view of typ's type with every field set from rng, and
// its encoding.
func filled(rng *rand.Rand, typ any) (any, []byte) {
	v := newLike(typ)
	fill(rng, reflect.ValueOf(v).Elem())
	raw, _ := EncodeView(v)
	return v, raw
}

// normalized is what a view reads back as: an empty map is nil, as a view
// without extra fields has none.
func normalized(v any) any {
	if inv, ok := v.(*InvoiceView); ok && len(inv.ExtraFields) == 0 {
		c := *inv
		c.ExtraFields = nil
		return &c
	}
	return v
}

func TestViewCodecRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, typ := range binaryViews {
		for range 3000 {
			v := newLike(typ)
			fill(rng, reflect.ValueOf(v).Elem())
			raw, err := encodeView([]byte("junk"), v)
			if err != nil {
				t.Fatal(err)
			}
			if string(raw[:4]) != "junk" {
				t.Fatalf("%T: the prefix was overwritten: %q", v, raw[:4])
			}
			got := newLike(typ)
			if err := DecodeView(raw[4:], got); err != nil {
				t.Fatalf("%T: %v", v, err)
			}
			if want := normalized(v); !reflect.DeepEqual(got, want) {
				t.Fatalf("%T:\ngot  %+v\nwant %+v", v, got, want)
			}
			// The same view always encodes to the same bytes (Compare
			// and the audit compare views byte for byte).
			again, _ := EncodeView(got)
			if !bytes.Equal(again, raw[4:]) {
				t.Fatalf("%T: encoded differently after a round trip", v)
			}
		}
	}
}

// TestViewCodecTimes: the instant and the zone offset come back; UTC (and
// any zero offset) comes back as UTC, the zero time as the zero time.
func TestViewCodecTimes(t *testing.T) {
	kyiv := time.FixedZone("EET", 2*60*60)
	for _, tm := range []time.Time{
		{},
		time.Date(2026, 11, 22, 1, 2, 3, 456789012, time.UTC),
		time.Date(2026, 11, 22, 1, 2, 3, 4, kyiv),
		time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC), // negative seconds
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC), // JSON could not hold it
		time.Now(), // monotonic reading and Local: neither is kept
	} {
		in := &PaymentView{CreatedAt: tm, UpdatedAt: tm}
		raw, err := EncodeView(in)
		if err != nil {
			t.Fatal(err)
		}
		var out PaymentView
		if err := DecodeView(raw, &out); err != nil {
			t.Fatalf("%v: %v", tm, err)
		}
		if !out.CreatedAt.Equal(tm) {
			t.Errorf("%v came back as %v", tm, out.CreatedAt)
		}
		_, off := tm.Zone()
		if _, got := out.CreatedAt.Zone(); got != off {
			t.Errorf("%v: offset %d, want %d", tm, got, off)
		}
		if off == 0 && out.CreatedAt.Location() != time.UTC {
			t.Errorf("%v: location %v, want UTC", tm, out.CreatedAt.Location())
		}
		if tm.IsZero() && out.CreatedAt != (time.Time{}) {
			t.Errorf("zero time came back as %#v", out.CreatedAt)
		}
	}
}

// TestViewCodecZoneOffsets: a time in a zone of whole minutes, up to a day
// each way, is stored; one whose offset has seconds, or is more than a
// day, is not, as DecodeView would refuse it.
func TestViewCodecZoneOffsets(t *testing.T) {
	at := time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC)
	for _, off := range []int{5*3600 + 45*60, -9*3600 - 30*60, maxZoneOffset, -maxZoneOffset} {
		in := &Rate{SetAt: at.In(time.FixedZone("", off))}
		raw, err := EncodeView(in)
		if err != nil {
			t.Fatalf("offset %d: %v", off, err)
		}
		var out Rate
		if err := DecodeView(raw, &out); err != nil {
			t.Fatalf("offset %d: %v", off, err)
		}
		if _, got := out.SetAt.Zone(); !out.SetAt.Equal(at) || got != off {
			t.Errorf("offset %d: %v came back as %v", off, in.SetAt, out.SetAt)
		}
	}
	for _, off := range []int{30, -3600 - 1, maxZoneOffset + 60} {
		if raw, err := EncodeView(&Rate{SetAt: at.In(time.FixedZone("", off))}); err == nil {
			t.Errorf("offset %d: encoded as %x", off, raw)
		}
	}
}

// TestViewCodecSmallerThanJSON: the point of the binary form, on a view as
// the commands fill it.
func TestViewCodecSmallerThanJSON(t *testing.T) {
	now := time.Date(2026, 11, 22, 1, 2, 3, 456789012, time.UTC)
	inv := &InvoiceView{
		InvoiceID: "0f8fad5b-d9cb-469f-a165-70867728950e", ExternalID: "order-123456", Amount: "1500.00",
		Currency: "UAH", ConversionRate: "41.50", MerchantUSDT: "35.42", Status: "pending",
		CustomerID: "customer-42", Purpose: "Order 123456", CallbackURL: "https://shop.example/callback",
		SuccessURL: "https://shop.example/success", FailURL: "https://shop.example/fail",
		CreatedAt: now, ExpiresAt: now.Add(20 * time.Minute), MerchantID: "m_01JD6Z0ZKQ", Source: "api",
		Version: 1, CommissionPercent: "2", GrossUSDT: "36.14", FeeUSDT: "0.72", UpdatedAt: now,
	}
	raw, _ := EncodeView(inv)
	js, _ := json.Marshal(inv)
	t.Logf("invoice view: %d bytes, JSON %d", len(raw), len(js))
	if len(raw)*2 > len(js) {
		t.Errorf("binary invoice view is %d bytes, JSON %d: want at most half", len(raw), len(js))
	}
}

func TestViewCodecRefusesMalformed(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, typ := range binaryViews {
		v, raw := filled(rng, typ)
		refused := func(what string, b []byte) {
			t.Helper()
			err := DecodeView(b, newLike(typ))
			if !errors.Is(err, errViewCodec) {
				t.Errorf("%T %s: err %v, want errViewCodec", v, what, err)
			}
		}
		for n := range len(raw) {
			refused("cut short", raw[:n])
		}
		refused("with a byte after it", append(bytes.Clone(raw), 0))
		wrong := bytes.Clone(raw)
		wrong[0] = 9
		refused("with another tag", wrong)
		refused("as JSON", []byte(`{"id":"x"}`))
	}
	// A payment view with every field empty but these: the time's
	// nanoseconds and zone offset, and the late flag.
	payment := func(nsec uint64, off int64, late byte) []byte {
		w := binEnc{b: []byte{tagPayment}}
		for range 10 {
			w.str("")
		}
		w.b = binary.AppendVarint(w.b, 1_700_000_000)
		w.uint(nsec)
		w.b = binary.AppendVarint(w.b, off)
		for range 5 {
			w.str("")
		}
		w.b = append(w.b, late)
		w.str("")
		w.str("")
		w.time(time.Time{})
		w.uint(0)
		w.uint(0) // held_receipts, held_amount (views format 9)
		w.str("")
		return w.b
	}
	if err := DecodeView(payment(999_999_999, -maxZoneOffset, 1), &PaymentView{}); err != nil {
		t.Errorf("the largest fields refused: %v", err)
	}
	for _, c := range []struct {
		what string
		raw  []byte
	}{
		{"nanoseconds of a whole second", payment(1e9, 0, 0)},
		{"an offset past a day", payment(0, maxZoneOffset+1, 0)},
		{"an offset of a minute and a second", payment(0, 61, 0)},
		{"a bool of 2", payment(0, 0, 2)},
		{"a string longer than the value", []byte{tagPayment, 100, 'a', 'b'}},
	} {
		if err := DecodeView(c.raw, &PaymentView{}); !errors.Is(err, errViewCodec) {
			t.Errorf("%s: err %v, want errViewCodec", c.what, err)
		}
	}
	// Extra fields' keys are in ascending order, each once, as EncodeView
	// writes them.
	invoice := func(pairs ...string) []byte {
		w := invoiceBeforeExtra()
		w.uint(uint64(len(pairs) / 2))
		for _, s := range pairs {
			w.str(s)
		}
		invoiceAfterExtra(&w)
		return w.b
	}
	if err := DecodeView(invoice("", "x", "a", "y", "b", ""), &InvoiceView{}); err != nil {
		t.Errorf("extra fields in order refused: %v", err)
	}
	for what, raw := range map[string][]byte{
		"extra fields out of order": invoice("b", "x", "a", "y"),
		"an extra field twice":      invoice("a", "x", "a", "y"),
	} {
		if err := DecodeView(raw, &InvoiceView{}); !errors.Is(err, errViewCodec) {
			t.Errorf("%s: err %v, want errViewCodec", what, err)
		}
	}
	if err := DecodeView(nil, &InvoiceView{}); !errors.Is(err, errViewCodec) {
		t.Errorf("empty: %v", err)
	}
	// Only the views have a stored form.
	if raw, err := EncodeView(&Balance{}); err == nil {
		t.Errorf("a Balance encoded: %x", raw)
	}
	if err := DecodeView([]byte{tagRate}, &Balance{}); err == nil {
		t.Error("a Balance decoded")
	}
}

// TestInvoicePayable: what a payment's creation reads from its invoice's
// stored view without decoding the rest is the view's.
func TestInvoicePayable(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for range 3000 {
		v, raw := filled(rng, &InvoiceView{})
		got, err := invoicePayable(raw)
		if want := payableOf(v.(*InvoiceView)); err != nil || got != want {
			t.Fatalf("invoicePayable = %+v, %v; want %+v", got, err, want)
		}
	}
	// Every cut before the merchant id's end is refused.
	_, raw := filled(rng, &InvoiceView{})
	d := binDec{b: raw, i: 1}
	for range 12 { // invoice_id to fail_url
		d.raw()
	}
	d.time()
	d.time()
	d.timePtr()
	d.raw() // merchant_id
	end := d.i
	for n := range end {
		if got, err := invoicePayable(raw[:n]); !errors.Is(err, errViewCodec) {
			t.Errorf("cut at %d of %d: %+v, %v", n, end, got, err)
		}
	}
	_, raw = filled(rng, &PaymentView{})
	if _, err := invoicePayable(raw); !errors.Is(err, errViewCodec) {
		t.Errorf("a payment view: %v", err)
	}
}

// fuzzing reports whether go test was asked to fuzz (-fuzz), not only to
// run the fuzz targets' corpora.
func fuzzing() bool {
	f := flag.Lookup("test.fuzz")
	return f != nil && f.Value.String() != ""
}

func FuzzDecodeView(f *testing.F) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, typ := range binaryViews {
		_, raw := filled(rng, typ)
		f.Add(raw)
	}
	f.Add([]byte{tagInvoice})
	for _, c := range hostileViews(64) {
		f.Add(c.raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		// Whatever raw is, decoding it allocates in proportion to its
		// size (TestDecodeViewAllocationBounded). Only the view its tag
		// names reads past the tag. Checked on the corpus that go test
		// runs, not while fuzzing: runtime.ReadMemStats stops the world,
		// and fuzzing ran 5 times fewer values with it.
		if !fuzzing() && len(raw) > 0 && viewOfTag[raw[0]] != nil {
			if msg, over := decodeAllocOver(raw, viewOfTag[raw[0]]); over {
				t.Fatal(msg)
			}
		}
		for _, typ := range binaryViews {
			v := newLike(typ)
			if DecodeView(raw, v) != nil {
				continue
			}
			// What decodes re-encodes to a value that decodes the same.
			again, err := EncodeView(v)
			if err != nil {
				t.Fatal(err)
			}
			w := newLike(typ)
			if err := DecodeView(again, w); err != nil {
				t.Fatalf("%T: re-encoded %x does not decode: %v", v, again, err)
			}
			if !reflect.DeepEqual(v, w) {
				t.Fatalf("%T: %+v re-decoded as %+v", v, v, w)
			}
		}
	})
}

// TestPayingRecord: keyPaying's record (format 7) decodes to what was
// encoded, amounts compared as numbers, small or not; a record cut short,
// with bytes after it, of another tag or in format 6's layout (the
// sequence and the stream) does not decode.
func TestPayingRecord(t *testing.T) {
	at := time.Date(2026, 2, 25, 12, 0, 0, 123456789, time.UTC)
	for _, amount := range []string{"1500", "1500.00", "0.000001", "123456789012345678901234567890.5"} {
		n, ok := parseNum([]byte(amount))
		if !ok {
			t.Fatalf("parseNum(%q)", amount)
		}
		a := awaitedPaid{seq: 1 << 40, stream: "payment-01KJAAQ6G00000000000000006", at: at, paid: n}
		rec, err := appendPaying(nil, a)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodePaying(rec)
		if err != nil || got.seq != a.seq || got.stream != a.stream || !got.at.Equal(at) || !got.paid.equal(n) {
			t.Errorf("%s: decoded %+v (%v), want %+v", amount, got, err, a)
		}
		for i := range len(rec) {
			if _, err := decodePaying(rec[:i]); err == nil {
				t.Errorf("%s: the record cut to %d of %d bytes decodes", amount, i, len(rec))
			}
		}
		if _, err := decodePaying(append(slices.Clone(rec), 0)); err == nil {
			t.Errorf("%s: the record with a byte after it decodes", amount)
		}
		other := slices.Clone(rec)
		other[0] = tagRate
		if _, err := decodePaying(other); err == nil {
			t.Errorf("%s: the record under another tag decodes", amount)
		}
	}
	old := append(binary.BigEndian.AppendUint64(nil, 1<<40), "payment-01KJAAQ6G00000000000000006"...)
	if a, err := decodePaying(old); err == nil {
		t.Errorf("format 6's record decodes, to %+v", a)
	}
}
