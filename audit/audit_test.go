package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"go.etcd.io/bbolt"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
	"github.com/payledger/payledger/projections/projectionstest"
	"github.com/payledger/payledger/stream"
)

func run(t *testing.T, s *boltlog.Store, keys ...ed25519.PublicKey) (Report, error) {
	t.Helper()
	return Run(context.Background(), s, Options{PublicKeys: keys, ScratchDir: t.TempDir()})
}

// wantFault checks err is a *Fault of check at seq (0: any) naming stream
// ("": any), whose reason holds each of reason.
func wantFault(t *testing.T, err error, check string, seq uint64, stream string, reason ...string) *Fault {
	t.Helper()
	var f *Fault
	if !errors.As(err, &f) {
		t.Fatalf("want a %s fault, got %v", check, err)
	}
	if f.Check != check || (seq != 0 && f.Seq != seq) || (stream != "" && f.Stream != stream) {
		t.Fatalf("want a %s fault at sequence %d on %q, got %v", check, seq, stream, f)
	}
	for _, r := range reason {
		if !strings.Contains(f.Reason, r) {
			t.Fatalf("fault %q does not say %q", f.Reason, r)
		}
	}
	if !errors.Is(err, checkErr[check]) {
		t.Fatalf("errors.Is(%v, %v) is false", err, checkErr[check])
	}
	return f
}

func TestRunVerifiesAServersLog(t *testing.T) {
	b := newBuilder(t, true)
	b.history()
	head := b.s.Head()
	r, err := run(t, b.readOnly(), testKey.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if r.Head != head || r.Events != head.Seq || r.Views != "compared" {
		t.Fatalf("report head %+v events %d views %q, log head %+v", r.Head, r.Events, r.Views, head)
	}
	want := map[string]uint64{"success": 3, "cancelled": 1, "pending": 1}
	for st, n := range want {
		if r.Invoices[st] != n {
			t.Errorf("invoices %s = %d, want %d (%v)", st, r.Invoices[st], n, r.Invoices)
		}
	}
	if r.PostingEvents != 3 || !r.Totals["UAH"].Debits.Equal(amount.Mul(decimalOf(3))) || !r.Totals["USDT"].Net().IsZero() {
		t.Errorf("postings %d, totals %+v", r.PostingEvents, r.Totals)
	}
	if len(r.Merchants) != 2 || !r.Merchants["m2"]["UAH"].Net().IsZero() {
		t.Errorf("merchants %+v", r.Merchants)
	}
	if r.Checkpoints != 2 || r.LastCheckpoint == nil || r.LastCheckpoint.EventSeq != head.Seq || r.Uncovered != 1 ||
		len(r.Keys) != 1 || r.Keys[0] != PublicKeyHex(testKey.Public().(ed25519.PublicKey)) {
		t.Errorf("checkpoints %d, last %+v, uncovered %d, keys %v", r.Checkpoints, r.LastCheckpoint, r.Uncovered, r.Keys)
	}
	if r.Streams != 12 { // 2 merchants, rates, 5 invoices, 3 payments, checkpoints
		t.Errorf("streams = %d", r.Streams)
	}
}

func TestRunNamesTamperedRecord(t *testing.T) {
	b := newBuilder(t, true)
	b.history()
	b.s.Close()
	editBolt(t, b.path, func(tx *bbolt.Tx) error {
		bk := tx.Bucket([]byte("log"))
		k := binary.BigEndian.AppendUint64(nil, 7)
		rec := bytes.Clone(bk.Get(k))
		rec[len(rec)-40] ^= 1
		return bk.Put(k, rec)
	})
	_, err := run(t, b.readOnly())
	f := wantFault(t, err, CheckChain, 7, "")
	var ve *ledger.VerifyError
	if !errors.As(f, &ve) {
		t.Fatalf("chain fault without its *ledger.VerifyError: %v", f)
	}
}

// TestRunPostingsFaults crafts events the projections would refuse (so the
// log has no projector).
func TestRunPostingsFaults(t *testing.T) {
	unbalanced := postings("m1")
	unbalanced[3].Amount = unbalanced[3].Amount.Add(decimalOf(1)) // the merchant credited 34.42: USDT is 1 over
	otherMerchant := postings("m1")
	otherMerchant[3].Account = "merchant_available:m2" // balanced, but m2's money in m1's event
	number := postings("m1")
	for _, tc := range []struct {
		name   string
		ps     []commands.Posting
		raw    string // replaces the postings' JSON when set
		reason string
	}{
		{"unbalanced", unbalanced, "", "USDT postings sum to 1, not zero"},
		{"another merchant's account", otherMerchant, "", `an account of merchant "m2", in an event of merchant "m1"`},
		{"amount as a JSON number", number, `[{"account":"gateway_clearing:1","currency":"UAH","amount":1500},{"account":"conversion","currency":"UAH","amount":"-1500"}]`, "decimal string amount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(t, false)
			inv, pay := b.twoMerchantsPayment()
			ev := b.processedEv("m1", tc.ps, false)
			if tc.raw != "" {
				var m map[string]json.RawMessage
				_ = json.Unmarshal(ev.Data, &m)
				m["postings"] = json.RawMessage(tc.raw)
				ev.Data, _ = json.Marshal(m)
			}
			evs := b.app(w(pay, ev), w(commands.StreamID(commands.StreamInvoice, inv), b.paidEv("m1", pay, false)))
			_, err := run(t, b.readOnly())
			wantFault(t, err, CheckPostings, evs[0].Seq, pay, tc.reason)
		})
	}
}

// runBoth verifies b's log (every check) and its export, and returns both
// errors.
func runBoth(t *testing.T, b *builder) (logErr, exportErr error) {
	t.Helper()
	s := b.readOnly()
	_, logErr = run(t, s)
	_, exportErr = VerifyExport(context.Background(), bytes.NewReader(exportOf(t, s)), Options{})
	return logErr, exportErr
}

