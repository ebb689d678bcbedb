package projections

import (
	"encoding/binary"
	"math"
	"time"
)

// formatVersion is the layout of every v_ bucket below. Persisted: bump it
// (never reuse a number) whenever a key or value layout changes; Init drops
// and rebuilds views of an older format from the log, and refuses a newer one.
//
//	1: the first layout.
//	2: times past 2262 are clamped in keys (sortTime); format 1 wrapped them
//	   into the past, so its due index may hold entries that never leave.
//	3: disabled widgets are in the due index too (they expire as well).
//	4: an invoice's paid_amount and overpaid are at the paying payment
//	   currency's minor units ("1500.00"); format 3 kept them as the event
//	   gave them ("1500"), which a rebuild (and verify's comparison) no
//	   longer matches.
//	5: invoice, payment and widget views are in the binary form of
//	   codec.go, not JSON.
//	6: merchants, API keys and rates are binary too.
//	7: v_meta's "paying" record also holds the payment.processed's at and
//	   paid_amount, which its invoice.paid must repeat (tagPaying, binary);
//	   format 6's was the sequence and the stream alone, which cannot be
//	   checked against.
//	8: v_gateways, the operator's gateway switches (gateway.enabled,
//	   gateway.disabled), which format 7 ignored.
//	9: payment views count and sum their payment.receipt_held events
//	   (held_receipts, held_amount), which format 8 ignored.
//	10: amounts in a crypto currency a customer pays (an invoice's amount,
//	   a payment's paymentAmount, paid_amount and held_amount, an invoice's
//	   paid_amount and overpaid) are at its minor units, as fiat ones are
//	   ("0.00100000" BTC, "25.000000" USDT); format 9 gave their
//	   significant places ("0.001", "25.00").
const formatVersion byte = 10

// viewPrefix marks the buckets this package owns.
const viewPrefix = "v_"

// Bucket names. Persisted: never rename. Keys join their parts with a 0x00
// byte (ids never contain one); times are sortTime, 8 bytes big-endian.
var (
	bMeta            = []byte("v_meta")            // "format" -> 1 byte; "checkpoint" -> seq (8); "events" -> count (8); "paying" -> tagPaying seq stream at paid (appendPaying)
	bInvoices        = []byte("v_invoices")        // invoice id -> InvoiceView (binary: codec.go)
	bPayments        = []byte("v_payments")        // payment stream id -> PaymentView (binary)
	bWidgets         = []byte("v_widgets")         // widget id -> WidgetView (binary)
	bMerchants       = []byte("v_merchants")       // merchant id -> MerchantView (binary)
	bAPIKeys         = []byte("v_api_keys")        // key hash -> APIKey (binary)
	bAPIKeyIDs       = []byte("v_api_key_ids")     // merchant 0 key id -> key hash
	bRates           = []byte("v_rates")           // currency -> Rate (binary)
	bGateways        = []byte("v_gateways")        // gateway id -> GatewayView (binary)
	bExternalIDs     = []byte("v_ix_external_id")  // merchant 0 external id -> invoice id
	bPaymentIDs      = []byte("v_ix_payment_id")   // merchant 0 e-invoice payment_id -> invoice id
	bTracking        = []byte("v_ix_tracking")     // tracking -> invoice id
	bPaymentSeq      = []byte("v_ix_payment_seq")  // payment.created seq (8) -> payment stream id
	bInvoicePayments = []byte("v_ix_inv_payments") // invoice id 0 seq (8) -> payment stream id
	bInvByTime       = []byte("v_ix_inv_time")     // merchant 0 ^created (8) invoice id -> ""
	bInvByStatus     = []byte("v_ix_inv_status")   // merchant 0 status 0 ^created (8) invoice id -> ""
	bWidByTime       = []byte("v_ix_wid_time")     // merchant 0 ^created (8) widget id -> ""
	bCounters        = []byte("v_counters")        // counter key -> count (8)
	bDue             = []byte("v_due")             // at (8) kind (1) id -> merchant id
	bBalances        = []byte("v_balances")        // merchant 0 account 0 currency -> decimal text
	bMerchantTotals  = []byte("v_merchant_totals") // merchant 0 currency -> decimal text
	bTotals          = []byte("v_posting_totals")  // currency -> decimal text

	allBuckets = [][]byte{bMeta, bInvoices, bPayments, bWidgets, bMerchants, bAPIKeys, bAPIKeyIDs,
		bRates, bExternalIDs, bPaymentIDs, bTracking, bPaymentSeq, bInvoicePayments, bInvByTime,
		bInvByStatus, bWidByTime, bCounters, bDue, bBalances, bMerchantTotals, bTotals, bGateways}

	keyFormat     = []byte("format")
	keyCheckpoint = []byte("checkpoint")
	keyEvents     = []byte("events")
	keyViewsOnly  = []byte("views_only") // present (empty) in a ViewsOnly projector's meta
	// keyPaying: a transaction that ends with a payment.processed of
	// allocation invoice (a catch-up's or a rebuild's batch may) leaves its
	// sequence, payment stream, at and paid_amount here, for the next one
	// to check that its first event is that invoice.paid, with the same
	// time and amount (state.reset reads it); the next transaction that
	// applies anything deletes it (flush). It stays only while the views
	// end right after such a payment.processed, which an append never
	// leaves (Projector.ApplyAppend), but an import or a restore may.
	keyPaying = []byte("paying")
)

