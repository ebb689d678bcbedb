package api

import (
	"net/http"
	"sort"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/commands"
)

// extraFieldBody is one of a method's extra fields.
type extraFieldBody struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Required    bool   `json:"required"`
	Pattern     string `json:"pattern,omitempty"`
	Description string `json:"description"`
}

// extraFieldsMethod is one method of GET /api/extrafields/list.
type extraFieldsMethod struct {
	Currency        string           `json:"currency"` // seed 001 calls the method code "currency"
	Name            string           `json:"name"`
	PaymentCurrency string           `json:"payment_currency"`
	ExtraFields     []extraFieldBody `json:"extra_fields"`
}

type extraFieldsList struct {
	Methods []extraFieldsMethod `json:"methods"`
}

func extraFieldBodies(fs []commands.ExtraField) []extraFieldBody {
	out := make([]extraFieldBody, 0, len(fs))
	for _, f := range fs {
		out = append(out, extraFieldBody{Name: f.Name, Type: f.Type, Required: f.Required, Pattern: f.Pattern, Description: f.Description})
	}
	return out
}

// extraFields is GET /api/extrafields/list: every method's extra_fields.
func (s *Server) extraFields(c *call) (int, any, error) {
	ms := commands.Methods()
	out := extraFieldsList{Methods: make([]extraFieldsMethod, 0, len(ms))}
	for _, m := range ms {
		out.Methods = append(out.Methods, extraFieldsMethod{Currency: m.Code, Name: m.Name, PaymentCurrency: m.Currency, ExtraFields: extraFieldBodies(m.ExtraFields)})
	}
	return http.StatusOK, out, nil
}

type methodBody struct {
	Code        string           `json:"code"`
	Name        string           `json:"name"`
	Currency    string           `json:"currency"`
	Kind        string           `json:"kind"`
	Country     string           `json:"country,omitempty"`
	Enabled     bool             `json:"enabled"`
	ExtraFields []extraFieldBody `json:"extra_fields"`
}

type currencyBody struct {
	Code        string  `json:"code"`
	MinorUnits  int32   `json:"minor_units"`
	Crypto      bool    `json:"crypto"`
	Rate        *string `json:"rate"`        // units per 1 USDT; null: no rate set
	Invoiceable bool    `json:"invoiceable"` // create-invoice accepts it as currency_code
}

type methodsList struct {
	Methods    []methodBody   `json:"methods"`
	Currencies []currencyBody `json:"currencies"`
}

// listMethods is GET /api/v1/methods: the catalogue, which methods the
// merchant has enabled, and the currencies with their rates.
func (s *Server) listMethods(c *call) (int, any, error) {
	m, err := s.views.Merchant(c.merchantID)
	if err != nil {
		return 0, nil, err
	}
	enabled := map[string]bool{}
	for _, code := range m.Methods {
		enabled[code] = true
	}
	rates, err := s.views.Rates()
	if err != nil {
		return 0, nil, err
	}
	rateOf := map[string]string{}
	for _, r := range rates {
		rateOf[r.Currency] = r.Rate
	}
	sw, err := s.views.GatewaySwitches()
	if err != nil {
		return 0, nil, err
	}
	out := methodsList{}
	codes := map[string]bool{}
	payable := map[string]bool{} // currencies with an enabled method
	settlement := commands.SettlementCurrency().Code
	for _, meth := range commands.Methods() {
		// Enabled as a payment would be allowed: the merchant accepts it,
		// a gateway the operator has not switched off serves it, and its
		// currency has a rate to price it in USDT (USDT needs none), as
		// the hosted pages offer it.
		_, served := s.svc.Gateways().For(meth, sw)
		_, priced := rateOf[meth.Currency]
		on := served && (priced || meth.Currency == settlement) && (len(m.Methods) == 0 || enabled[meth.Code])
		out.Methods = append(out.Methods, methodBody{
			Code: meth.Code, Name: meth.Name, Currency: meth.Currency, Kind: meth.Kind, Country: meth.Country,
			Enabled:     on,
			ExtraFields: extraFieldBodies(meth.ExtraFields),
		})
		codes[meth.Currency] = true
		payable[meth.Currency] = payable[meth.Currency] || on
	}
	for cur := range rateOf {
		codes[cur] = true
	}
	sorted := make([]string, 0, len(codes))
	for code := range codes {
		sorted = append(sorted, code)
	}
	sort.Strings(sorted)
	for _, code := range sorted {
		cur, ok := commands.LookupCurrency(code)
		if !ok {
			continue
		}
		b := currencyBody{Code: code, MinorUnits: cur.MinorUnits, Crypto: cur.Crypto}
		if r, ok := rateOf[code]; ok {
			b.Rate = &r
			// As create-invoice decides: a fiat currency with a rate and
			// a method in it that a payment could use.
			b.Invoiceable = !cur.Crypto && payable[code]
		}
		out.Currencies = append(out.Currencies, b)
	}
	return http.StatusOK, out, nil
}

type balanceLine struct {
	Account  string `json:"account"` // available, suspense, overpayment
	Currency string `json:"currency"`
	Amount   string `json:"amount"` // owed to the merchant; a decimal string
}

type balanceBody struct {
	MerchantID    string        `json:"merchant_id"`
	AvailableUSDT string        `json:"available_usdt"`
	Balances      []balanceLine `json:"balances"`
}

// balance is GET /api/v1/balance: what the ledger owes the merchant, per
// account and currency. Postings credit merchant accounts with negative
// amounts (commands.Posting), so a balance is shown negated.
func (s *Server) balance(c *call) (int, any, error) {
	bs, err := s.views.Balances(c.merchantID)
	if err != nil {
		return 0, nil, err
	}
	usdt := commands.SettlementCurrency()
	out := balanceBody{MerchantID: c.merchantID, AvailableUSDT: formatMoney(decimal.Zero, usdt.Code), Balances: []balanceLine{}}
	for _, b := range bs {
		owed := b.Amount.Neg()
		line := balanceLine{Account: strings.TrimPrefix(b.Account, "merchant_"), Currency: b.Currency, Amount: formatMoney(owed, b.Currency)}
		out.Balances = append(out.Balances, line)
		if b.Account == commands.AccountAvailable && b.Currency == usdt.Code {
			out.AvailableUSDT = line.Amount
		}
	}
	return http.StatusOK, out, nil
}

// formatMoney renders a balance: USDT, the settlement currency merchants
// are credited in, with its significant places and at least two ("35.42",
// "0.724578"), as merchant_usdt is shown; any other currency, fiat or
// crypto, at exactly its minor units ("1500.00" UAH, "0.00100000" BTC), as
// the payments whose money it holds show their amounts.
func formatMoney(d decimal.Decimal, currency string) string {
	if cur, ok := commands.LookupCurrency(currency); ok && cur.Code != commands.SettlementCurrency().Code {
		return commands.FormatAmount(d, cur)
	}
	return commands.FormatRate(d)
}
