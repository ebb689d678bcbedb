package commands

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/ledger"
)

// PaymentDetails is what the customer pays to: seed 002's "extra".
type PaymentDetails struct {
	AccountNumber string `json:"accountNumber"`
	AccountName   string `json:"accountName"`
	BankName      string `json:"bankName"`
}

// AssignRequest asks a gateway for the payment details of one payment.
type AssignRequest struct {
	PaymentID string // stream-level payment id, a ULID string
	InvoiceID string
	Method    Method
	Amount    decimal.Decimal
	Currency  string
}

// Gateway is a connector to a payment provider, configured by the operator.
type Gateway interface {
	// ID is seed 002's gatewayId: an integer as a string. The sandbox is "1".
	ID() string
	// Name is the operator-facing name, e.g. "sandbox".
	Name() string
	// Supports reports whether the gateway can take payments by m.
	Supports(m Method) bool
	// Assign returns the payment details the customer pays to. It must be
	// deterministic: the same request gives the same details (replays and
	// retries depend on it), with no clock, randomness or network inside.
	// Errors: ErrMethodInvalid when the gateway does not support the method,
	// a *ValidationError when the request lacks an id.
	Assign(req AssignRequest) (PaymentDetails, error)
}

// SandboxID is the gateway id of the built-in sandbox.
const SandboxID = "1"

// Sandbox is the built-in gateway: it supports every method and assigns
// realistic-looking but fake payment details derived from the request, so the
// whole payment flow runs with no outside service. The operator drives its
// payments through the admin API (confirm, process, reject, fail).
type Sandbox struct{}

var _ Gateway = (*Sandbox)(nil)

// NewSandbox returns the sandbox gateway.
func NewSandbox() *Sandbox { return &Sandbox{} }

// ID returns "1".
func (*Sandbox) ID() string { return SandboxID }

// Name returns "sandbox".
func (*Sandbox) Name() string { return "sandbox" }

// Supports reports true for every method with a code.
func (*Sandbox) Supports(m Method) bool { return m.Code != "" }

// sandboxNames are the account holders the sandbox makes up, one per region
// of the catalogue, so pages and webhooks look like the real thing.
var sandboxNames = []string{
	"Olena Kovalenko",
	"Ivan Petrenko",
	"Amadou Diallo",
	"Aïssata Traoré",
	"Fatou Ndiaye",
	"Koffi Mensah",
	"Jean-Baptiste Mukendi",
	"Chinedu Okafor",
	"Ngozi Adeyemi",
	"Priya Sharma",
	"Rahul Verma",
	"Hery Rakotomalala",
}

// sandboxCallingCodes gives mobile-money numbers their country's prefix.
var sandboxCallingCodes = map[string]string{
	"BF": "226", "BJ": "229", "CD": "243", "CI": "225", "GN": "224", "IN": "91",
	"MG": "261", "ML": "223", "NG": "234", "SN": "221", "TG": "228", "UA": "380",
}

// cryptoNetworks names the network a crypto method settles on.
var cryptoNetworks = map[string]string{
	"bitcoin":      "Bitcoin",
	"bitcoin_cash": "Bitcoin Cash",
	"link":         "Ethereum (ERC20)",
	"ethereum":     "Ethereum",
	"litecoin":     "Litecoin",
	"monero":       "Monero",
	"usdt_erc20":   "Ethereum (ERC20)",
	"usdt_trc20":   "Tron (TRC20)",
	"tron":         "Tron",
	"usdc_trc20":   "Tron (TRC20)",
}

