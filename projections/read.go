package projections

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"
	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger/boltlog"
)

// Views reads the views. It is safe for concurrent use; each call reads one
// consistent bbolt snapshot, which includes every committed append.
//
// A damaged page of the file (a flipped bit, a bad copy) makes bbolt panic
// when a read reaches it. Every read here is guarded (boltlog.GuardRead):
// it fails with an error that errors.Is matches with boltlog.ErrDamaged and
// ledger.ErrCorrupt instead, whatever goroutine it runs on, and Damaged
// remembers the first. The methods' error lists leave it out.
type Views struct {
	db *bbolt.DB

	mu      sync.Mutex
	damaged error // the first damaged page a read met
}

// NewViews returns a reader of the views in db (the log's file, or a file
// Rebuild wrote).
func NewViews(db *bbolt.DB) *Views { return &Views{db: db} }

// Page sizes.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

// clampPage returns page >= 1 and 1 <= size <= MaxPageSize (DefaultPageSize
// for size <= 0).
func clampPage(page, size int) (int, int) {
	if page < 1 {
		page = 1
	}
	if size <= 0 {
		size = DefaultPageSize
	}
	if size > MaxPageSize {
		size = MaxPageSize
	}
	return page, size
}

// view runs fn in a read transaction, guarded: the one place the views
// are read. The guard costs a deferred recover, no allocation
// (TestViewGuardAllocs).
func (v *Views) view(fn func(tx *bbolt.Tx) error) error {
	err := boltlog.GuardRead(func() error {
		return v.db.View(func(tx *bbolt.Tx) error {
			if tx.Bucket(bMeta) == nil {
				return fmt.Errorf("%w: no views in %s", ErrNotFound, v.db.Path())
			}
			return fn(tx)
		})
	})
	if err != nil && errors.Is(err, boltlog.ErrDamaged) {
		v.noteDamage(err)
	}
	return err
}

func (v *Views) noteDamage(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.damaged == nil {
		v.damaged = err
	}
}

// Damaged returns the first damaged page a read of the views met (an error
// matching boltlog.ErrDamaged), or nil. A damaged page stays damaged: only
// replacing the file (a restore from a backup) mends it, so once set it
// stays set.
func (v *Views) Damaged() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.damaged
}

func getView(tx *bbolt.Tx, bucket []byte, k []byte, dst any) error {
	raw := tx.Bucket(bucket).Get(k)
	if raw == nil {
		return ErrNotFound
	}
	if err := DecodeView(raw, dst); err != nil {
		return fmt.Errorf("%w: %s %q: %v", ErrCorrupt, bucket, k, err)
	}
	return nil
}

// Invoice returns a merchant's invoice.
// Errors: ErrNotFound (no such invoice, or another merchant's), ErrCorrupt.
func (v *Views) Invoice(merchantID, invoiceID string) (InvoiceView, error) {
	inv, err := v.InvoicePublic(invoiceID)
	if err == nil && inv.MerchantID != merchantID {
		return InvoiceView{}, ErrNotFound
	}
	return inv, err
}

// InvoicePublic returns an invoice whoever owns it, for the hosted pages
// (the invoice id is the capability).
// Errors: ErrNotFound, ErrCorrupt.
func (v *Views) InvoicePublic(invoiceID string) (InvoiceView, error) {
	var inv InvoiceView
	err := v.view(func(tx *bbolt.Tx) error {
		return getView(tx, bInvoices, []byte(invoiceID), &inv)
	})
	return inv, err
}

func (v *Views) invoiceVia(index, k []byte, merchantID string) (InvoiceView, error) {
	var inv InvoiceView
	err := v.view(func(tx *bbolt.Tx) error {
		id := tx.Bucket(index).Get(k)
		if id == nil {
			return ErrNotFound
		}
		return getView(tx, bInvoices, id, &inv)
	})
	if err == nil && merchantID != "" && inv.MerchantID != merchantID {
		return InvoiceView{}, ErrNotFound
	}
	return inv, err
}

