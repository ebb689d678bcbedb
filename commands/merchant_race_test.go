package commands_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
)

// raceStore is the log with other requests' commits slipped in between a
// command's reads and its append: before each append whose first write
// is to a stream with prefix, it calls between with the number of such
// appends before it, then appends to the real log.
type raceStore struct {
	*boltlog.Store
	prefix  string
	between func(n int)

	mu sync.Mutex
	n  int
}

func (r *raceStore) AppendWrites(ctx context.Context, ws ...ledger.Write) ([]ledger.Event, error) {
	if len(ws) > 0 && strings.HasPrefix(ws[0].Stream, r.prefix) {
		r.mu.Lock()
		n := r.n
		r.n++
		r.mu.Unlock()
		r.between(n)
	}
	return r.Store.AppendWrites(ctx, ws...)
}

// raced returns a service whose appends to streams with prefix are each
// preceded by between (see raceStore); e.svc, over the log itself, makes
// the commits that slip in.
func (e *env) raced(prefix string, cfg commands.Config, between func(n int)) *commands.Service {
	return commands.NewService(&raceStore{Store: e.store, prefix: prefix + "-", between: between}, cfg)
}

// settings has the operator change the merchant's settings.
func (e *env) settings(s commands.MerchantSettings) {
	e.t.Helper()
	if err := e.svc.ChangeMerchantSettings(e.ctx, commands.ChangeMerchantSettings{Meta: e.meta(), MerchantID: e.m, Settings: s}); err != nil {
		e.t.Fatal(err)
	}
}

// creation is one of the commands that create something on the
// merchant's settings: prefix is the stream its append writes first.
type creation struct {
	prefix string
	// prepare makes what the creation needs (an invoice to pay, a widget)
	// before the race; create then runs on svc.
	prepare func(e *env) func(svc *commands.Service, requestKey string) (stream string, _ error)
}

func creations() map[string]creation {
	invoiceStream := func(inv *commands.Invoice, err error) (string, error) {
		if err != nil {
			return "", err
		}
		return commands.StreamID(commands.StreamInvoice, inv.InvoiceID), nil
	}
	return map[string]creation{
		"invoice": {commands.StreamInvoice, func(e *env) func(*commands.Service, string) (string, error) {
			return func(svc *commands.Service, key string) (string, error) {
				return invoiceStream(svc.CreateInvoice(e.ctx, commands.CreateInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
					Amount: "1500.00", Currency: "UAH", ExternalID: "o-1", Rate: dec("41.50"), RequestKey: key}))
			}
		}},
		"e-invoice": {commands.StreamInvoice, func(e *env) func(*commands.Service, string) (string, error) {
			return func(svc *commands.Service, key string) (string, error) {
				return invoiceStream(svc.CreateEInvoice(e.ctx, commands.CreateEInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
					PaymentID: "p-1", Method: "visamaster.uah", Amount: "100.00", Rate: dec("41.50"), RequestKey: key}))
			}
		}},
		"widget invoice with a method": {commands.StreamInvoice, func(e *env) func(*commands.Service, string) (string, error) {
			w, err := e.svc.CreateWidget(e.ctx, commands.CreateWidget{Meta: e.meta(), MerchantID: e.m, NewID: ulid.Make(), Kind: commands.WidgetUnlimited})
			if err != nil {
				e.t.Fatal(err)
			}
			return func(svc *commands.Service, key string) (string, error) {
				return invoiceStream(svc.CreateWidgetInvoice(e.ctx, commands.CreateWidgetInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), WidgetID: w.WidgetID,
					MerchantID: e.m, Method: "visamaster.uah", Amount: "100.00", Rate: dec("41.50"), RequestKey: key}))
			}
		}},
		"single widget's invoice": {commands.StreamInvoice, func(e *env) func(*commands.Service, string) (string, error) {
			w, err := e.svc.CreateWidget(e.ctx, commands.CreateWidget{Meta: e.meta(), MerchantID: e.m, NewID: ulid.Make(), Kind: commands.WidgetSingle,
				FiatCurrency: "UAH", FiatAmount: "100.00"})
			if err != nil {
				e.t.Fatal(err)
			}
			return func(svc *commands.Service, key string) (string, error) {
				return invoiceStream(svc.CreateWidgetInvoice(e.ctx, commands.CreateWidgetInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), WidgetID: w.WidgetID,
					MerchantID: e.m, Rate: dec("41.50"), RequestKey: key}))
			}
		}},
		// A client-supplied widget id: a twin's widget is a version
		// conflict on the widget's stream, not a taken request key.
		"widget": {commands.StreamWidget, func(e *env) func(*commands.Service, string) (string, error) {
			id := commands.UUID(ulid.Make())
			return func(svc *commands.Service, key string) (string, error) {
				w, err := svc.CreateWidget(e.ctx, commands.CreateWidget{Meta: e.meta(), MerchantID: e.m, WidgetID: id, Kind: commands.WidgetUnlimited, RequestKey: key})
				if err != nil {
					return "", err
				}
				return commands.StreamID(commands.StreamWidget, w.WidgetID), nil
			}
		}},
		"payment": {commands.StreamPayment, func(e *env) func(*commands.Service, string) (string, error) {
			inv := e.invoice("to-pay")
			return func(svc *commands.Service, key string) (string, error) {
				p, _, err := svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(), InvoiceID: inv.InvoiceID,
					MerchantID: e.m, Method: "visamaster.uah", RequestKey: key})
				if err != nil {
					return "", err
				}
				return commands.StreamID(commands.StreamPayment, p.PaymentID), nil
			}
		}},
	}
}

