package node

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/internal/ids"
	"github.com/payledger/payledger/keyring"
)

// DemoRates are the rates a fresh demo node starts with (units per USDT):
// one for the currency of every catalogue method, so the demo merchant can
// use them all (TestDemoEveryMethodUsable).
var DemoRates = map[string]string{
	"UAH": "41.50", "USD": "1.00", "EUR": "0.92", "NGN": "1550.00", "XOF": "605.00",
	"INR": "84.00", "MGA": "4600.00", "CDF": "2850.00", "GNF": "8600.00",
	"BTC": "0.000010", "ETH": "0.00030", "USDT": "1", "USDC": "1",
	"BCH": "0.0025", "LINK": "0.067", "LTC": "0.011", "XMR": "0.0063", "TRX": "4.00",
}

// Demo is the demo merchant made on an empty data dir.
type Demo struct {
	MerchantID    string
	APIKey        string
	SigningSecret string
}

// demoCorrelation is the correlation id of the events the demo setup
// appends: not a request id (those have no '/'), so demoPending can tell
// its rates from an operator's.
const demoCorrelation = "node/demo"

// demoPending reports whether the demo setup is to run: the log is empty,
// or holds only rates that a setup which failed halfway set. The setup sets
// the rates first and registers the merchant (with its key and secret, one
// append) last, so a log with a merchant, or anything the setup does not
// write, is not the setup's to finish; the operator's own data is never
// given a demo merchant.
func (n *Node) demoPending(ctx context.Context) (bool, error) {
	if n.Log.Head().Seq > uint64(len(DemoRates)) {
		return false, nil
	}
	for ev, err := range n.Log.Events(ctx, 1) {
		if err != nil {
			return false, fmt.Errorf("read the log: %w", err)
		}
		if ev.Type != commands.TypeRateSet || ev.Correlation != demoCorrelation {
			return false, nil
		}
	}
	return true, nil
}

// createDemo runs (or finishes) the demo setup: the demo rates, then the
// merchant, then the banner with its key. It prints the key only once the
// merchant is committed, so a key printed always works; a setup that fails
// before that prints nothing, and the next start finishes it (demoPending).
func (n *Node) createDemo(ctx context.Context) error {
	for _, cur := range slices.Sorted(maps.Keys(DemoRates)) {
		rate := DemoRates[cur]
		if cur == commands.SettlementCurrency().Code || n.hasRate(cur, rate) {
			continue // USDT needs none; or set before the setup failed
		}
		if _, err := n.Service.SetRate(ctx, commands.SetRate{Meta: n.meta(demoCorrelation), Currency: cur, Rate: rate}); err != nil {
			return fmt.Errorf("rate %s: %w", cur, err)
		}
	}
	d, err := n.createMerchant(ctx, n.meta(demoCorrelation), "Demo shop", "2")
	if err != nil {
		return err
	}
	base := n.BaseURL()
	fmt.Fprintf(n.cfg.Out, `
payledger: created a demo merchant (shown once; only hashes are stored)
  merchant_id:    %s
  api_key:        %s
  signing_secret: %s
  rates:          UAH 41.50 per USDT, and others (POST /admin/v1/rates to change)

Create an invoice:
  curl -s -X POST %s/api/v1/create-invoice -H 'Content-Type: application/json' -H 'X-Api-Key: %s' -d '{"amount": "1500.00", "currency_code": "UAH", "customer_id": "user_12345", "external_id": "order-2026-0001", "purpose": "Payment for Premium subscription"}'

`, d.MerchantID, d.APIKey, d.SigningSecret, base, d.APIKey)
	return nil
}

// hasRate reports whether the views hold a currency's rate at a value.
func (n *Node) hasRate(cur, rate string) bool {
	r, err := n.Views.Rate(cur)
	if err != nil {
		return false
	}
	got, err := decimal.NewFromString(r.Rate)
	return err == nil && got.Equal(decimal.RequireFromString(rate))
}

// CreateMerchant registers a merchant with a fresh API key and signing secret.
func (n *Node) CreateMerchant(ctx context.Context, name, commission string) (Demo, error) {
	return n.createMerchant(ctx, n.meta("node"), name, commission)
}

func (n *Node) createMerchant(ctx context.Context, meta commands.Meta, name, commission string) (Demo, error) {
	key, err := keyring.NewAPIKey()
	if err != nil {
		return Demo{}, err
	}
	id := commands.UUID(ids.New())
	secret := n.Keyring.SigningSecret(id, 1)
	err = n.Service.RegisterMerchant(ctx, commands.RegisterMerchant{
		Meta:       meta,
		MerchantID: id,
		Settings:   commands.MerchantSettings{Name: &name, CommissionPercent: &commission},
		Key:        commands.APIKeyIssued{KeyID: key.ID, KeyHash: key.Hash, Prefix: key.Prefix, Label: "demo"},
		Secret:     commands.SecretMaterial{SecretHash: keyring.SecretHash(secret)},
	})
	if err != nil {
		return Demo{}, err
	}
	return Demo{MerchantID: id, APIKey: key.Key, SigningSecret: secret}, nil
}

func (n *Node) meta(correlation string) commands.Meta {
	return commands.Meta{CommandID: ids.New(), Time: n.cfg.Clock.Now(), Correlation: correlation}
}

// BaseURL is the node's public URL: Config.BaseURL, else http:// and the
// listen address. A listen address on every interface (":8080", 0.0.0.0,
// [::]) names no host to reach: there the URL says localhost and the port,
// which browsers and curl resolve everywhere ("http://[::]:8080" they do not).
func (n *Node) BaseURL() string {
	if n.cfg.BaseURL != "" {
		return n.cfg.BaseURL
	}
	addr := n.cfg.Addr
	if n.listener != nil {
		addr = n.listener.Addr().String()
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}