// InvoiceByExternalID returns the merchant's invoice with this external_id.
// Errors: ErrNotFound, ErrCorrupt.
func (v *Views) InvoiceByExternalID(merchantID, externalID string) (InvoiceView, error) {
	return v.invoiceVia(bExternalIDs, key(merchantID, externalID), merchantID)
}

// InvoiceByPaymentID returns the merchant's e-invoice with this payment_id (seed 001).
// Errors: ErrNotFound, ErrCorrupt.
func (v *Views) InvoiceByPaymentID(merchantID, paymentID string) (InvoiceView, error) {
	return v.invoiceVia(bPaymentIDs, key(merchantID, paymentID), merchantID)
}

// InvoiceByTracking returns the e-invoice with this tracking number, whoever
// owns it; the caller checks the merchant when it matters.
// Errors: ErrNotFound, ErrCorrupt.
func (v *Views) InvoiceByTracking(tracking string) (InvoiceView, error) {
	return v.invoiceVia(bTracking, []byte(tracking), "")
}

// ListInvoices returns a page of a merchant's invoices, newest first, all of
// them (status "") or those in one status. page and size are clamped (page
// >= 1, 1 <= size <= 100, default 20); a page past the end is empty.
// Errors: ErrCorrupt.
func (v *Views) ListInvoices(merchantID, status string, page, size int) (Page[InvoiceView], error) {
	prefix, ctr := prefixKey(merchantID), ctrInvoices+merchantID
	index := bInvByTime
	if status != "" {
		prefix, ctr = prefixKey(merchantID, status), ctrInvoiceStatus+merchantID+"\x00"+status
		index = bInvByStatus
	}
	return listPage[InvoiceView](v, index, prefix, ctr, bInvoices, page, size)
}

// ListWidgets returns a page of a merchant's widgets, newest first, clamped
// as ListInvoices.
// Errors: ErrCorrupt.
func (v *Views) ListWidgets(merchantID string, page, size int) (Page[WidgetView], error) {
	return listPage[WidgetView](v, bWidByTime, prefixKey(merchantID), ctrWidgets+merchantID, bWidgets, page, size)
}

// listPage reads the total from a counter and the page's ids from an index
// whose keys are prefix, 8 bytes of creation time, then the id.
func listPage[T any](v *Views, index, prefix []byte, counter string, views []byte, page, size int) (Page[T], error) {
	page, size = clampPage(page, size)
	out := Page[T]{Items: []T{}, Details: PageDetails{PageNumber: page, PageSize: size}}
	err := v.view(func(tx *bbolt.Tx) error {
		total := int(u64(tx.Bucket(bCounters).Get([]byte(counter))))
		out.Details.TotalObjects = total
		out.Details.TotalPages = (total + size - 1) / size
		if page > out.Details.TotalPages { // not (page-1)*size >= total: that overflows
			return nil
		}
		skip := (page - 1) * size
		c := tx.Bucket(index).Cursor()
		vb := tx.Bucket(views)
		// Newest first: from the last key under prefix, backwards.
		end := bytes.Clone(prefix)
		end[len(end)-1]++ // prefix ends in the 0x00 separator
		k, _ := c.Seek(end)
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
			if skip > 0 {
				skip--
				continue
			}
			if len(k) < len(prefix)+8 {
				return fmt.Errorf("%w: index key %q", ErrCorrupt, k)
			}
			id := k[len(prefix)+8:]
			raw := vb.Get(id)
			if raw == nil {
				return fmt.Errorf("%w: index %s names missing %q", ErrCorrupt, index, id)
			}
			var item T
			if err := DecodeView(raw, &item); err != nil {
				return fmt.Errorf("%w: %s %q: %v", ErrCorrupt, views, id, err)
			}
			out.Items = append(out.Items, item)
			if len(out.Items) == size {
				break
			}
		}
		return nil
	})
	return out, err
}

// Payment returns a merchant's payment by its public integer id.
// Errors: ErrNotFound (no such payment, or another merchant's), ErrCorrupt.
func (v *Views) Payment(merchantID string, id uint64) (PaymentView, error) {
	p, err := v.PaymentByNumber(id)
	if err == nil && p.MerchantID != merchantID {
		return PaymentView{}, ErrNotFound
	}
	return p, err
}

