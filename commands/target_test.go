package commands_test

import (
	"errors"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/commands"
)

// TestPrivateTargetsRecordedEarlierStillFold: a webhook_url and a
// callback_url on plain http, taken while private webhooks were allowed,
// stay in the log; a service without AllowPrivateWebhooks folds them, and
// refuses only new ones: the check is the command's, not the fold's.
func TestPrivateTargetsRecordedEarlierStillFold(t *testing.T) {
	e := newEnv(t)
	allow := commands.NewService(e.store, commands.Config{AllowPrivateWebhooks: true})
	hook := "http://127.0.0.1:9/hook"
	if err := allow.ChangeMerchantSettings(e.ctx, commands.ChangeMerchantSettings{Meta: e.meta(), MerchantID: e.m,
		Settings: commands.MerchantSettings{WebhookURL: &hook}}); err != nil {
		t.Fatalf("allowed service refused webhook_url %s: %v", hook, err)
	}
	inv, err := allow.CreateInvoice(e.ctx, commands.CreateInvoice{Meta: e.meta(), InvoiceID: ulid.Make(), MerchantID: e.m,
		Amount: "10.00", Currency: "UAH", ExternalID: "local-1", CallbackURL: hook, Rate: dec("41.50")})
	if err != nil {
		t.Fatalf("allowed service refused callback_url %s: %v", hook, err)
	}

	strict := commands.NewService(e.store, commands.Config{})
	m, err := strict.LoadMerchant(e.ctx, e.m)
	if err != nil || m.WebhookURL != hook {
		t.Fatalf("strict service folds webhook_url %q, %v; want %q", m.WebhookURL, err, hook)
	}
	name := "Renamed"
	if err := strict.ChangeMerchantSettings(e.ctx, commands.ChangeMerchantSettings{Meta: e.meta(), MerchantID: e.m,
		Settings: commands.MerchantSettings{Name: &name}}); err != nil {
		t.Errorf("a change that leaves the recorded webhook_url alone: %v", err)
	}
	if _, err := strict.CancelInvoice(e.ctx, commands.CancelInvoice{Meta: e.meta(), MerchantID: e.m, InvoiceID: inv.InvoiceID}); err != nil {
		t.Errorf("cancel the invoice with a recorded http callback_url: %v", err)
	}
	head := e.store.Head()
	err = strict.ChangeMerchantSettings(e.ctx, commands.ChangeMerchantSettings{Meta: e.meta(), MerchantID: e.m,
		Settings: commands.MerchantSettings{WebhookURL: &hook}})
	var v *commands.ValidationError
	if !errors.As(err, &v) || len(v.Fields) != 1 || v.Fields[0].Path != "webhook_url" {
		t.Errorf("strict service took webhook_url %s again: %v", hook, err)
	}
	if e.store.Head() != head {
		t.Error("a refused webhook_url appended")
	}
}
