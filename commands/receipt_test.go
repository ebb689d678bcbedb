package commands_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/payledger/payledger/commands"
)

// TestHoldReceipt: money that arrives for a payment that ended CANCELLED
// (by the customer or the merchant), REJECTED or ERROR, or a further
// arrival for a PROCESSED one, is recorded as a payment.receipt_held on
// the payment's stream, held in the merchant's suspense account with the
// postings of a suspense allocation, and the payment's status stays (a
// PROCESSED payment's invoice too). A PENDING or CONFIRMED payment
// (processed normally) is refused with ErrInvalidTransition, as is a bad
// amount with a *ValidationError, and nothing is appended. Before, no
// command recorded such money: it was returned outside the ledger; and a
// PROCESSED payment's second arrival was refused (ErrInvalidTransition).
func TestHoldReceipt(t *testing.T) {
	type reach func(e *env, id string) error
	transition := func(status, by string) reach {
		return func(e *env, id string) error {
			_, err := e.svc.TransitionPayment(e.ctx, commands.PaymentTransition{Meta: e.meta(), PaymentID: id, Status: status, By: by})
			return err
		}
	}
	confirm := transition(commands.PaymentStatusConfirmed, commands.ByCustomer)
	process := func(e *env, id string) error {
		_, err := e.svc.ProcessPayment(e.ctx, commands.ProcessPayment{Meta: e.meta(), PaymentID: id})
		return err
	}
	cases := []struct {
		name   string
		path   []reach
		status string
		ok     bool
	}{
		{"cancelled by the customer", []reach{transition(commands.PaymentStatusCancelled, commands.ByCustomer)}, commands.PaymentStatusCancelled, true},
		{"cancelled by the merchant", []reach{transition(commands.PaymentStatusCancelled, commands.ByMerchant)}, commands.PaymentStatusCancelled, true},
		{"rejected", []reach{transition(commands.PaymentStatusRejected, commands.ByOperator)}, commands.PaymentStatusRejected, true},
		{"rejected after confirmed", []reach{confirm, transition(commands.PaymentStatusRejected, commands.ByOperator)}, commands.PaymentStatusRejected, true},
		{"error", []reach{transition(commands.PaymentStatusError, commands.ByOperator)}, commands.PaymentStatusError, true},
		{"pending", nil, commands.PaymentStatusPending, false},
		{"confirmed", []reach{confirm}, commands.PaymentStatusConfirmed, false},
		{"processed", []reach{process}, commands.PaymentStatusProcessed, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			inv := e.invoice("o-1")
			p, _ := e.payment(inv)
			for _, step := range tc.path {
				if err := step(e, p.PaymentID); err != nil {
					t.Fatal(err)
				}
			}
			invBefore, err := e.svc.LoadInvoice(e.ctx, "", inv.InvoiceID)
			if err != nil {
				t.Fatal(err)
			}
			stream := commands.StreamID(commands.StreamPayment, p.PaymentID)
			head := e.store.Head().Seq
			meta := e.meta()
			got, err := e.svc.HoldReceipt(e.ctx, commands.HoldReceipt{Meta: meta, PaymentID: p.PaymentID, PaidAmount: "1500.50", Reason: "transfer 42"})
			if !tc.ok {
				if !errors.Is(err, commands.ErrInvalidTransition) || e.store.Head().Seq != head {
					t.Fatalf("receipt of a %s payment: %v; head %d -> %d", tc.status, err, head, e.store.Head().Seq)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.status {
				t.Fatalf("status after the receipt = %s, want %s", got.Status, tc.status)
			}
			evs, err := e.store.ReadStream(e.ctx, stream, 1)
			if err != nil {
				t.Fatal(err)
			}
			last := evs[len(evs)-1]
			if last.Type != commands.TypePaymentReceiptHeld || last.Seq != head+1 || last.Merchant != e.m ||
				last.Correlation != meta.Correlation || !last.Time.Equal(meta.Time) || got.Version != last.Version {
				t.Fatalf("event %+v, payment version %d", last, got.Version)
			}
			var d commands.PaymentReceiptHeld
			if err := json.Unmarshal(last.Data, &d); err != nil {
				t.Fatal(err)
			}
			if !d.At.Equal(meta.Time) || !d.PaidAmount.Equal(dec("1500.50")) || d.Reason != "transfer 42" || d.By != commands.ByOperator || len(d.Postings) != 2 {
				t.Fatalf("data %s", last.Data)
			}
			want := []commands.Posting{
				{Account: "gateway_clearing:" + p.GatewayID, Currency: "UAH", Amount: dec("1500.5")},
				{Account: "merchant_suspense:" + e.m, Currency: "UAH", Amount: dec("-1500.5")},
			}
			for i, w := range want {
				if g := d.Postings[i]; g.Account != w.Account || g.Currency != w.Currency || !g.Amount.Equal(w.Amount) {
					t.Fatalf("posting %d = %+v, want %+v", i, g, w)
				}
			}
			for cur, sum := range commands.PostingsBalance(d.Postings) {
				if !sum.IsZero() {
					t.Fatalf("%s postings sum to %s", cur, sum)
				}
			}
			if again, err := e.svc.LoadPayment(e.ctx, "", p.PaymentID); err != nil || again.Status != tc.status || again.Version != last.Version {
				t.Fatalf("payment after the receipt: %+v %v", again, err)
			}
			if after, err := e.svc.LoadInvoice(e.ctx, "", inv.InvoiceID); err != nil || after.Status != invBefore.Status || after.Version != invBefore.Version {
				t.Fatalf("invoice after the receipt: %+v %v, before %s at %d", after, err, invBefore.Status, invBefore.Version)
			}

			// Money can arrive twice: a second receipt is recorded too.
			if _, err := e.svc.HoldReceipt(e.ctx, commands.HoldReceipt{Meta: e.meta(), PaymentID: p.PaymentID, PaidAmount: "10"}); err != nil || e.store.Head().Seq != head+2 {
				t.Fatalf("second receipt: %v; head %d -> %d", err, head, e.store.Head().Seq)
			}

			// Bad amounts are refused, nothing appended.
			head = e.store.Head().Seq
			for _, amount := range []string{"", "0", "-5", "1.001", "abc", "1e3"} {
				_, err := e.svc.HoldReceipt(e.ctx, commands.HoldReceipt{Meta: e.meta(), PaymentID: p.PaymentID, PaidAmount: amount})
				var ve *commands.ValidationError
				if !errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Path != "paid_amount" || e.store.Head().Seq != head {
					t.Fatalf("paid_amount %q: %v; head %d -> %d", amount, err, head, e.store.Head().Seq)
				}
			}
			if _, err := e.svc.HoldReceipt(e.ctx, commands.HoldReceipt{Meta: e.meta(), PaymentID: "01KJAAQ6G00000000000000006", PaidAmount: "1"}); !errors.Is(err, commands.ErrNotFound) {
				t.Fatalf("unknown payment: %v", err)
			}
		})
	}
}

// TestHoldReceiptRequestKey: a receipt recorded with a request key is not
// recorded again by a retry with that key (its stored answer lost): the
// retry gets a *RepeatedError naming the payment and appends nothing,
// though a payment may hold several receipts.
func TestHoldReceiptRequestKey(t *testing.T) {
	e := newEnv(t)
	p, _ := e.payment(e.invoice("o-1"))
	if _, err := e.svc.TransitionPayment(e.ctx, commands.PaymentTransition{Meta: e.meta(), PaymentID: p.PaymentID, Status: commands.PaymentStatusCancelled}); err != nil {
		t.Fatal(err)
	}
	c := commands.HoldReceipt{Meta: e.meta(), PaymentID: p.PaymentID, PaidAmount: "1500", RequestKey: "rk-1"}
	if _, err := e.svc.HoldReceipt(e.ctx, c); err != nil {
		t.Fatal(err)
	}
	head := e.store.Head().Seq
	c.Meta = e.meta()
	_, err := e.svc.HoldReceipt(e.ctx, c)
	var rep *commands.RepeatedError
	if !errors.As(err, &rep) || rep.Stream != commands.StreamID(commands.StreamPayment, p.PaymentID) || e.store.Head().Seq != head {
		t.Fatalf("retry: %v; head %d -> %d", err, head, e.store.Head().Seq)
	}
	c.Meta, c.RequestKey = e.meta(), "rk-2"
	if _, err := e.svc.HoldReceipt(e.ctx, c); err != nil || e.store.Head().Seq != head+1 {
		t.Fatalf("another request: %v; head %d -> %d", err, head, e.store.Head().Seq)
	}
}