// PaymentByNumber returns a payment by its public integer id, whoever owns it.
// Errors: ErrNotFound, ErrCorrupt.
func (v *Views) PaymentByNumber(id uint64) (PaymentView, error) {
	var p PaymentView
	err := v.view(func(tx *bbolt.Tx) error {
		stream := tx.Bucket(bPaymentSeq).Get(seqKey(id))
		if stream == nil {
			return ErrNotFound
		}
		return getView(tx, bPayments, stream, &p)
	})
	return p, err
}

// PaymentByStream returns a payment by its stream id ("payment-<ulid>").
// Errors: ErrNotFound, ErrCorrupt.
func (v *Views) PaymentByStream(streamID string) (PaymentView, error) {
	var p PaymentView
	err := v.view(func(tx *bbolt.Tx) error {
		return getView(tx, bPayments, []byte(streamID), &p)
	})
	return p, err
}

// PaymentsForInvoice returns an invoice's payments in creation order (none:
// an empty slice, whether or not the invoice exists).
// Errors: ErrCorrupt.
func (v *Views) PaymentsForInvoice(invoiceID string) ([]PaymentView, error) {
	out := []PaymentView{}
	err := v.view(func(tx *bbolt.Tx) error {
		prefix := prefixKey(invoiceID)
		c := tx.Bucket(bInvoicePayments).Cursor()
		for k, stream := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, stream = c.Next() {
			var p PaymentView
			if err := getView(tx, bPayments, stream, &p); err != nil {
				if errors.Is(err, ErrNotFound) {
					return fmt.Errorf("%w: invoice %q lists missing payment %q", ErrCorrupt, invoiceID, stream)
				}
				return err
			}
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// Widget returns a merchant's widget.
// Errors: ErrNotFound (no such widget, or another merchant's), ErrCorrupt.
func (v *Views) Widget(merchantID, id string) (WidgetView, error) {
	w, err := v.WidgetPublic(id)
	if err == nil && w.MerchantID != merchantID {
		return WidgetView{}, ErrNotFound
	}
	return w, err
}

// WidgetPublic returns a widget whoever owns it, for the hosted widget page.
// Errors: ErrNotFound, ErrCorrupt.
func (v *Views) WidgetPublic(id string) (WidgetView, error) {
	var w WidgetView
	err := v.view(func(tx *bbolt.Tx) error {
		return getView(tx, bWidgets, []byte(id), &w)
	})
	return w, err
}

// Merchant returns a merchant's settings and keys (never key hashes).
// Errors: ErrNotFound, ErrCorrupt.
func (v *Views) Merchant(id string) (MerchantView, error) {
	var m MerchantView
	err := v.view(func(tx *bbolt.Tx) error {
		return getView(tx, bMerchants, []byte(id), &m)
	})
	return m, err
}

// allViews decodes every view of a bucket, in key order; kind names the
// view in an ErrCorrupt.
func allViews[T any](v *Views, bucket []byte, kind string) ([]T, error) {
	out := []T{}
	err := v.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, raw []byte) error {
			var x T
			if err := DecodeView(raw, &x); err != nil {
				return fmt.Errorf("%w: %s %q: %v", ErrCorrupt, kind, k, err)
			}
			out = append(out, x)
			return nil
		})
	})
	return out, err
}

// Merchants returns every merchant, ordered by id.
// Errors: ErrCorrupt.
func (v *Views) Merchants() ([]MerchantView, error) {
	return allViews[MerchantView](v, bMerchants, "merchant")
}

// ListMerchants returns a page of the merchants, ordered by id, clamped as
// ListInvoices. The total is counted from the keys; only the page's views
// are decoded.
// Errors: ErrCorrupt.
func (v *Views) ListMerchants(page, size int) (Page[MerchantView], error) {
	page, size = clampPage(page, size)
	out := Page[MerchantView]{Items: []MerchantView{}, Details: PageDetails{PageNumber: page, PageSize: size}}
	err := v.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bMerchants).Cursor()
		total := 0
		for k, raw := c.First(); k != nil; k, raw = c.Next() {
			if total/size == page-1 {
				var m MerchantView
				if err := DecodeView(raw, &m); err != nil {
					return fmt.Errorf("%w: merchant %q: %v", ErrCorrupt, k, err)
				}
				out.Items = append(out.Items, m)
			}
			total++
		}
		out.Details.TotalObjects = total
		out.Details.TotalPages = (total + size - 1) / size
		return nil
	})
	return out, err
}

