package projections

// cache keeps what one decoding goroutine sees again and again: the strings
// that repeat from event to event (merchant ids, currencies, URLs) and the
// view keys of posting accounts. It is bounded: past maxCached entries it
// starts afresh. Not safe for concurrent use: one per goroutine.
type cache struct {
	strs map[string]string
	keys map[accountKey]postingKeys
}

type accountKey struct{ account, currency string }

type postingKeys struct{ balance, merchantTotal string }

const maxCached = 1 << 14

func newCache() *cache {
	return &cache{strs: make(map[string]string), keys: make(map[accountKey]postingKeys)}
}

func (c *cache) intern(b []byte) string {
	if s, ok := c.strs[string(b)]; ok {
		return s
	}
	if len(c.strs) >= maxCached {
		clear(c.strs)
	}
	s := string(b)
	c.strs[s] = s
	return s
}

// postingKeys returns the balance and merchant-total keys of an account in
// a currency.
func (c *cache) postingKeys(account, currency string) postingKeys {
	if c != nil {
		if k, ok := c.keys[accountKey{account, currency}]; ok {
			return k
		}
	}
	m, name := accountOwner(account)
	k := postingKeys{balance: m + "\x00" + name + "\x00" + currency, merchantTotal: m + "\x00" + currency}
	if c != nil {
		if len(c.keys) >= maxCached {
			clear(c.keys)
		}
		c.keys[accountKey{account, currency}] = k
	}
	return k
}