// TestRunProcessedPostings: a payment.processed whose postings balance and
// move only its merchant's money, but are not those of the commands'
// allocation rule (commands.AppendProcessingPostings) for its allocation,
// paid_amount, payment and invoice (a review's cases), or whose allocation
// the commands never make of that amount, is a postings fault at that
// event, in a log and in its export. Before, both verified (the log's
// rebuild took them too: a log without views is rebuilt, not compared).
// The legal neighbours verify, written with the projector inline.
func TestRunProcessedPostings(t *testing.T) {
	// processed appends the payment's payment.processed of alloc and paid
	// with ps, followed, for allocation invoice, by its invoice.paid.
	processed := func(b *builder, inv, pay, alloc string, paid decimal.Decimal, ps []commands.Posting) uint64 {
		ws := []ledger.Write{w(pay, b.ev(commands.TypePaymentProcessed, "m1", commands.PaymentProcessed{At: b.at, PaidAmount: paid, Allocation: alloc, Postings: ps}))}
		if alloc == commands.AllocInvoice {
			d := commands.InvoicePaid{PaymentID: pay, PaidAt: b.at, PaidAmount: paid}
			if over := paid.Sub(amount); over.IsPositive() {
				d.Overpaid = over
			}
			ws = append(ws, w(commands.StreamID(commands.StreamInvoice, inv), b.ev(commands.TypeInvoicePaid, "m1", d)))
		}
		return b.app(ws...)[0].Seq
	}
	held := func(paid decimal.Decimal) []commands.Posting {
		return []commands.Posting{
			{Account: "gateway_clearing:1", Currency: "UAH", Amount: paid},
			{Account: "merchant_suspense:m1", Currency: "UAH", Amount: paid.Neg()},
		}
	}
	edit := func(ps []commands.Posting, f func(ps []commands.Posting)) []commands.Posting {
		f(ps)
		return ps
	}
	less, more := decimalOf(1400), decimalOf(1600)
	const want = "want gateway_clearing:1 UAH 1500, conversion UAH -1500, conversion USDT 36.144578, merchant_available:m1 USDT -35.42, fee_income USDT -0.724578"
	for _, tc := range []struct {
		name   string
		build  func(b *builder, inv, pay string) uint64 // the case's event
		reason string                                   // "": verifies
	}{
		{"invoice: the merchant's share credited to fee income", func(b *builder, inv, pay string) uint64 {
			return processed(b, inv, pay, commands.AllocInvoice, amount, edit(postings("m1"), func(ps []commands.Posting) { ps[3].Account = "fee_income" }))
		}, "payment.processed (allocation invoice) posting 4 is fee_income USDT -35.42, " + want},
		{"invoice: through another gateway", func(b *builder, inv, pay string) uint64 {
			return processed(b, inv, pay, commands.AllocInvoice, amount, edit(postings("m1"), func(ps []commands.Posting) { ps[0].Account = "gateway_clearing:9" }))
		}, "posting 1 is gateway_clearing:9 UAH 1500"},
		{"invoice: another amount than paid_amount", func(b *builder, inv, pay string) uint64 {
			return processed(b, inv, pay, commands.AllocInvoice, amount, edit(postings("m1"), func(ps []commands.Posting) {
				ps[0].Amount, ps[1].Amount = less, less.Neg()
			}))
		}, "posting 1 is gateway_clearing:1 UAH 1400"},
		{"invoice: an overpayment kept as the merchant's", func(b *builder, inv, pay string) uint64 {
			return processed(b, inv, pay, commands.AllocInvoice, more, edit(postings("m1"), func(ps []commands.Posting) {
				ps[0].Amount, ps[1].Amount = more, more.Neg()
			}))
		}, "posting 2 is conversion UAH -1600"},
		{"invoice: paid with less than expected", func(b *builder, inv, pay string) uint64 {
			return processed(b, inv, pay, commands.AllocInvoice, less, edit(postings("m1"), func(ps []commands.Posting) {
				ps[0].Amount, ps[1].Amount = less, less.Neg()
			}))
		}, `allocation "invoice" of paid_amount 1400, for a payment of 1500 UAH: the commands make no such allocation`},
		{"duplicate: into the available balance", func(b *builder, inv, pay string) uint64 {
			b.pay("m1", inv, b.payment("m1", inv), false)
			return processed(b, inv, pay, commands.AllocDuplicate, amount, edit(held(amount), func(ps []commands.Posting) { ps[1].Account = "merchant_available:m1" }))
		}, "payment.processed (allocation duplicate) posting 2 is merchant_available:m1 UAH -1500, want gateway_clearing:1 UAH 1500, merchant_suspense:m1 UAH -1500"},
		{"underpaid: of the full amount", func(b *builder, inv, pay string) uint64 {
			return processed(b, inv, pay, commands.AllocUnderpaid, amount, held(amount))
		}, `allocation "underpaid" of paid_amount 1500`},
		{"an allocation the commands never make", func(b *builder, inv, pay string) uint64 {
			return processed(b, inv, pay, "gift", less, held(less))
		}, `allocation "gift" of paid_amount 1400`},

		// The legal neighbours.
		{"invoice overpaid, the excess held as overpayment", func(b *builder, inv, pay string) uint64 {
			ps := postings("m1")
			ps[0].Amount = more
			ps = append(ps[:2], append([]commands.Posting{{Account: "merchant_overpayment:m1", Currency: "UAH", Amount: decimalOf(-100)}}, ps[2:]...)...)
			return processed(b, inv, pay, commands.AllocInvoice, more, ps)
		}, ""},
		{"underpaid, held in suspense", func(b *builder, inv, pay string) uint64 {
			return processed(b, inv, pay, commands.AllocUnderpaid, less, held(less))
		}, ""},
		{"duplicate, held in suspense", func(b *builder, inv, pay string) uint64 {
			b.pay("m1", inv, b.payment("m1", inv), false)
			return processed(b, inv, pay, commands.AllocDuplicate, more, held(more))
		}, ""},
		{"expired_invoice, which a short-lived version of the commands wrote", func(b *builder, inv, pay string) uint64 {
			return processed(b, inv, pay, "expired_invoice", amount, held(amount))
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(t, tc.reason == "")
			inv, pay := b.twoMerchantsPayment()
			seq := tc.build(b, inv, pay)
			logErr, exportErr := runBoth(t, b)
			if tc.reason == "" {
				if logErr != nil || exportErr != nil {
					t.Fatalf("log: %v; export: %v", logErr, exportErr)
				}
				return
			}
			wantFault(t, logErr, CheckPostings, seq, pay, tc.reason)
			wantFault(t, exportErr, CheckPostings, seq, pay, tc.reason)
		})
	}
}

