package commands_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger/boltlog/boltlogtest"
)

// twinRequest is one request with a request key, as its adapter sends it
// each time: fresh command and new ids, the same fields and key.
type twinRequest struct {
	claim string // the request key's claim
	// send runs the request on svc and returns the stream it made.
	send func(svc *commands.Service) (string, error)
	// after runs once the twin's request made stream, within the race:
	// what else happened before this request went on (nil: nothing).
	after func(stream string) error
}

// TestRequestKeyTwinIsTheAnswer: a request whose twin (the same request
// key) committed just after this one checked its key answers with the
// twin's result (a *RepeatedError naming what the twin made), as a retry
// sent after the twin does, whatever refused its own command, and appends
// nothing. The race is forced: the twin runs inside this request's lookup
// of its key (boltlogtest.ClaimRace), which then answers "free".
//
// Before commands.Service.repeated looked the key up on every refusal,
// the rows where the twin's payment was then processed, or its invoice
// cancelled, answered ErrInvoiceNotPayable; the others were answered
// already (a claim conflict on the key, a version conflict on the twin's
// stream, the special case for ErrTooManyPayments).
func TestRequestKeyTwinIsTheAnswer(t *testing.T) {
	const key = "twin-key"
	payment := func(e *env, inv *commands.Invoice) func(*commands.Service) (string, error) {
		return func(svc *commands.Service) (string, error) {
			p, _, err := svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(),
				InvoiceID: inv.InvoiceID, MerchantID: e.m, Method: "visamaster.uah", RequestKey: key})
			if err != nil {
				return "", err
			}
			return commands.StreamID(commands.StreamPayment, p.PaymentID), nil
		}
	}
	invoiceStream := func(inv *commands.Invoice, err error) (string, error) {
		if err != nil {
			return "", err
		}
		return commands.StreamID(commands.StreamInvoice, inv.InvoiceID), nil
	}
	for _, tc := range []struct {
		name    string
		prepare func(e *env) twinRequest
	}{
		{"payment: the twin's payment then paid the invoice", func(e *env) twinRequest {
			return twinRequest{claim: commands.RequestClaim(e.m, key), send: payment(e, e.invoice("o-1")),
				after: func(stream string) error {
					_, err := e.svc.ProcessPayment(e.ctx, commands.ProcessPayment{Meta: e.meta(),
						PaymentID: strings.TrimPrefix(stream, commands.StreamPayment+"-")})
					return err
				}}
		}},
		{"payment: the invoice cancelled after the twin's payment", func(e *env) twinRequest {
			inv := e.invoice("o-1")
			return twinRequest{claim: commands.RequestClaim(e.m, key), send: payment(e, inv),
				after: func(string) error {
					_, err := e.svc.CancelInvoice(e.ctx, commands.CancelInvoice{Meta: e.meta(), MerchantID: e.m, InvoiceID: inv.InvoiceID})
					return err
				}}
		}},
		{"payment: the twin took the invoice's last place", func(e *env) twinRequest {
			inv := e.invoice("o-1")
			for range commands.MaxPaymentsPerInvoice - 1 {
				e.payment(inv)
			}
			return twinRequest{claim: commands.RequestClaim(e.m, key), send: payment(e, inv)}
		}},
		{"invoice: the twin took the external_id", func(e *env) twinRequest {
			return twinRequest{claim: commands.RequestClaim(e.m, key), send: func(svc *commands.Service) (string, error) {
				return invoiceStream(svc.CreateInvoice(e.ctx, commands.CreateInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
					Amount: "5.00", Currency: "UAH", ExternalID: "ext-1", Rate: dec("41.5"), RequestKey: key}))
			}}
		}},
		{"e-invoice: the twin took the payment_id", func(e *env) twinRequest {
			return twinRequest{claim: commands.RequestClaim(e.m, key), send: func(svc *commands.Service) (string, error) {
				return invoiceStream(svc.CreateEInvoice(e.ctx, commands.CreateEInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
					PaymentID: "123", Method: "visamaster.uah", Amount: "100.00", Rate: dec("41.5"), RequestKey: key}))
			}}
		}},
		{"widget: the twin made the widget of the external_id", func(e *env) twinRequest {
			return twinRequest{claim: commands.RequestClaim(e.m, key), send: func(svc *commands.Service) (string, error) {
				w, err := svc.CreateWidget(e.ctx, commands.CreateWidget{Meta: e.meta(), MerchantID: e.m, NewID: ulid.Make(),
					WidgetID: "0b6d1b8e-62c3-4d49-9a43-1c4f6a0e2b11", Kind: commands.WidgetUnlimited, RequestKey: key})
				if err != nil {
					return "", err
				}
				return commands.StreamID(commands.StreamWidget, w.WidgetID), nil
			}}
		}},
		{"widget invoice: the twin made the invoice", func(e *env) twinRequest {
			w, err := e.svc.CreateWidget(e.ctx, commands.CreateWidget{Meta: e.meta(), MerchantID: e.m, NewID: ulid.Make(), Kind: commands.WidgetUnlimited})
			if err != nil {
				e.t.Fatal(err)
			}
			return twinRequest{claim: commands.RequestClaim(e.m, key), send: func(svc *commands.Service) (string, error) {
				return invoiceStream(svc.CreateWidgetInvoice(e.ctx, commands.CreateWidgetInvoice{Meta: e.meta(), InvoiceID: ulid.Make(),
					WidgetID: w.WidgetID, Amount: "10.00", Method: "visamaster.uah", Rate: dec("41.5"), MerchantID: e.m, RequestKey: key}))
			}}
		}},
		{"merchant: the twin registered the merchant", func(e *env) twinRequest {
			return twinRequest{claim: commands.AdminRequestClaim(key), send: func(svc *commands.Service) (string, error) {
				name := "Second"
				err := svc.RegisterMerchant(e.ctx, commands.RegisterMerchant{Meta: e.meta(), MerchantID: "m2",
					Settings: commands.MerchantSettings{Name: &name},
					Key:      commands.APIKeyIssued{KeyID: "k2", KeyHash: hex64('c'), Prefix: "pl_cccc"},
					Secret:   commands.SecretMaterial{SecretHash: hex64('d')}, RequestKey: key})
				return commands.StreamID(commands.StreamMerchant, "m2"), err
			}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			req := tc.prepare(e)
			race := &boltlogtest.ClaimRace{Store: e.store}
			svc := commands.NewService(race, commands.Config{})
			var twin string
			var twinErr error
			var head uint64
			race.Arm(req.claim, func() {
				if twin, twinErr = req.send(e.svc); twinErr == nil && req.after != nil {
					twinErr = req.after(twin)
				}
				head = e.store.Head().Seq
			})
			_, err := req.send(svc)
			if twinErr != nil {
				t.Fatalf("the twin: %v", twinErr)
			}
			if twin == "" {
				t.Fatal("the twin did not run: the request never looked its key up")
			}
			var rep *commands.RepeatedError
			if !errors.As(err, &rep) || rep.Stream != twin {
				t.Fatalf("the request raced by its twin: %v; want a *RepeatedError naming %s", err, twin)
			}
			if got := e.store.Head().Seq; got != head {
				t.Errorf("the request appended %d events after its twin's", got-head)
			}
			claimed := 0
			for ev, err := range e.store.Events(e.ctx, 1) {
				if err != nil {
					t.Fatal(err)
				}
				if slices.Contains(ev.Claims, req.claim) {
					claimed++
				}
			}
			if claimed != 1 {
				t.Errorf("%d events claim the request key, want 1", claimed)
			}
		})
	}
}

// TestRequestKeyOtherRefusalStands: a refusal is answered with a twin's
// result only when the twin holds this request's own key. Another request
// (another key: the same Idempotency-Key with another body makes another
// request key) refused at the cap that a request with another key reached
// gets ErrTooManyPayments, not that request's payment.
func TestRequestKeyOtherRefusalStands(t *testing.T) {
	e := newEnv(t)
	inv := e.invoice("o-1")
	for range commands.MaxPaymentsPerInvoice - 1 {
		e.payment(inv)
	}
	create := func(key string) error {
		_, _, err := e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(),
			InvoiceID: inv.InvoiceID, MerchantID: e.m, Method: "visamaster.uah", RequestKey: key})
		return err
	}
	if err := create("k-1"); err != nil {
		t.Fatal(err)
	}
	if err := create("k-2"); !errors.Is(err, commands.ErrTooManyPayments) || errors.Is(err, commands.ErrRepeated) {
		t.Fatalf("another request key at the cap: %v, want ErrTooManyPayments", err)
	}
}