// eachCreation runs test, as a subtest, on a fresh env for every creation,
// made ready.
func eachCreation(t *testing.T, test func(t *testing.T, e *env, name string, c creation, create func(*commands.Service, string) (string, error))) {
	for name, c := range creations() {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			test(t, e, name, c, c.prepare(e))
		})
	}
}

// appendedNothing fails the test if the log moved past head.
func (e *env) appendedNothing(head ledger.Head, what string) {
	e.t.Helper()
	if got := e.store.Head(); got != head {
		e.t.Errorf("head %d, %d after %s: the creation appended", got.Seq, head.Seq, what)
	}
}

// An operator's change of the merchant committed between a creation's
// read of the merchant and its append (acknowledged before the creation
// is) is what the creation decides on: the append is conditional on the
// merchant stream's version, so it fails, and the command reads the
// merchant again and refuses, appending nothing after the change.
func TestCreationRefusedOnMerchantChangedBeforeItsAppend(t *testing.T) {
	yes, no := true, false
	onlyBitcoin := []string{"bitcoin"}
	changes := map[string]struct {
		settings commands.MerchantSettings
		// want is the refusal of each creation the change concerns, "" for
		// those not named.
		want map[string]error
	}{
		"suspended": {commands.MerchantSettings{Disabled: &yes}, map[string]error{"": commands.ErrMerchantDisabled}},
		// Invoicing stops invoices, not widgets or payments.
		"invoicing off": {commands.MerchantSettings{InvoicingEnabled: &no}, map[string]error{"widget": nil, "payment": nil, "": commands.ErrDealsDisabled}},
		// No UAH method left: an invoice without a method has none to
		// offer; one with visamaster.uah, and its payment, have it disabled.
		"UAH methods off": {commands.MerchantSettings{Methods: &onlyBitcoin}, map[string]error{"widget": nil, "": commands.ErrNoPayableMethod,
			"e-invoice": commands.ErrMethodInvalid, "widget invoice with a method": commands.ErrMethodInvalid, "payment": commands.ErrMethodInvalid}},
	}
	for chname, ch := range changes {
		t.Run(chname, func(t *testing.T) {
			eachCreation(t, func(t *testing.T, e *env, cname string, c creation, create func(*commands.Service, string) (string, error)) {
				want, named := ch.want[cname]
				if !named {
					want = ch.want[""]
				}
				if want == nil {
					return // the change does not concern it
				}
				var changedAt ledger.Head
				svc := e.raced(c.prefix, commands.Config{}, func(n int) {
					if n == 0 {
						e.settings(ch.settings)
						changedAt = e.store.Head()
					}
				})
				stream, err := create(svc, "")
				if !errors.Is(err, want) {
					t.Errorf("created %s (err %v) after the merchant was %s at sequence %d; want %v", stream, err, chname, changedAt.Seq, want)
				}
				e.appendedNothing(changedAt, "the change")
			})
		})
	}
}

// A change that leaves the creation allowed is decided on too: an invoice
// gets the commission the merchant has when it is appended, not the one
// read before. And a change that does not concern it (an API key issued)
// costs it only a second decision.
func TestCreationDecidedAgainOnMerchantChangedBeforeItsAppend(t *testing.T) {
	eachCreation(t, func(t *testing.T, e *env, _ string, c creation, create func(*commands.Service, string) (string, error)) {
		comm := "3.5"
		svc := e.raced(c.prefix, commands.Config{}, func(n int) {
			switch n {
			case 0:
				e.settings(commands.MerchantSettings{CommissionPercent: &comm})
			case 1:
				if err := e.svc.IssueAPIKey(e.ctx, commands.IssueAPIKey{Meta: e.meta(), MerchantID: e.m,
					Key: commands.APIKeyIssued{KeyID: "k2", KeyHash: hex64('c'), Prefix: "pl_cccc"}}); err != nil {
					t.Fatal(err)
				}
			}
		})
		stream, err := create(svc, "")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(stream, commands.StreamInvoice+"-") {
			return
		}
		inv, err := e.svc.LoadInvoice(e.ctx, e.m, strings.TrimPrefix(stream, commands.StreamInvoice+"-"))
		if err != nil {
			t.Fatal(err)
		}
		if !inv.CommissionPercent.Equal(dec(comm)) {
			t.Errorf("invoice at commission %s, want %s: set before its append", inv.CommissionPercent, comm)
		}
	})
}