// TestRunInvoiceLifecycleFaults: invoice streams that break
// docs/payments.md's lifecycle, each named at the first bad event.
func TestRunInvoiceLifecycleFaults(t *testing.T) {
	for _, tc := range []struct {
		name   string
		build  func(b *builder) (seq uint64, stream string)
		check  string
		reason string
	}{
		{"cancelled after paid", func(b *builder) (uint64, string) {
			inv := b.invoice("m1", "o1")
			b.pay("m1", inv, b.payment("m1", inv), false)
			b.cancel("m1", inv)
			return b.s.Head().Seq, commands.StreamID(commands.StreamInvoice, inv)
		}, CheckInvoices, "of a success invoice"},
		{"paid twice", func(b *builder) (uint64, string) {
			inv := b.invoice("m1", "o1")
			p1, p2 := b.payment("m1", inv), b.payment("m1", inv)
			b.pay("m1", inv, p1, false)
			evs := b.pay("m1", inv, p2, false)
			return evs[1].Seq, evs[1].Stream
		}, CheckInvoices, "paid once"},
		{"paid without its payment.processed", func(b *builder) (uint64, string) {
			inv := b.invoice("m1", "o1")
			p := b.payment("m1", inv)
			evs := b.app(w(commands.StreamID(commands.StreamInvoice, inv), b.paidEv("m1", p, false)))
			return evs[0].Seq, evs[0].Stream
		}, CheckInvoices, "not appended with that payment's payment.processed"},
		{"paid by another invoice's payment", func(b *builder) (uint64, string) {
			inv, other := b.invoice("m1", "o1"), b.invoice("m1", "o2")
			p := b.payment("m1", other)
			evs := b.app(w(p, b.processedEv("m1", postings("m1"), false)),
				w(commands.StreamID(commands.StreamInvoice, inv), b.paidEv("m1", p, false)))
			return evs[0].Seq, evs[0].Stream
		}, CheckInvoices, "is not its invoice.paid"},
		{"processed without invoice.paid", func(b *builder) (uint64, string) {
			inv := b.invoice("m1", "o1")
			p := b.payment("m1", inv)
			evs := b.app(w(p, b.processedEv("m1", postings("m1"), false)))
			return evs[0].Seq, p
		}, CheckInvoices, "log ends before its invoice.paid"},
		{"expired, paid, not late", func(b *builder) (uint64, string) {
			inv := b.invoice("m1", "o1")
			p := b.payment("m1", inv)
			b.expire("m1", inv)
			evs := b.payLate("m1", inv, p, true, false)
			return evs[1].Seq, evs[1].Stream
		}, CheckInvoices, "invoice.paid not flagged late"},
		{"payment of a cancelled invoice", func(b *builder) (uint64, string) {
			inv := b.invoice("m1", "o1")
			b.cancel("m1", inv)
			p := b.payment("m1", inv)
			return b.s.Head().Seq, p
		}, CheckInvoices, "only a pending invoice takes payments"},
		{"payment created when its invoice expires", func(b *builder) (uint64, string) {
			inv := b.invoice("m1", "o1")
			b.at = b.at.Add(20 * time.Minute) // the invoice's expires_at, not yet expired in the log
			p := b.payment("m1", inv)
			return b.s.Head().Seq, p
		}, CheckInvoices, "a payment is created only before"},
		{"payment added apart from its payment.created", func(b *builder) (uint64, string) {
			inv := b.invoice("m1", "o1")
			p := b.payment("m1", inv)
			b.invoice("m1", "o2")
			evs := b.app(w(commands.StreamID(commands.StreamInvoice, inv), b.addedEv("m1", p)))
			return evs[0].Seq, evs[0].Stream
		}, CheckInvoices, "not appended right after that payment's payment.created"},
		{"another invoice's payment added", func(b *builder) (uint64, string) {
			inv, other := b.invoice("m1", "o1"), b.invoice("m1", "o2")
			p := b.payment("m1", other)
			evs := b.app(w(commands.StreamID(commands.StreamInvoice, inv), b.addedEv("m1", p)))
			return evs[0].Seq, evs[0].Stream
		}, CheckInvoices, "not appended right after that payment's payment.created for this invoice"},
		{"more payments than the commands allow", func(b *builder) (uint64, string) {
			inv := b.invoice("m1", "o1")
			var evs []ledger.Event
			for range commands.MaxPaymentsPerInvoice + 1 {
				evs = b.paymentAdded("m1", inv)
			}
			return evs[1].Seq, evs[1].Stream
		}, CheckInvoices, "past the 100 the commands allow"},
		{"an event that is not an invoice's", func(b *builder) (uint64, string) {
			inv := b.invoice("m1", "o1")
			s := commands.StreamID(commands.StreamInvoice, inv)
			evs := b.app(w(s, b.ev("invoice.refunded", "m1", map[string]string{})))
			return evs[0].Seq, s
		}, CheckInvoices, "invoice.refunded is not an invoice event"},
		{"a stream without its creation event", func(b *builder) (uint64, string) {
			evs := b.app(w(commands.StreamID(commands.StreamInvoice, "nope"), b.ev(commands.TypeInvoiceCancelled, "m1", commands.InvoiceCancelled{CancelledAt: b.at})))
			return evs[0].Seq, evs[0].Stream
		}, CheckStreams, "starts with invoice.cancelled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(t, false)
			b.merchant("m1")
			seq, stream := tc.build(b)
			_, err := run(t, b.readOnly())
			wantFault(t, err, tc.check, seq, stream, tc.reason)
		})
	}
}