// Assign derives the details from SHA-256 over the payment id, invoice id and
// method code (NUL-separated, so no two inputs share a digest by
// concatenation). Amount and currency do not enter: a payment's details
// never change however its amount is corrected.
//
//   - card and bank methods: a 16-digit account number that passes the Luhn
//     check, a holder from a fixed list, bank "Sandbox Bank";
//   - mobile money: a phone number with the method's country calling code,
//     a holder from the list, the operator's name as the bank;
//   - UPI and wallets: a UPI address "sandbox.<hex>@sandbox", bank "Sandbox UPI";
//   - crypto: an address "sandbox1" + 32 hex digits, "Sandbox wallet", and the
//     network's name as the bank.
//
// Errors: a *ValidationError (ErrValidation) when PaymentID, InvoiceID or the
// method code is empty.
func (*Sandbox) Assign(req AssignRequest) (PaymentDetails, error) {
	var v ValidationError
	if req.PaymentID == "" {
		v.Add("payment_id", "missing", "payment_id is required")
	}
	if req.InvoiceID == "" {
		v.Add("invoice_id", "missing", "invoice_id is required")
	}
	if req.Method.Code == "" {
		v.Add("method", "missing", "method is required")
	}
	if err := v.Err(); err != nil {
		return PaymentDetails{}, fmt.Errorf("sandbox assign: %w", err)
	}
	h := sha256.Sum256([]byte(req.PaymentID + "\x00" + req.InvoiceID + "\x00" + req.Method.Code))
	name := sandboxNames[binary.BigEndian.Uint64(h[8:16])%uint64(len(sandboxNames))]

	switch req.Method.Kind {
	case KindCrypto:
		network := cryptoNetworks[req.Method.Code]
		if network == "" {
			network = req.Method.Name
		}
		return PaymentDetails{
			AccountNumber: "sandbox1" + hex.EncodeToString(h[16:32]),
			AccountName:   "Sandbox wallet",
			BankName:      network,
		}, nil
	case KindMobileMoney:
		cc := sandboxCallingCodes[req.Method.Country]
		if cc == "" {
			cc = "999" // ITU's reserved code: plainly not a real number
		}
		return PaymentDetails{
			AccountNumber: "+" + cc + sandboxDigits(h[:], 9),
			AccountName:   name,
			BankName:      methodProvider(req.Method),
		}, nil
	case KindUPIWallet:
		return PaymentDetails{
			AccountNumber: "sandbox." + hex.EncodeToString(h[16:21]) + "@sandbox",
			AccountName:   name,
			BankName:      "Sandbox UPI",
		}, nil
	default: // cards, bank transfers and any kind added later
		body := sandboxDigits(h[:], 15)
		return PaymentDetails{
			AccountNumber: body + string(rune('0'+luhnCheckDigit(body))),
			AccountName:   name,
			BankName:      "Sandbox Bank",
		}, nil
	}
}

// sandboxDigits turns the first n bytes of h into n decimal digits. The modulo
// bias is irrelevant: these numbers only have to look real and be stable.
func sandboxDigits(h []byte, n int) string {
	b := make([]byte, n)
	for i := range n {
		b[i] = '0' + h[i]%10
	}
	return string(b)
}

// luhnCheckDigit returns the digit that, appended to body, makes it pass the
// Luhn check.
func luhnCheckDigit(body string) int {
	sum := 0
	// Walking from the right, the digit next to the check digit is doubled.
	for i := len(body) - 1; i >= 0; i-- {
		d := int(body[i] - '0')
		if (len(body)-1-i)%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return (10 - sum%10) % 10
}

// methodProvider is the operator part of a method's name: "MTN" of "MTN, XOF CI".
func methodProvider(m Method) string {
	if i := strings.Index(m.Name, ","); i > 0 {
		return m.Name[:i]
	}
	return m.Name
}

// Gateways is the registry of configured gateways, in registration order. It
// is safe for concurrent use. Which of them are enabled is not the
// registry's: the operator switches them with events (SwitchGateway), and
// GatewaySwitches folds those.
type Gateways struct {
	mu   sync.RWMutex
	list []Gateway
}

// NewGateways returns an empty registry.
func NewGateways() *Gateways {
	return &Gateways{}
}

// DefaultGateways returns a registry holding only the sandbox gateway.
func DefaultGateways() *Gateways {
	g := NewGateways()
	g.Register(NewSandbox())
	return g
}

// Register adds g. A gateway with the same ID is replaced in place, keeping
// its position.
func (r *Gateways) Register(g Gateway) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, old := range r.list {
		if old.ID() == g.ID() {
			r.list[i] = g
			return
		}
	}
	r.list = append(r.list, g)
}

// Lookup returns the gateway with this id, enabled or not.
func (r *Gateways) Lookup(id string) (Gateway, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, g := range r.list {
		if g.ID() == id {
			return g, true
		}
	}
	return nil, false
}

// For returns the first gateway, in registration order, that sw leaves
// enabled and that supports m. A disabled gateway is still found by Lookup:
// its payments carry on, only new ones go elsewhere.
func (r *Gateways) For(m Method, sw GatewaySwitches) (Gateway, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, g := range r.list {
		if sw.Enabled(g.ID()) && g.Supports(m) {
			return g, true
		}
	}
	return nil, false
}

// All returns the registered gateways in registration order.
func (r *Gateways) All() []Gateway {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]Gateway(nil), r.list...)
}

// GatewaySwitches are the operator's gateway switches, folded from the
// gateways stream: a gateway is enabled unless its last switch disabled it.
// The zero value enables every gateway. Disabled is never changed once
// returned (a later fold makes a new map), so a value may be shared.
type GatewaySwitches struct {
	Disabled map[string]bool // gateway id -> disabled
	Version  uint64          // the gateways stream's version folded
}