// A merchant that changes before every attempt leaves the creation
// ErrConflict after the service's retries, having appended nothing.
func TestCreationConflictsOnMerchantChangingBeforeEveryAppend(t *testing.T) {
	eachCreation(t, func(t *testing.T, e *env, _ string, c creation, create func(*commands.Service, string) (string, error)) {
		var head ledger.Head
		attempts := 0
		svc := e.raced(c.prefix, commands.Config{MaxRetries: 3}, func(n int) {
			attempts = n + 1
			comm := fmt.Sprint(n + 3)
			e.settings(commands.MerchantSettings{CommissionPercent: &comm})
			head = e.store.Head()
		})
		if stream, err := create(svc, ""); !errors.Is(err, commands.ErrConflict) {
			t.Fatalf("created %s (err %v) with the merchant changing before every append; want ErrConflict", stream, err)
		}
		if attempts != 4 {
			t.Errorf("%d attempts, want 4: the first and 3 retries", attempts)
		}
		e.appendedNothing(head, "the last change")
	})
}

// A twin of the request (the same request key) committed while the
// creation decides again after a merchant change is still its answer: a
// *RepeatedError naming what the twin made, and nothing appended.
func TestCreationRepeatedAcrossAMerchantChange(t *testing.T) {
	eachCreation(t, func(t *testing.T, e *env, _ string, c creation, create func(*commands.Service, string) (string, error)) {
		var twin string
		var head ledger.Head
		svc := e.raced(c.prefix, commands.Config{}, func(n int) {
			switch n {
			case 0:
				comm := "3"
				e.settings(commands.MerchantSettings{CommissionPercent: &comm})
			case 1:
				var err error
				if twin, err = create(e.svc, "key-1"); err != nil {
					t.Errorf("twin: %v", err)
				}
				head = e.store.Head()
			}
		})
		stream, err := create(svc, "key-1")
		var rep *commands.RepeatedError
		if !errors.As(err, &rep) || !errors.Is(err, commands.ErrRepeated) {
			t.Fatalf("created %s (err %v); want a *RepeatedError naming the twin's %s", stream, err, twin)
		}
		if rep.Stream != twin {
			t.Errorf("repeated names %s, the twin made %s", rep.Stream, twin)
		}
		e.appendedNothing(head, "the twin")
	})
}

// Invoices, e-invoices and payments created while the operator suspends
// and reinstates the merchant over and over are all appended while it is
// not suspended, and are refused only with ErrMerchantDisabled.
func TestNothingCreatedWhileMerchantSuspended(t *testing.T) {
	e := newEnv(t)
	const toggles = 100
	e.whileToggling(toggles, 6, func(on bool) error {
		disabled := !on
		return e.svc.ChangeMerchantSettings(e.ctx, commands.ChangeMerchantSettings{Meta: e.meta(), MerchantID: e.m,
			Settings: commands.MerchantSettings{Disabled: &disabled}})
	}, func(w int) error {
		if w%2 == 0 {
			_, err := e.svc.CreateEInvoice(e.ctx, commands.CreateEInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
				PaymentID: ulid.Make().String(), Method: "visamaster.uah", Amount: "100.00", Rate: dec("41.50")})
			return err
		}
		inv, err := e.svc.CreateInvoice(e.ctx, commands.CreateInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
			Amount: "100.00", Currency: "UAH", ExternalID: ulid.Make().String(), Rate: dec("41.50")})
		if err != nil {
			return err
		}
		_, _, err = e.svc.CreatePayment(e.ctx, commands.CreatePayment{Meta: e.meta(), PaymentID: ulid.Make(), InvoiceID: inv.InvoiceID, Method: "visamaster.uah"})
		return err
	}, commands.ErrMerchantDisabled)
	suspended := false
	created := 0
	for ev, err := range e.store.Events(e.ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Type {
		case commands.TypeMerchantSettings:
			var d commands.MerchantSettingsChanged
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				t.Fatal(err)
			}
			if d.Disabled != nil {
				suspended = *d.Disabled
			}
		case commands.TypeInvoiceCreated, commands.TypePaymentCreated:
			created++
			if suspended {
				t.Errorf("%s at sequence %d, while the merchant was suspended", ev.Type, ev.Seq)
			}
		}
	}
	t.Logf("%d invoices and payments created around %d suspensions", created, toggles)
}