// TestRunPaidLate: the late flag of a payment.processed (allocation
// invoice) and of its invoice.paid is commands.PaidLate's: set when the
// invoice was expired, or when the money came at or after its expires_at;
// clear otherwise. Every combination of the invoice's status (pending,
// expired), the processing time (before, at, after expires_at) and the
// flag (true, false): the legal ones verify (the log written through the
// projector), a wrong flag is an invoices fault naming the event that
// carries it, the payment.processed when both do.
func TestRunPaidLate(t *testing.T) {
	expires := t0.Add(20 * time.Minute) // the builder's invoices'
	for _, status := range []string{commands.InvoiceStatusPending, commands.InvoiceStatusExpired} {
		for _, d := range []time.Duration{-time.Second, 0, time.Second} { // processed at expires + d
			rule := status == commands.InvoiceStatusExpired || d >= 0
			for _, late := range []bool{rule, !rule} {
				// carried: the events that carry late; the other carries rule.
				carried := []string{"both"}
				if late != rule {
					carried = append(carried, commands.TypePaymentProcessed, commands.TypeInvoicePaid)
				}
				for _, carry := range carried {
					name := fmt.Sprintf("%s invoice, processed %v from expires_at, late %t on %s", status, d, late, carry)
					t.Run(name, func(t *testing.T) {
						b := newBuilder(t, late == rule)
						b.merchant("m1")
						b.rate()
						inv := b.invoice("m1", "o1")
						p := b.payment("m1", inv)
						if status == commands.InvoiceStatusExpired {
							b.at = expires
							b.expire("m1", inv)
						}
						b.at = expires.Add(d)
						procLate, paidLate := late, late
						switch carry {
						case commands.TypePaymentProcessed:
							paidLate = rule
						case commands.TypeInvoicePaid:
							procLate = rule
						}
						evs := b.payLate("m1", inv, p, procLate, paidLate)
						_, err := run(t, b.readOnly())
						if late == rule {
							if err != nil {
								t.Fatalf("a legal history: %v", err)
							}
							return
						}
						e := evs[0] // the payment.processed, first, when both are wrong
						if procLate == rule {
							e = evs[1]
						}
						reason := e.Type + " not flagged late"
						if late {
							reason = e.Type + " flagged late"
						}
						wantFault(t, err, CheckInvoices, e.Seq, e.Stream, reason)
					})
				}
			}
		}
	}
}

// TestRunPaidAsProcessed: an invoice.paid repeats its payment.processed's
// time (paid_at, at) and amount (paid_amount), which the commands give both
// from one decision: another time or amount is an invoices fault at the
// invoice.paid, naming the payment.processed's sequence. The same amount
// written otherwise ("1500.000" for "1500") is no fault, and the log
// verifies written through the projector.
func TestRunPaidAsProcessed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(d *commands.InvoicePaid)
		raw    func(data string) string // then edits the invoice.paid's JSON
		reason string                   // "": verifies; else the fault's, before "but its payment.processed (sequence N)"
	}{
		{"paid_at a second later", func(d *commands.InvoicePaid) { d.PaidAt = d.PaidAt.Add(time.Second) }, nil,
			"invoice.paid at 2026-02-25T12:00:01Z"},
		{"paid_at a nanosecond earlier", func(d *commands.InvoicePaid) { d.PaidAt = d.PaidAt.Add(-time.Nanosecond) }, nil,
			"invoice.paid at 2026-02-25T11:59:59.999999999Z"},
		{"another paid_amount", func(d *commands.InvoicePaid) { d.PaidAmount = d.PaidAmount.Add(decimal.New(1, -2)) }, nil,
			"invoice.paid of paid_amount 1500.01"},
		{"the same paid_amount, with trailing zeros", func(*commands.InvoicePaid) {}, func(data string) string {
			return strings.Replace(data, `"paid_amount":"1500"`, `"paid_amount":"1500.000"`, 1)
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(t, tc.reason == "")
			b.merchant("m1")
			inv := b.invoice("m1", "o1")
			p := b.payment("m1", inv)
			d := commands.InvoicePaid{PaymentID: p, PaidAt: b.at, PaidAmount: amount}
			tc.edit(&d)
			paid := b.ev(commands.TypeInvoicePaid, "m1", d)
			if tc.raw != nil {
				edited := tc.raw(string(paid.Data))
				if edited == string(paid.Data) {
					t.Fatalf("the edit leaves %s as it is", paid.Data)
				}
				paid.Data = []byte(edited)
			}
			evs := b.app(w(p, b.processedEv("m1", postings("m1"), false)),
				w(commands.StreamID(commands.StreamInvoice, inv), paid))
			_, err := run(t, b.readOnly())
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("a legal history: %v", err)
				}
				return
			}
			wantFault(t, err, CheckInvoices, evs[1].Seq, evs[1].Stream, tc.reason,
				fmt.Sprintf("but its payment.processed (sequence %d)", evs[0].Seq))
		})
	}
}

// TestRunPaymentGoesBack: a payment's status changes are checked by the
// projector's rules (commands.NextPaymentStatus), which a rebuild applies:
// a payment confirmed after it was processed is a projections fault naming
// the event, not views that show it CONFIRMED.
func TestRunPaymentGoesBack(t *testing.T) {
	b := newBuilder(t, false)
	b.merchant("m1")
	inv := b.invoice("m1", "o1")
	p := b.payment("m1", inv)
	b.pay("m1", inv, p, false)
	evs := b.app(w(p, b.ev(commands.TypePaymentConfirmed, "m1", commands.PaymentStatusChanged{Status: commands.PaymentStatusConfirmed, At: b.at})))
	_, err := run(t, b.readOnly())
	wantFault(t, err, CheckProjections, evs[0].Seq, p, "payment.confirmed of a payment in status PROCESSED")
	if !errors.Is(err, projections.ErrIllegalTransition) {
		t.Errorf("fault %v is not ErrIllegalTransition", err)
	}
}

