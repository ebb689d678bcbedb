package projections

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// Decoding a stored value of n bytes allocates at most
// decodeAllocPerByte*n + decodeAllocFixed bytes, whatever the value says.
//
// decodeAllocPerByte: what costs most for its encoded size is an
// extra_fields entry: a slot of two string headers (32 bytes) in a table
// kept at most 7/8 full and sized in powers of two, about 90 bytes at
// worst, for a pair of 3 bytes (a 1-byte key and an empty value; keys are
// distinct and in order, so only the first can be empty): under 30 bytes
// a byte. Then a currency or method (16 bytes for an empty string's byte),
// an API key (80 bytes for 7, and 24 more for a revocation's 4) and the one
// copy of the value (a byte a byte). Times allocate nothing: zones are
// shared (the table of them is filled once a process, at most 2,881 of
// them, and left out here by decoding each value once first). Measured on
// hostileViews: about 26 bytes a byte at most (extra fields), 21
// (currencies), 15 (API keys); 95 before lists were bounded by their
// elements' size.
//
// decodeAllocFixed: what does not grow with the value: the decoder, an
// empty map's first group (336 bytes), the *time.Time fields, and the
// rounding of each allocation up to its size class.
const (
	decodeAllocPerByte = 32
	decodeAllocFixed   = 2048
)