// APIKey looks up an API key by its hash (hex SHA-256 of the whole key, as
// commands.APIKeyIssued records it). A revoked key is returned with Revoked
// set; the caller refuses it.
// Errors: ErrNotFound, ErrCorrupt.
func (v *Views) APIKey(hash string) (APIKey, error) {
	var k APIKey
	err := v.view(func(tx *bbolt.Tx) error {
		return getView(tx, bAPIKeys, []byte(hash), &k)
	})
	return k, err
}

// Rate returns the operator's current rate for a currency.
// Errors: ErrNotFound, ErrCorrupt.
func (v *Views) Rate(currency string) (Rate, error) {
	var r Rate
	err := v.view(func(tx *bbolt.Tx) error {
		return getView(tx, bRates, []byte(currency), &r)
	})
	return r, err
}

// Gateways returns the operator's last switch of every gateway ever
// switched, ordered by gateway id. A gateway it does not list is enabled.
// Errors: ErrCorrupt.
func (v *Views) Gateways() ([]GatewayView, error) {
	return allViews[GatewayView](v, bGateways, "gateway")
}

// GatewaySwitches returns the gateways the views say are disabled, in the
// form the gateway registry routes by (commands.Gateways.For). Its Version
// is 0: the views do not track the gateways stream's version.
// Errors: ErrCorrupt.
func (v *Views) GatewaySwitches() (commands.GatewaySwitches, error) {
	gs, err := v.Gateways()
	if err != nil {
		return commands.GatewaySwitches{}, err
	}
	var sw commands.GatewaySwitches
	for _, g := range gs {
		if !g.Enabled {
			if sw.Disabled == nil {
				sw.Disabled = map[string]bool{}
			}
			sw.Disabled[g.ID] = true
		}
	}
	return sw, nil
}

// Rates returns every rate, ordered by currency.
// Errors: ErrCorrupt.
func (v *Views) Rates() ([]Rate, error) {
	return allViews[Rate](v, bRates, "rate")
}

// Balances returns a merchant's balances ("_": the system accounts), by
// account then currency. Account names drop the ":<merchant id>" suffix.
// Errors: ErrCorrupt.
func (v *Views) Balances(merchantID string) ([]Balance, error) {
	out := []Balance{}
	err := v.view(func(tx *bbolt.Tx) error {
		var err error
		out, err = balances(tx, merchantID)
		return err
	})
	return out, err
}

func balances(tx *bbolt.Tx, merchantID string) ([]Balance, error) {
	out := []Balance{}
	prefix := prefixKey(merchantID)
	c := tx.Bucket(bBalances).Cursor()
	for k, raw := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, raw = c.Next() {
		account, currency, ok := strings.Cut(string(k[len(prefix):]), "\x00")
		d, err := decimal.NewFromString(string(raw))
		if !ok || err != nil {
			return nil, fmt.Errorf("%w: balance %q", ErrCorrupt, k)
		}
		out = append(out, Balance{Account: account, Currency: currency, Amount: d})
	}
	return out, nil
}

// MerchantTotals returns the sum of a merchant's balances per currency.
// Errors: ErrCorrupt.
func (v *Views) MerchantTotals(merchantID string) (map[string]decimal.Decimal, error) {
	out := map[string]decimal.Decimal{}
	err := v.view(func(tx *bbolt.Tx) error {
		prefix := prefixKey(merchantID)
		c := tx.Bucket(bMerchantTotals).Cursor()
		for k, raw := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, raw = c.Next() {
			d, err := decimal.NewFromString(string(raw))
			if err != nil {
				return fmt.Errorf("%w: total %q", ErrCorrupt, k)
			}
			out[string(k[len(prefix):])] = d
		}
		return nil
	})
	return out, err
}

