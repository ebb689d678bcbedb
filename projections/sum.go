package projections

import (
	"fmt"
	"slices"

	"github.com/shopspring/decimal"
	"go.etcd.io/bbolt"
)

// sum adds decimals exactly: as an int64 coefficient at the smallest
// exponent seen while that stays under 10^18, as a decimal.Decimal beyond.
// Balances are sums of postings, a dozen per processed payment, and
// decimal.Add allocates on every call.
type sum struct {
	m   int64
	e   int32
	big *decimal.Decimal // set once the sum left the int64 path
}

// addNum adds n.
func (a *sum) addNum(n num) {
	if n.d == nil && a.big == nil {
		m := n.m
		if a.align(&m, n.e) {
			if r := a.m + m; abs64(r) < pow10[18] {
				a.m = r
				return
			}
		}
	}
	a.add(n.decimal())
}

func (a *sum) add(d decimal.Decimal) {
	if a.big == nil {
		if m, e, ok := small(d); ok && a.align(&m, e) {
			if r := a.m + m; abs64(r) < pow10[18] {
				a.m = r
				return
			}
		}
		v := decimal.New(a.m, a.e)
		a.big = &v
	}
	*a.big = a.big.Add(d)
}

// align brings a and m (at exponent e) to the same exponent, if both stay
// under 10^18.
func (a *sum) align(m *int64, e int32) bool {
	switch {
	case e < a.e:
		k := a.e - e
		if k > 18 || abs64(a.m) >= pow10[18-k] {
			return false
		}
		a.m *= pow10[k]
		a.e = e
	case e > a.e:
		k := e - a.e
		if k > 18 || abs64(*m) >= pow10[18-k] {
			return false
		}
		*m *= pow10[k]
	}
	return true
}

func (a *sum) value() decimal.Decimal {
	if a.big != nil {
		return *a.big
	}
	return decimal.New(a.m, a.e)
}

// addTo adds n to the sum under k in m.
func addTo(m map[string]*sum, k string, n num) {
	a := m[k]
	if a == nil {
		a = &sum{}
		m[k] = a
	}
	a.addNum(n)
}

// flushSums adds the sums to those stored, kept as canonical decimal text
// (decimal.String: no trailing zeros), so that equal sums are equal bytes
// whatever path produced them.
func flushSums(b *bbolt.Bucket, sums map[string]*sum) error {
	keys := make([]string, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		a := sums[k]
		if old := b.Get([]byte(k)); old != nil {
			d, err := decimal.NewFromString(string(old))
			if err != nil {
				return fmt.Errorf("%w: sum %q: %v", ErrCorrupt, k, err)
			}
			a.add(d)
		}
		if err := b.Put([]byte(k), []byte(plainString(a.value()))); err != nil {
			return err
		}
	}
	clear(sums)
	return nil
}
