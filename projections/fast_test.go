package projections

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/commands"
)

// Strings that exercise escaping and encoding/json's corner cases.
var oddStrings = []string{"", "plain", "Иванов Иван", "a\"b", `back\slash`, "<&>", "tab\there", "nl\n", "\x01ctl",
	"\u2028sep\u2029", "bad\xffutf8", "emoji 💸", "/slash", "\u007f"}

// fill sets every field of the value v points to, recursively, from rng:
// strings sometimes odd, times sometimes with nanoseconds, slices and maps
// sometimes nil.
func fill(rng *rand.Rand, v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.Type().Elem() == reflect.TypeFor[time.Time]() && rng.IntN(4) == 0 {
			v.SetZero()
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(rng, v.Elem())
	case reflect.Struct:
		switch v.Type() {
		case reflect.TypeFor[time.Time]():
			t := time.Date(2000+rng.IntN(60), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), 0, time.UTC)
			if rng.IntN(2) == 0 {
				t = t.Add(time.Duration(rng.IntN(1e9)))
			}
			if rng.IntN(5) == 0 {
				t = time.Time{}
			}
			v.Set(reflect.ValueOf(t))
			return
		case reflect.TypeFor[decimal.Decimal]():
			d := decimal.New(rng.Int64N(1e12)-1e11, -int32(rng.IntN(9)))
			if rng.IntN(5) == 0 {
				d = decimal.Zero
			}
			v.Set(reflect.ValueOf(d))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(rng, v.Field(i))
			}
		}
	case reflect.String:
		if rng.IntN(3) == 0 {
			v.SetString(oddStrings[rng.IntN(len(oddStrings))])
		} else {
			v.SetString(fmt.Sprintf("s%d", rng.IntN(1000)))
		}
	case reflect.Bool:
		v.SetBool(rng.IntN(2) == 0)
	case reflect.Int, reflect.Int64:
		v.SetInt(rng.Int64N(1<<40) - 1<<39)
	case reflect.Uint64:
		v.SetUint(rng.Uint64())
	case reflect.Slice:
		if rng.IntN(4) == 0 {
			v.SetZero()
			return
		}
		n := rng.IntN(4)
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			fill(rng, s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		if rng.IntN(3) == 0 {
			v.SetZero()
			return
		}
		m := reflect.MakeMap(v.Type())
		for range rng.IntN(4) {
			k := reflect.New(v.Type().Key()).Elem()
			e := reflect.New(v.Type().Elem()).Elem()
			fill(rng, k)
			fill(rng, e)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	default:
		panic("fill: " + v.Type().String())
	}
}

// fastTypes are the event types with a fast decoder.
var fastTypes = []string{
	commands.TypeInvoiceCreated, commands.TypeInvoiceCancelled, commands.TypeInvoiceExpired, commands.TypeInvoicePaid,
	commands.TypePaymentCreated, commands.TypePaymentConfirmed, commands.TypePaymentProcessed,
	commands.TypeWidgetCreated, commands.TypeWidgetStatusChanged,
}

// checkSame decodes data with the fast path, with and without a cache, and
// with encoding/json (then mirror); where the fast path succeeds,
// encoding/json must too, with the same result.
func checkSame(t *testing.T, typ string, data []byte) (fast bool) {
	t.Helper()
	a, a2 := newFast(typ), newFast(typ)
	okA, okA2 := fastDecode(data, a, nil), fastDecode(data, a2, newCache())
	if okA != okA2 {
		t.Fatalf("%s %q: the cache changed the fast path's verdict", typ, data)
	}
	if !okA {
		return false
	}
	b := newData(typ)
	if err := json.Unmarshal(data, b); err != nil {
		t.Fatalf("%s: fast path accepted %q, encoding/json: %v", typ, data, err)
	}
	mb := mirror(b)
	if !reflect.DeepEqual(a, mb) || !reflect.DeepEqual(a2, mb) {
		t.Fatalf("%s from %q:\nfast %+v\njson %+v", typ, data, a, mb)
	}
	return true
}

func TestFastDecodeMatchesJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, typ := range fastTypes {
		fast := 0
		for range 2000 {
			v := reflect.ValueOf(newData(typ))
			fill(rng, v.Elem())
			data, err := json.Marshal(v.Interface())
			if err != nil {
				t.Fatal(err)
			}
			if checkSame(t, typ, data) {
				fast++
			}
		}
		// Most generated data must take the fast path, or it is not one.
		if fast < 500 {
			t.Errorf("%s: fast path taken %d times of 2000", typ, fast)
		}
	}
	// Plain data, as the commands write it, always takes it.
	for _, typ := range fastTypes {
		data, _ := json.Marshal(newData(typ))
		if !checkSame(t, typ, data) {
			t.Errorf("%s: zero value %s not decoded by the fast path", typ, data)
		}
	}
}

func TestFastDecodeEdges(t *testing.T) {
	for _, c := range []struct {
		typ  string
		data string
		fast bool
	}{
		{commands.TypeInvoicePaid, `null`, true},
		{commands.TypeInvoicePaid, ` {"payment_id":"p","late":true,"paid_amount":12.50,"overpaid":null} `, true},
		{commands.TypeInvoicePaid, `{"Payment_ID":"p"}`, false},        // case-folded key: encoding/json fills it
		{commands.TypeInvoicePaid, `{"payment_id":"a\u0041\n"}`, true}, // escapes: decoded by encoding/json, this string only
		{commands.TypeInvoicePaid, `{"payment\u005fid":"p"}`, false},   // escaped key
		{commands.TypeInvoicePaid, `{"payment_id":5}`, false},          // type mismatch
		{commands.TypeInvoicePaid, `{"payment_id":"p"} x`, false},      // trailing data
		{commands.TypeInvoicePaid, `{"payment_id":"p",}`, false},       // syntax
		{commands.TypeInvoicePaid, `{"paid_at":"2026-02-30T00:00:00Z"}`, false},
		{commands.TypeInvoicePaid, `{"unknown":{"a":[1,2,{"b":null}]},"late":false}`, true},
		{commands.TypeInvoicePaid, `{"unknown":[1,}`, false},
		{commands.TypeInvoicePaid, `{"paid_amount":"1e3"}`, true},
		{commands.TypeInvoicePaid, `{"paid_amount":"-007.50","overpaid":"123456789012345678.9"}`, true},
		{commands.TypeInvoicePaid, `{"paid_amount":"5."}`, true},
		{commands.TypeInvoicePaid, `{"paid_amount":"5.5.5"}`, false},
		{commands.TypeInvoicePaid, `{"paid_amount":".5"}`, true},
		{commands.TypeInvoicePaid, `{"paid_amount":""}`, false},
		{commands.TypeInvoicePaid, `{"paid_amount":true}`, false},
		{commands.TypePaymentProcessed, `{"postings":[{"account":"a","currency":"X","amount":"1"}],"postings":[{"amount":"2"}]}`, false},
		{commands.TypePaymentProcessed, `{"postings":null}`, true},
		{commands.TypePaymentProcessed, `{"postings":[null,{"amount":"-1"}]}`, true},
		{commands.TypePaymentCreated, `{"extra":{"bankName":"b"},"extra":{"accountName":"n"}}`, true},
		{commands.TypeWidgetCreated, `{"currencies":["a",null]}`, false},
		{commands.TypeWidgetCreated, `{"currencies":["a"],"currencies":[]}`, true},
		{commands.TypeInvoiceCreated, `{"extra_fields":{"a":"1"},"extra_fields":{"b":"2"}}`, true},
		{commands.TypeInvoiceCreated, "{\"purpose\":\"caf\xc3\xa9\"}", true},
		{commands.TypeInvoiceCreated, "{\"purpose\":\"bad\xff\"}", true},
	} {
		if got := checkSame(t, c.typ, []byte(c.data)); got != c.fast {
			t.Errorf("%s %s: fast path %v, want %v", c.typ, c.data, got, c.fast)
		}
	}
}

func FuzzFastDecode(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, typ := range fastTypes {
		v := reflect.ValueOf(newData(typ))
		fill(rng, v.Elem())
		data, _ := json.Marshal(v.Interface())
		f.Add(data)
	}
	f.Add([]byte(`{"postings":[{"account":"a","currency":"X","amount":1e2}],"late":true}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, typ := range fastTypes {
			checkSame(t, typ, data)
		}
	})
}