// Enabled reports whether the gateway with this id is switched on.
func (sw GatewaySwitches) Enabled(id string) bool { return !sw.Disabled[id] }

// apply folds one event of the gateways stream into a copy of sw.
func (sw GatewaySwitches) apply(e ledger.Event) (GatewaySwitches, error) {
	out := GatewaySwitches{Disabled: sw.Disabled, Version: e.Version}
	if e.Type != TypeGatewayEnabled && e.Type != TypeGatewayDisabled {
		return out, nil
	}
	var d GatewaySwitched
	if err := unmarshal(e, &d); err != nil {
		return sw, err
	}
	out.Disabled = make(map[string]bool, len(sw.Disabled)+1)
	for id, off := range sw.Disabled {
		out.Disabled[id] = off
	}
	if e.Type == TypeGatewayDisabled {
		out.Disabled[d.GatewayID] = true
	} else {
		delete(out.Disabled, d.GatewayID)
	}
	return out, nil
}

// GatewaySwitches folds the gateways stream: which gateways the operator
// has disabled. The fold is cached by stream version, so a call reads only
// the events after the cached version (usually none).
//
// Errors: infrastructure errors, and a gateway event whose data do not
// decode.
func (s *Service) GatewaySwitches(ctx context.Context) (GatewaySwitches, error) {
	s.switchesMu.Lock()
	sw := s.switches
	s.switchesMu.Unlock()
	evs, err := s.store.ReadStream(ctx, StreamGateways, sw.Version+1)
	if err != nil {
		return GatewaySwitches{}, fmt.Errorf("load %s: %w", StreamGateways, err)
	}
	if len(evs) == 0 {
		return sw, nil
	}
	for _, e := range evs {
		if sw, err = sw.apply(e); err != nil {
			return GatewaySwitches{}, fmt.Errorf("load %s version %d: %w", StreamGateways, e.Version, err)
		}
	}
	s.switchesMu.Lock()
	if s.switches.Version < sw.Version {
		s.switches = sw
	}
	s.switchesMu.Unlock()
	return sw, nil
}

// cachedSwitches returns the last fold GatewaySwitches made, without
// reading the log: it may be behind it. A decision taken on it must append
// on condition of its Version (a stale fold then conflicts, and the command
// decides again on a fresh one), and must not refuse on it alone.
func (s *Service) cachedSwitches() GatewaySwitches {
	s.switchesMu.Lock()
	defer s.switchesMu.Unlock()
	return s.switches
}

// payableIn reports whether a customer could pay an invoice of merchant m
// in currency cur now: some catalogue method in cur is one m accepts and a
// gateway that sw leaves enabled serves.
func (s *Service) payableIn(m *Merchant, cur string, sw GatewaySwitches) bool {
	for _, i := range currencyMethods[cur] {
		if !m.MethodEnabled(catalogue[i].Code) {
			continue
		}
		if _, ok := s.gateways.For(catalogue[i], sw); ok {
			return true
		}
	}
	return false
}

// SwitchGateway is the operator's command to enable or disable a
// configured gateway for new payments.
type SwitchGateway struct {
	Meta
	GatewayID string
	Enabled   bool
}

// SwitchGateway appends gateway.enabled or gateway.disabled. A switch to
// the state the gateway is already in appends nothing and reports
// changed false: retried by a script, it is the same answer. Payments made
// through a gateway carry on whatever its switch; only new payments are
// routed by it (CreatePayment).
//
// Errors: ErrNotFound (no gateway with this id is configured), ErrConflict,
// infrastructure errors.
func (s *Service) SwitchGateway(ctx context.Context, c SwitchGateway) (changed bool, _ error) {
	if err := checkMeta(c.Meta); err != nil {
		return false, err
	}
	if _, ok := s.gateways.Lookup(c.GatewayID); !ok {
		return false, fmt.Errorf("gateway %q: %w", c.GatewayID, ErrNotFound)
	}
	typ := TypeGatewayDisabled
	if c.Enabled {
		typ = TypeGatewayEnabled
	}
	_, err := s.run(ctx, func() (decision, error) {
		sw, err := s.GatewaySwitches(ctx)
		if err != nil {
			return decision{}, err
		}
		if changed = sw.Enabled(c.GatewayID) != c.Enabled; !changed {
			return decision{}, nil
		}
		return single(c.Meta, StreamGateways, "", sw.Version, typ, GatewaySwitched{GatewayID: c.GatewayID, At: c.Time.UTC()}), nil
	})
	if err != nil {
		return false, fmt.Errorf("switch gateway %s: %w", c.GatewayID, err)
	}
	return changed, nil
}