// decodeAllocBytes returns the bytes one DecodeView of raw into a view of
// typ's type allocates, the least of a few tries (another goroutine's
// allocation counts in runtime.MemStats too), after a first decode.
func decodeAllocBytes(raw []byte, typ any, tries int) uint64 {
	v := newLike(typ)
	DecodeView(raw, v)
	least := uint64(math.MaxUint64)
	var before, after runtime.MemStats
	for range tries {
		runtime.ReadMemStats(&before)
		DecodeView(raw, v)
		runtime.ReadMemStats(&after)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	return least
}

// decodeAllocOver returns what decoding raw allocates past the bound, and
// whether it does.
func decodeAllocOver(raw []byte, typ any) (string, bool) {
	limit := decodeAllocPerByte*uint64(len(raw)) + decodeAllocFixed
	got := decodeAllocBytes(raw, typ, 1)
	if got > limit {
		got = decodeAllocBytes(raw, typ, 3)
	}
	if got <= limit {
		return "", false
	}
	return fmt.Sprintf("%T of %d bytes: allocates %d bytes (%.1f a byte), limit %d",
		typ, len(raw), got, float64(got)/float64(len(raw)), limit), true
}

// Views with every field before a list empty: the list's count and
// elements follow.
func merchantBeforeKeys() binEnc {
	w := binEnc{b: []byte{tagMerchant}}
	for range 4 { // id to commission_percent
		w.str("")
	}
	w.int(0)         // invoice_lifetime_seconds
	w.boolean(false) // invoicing_enabled
	w.strs(nil)      // methods
	w.boolean(false) // disabled
	return w
}

func merchantAfterKeys(w *binEnc) {
	w.int(0)
	w.int(0)
	w.timePtr(nil)
	w.time(time.Time{})
	w.time(time.Time{})
	w.uint(0)
}

func widgetBeforeCurrencies() binEnc {
	w := binEnc{b: []byte{tagWidget}}
	for range 3 { // id, type, status
		w.str("")
	}
	return w
}

func widgetAfterCurrencies(w *binEnc) {
	for range 7 { // description to fiat_amount
		w.str("")
	}
	w.time(time.Time{})
	w.timePtr(nil)
	w.str("")
	w.uint(0)
	w.time(time.Time{})
}

func invoiceBeforeExtra() binEnc {
	w := binEnc{b: []byte{tagInvoice}}
	for range 12 { // invoice_id to fail_url
		w.str("")
	}
	w.time(time.Time{})
	w.time(time.Time{})
	w.timePtr(nil)
	w.str("")     // merchant_id
	w.str("")     // source
	w.uint(0)     // version
	for range 6 { // method to sender
		w.str("")
	}
	return w
}

func invoiceAfterExtra(w *binEnc) {
	for range 5 { // widget_id to fee_usdt
		w.str("")
	}
	w.boolean(false)
	for range 4 { // paid_by to cancel_reason
		w.str("")
	}
	w.time(time.Time{})
}

// minuteZone returns the i-th of the zones a minute apart that are not
// whole hours, cycling through those within a day each way.
func minuteZone(i int) *time.Location {
	const minutes = 2 * 24 * 60
	m := i%minutes - 24*60
	if m%60 == 0 {
		m++
	}
	return time.FixedZone("", m*60)
}

// shortKey returns the i-th of the shortest keys: "", then every byte,
// then every two bytes.
func shortKey(i int) string {
	switch {
	case i == 0:
		return ""
	case i <= 256:
		return string([]byte{byte(i - 1)})
	}
	i -= 257
	return string([]byte{byte(i >> 8), byte(i)})
}

// hostileView is a stored value and the view it is read as.
type hostileView struct {
	typ any
	raw []byte
}

// hostileViews returns values built to allocate the most for their size,
// with n elements in their one list: a list claiming more elements than
// follow it (a count as the codec's earlier bounds let through), and a
// list of the smallest elements, for each kind of list.
func hostileViews(n int) map[string]hostileView {
	out := map[string]hostileView{}
	add := func(name string, typ any, raw []byte) { out[name] = hostileView{typ, raw} }

	// API keys: a count as large as the bytes after it; n smallest keys
	// (a zero byte is an empty string, a zero time's field or no
	// revocation); n keys revoked, their times in zones of minutes.
	w := merchantBeforeKeys()
	w.uint(uint64(n) + 1)
	add("api keys claimed", &MerchantView{}, append(w.b, make([]byte, n)...))
	w = merchantBeforeKeys()
	w.uint(uint64(n) + 1)
	w.b = append(w.b, make([]byte, 7*n)...)
	merchantAfterKeys(&w)
	add("api keys smallest", &MerchantView{}, w.b)
	w = merchantBeforeKeys()
	w.uint(uint64(n) + 1)
	for i := range n {
		w.str("")
		w.str("")
		w.str("")
		w.time(time.Unix(0, 0).In(minuteZone(2 * i)))
		at := time.Unix(0, 0).In(minuteZone(2*i + 1))
		w.timePtr(&at)
	}
	merchantAfterKeys(&w)
	add("api keys in zones", &MerchantView{}, w.b)

	// Currencies: a count as large as the bytes after it, then n empty
	// strings.
	w = widgetBeforeCurrencies()
	w.uint(uint64(n) + 1)
	add("currencies claimed", &WidgetView{}, append(w.b, make([]byte, n)...))
	w = widgetBeforeCurrencies()
	w.strs(make([]string, n))
	widgetAfterCurrencies(&w)
	add("currencies empty", &WidgetView{}, w.b)

	// Extra fields: a count of half the bytes after it (pairs of empty
	// strings); a count of a third of them, as many as distinct keys
	// could fill, but the second key is the first again; n pairs of the
	// shortest distinct keys and empty values.
	w = invoiceBeforeExtra()
	w.uint(uint64(n))
	add("extra fields claimed", &InvoiceView{}, append(w.b, make([]byte, 2*n)...))
	w = invoiceBeforeExtra()
	w.uint(uint64(n))
	add("extra fields repeated", &InvoiceView{}, append(w.b, make([]byte, 3*n-1)...))
	w = invoiceBeforeExtra()
	extra := make(map[string]string, n)
	for i := range n {
		extra[shortKey(i)] = ""
	}
	w.strMap(extra)
	invoiceAfterExtra(&w)
	add("extra fields shortest", &InvoiceView{}, w.b)
	return out
}

// listSizes are element counts from 1 to 1<<14, every one up to 64, then
// about 5% apart.
func listSizes() []int {
	var ns []int
	for n := 1; n <= 1<<14; n = max(n+1, n*21/20) {
		ns = append(ns, n)
	}
	return ns
}

// TestDecodeViewAllocationBounded: no stored value makes DecodeView
// allocate more than decodeAllocPerByte bytes for each of its bytes (and
// decodeAllocFixed): lists are sized by what the bytes left can hold, not
// by the count they claim.
func TestDecodeViewAllocationBounded(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	worst := map[string]float64{}
	for _, n := range listSizes() {
		for name, c := range hostileViews(n) {
			if msg, over := decodeAllocOver(c.raw, c.typ); over {
				t.Fatalf("%s, %d elements: %s", name, n, msg)
			}
			if n >= 256 {
				ratio := float64(decodeAllocBytes(c.raw, c.typ, 3)) / float64(len(c.raw))
				worst[name] = max(worst[name], ratio)
			}
		}
	}
	for name, r := range worst {
		t.Logf("%-22s (256 elements or more): at most %4.1f bytes allocated a byte", name, r)
	}
	// Generated views of every type, and every cut of them.
	rng := rand.New(rand.NewPCG(13, 14))
	for _, typ := range binaryViews {
		for range 20 {
			_, raw := filled(rng, typ)
			for n := range len(raw) + 1 {
				if msg, over := decodeAllocOver(raw[:n], typ); over {
					t.Fatalf("generated, cut at %d: %s", n, msg)
				}
			}
		}
	}
}