// PostingTotals returns the sum of every posting per currency. Every value
// is zero in a sound ledger: double entry.
// Errors: ErrCorrupt.
func (v *Views) PostingTotals() (map[string]decimal.Decimal, error) {
	out := map[string]decimal.Decimal{}
	err := v.view(func(tx *bbolt.Tx) error {
		var err error
		out, err = postingTotals(tx)
		return err
	})
	return out, err
}

func postingTotals(tx *bbolt.Tx) (map[string]decimal.Decimal, error) {
	out := map[string]decimal.Decimal{}
	err := tx.Bucket(bTotals).ForEach(func(k, raw []byte) error {
		d, err := decimal.NewFromString(string(raw))
		if err != nil {
			return fmt.Errorf("%w: posting total %q", ErrCorrupt, k)
		}
		out[string(k)] = d
		return nil
	})
	return out, err
}

// Due returns up to limit invoices and widgets whose expiry time is at or
// before before, earliest first (limit <= 0: all). Pending invoices are due
// at expires_at; active and disabled widgets at a non-zero expires_at.
//
// Items sort by At, then Kind, then ID. An after with a non-empty ID is a
// position, usually the last item of the previous page: the list starts
// past it, whether or not it is still due, so a caller pages on past items
// it could not expire.
// Errors: ErrCorrupt, ErrDueKind (after's kind).
func (v *Views) Due(before time.Time, after Due, limit int) ([]Due, error) {
	var from []byte
	if after.ID != "" {
		kind, ok := dueKinds[after.Kind]
		if !ok {
			return nil, fmt.Errorf("%w: %q", ErrDueKind, after.Kind)
		}
		from = appendDueKey(nil, after.At, kind, after.ID)
	}
	out := []Due{}
	end := sortTime(before)
	err := v.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bDue).Cursor()
		var k, m []byte
		if from == nil {
			k, m = c.First()
		} else if k, m = c.Seek(from); bytes.Equal(k, from) {
			k, m = c.Next()
		}
		for ; k != nil; k, m = c.Next() {
			if len(k) < 9 {
				return fmt.Errorf("%w: due key %q", ErrCorrupt, k)
			}
			at := binary.BigEndian.Uint64(k)
			if at > end || (limit > 0 && len(out) == limit) {
				break
			}
			d := Due{ID: string(k[9:]), MerchantID: string(m), At: fromSortTime(at)}
			switch k[8] {
			case dueInvoice:
				d.Kind = DueInvoice
			case dueWidget:
				d.Kind = DueWidget
			default:
				return fmt.Errorf("%w: due kind %q", ErrCorrupt, k[8])
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// dueKinds are the due index's kind bytes by Due.Kind.
var dueKinds = map[string]byte{DueInvoice: dueInvoice, DueWidget: dueWidget}

// NextDue returns the earliest expiry time in the due index; false when
// nothing is due ever.
// Errors: none beyond a missing view (false).
func (v *Views) NextDue() (time.Time, bool) {
	var at time.Time
	var ok bool
	_ = v.view(func(tx *bbolt.Tx) error {
		if k, _ := tx.Bucket(bDue).Cursor().First(); len(k) >= 8 {
			at, ok = fromSortTime(binary.BigEndian.Uint64(k)), true
		}
		return nil
	})
	return at, ok
}

// OlderFormat reports whether the views are of a format older than this
// build's, and which: a data dir from before an upgrade that changed the
// views, which Init rebuilds from the log (payledger serve, when it next
// opens the file). Until then they cannot be compared with a rebuild or
// read by this build. False when there are no views.
func (v *Views) OlderFormat() (format byte, older bool) {
	_ = v.view(func(tx *bbolt.Tx) error {
		f := tx.Bucket(bMeta).Get(keyFormat)
		if len(f) == 1 {
			format = f[0]
		}
		older = format < formatVersion
		return nil
	})
	return format, older
}

// Checkpoint returns the sequence of the last event the views applied (0:
// none, or no views in the file).
func (v *Views) Checkpoint() uint64 {
	var n uint64
	_ = v.view(func(tx *bbolt.Tx) error {
		n = u64(tx.Bucket(bMeta).Get(keyCheckpoint))
		return nil
	})
	return n
}