// Counter key prefixes (v_counters): each followed by the merchant id, and
// for the per-status counters by 0 and the status.
const (
	ctrInvoices      = "inv\x00"   // invoices of a merchant
	ctrInvoiceStatus = "inv_s\x00" // invoices of a merchant in a status
	ctrPaymentStatus = "pay_s\x00" // payments of a merchant in a status
	ctrWidgets       = "wid\x00"   // widgets of a merchant
	ctrWidgetStatus  = "wid_s\x00" // widgets of a merchant in a status
)

// Due kinds (v_due).
const (
	dueInvoice byte = 'i'
	dueWidget  byte = 'w'
)

// systemMerchant holds the balances of accounts that belong to no merchant.
const systemMerchant = "_"

// sortTime maps a time to an unsigned key that sorts like the time (the sign
// bit of its Unix nanoseconds flipped). Times outside what int64 Unix
// nanoseconds hold (before 1678, after 2262: a widget's expires_at is the
// client's) are clamped to the first or last key, where UnixNano would wrap
// around and sort a far-future expiry before every other one.
func sortTime(t time.Time) uint64 {
	switch {
	case t.After(maxSortTime):
		t = maxSortTime
	case t.Before(minSortTime):
		t = minSortTime
	}
	return uint64(t.UnixNano()) ^ (1 << 63)
}

// The range of times sortTime keeps exactly.
var (
	minSortTime = time.Unix(0, math.MinInt64)
	maxSortTime = time.Unix(0, math.MaxInt64)
)

// fromSortTime inverts sortTime.
func fromSortTime(u uint64) time.Time { return time.Unix(0, int64(u^(1<<63))).UTC() }

func appendSep(dst []byte, parts ...string) []byte {
	for i, p := range parts {
		if i > 0 {
			dst = append(dst, 0)
		}
		dst = append(dst, p...)
	}
	return dst
}

// key joins parts with 0x00 separators.
func key(parts ...string) []byte { return appendSep(nil, parts...) }

// prefixKey is key(parts...) followed by a 0x00: the prefix of every key
// whose leading parts are parts.
func prefixKey(parts ...string) []byte { return append(key(parts...), 0) }

// Index keys: prefix parts, then the creation time, then the id. Lists read
// them backwards, newest first. (Ascending times, not inverted ones, because
// new keys then land at the end of a merchant's range: bbolt splits a node
// only at commit, and inserting at the front of a range that a large
// transaction keeps growing would move the whole range on every insert.)

func appendCreatedKey(dst []byte, merchant string, created time.Time, id string) []byte {
	dst = append(append(dst, merchant...), 0)
	dst = binary.BigEndian.AppendUint64(dst, sortTime(created))
	return append(dst, id...)
}

func appendStatusKey(dst []byte, merchant, status string, created time.Time, id string) []byte {
	dst = append(append(append(append(dst, merchant...), 0), status...), 0)
	dst = binary.BigEndian.AppendUint64(dst, sortTime(created))
	return append(dst, id...)
}

func appendDueKey(dst []byte, at time.Time, kind byte, id string) []byte {
	dst = binary.BigEndian.AppendUint64(dst, sortTime(at))
	dst = append(dst, kind)
	return append(dst, id...)
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}