// TestRunInvoiceEventsOfAnotherMerchant: an invoice's events, and its
// payments' events, are all its merchant's. A payment made under another
// merchant's name would credit that merchant for this invoice, while every
// event balances and moves only its own merchant's accounts.
func TestRunInvoiceEventsOfAnotherMerchant(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(b *builder, inv string) (seq uint64, stream string)
	}{
		{"payment created by another merchant", func(b *builder, inv string) (uint64, string) {
			p := b.payment("m2", inv)
			b.app(w(p, b.processedEv("m2", postings("m2"), false)), w(commands.StreamID(commands.StreamInvoice, inv), b.paidEv("m1", p, false)))
			return b.s.Head().Seq - 2, p
		}},
		{"payment processed by another merchant", func(b *builder, inv string) (uint64, string) {
			p := b.payment("m1", inv)
			evs := b.app(w(p, b.processedEv("m2", postings("m2"), false)), w(commands.StreamID(commands.StreamInvoice, inv), b.paidEv("m1", p, false)))
			return evs[0].Seq, p
		}},
		{"invoice paid by another merchant", func(b *builder, inv string) (uint64, string) {
			p := b.payment("m1", inv)
			evs := b.app(w(p, b.processedEv("m1", postings("m1"), false)), w(commands.StreamID(commands.StreamInvoice, inv), b.paidEv("m2", p, false)))
			return evs[1].Seq, evs[1].Stream
		}},
		{"invoice cancelled by another merchant", func(b *builder, inv string) (uint64, string) {
			b.cancel("m2", inv)
			return b.s.Head().Seq, commands.StreamID(commands.StreamInvoice, inv)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(t, false)
			b.merchant("m1")
			b.merchant("m2")
			inv := b.invoice("m1", "o1")
			seq, stream := tc.build(b, inv)
			_, err := run(t, b.readOnly())
			wantFault(t, err, CheckInvoices, seq, stream, `merchant "m2"`, `invoice `+inv+` of merchant "m1"`)
		})
	}
}

// TestRunViewsOfAnOlderFormat: a data dir from before an upgrade that
// changed the views' format (serve rebuilds them when it next starts) is
// no fault: the views are not compared, the log is still rebuilt.
func TestRunViewsOfAnOlderFormat(t *testing.T) {
	b := newBuilder(t, true)
	b.history()
	b.s.Close()
	projectionstest.SetViewsFormat(t, b.path, 4)
	r, err := run(t, b.readOnly())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if want := "not compared: the views are of format 4, an older build's"; !strings.Contains(r.Views, want) || !strings.Contains(r.Views, "the log rebuilds cleanly") {
		t.Errorf("views %q, want %q and the rebuild", r.Views, want)
	}
}

// TestRunInvoiceViewEditedBehindTheLog: a view written into v_invoices
// directly, not by the projector, is named by its invoice.
func TestRunInvoiceViewEditedBehindTheLog(t *testing.T) {
	b := newBuilder(t, true)
	ids := b.history()
	b.s.Close()
	id := ids["pending"]
	editBolt(t, b.path, func(tx *bbolt.Tx) error {
		bk := tx.Bucket([]byte("v_invoices"))
		var v projections.InvoiceView
		if err := projections.DecodeView(bk.Get([]byte(id)), &v); err != nil {
			return err
		}
		v.Status = "success"
		raw, err := projections.EncodeView(&v)
		if err != nil {
			return err
		}
		return bk.Put([]byte(id), raw)
	})
	_, err := run(t, b.readOnly())
	wantFault(t, err, CheckInvoices, 0, "invoice-"+id, "says success, its events say pending")
}

// TestRunViewsDifferFromRebuild: a view the invoice check does not read
// (a rate) edited behind the log, to another well-formed rate: the rebuild
// comparison names it.
func TestRunViewsDifferFromRebuild(t *testing.T) {
	b := newBuilder(t, true)
	b.history()
	b.s.Close()
	var logged projections.Rate
	editBolt(t, b.path, func(tx *bbolt.Tx) error {
		bk := tx.Bucket([]byte("v_rates"))
		if err := projections.DecodeView(bk.Get([]byte("UAH")), &logged); err != nil {
			return err
		}
		edited := logged
		edited.Rate = "1.00"
		if edited.Rate == logged.Rate {
			t.Fatalf("the history's rate is already %s", logged.Rate)
		}
		raw, err := projections.EncodeView(&edited)
		if err != nil {
			return err
		}
		return bk.Put([]byte("UAH"), raw)
	})
	_, err := run(t, b.readOnly())
	wantFault(t, err, CheckProjections, 0, "", "v_rates")
	var de *projections.DiffError
	if !errors.As(err, &de) {
		t.Fatalf("projections fault without its *projections.DiffError: %v", err)
	}
	// The live view (a) is the edited rate, the rebuild's (b) the logged
	// one: both decode, only the rate differs.
	var live, rebuilt projections.Rate
	if de.Bucket != "v_rates" || string(de.Key) != "UAH" {
		t.Fatalf("difference at %s %q, want v_rates UAH", de.Bucket, de.Key)
	}
	if err := projections.DecodeView(de.A, &live); err != nil || live.Rate != "1.00" {
		t.Errorf("live view %+v (%v), want the edited rate 1.00", live, err)
	}
	if err := projections.DecodeView(de.B, &rebuilt); err != nil || rebuilt.Rate != logged.Rate || !rebuilt.SetAt.Equal(logged.SetAt) {
		t.Errorf("rebuilt view %+v (%v), want the logged %+v", rebuilt, err, logged)
	}
}

