package webhooks

import (
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/projections"
)

// The dispatcher runs its own projections.Projector over webhooks.db (views
// only: it never reads the lists, counters or balances) and reads the
// views inside its ingest transaction, right after applying an
// event, so every body is the resource as of that event. projections'
// Views reads through its own transactions, so these three read the
// buckets directly; their names and values are the projections' persisted
// format (projections/keys.go: never renamed, version-checked by Init;
// values decoded by projections.DecodeView).
var (
	vInvoices  = []byte("v_invoices")  // invoice id -> InvoiceView
	vPayments  = []byte("v_payments")  // payment stream id -> PaymentView
	vMerchants = []byte("v_merchants") // merchant id -> MerchantView
)

func readView(tx *bbolt.Tx, bucket []byte, id string, dst any) (bool, error) {
	b := tx.Bucket(bucket)
	if b == nil {
		return false, fmt.Errorf("%w: no %s bucket", ErrCorrupt, bucket)
	}
	raw := b.Get([]byte(id))
	if raw == nil {
		return false, nil
	}
	if err := projections.DecodeView(raw, dst); err != nil {
		return false, fmt.Errorf("%w: %s %q: %v", ErrCorrupt, bucket, id, err)
	}
	return true, nil
}

func invoiceView(tx *bbolt.Tx, id string) (projections.InvoiceView, bool, error) {
	var v projections.InvoiceView
	ok, err := readView(tx, vInvoices, id, &v)
	return v, ok, err
}

func paymentView(tx *bbolt.Tx, stream string) (projections.PaymentView, bool, error) {
	var v projections.PaymentView
	ok, err := readView(tx, vPayments, stream, &v)
	return v, ok, err
}

func merchantView(tx *bbolt.Tx, id string) (projections.MerchantView, bool, error) {
	var v projections.MerchantView
	ok, err := readView(tx, vMerchants, id, &v)
	return v, ok, err
}