func TestRunCheckpointFaults(t *testing.T) {
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	for _, tc := range []struct {
		name    string
		mutate  func(cp *CheckpointSigned)
		trusted []ed25519.PublicKey
		reason  string
	}{
		{"forged signature", func(cp *CheckpointSigned) {
			sig := []byte(cp.Signature)
			sig[10] ^= 1 // still hex, another signature
			cp.Signature = string(sig)
		}, nil, "forged or damaged signature"},
		{"signature of another key", func(cp *CheckpointSigned) {
			cp.PublicKey = PublicKeyHex(other.Public().(ed25519.PublicKey))
		}, nil, "forged or damaged signature"},
		{"hash not the chain's", func(cp *CheckpointSigned) {
			cp.Hash[0] ^= 1
			*cp = SignCheckpoint(testKey, ledger.Head{Seq: cp.Seq, Hash: cp.Hash}, cp.SignedAt) // validly signed, wrong hash
		}, nil, "but the chain has"},
		{"untrusted key", func(cp *CheckpointSigned) {
			*cp = SignCheckpoint(other, ledger.Head{Seq: cp.Seq, Hash: cp.Hash}, cp.SignedAt)
		}, []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)}, "not by a trusted key"},
		{"seq past itself", func(cp *CheckpointSigned) {
			*cp = SignCheckpoint(testKey, ledger.Head{Seq: cp.Seq + 1, Hash: cp.Hash}, cp.SignedAt)
		}, nil, "not before its own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(t, true)
			b.merchant("m1")
			b.invoice("m1", "o1")
			cp := SignCheckpoint(testKey, b.s.Head(), b.at)
			tc.mutate(&cp)
			evs := b.app(w(StreamCheckpoints, b.ev(TypeCheckpointSigned, "", cp)))
			_, err := run(t, b.readOnly(), tc.trusted...)
			wantFault(t, err, CheckCheckpoints, evs[0].Seq, StreamCheckpoints, tc.reason)
		})
	}
}

// TestRunCheckpointSignedAtAgainstItsEvent: a checkpoint is signed at most
// MaxCheckpointLag before the event that records it, never after it; the
// Checkpointer gives both the same time, so its checkpoints pass.
func TestRunCheckpointSignedAtAgainstItsEvent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		offset time.Duration // signed_at minus the event's time
		reason string        // "": verifies
	}{
		{"at the event's time", 0, ""},
		{"a second before", -time.Second, ""},
		{"the most allowed before", -MaxCheckpointLag, ""},
		{"just too long before", -MaxCheckpointLag - time.Nanosecond, "before the time of the event that records it"},
		{"a day before", -24 * time.Hour, "before the time of the event that records it"},
		{"a nanosecond after", time.Nanosecond, "after the time of the event that records it"},
		{"an hour in the future", time.Hour, "after the time of the event that records it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(t, true)
			b.merchant("m1")
			cp := SignCheckpoint(testKey, b.s.Head(), b.at.Add(tc.offset))
			evs := b.app(w(StreamCheckpoints, b.ev(TypeCheckpointSigned, "", cp)))
			_, err := run(t, b.readOnly(), testKey.Public().(ed25519.PublicKey))
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				return
			}
			wantFault(t, err, CheckCheckpoints, evs[0].Seq, StreamCheckpoints, tc.reason)
		})
	}

	// What the Checkpointer writes, at whatever time its clock says.
	b := newBuilder(t, true)
	b.merchant("m1")
	for _, at := range []time.Time{t0, t0.Add(-90 * 24 * time.Hour), t0.Add(time.Hour + time.Nanosecond)} {
		c := NewCheckpointer(b.s, testKey, CheckpointConfig{Now: func() time.Time { return at }})
		b.invoice("m1", at.String())
		if _, ok, err := c.Checkpoint(context.Background()); !ok || err != nil {
			t.Fatalf("checkpoint: %v %v", ok, err)
		}
	}
	if r, err := run(t, b.readOnly(), testKey.Public().(ed25519.PublicKey)); err != nil || r.Checkpoints != 3 {
		t.Fatalf("Run of the checkpointer's log: %d checkpoints, %v", r.Checkpoints, err)
	}
}

func TestRunTrustedKeyNeedsACheckpoint(t *testing.T) {
	b := newBuilder(t, true)
	b.merchant("m1")
	_, err := run(t, b.readOnly(), testKey.Public().(ed25519.PublicKey))
	wantFault(t, err, CheckCheckpoints, 0, "", "no checkpoint signed by the trusted key")
}

// TestCheckpointFarBack: a checkpoint further back than the checker's
// ring of recent hashes is checked at the end, from the log and from an
// export alike.
func TestCheckpointFarBack(t *testing.T) {
	for _, good := range []bool{true, false} {
		b := newBuilder(t, false)
		b.merchant("m1")
		signed := b.s.Head()
		if !good {
			signed.Hash[5] ^= 1
		}
		cp := SignCheckpoint(testKey, signed, b.at)
		noise := make([]ledger.NewEvent, ringSize+10)
		for i := range noise {
			noise[i] = b.ev("test.noise", "", map[string]int{"i": i})
		}
		b.app(w("noise", noise...))
		evs := b.app(w(StreamCheckpoints, b.ev(TypeCheckpointSigned, "", cp)))
		s := b.readOnly()
		pub := testKey.Public().(ed25519.PublicKey)
		_, err := Run(context.Background(), s, Options{PublicKeys: []ed25519.PublicKey{pub}, SkipRebuild: true})
		_, xerr := VerifyExport(context.Background(), bytes.NewReader(exportOf(t, s)), Options{PublicKeys: []ed25519.PublicKey{pub}})
		if good {
			if err != nil || xerr != nil {
				t.Fatalf("log: %v; export: %v", err, xerr)
			}
			continue
		}
		wantFault(t, err, CheckCheckpoints, evs[0].Seq, "", "but the chain has")
		wantFault(t, xerr, CheckCheckpoints, evs[0].Seq, "", "but the chain has")
	}
}

// exportOf is what payledger export writes for the log.
func exportOf(t testing.TB, s *boltlog.Store) []byte {
	t.Helper()
	var out []byte
	for e, err := range s.Events(context.Background(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(stream.AppendJSON(out, &e), '\n')
	}
	return out
}

// TestVerifyExportWithThePublicKeyOnly: a third party with an export and
// the public key, nothing else.
func TestVerifyExportWithThePublicKeyOnly(t *testing.T) {
	b := newBuilder(t, true)
	b.history()
	s := b.readOnly()
	exp := exportOf(t, s)
	pub, err := ParsePublicKey(PublicKeyHex(testKey.Public().(ed25519.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	r, err := VerifyExport(context.Background(), bytes.NewReader(exp), Options{PublicKeys: []ed25519.PublicKey{pub}})
	if err != nil {
		t.Fatalf("VerifyExport: %v", err)
	}
	if r.Head != s.Head() || r.Checkpoints != 2 || r.Invoices["success"] != 3 || r.Uncovered != 1 {
		t.Fatalf("report %+v", r)
	}

	lines := bytes.SplitAfter(exp, []byte("\n"))
	// An amount changed in one line: its hash no longer matches.
	tampered := bytes.Clone(exp)
	i := bytes.Index(tampered, []byte(`"amount":"1500"`))
	tampered[i+len(`"amount":"1`)] = '9'
	seq := uint64(bytes.Count(tampered[:i], []byte("\n")) + 1)
	_, err = VerifyExport(context.Background(), bytes.NewReader(tampered), Options{PublicKeys: []ed25519.PublicKey{pub}})
	wantFault(t, err, CheckChain, seq, "", "hash does not match")

	// A line re-encoded (a space added): not the export's form.
	spaced := bytes.Join([][]byte{bytes.Join(lines[:4], nil), bytes.Replace(lines[4], []byte(`,"seq"`), []byte(`, "seq"`), 1), bytes.Join(lines[5:], nil)}, nil)
	_, err = VerifyExport(context.Background(), bytes.NewReader(spaced), Options{})
	f := wantFault(t, err, CheckChain, 5, "", "export line 5 (sequence 5)")
	if !errors.Is(f, ErrBadExport) {
		t.Fatalf("not ErrBadExport: %v", f)
	}
	if n := strings.Count(f.Error(), "audit:"); n != 1 {
		t.Errorf("%q says audit: %d times", f.Error(), n)
	}

	// A line dropped: the chain breaks at its sequence.
	dropped := bytes.Join(append(append([][]byte{}, lines[:6]...), lines[7:]...), nil)
	_, err = VerifyExport(context.Background(), bytes.NewReader(dropped), Options{})
	wantFault(t, err, CheckChain, 7, "", "found sequence 8")

	// An export from the middle cannot be verified alone.
	_, err = VerifyExport(context.Background(), bytes.NewReader(bytes.Join(lines[3:], nil)), Options{})
	wantFault(t, err, CheckChain, 1, "", "starts at sequence 4")

	// Another key than the signer's.
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	_, err = VerifyExport(context.Background(), bytes.NewReader(exp), Options{PublicKeys: []ed25519.PublicKey{other.Public().(ed25519.PublicKey)}})
	wantFault(t, err, CheckCheckpoints, 0, "", "not by a trusted key")
}

func editBolt(t *testing.T, path string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// truncateLog cuts the log's last records off behind its back, as someone
// hiding the latest events would: the records after to, their index
// entries and the stored head. The views are left as they were.
func truncateLog(t *testing.T, path string, to ledger.Head) {
	t.Helper()
	editBolt(t, path, func(tx *bbolt.Tx) error {
		lg, idx := tx.Bucket([]byte("log")), tx.Bucket([]byte("index"))
		for k, _ := lg.Cursor().Seek(binary.BigEndian.AppendUint64(nil, to.Seq+1)); k != nil; k, _ = lg.Cursor().Seek(binary.BigEndian.AppendUint64(nil, to.Seq+1)) {
			if err := lg.Delete(k); err != nil {
				return err
			}
		}
		var drop [][]byte
		if err := idx.ForEach(func(k, v []byte) error {
			if binary.BigEndian.Uint64(v) > to.Seq {
				drop = append(drop, bytes.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range drop {
			if err := idx.Delete(k); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("meta")).Put([]byte("head"), append(binary.BigEndian.AppendUint64(nil, to.Seq), to.Hash[:]...))
	})
}

// TestRunViewsAheadOfATruncatedLog: the log's last events cut off, the
// views left as they were. Nobody appends to a read-only log, so views past
// its head mean the log lost events the views applied: a fault, not a
// "not compared" success.
func TestRunViewsAheadOfATruncatedLog(t *testing.T) {
	b := newBuilder(t, true)
	b.history()
	full := b.s.Head()
	// Cut the last payment.processed, its invoice.paid and the checkpoint
	// after them: the views still say the invoice is paid.
	e, err := b.s.Get(full.Seq - 3)
	if err != nil {
		t.Fatal(err)
	}
	b.s.Close()
	truncateLog(t, b.path, ledger.Head{Seq: e.Seq, Hash: e.Hash})
	r, err := run(t, b.readOnly(), testKey.Public().(ed25519.PublicKey))
	if r.Head.Seq != e.Seq {
		t.Fatalf("verified head %d, want the truncated log's %d", r.Head.Seq, e.Seq)
	}
	wantFault(t, err, CheckProjections, e.Seq+1, "", fmt.Sprintf("up to sequence %d, but the log ends at %d", full.Seq, e.Seq))
}

// TestAwaitsInvoicePaid: only a payment.processed of allocation invoice
// awaits the invoice.paid appended with it (a log whose last event it is
// ends part way through that append); one whose data does not decode is a
// postings fault, as in the checks.
func TestAwaitsInvoicePaid(t *testing.T) {
	for _, c := range []struct {
		typ, data string
		want      bool
	}{
		{commands.TypePaymentProcessed, `{"allocation":"invoice","paid_amount":"100"}`, true},
		{commands.TypePaymentProcessed, `{"allocation":"underpaid","paid_amount":"10"}`, false},
		{commands.TypePaymentProcessed, `{"allocation":"duplicate"}`, false},
		{commands.TypeInvoicePaid, `{"allocation":"invoice"}`, false},
		{"test.event", `{}`, false},
	} {
		e := ledger.Event{Seq: 7, Stream: "payment-x", Type: c.typ, Data: json.RawMessage(c.data)}
		if got, err := AwaitsInvoicePaid(&e); got != c.want || err != nil {
			t.Errorf("%s %s: %v, %v; want %v", c.typ, c.data, got, err, c.want)
		}
	}
	e := ledger.Event{Seq: 7, Stream: "payment-x", Type: commands.TypePaymentProcessed, Data: json.RawMessage(`{"allocation":1}`)}
	got, err := AwaitsInvoicePaid(&e)
	if got {
		t.Error("undecodable data awaits an invoice.paid")
	}
	wantFault(t, err, CheckPostings, 7, "payment-x", "does not decode")
}

// TestRunReceiptHeld: a payment.receipt_held, money held in suspense for a
// cancelled payment or a further arrival for a processed one, verifies
// (the log written with the projector inline, every check including the
// views' rebuild), and so does its export; one
// whose postings do not balance, or move another merchant's money, or post
// nothing, or are not exactly its payment's clearing debited and its
// merchant's suspense credited with paid_amount in the payment's currency
// (commands.AppendSuspensePostings), is a postings fault at that event, in
// the log and in its export (an export was verified without the last rule,
// which only the log's rebuild applied); one for a payment that is not
// CANCELLED, REJECTED, ERROR or PROCESSED is refused by the rebuild
// (projections check, a log's only). Before, the audit ignored the type:
// an unbalanced one verified; and one for a processed payment was refused
// (the projector's ErrIllegalTransition).
func TestRunReceiptHeld(t *testing.T) {
	held := func(m string, paid decimal.Decimal) []commands.Posting {
		return []commands.Posting{
			{Account: "gateway_clearing:1", Currency: "UAH", Amount: paid},
			{Account: "merchant_suspense:" + m, Currency: "UAH", Amount: paid.Neg()},
		}
	}
	unbalanced := held("m1", amount)
	unbalanced[1].Amount = amount.Neg().Add(decimalOf(1))
	other := held("m1", amount)
	other[1].Account = "merchant_suspense:m2"
	// Balanced, but not the two lines of money held (a review's cases).
	available := held("m1", amount)
	available[1].Account = "merchant_available:m1"
	fee := held("m1", amount)
	fee[1].Account = "fee_income"
	less := held("m1", decimalOf(1))
	usdt := held("m1", amount)
	usdt[0].Currency, usdt[1].Currency = "USDT", "USDT"
	gateway := held("m1", amount)
	gateway[0].Account = "gateway_clearing:9"
	const cancel, process = "cancel", "process"
	for _, tc := range []struct {
		name      string
		projected bool
		end       string // the payment's status change before the receipt: "" (it stays PENDING), cancel, process
		ps        []commands.Posting
		check     string // "": verifies
		reason    string
	}{
		{"held for a cancelled payment", true, cancel, held("m1", amount), "", ""},
		{"held for a processed payment", true, process, held("m1", amount), "", ""},
		{"unbalanced", false, cancel, unbalanced, CheckPostings, "UAH postings sum to 1, not zero"},
		{"another merchant's account", false, cancel, other, CheckPostings, `an account of merchant "m2", in an event of merchant "m1"`},
		{"no postings", false, cancel, nil, CheckPostings, "without postings"},
		{"into the available balance", false, cancel, available, CheckPostings, "payment.receipt_held (paid_amount 1500) posting 2 is merchant_available:m1 UAH -1500, want gateway_clearing:1 UAH 1500, merchant_suspense:m1 UAH -1500"},
		{"into fee income", false, cancel, fee, CheckPostings, "posting 2 is fee_income UAH -1500, want gateway_clearing:1 UAH 1500, merchant_suspense:m1 UAH -1500"},
		{"postings of another amount", false, cancel, less, CheckPostings, "posting 1 is gateway_clearing:1 UAH 1, want gateway_clearing:1 UAH 1500"},
		{"in another currency", false, cancel, usdt, CheckPostings, "posting 1 is gateway_clearing:1 USDT 1500, want gateway_clearing:1 UAH 1500"},
		{"through another gateway", false, cancel, gateway, CheckPostings, "posting 1 is gateway_clearing:9 UAH 1500, want gateway_clearing:1 UAH 1500"},
		{"held for a pending payment", false, "", held("m1", amount), CheckProjections, "payment.receipt_held of a payment in status PENDING"},
		{"of nothing", false, cancel, held("m1", decimal.Zero), CheckPostings, "payment.receipt_held of paid_amount 0: it records no money"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(t, tc.projected)
			inv, pay := b.twoMerchantsPayment()
			postingEvents := uint64(1)
			switch tc.end {
			case cancel:
				b.app(w(pay, b.ev(commands.TypePaymentCancelled, "m1", commands.PaymentStatusChanged{Status: commands.PaymentStatusCancelled, By: commands.ByCustomer, At: b.at})))
			case process:
				b.pay("m1", inv, pay, false)
				postingEvents++
			}
			paid := amount
			if len(tc.ps) > 0 && tc.ps[0].Amount.IsZero() {
				paid = decimal.Zero
			}
			evs := b.app(w(pay, b.ev(commands.TypePaymentReceiptHeld, "m1", commands.PaymentReceiptHeld{
				At: b.at, PaidAmount: paid, By: commands.ByOperator, Postings: tc.ps})))
			s := b.readOnly()
			r, err := run(t, s)
			_, xerr := VerifyExport(context.Background(), bytes.NewReader(exportOf(t, s)), Options{})
			if tc.check == "" {
				if err != nil || xerr != nil {
					t.Fatalf("Run: %v; export: %v", err, xerr)
				}
				if r.PostingEvents != postingEvents || !r.Merchants["m1"]["UAH"].Debits.Equal(amount.Mul(decimalOf(int64(postingEvents)))) || !r.Merchants["m1"]["UAH"].Net().IsZero() {
					t.Fatalf("postings %d, merchants %+v", r.PostingEvents, r.Merchants)
				}
				return
			}
			wantFault(t, err, tc.check, evs[0].Seq, pay, tc.reason)
			if tc.check == CheckPostings {
				wantFault(t, xerr, tc.check, evs[0].Seq, pay, tc.reason)
			}
		})
	}
}
