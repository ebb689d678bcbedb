package commands

import (
	"fmt"
	"regexp"
	"sort"
)

// Method kinds.
const (
	KindCard        = "card"
	KindMobileMoney = "mobile_money"
	KindBank        = "bank"
	KindCrypto      = "crypto"
	KindUPIWallet   = "upi_wallet"
)

// Extra field types.
const (
	FieldString  = "string"
	FieldPhone   = "phone"
	FieldEmail   = "email"
	FieldAccount = "account"
)

// ExtraField is a parameter a payment method needs from the customer or the
// merchant beyond the amount (seed 001's extra_fields, listed at
// /api/extrafields/list).
type ExtraField struct {
	Name        string // key in extra_fields
	Type        string // FieldString, FieldPhone, FieldEmail or FieldAccount
	Description string
	Required    bool
	Pattern     string // a Go regexp, anchored with ^ and $, the value must match
}

// Method is a payment method of the catalogue: seed 001's codes.
type Method struct {
	Code        string // seed 001's code, e.g. "visamaster.uah"
	Name        string // seed 001's label, e.g. "VisaMaster, UAH"
	Currency    string // the currency the customer pays in: UAH, XOF, BTC, USDT...
	Kind        string // KindCard, KindMobileMoney, KindBank, KindCrypto or KindUPIWallet
	Country     string // ISO 3166 alpha-2 code, or "" when the method is not tied to one
	ExtraFields []ExtraField
}

// Extra field extraPatterns.
const (
	patPhone       = `^\+?[0-9]{8,15}$`
	patIndianPhone = `^(\+?91)?[6-9][0-9]{9}$`
	patCardHolder  = `^[\p{L}][\p{L} .'\-]{1,63}$`
	patNGBankCode  = `^[0-9]{3}([0-9]{3})?$`  // CBN 3-digit or NIBSS 6-digit code
	patNUBAN       = `^[0-9]{10}$`            // Nigerian uniform bank account number
	patIFSC        = `^[A-Z]{4}0[A-Z0-9]{6}$` // Indian Financial System Code
	patINAccount   = `^[0-9]{9,18}$`          // Indian bank account number
	patVPA         = `^[a-zA-Z0-9.\-_]{2,256}@[a-zA-Z]{2,64}$`
	patBTC         = `^(bc1[a-z0-9]{25,87}|[13][1-9A-HJ-NP-Za-km-z]{25,34})$`
	patBCH         = `^((bitcoincash:)?[qp][a-z0-9]{41}|[13][1-9A-HJ-NP-Za-km-z]{25,34})$`
	patLTC         = `^(ltc1[a-z0-9]{25,87}|[LM3][1-9A-HJ-NP-Za-km-z]{26,33})$`
	patEthereum    = `^0x[0-9a-fA-F]{40}$`                                       // ETH and ERC20 tokens
	patTron        = `^T[1-9A-HJ-NP-Za-km-z]{33}$`                               // TRX and TRC20 tokens
	patMonero      = `^[48][1-9A-HJ-NP-Za-km-z]{94}([1-9A-HJ-NP-Za-km-z]{11})?$` // standard or integrated address
)

func catPhoneField() ExtraField {
	return ExtraField{Name: "phone", Type: FieldPhone, Required: true, Pattern: patPhone,
		Description: "Mobile money account number of the payer, digits with an optional leading +, 8 to 15 digits (E.164 without spaces)"}
}

func catCardFields() []ExtraField {
	return []ExtraField{{Name: "card_holder", Type: FieldString, Pattern: patCardHolder,
		Description: "Name of the card holder as printed on the card (optional)"}}
}

func catRefundField(pattern, network string) []ExtraField {
	return []ExtraField{{Name: "refund_address", Type: FieldAccount, Pattern: pattern,
		Description: "The payer's " + network + " address for refunds of over- or late payments (optional)"}}
}

func catMobile(code, name, cur, country string) Method {
	return Method{Code: code, Name: name, Currency: cur, Kind: KindMobileMoney, Country: country,
		ExtraFields: []ExtraField{catPhoneField()}}
}

func catCard(code, name, cur, country string) Method {
	return Method{Code: code, Name: name, Currency: cur, Kind: KindCard, Country: country, ExtraFields: catCardFields()}
}

func catCrypto(code, name, cur, pattern, network string) Method {
	return Method{Code: code, Name: name, Currency: cur, Kind: KindCrypto, ExtraFields: catRefundField(pattern, network)}
}

func catIndianWallet(code, name string) Method {
	return Method{Code: code, Name: name, Currency: "INR", Kind: KindUPIWallet, Country: "IN",
		ExtraFields: []ExtraField{{Name: "phone", Type: FieldPhone, Required: true, Pattern: patIndianPhone,
			Description: "Indian mobile number registered with the wallet, 10 digits starting 6-9, optionally prefixed with 91 or +91"}}}
}

// catalogue is the default method catalogue: the 53 codes of seed 001, in
// the seed's order. Codes are persisted in events: add, never rename.
var catalogue = []Method{
	catMobile("airtel.mga", "Airtel Money, MGA", "MGA", "MG"),
	catMobile("airtel-congo.usd", "Airtel Money, USD CONGO", "USD", "CD"),
	catMobile("airtel-congo.cdf", "Airtel Money, CDF CONGO", "CDF", "CD"),
	{Code: "bank.ngn", Name: "Bank Transfer, NGN", Currency: "NGN", Kind: KindBank, Country: "NG", ExtraFields: []ExtraField{
		{Name: "bank_code", Type: FieldString, Required: true, Pattern: patNGBankCode,
			Description: "The payer's bank: 3-digit CBN or 6-digit NIBSS institution code"},
		{Name: "account_number", Type: FieldAccount, Required: true, Pattern: patNUBAN,
			Description: "The payer's 10-digit NUBAN account number"},
	}},
	catCrypto("bitcoin", "Bitcoin, BTC", "BTC", patBTC, "Bitcoin"),
	catCrypto("bitcoin_cash", "Bitcoin Cash, BCH", "BCH", patBCH, "Bitcoin Cash"),
	catCrypto("link", "ChainLink, LINK", "LINK", patEthereum, "Ethereum (ERC20)"),
	catCrypto("ethereum", "Ethereum, ETH", "ETH", patEthereum, "Ethereum"),
	catMobile("expresso-senegal.xof", "Expresso, XOF SENEGAL", "XOF", "SN"),
	catMobile("free_money-senegal.xof", "FreeMoney, XOF SENEGAL", "XOF", "SN"),
	{Code: "imps.inr", Name: "IMPS, INR", Currency: "INR", Kind: KindBank, Country: "IN", ExtraFields: []ExtraField{
		{Name: "ifsc", Type: FieldString, Required: true, Pattern: patIFSC,
			Description: "IFSC of the payer's bank branch: 4 letters, 0, 6 letters or digits (e.g. SBIN0001234)"},
		{Name: "account_number", Type: FieldAccount, Pattern: patINAccount,
			Description: "The payer's bank account number, 9 to 18 digits (optional; speeds up reconciliation)"},
	}},
	catCrypto("litecoin", "Litecoin, LTC", "LTC", patLTC, "Litecoin"),
	catCrypto("monero", "Monero, XMR", "XMR", patMonero, "Monero"),
	catMobile("moov-togo.xof", "MOOV, XOF TOGO", "XOF", "TG"),
	catMobile("moov-ci.xof", "MOOV, XOF CI", "XOF", "CI"),
	catMobile("moov-benin.xof", "MOOV, XOF BENIN", "XOF", "BJ"),
	catMobile("moov-mali.xof", "MOOV, XOF MALI", "XOF", "ML"),
	catMobile("moov-burkina-faso.xof", "MOOV, XOF BURKINA-FASO", "XOF", "BF"),
	catMobile("mpesa-congo.usd", "MPesa, USD CONGO", "USD", "CD"),
	catMobile("mpesa-congo.cdf", "MPesa, CDF CONGO", "CDF", "CD"),
	catMobile("mtn-togo.xof", "MTN, XOF TOGO", "XOF", "TG"),
	catMobile("mtn-ci.xof", "MTN, XOF CI", "XOF", "CI"),
	catMobile("mtn-benin.xof", "MTN, XOF BENIN", "XOF", "BJ"),
	catMobile("mtn-guinea.gnf", "MTN, GNF GUINEA", "GNF", "GN"),
	catMobile("mvola.mga", "MVola, MGA", "MGA", "MG"),
	catMobile("orange_money.mga", "Orange Money, MGA", "MGA", "MG"),
	catMobile("orange_money-togo.xof", "Orange Money, XOF TOGO", "XOF", "TG"),
	catMobile("orange_money-ci.xof", "Orange Money, XOF CI", "XOF", "CI"),
	catMobile("orange_money-benin.xof", "Orange Money, XOF BENIN", "XOF", "BJ"),
	catMobile("orange_money-senegal.xof", "Orange Money, XOF SENEGAL", "XOF", "SN"),
	catMobile("orange_money-burkina-faso.xof", "Orange Money, XOF BURKINA-FASO", "XOF", "BF"),
	catMobile("orange_money-mali.xof", "Orange Money, XOF MALI", "XOF", "ML"),
	catMobile("orange_money-congo.usd", "Orange Money, USD CONGO", "USD", "CD"),
	catMobile("orange_money-congo.cdf", "Orange Money, CDF CONGO", "CDF", "CD"),
	catMobile("orange_money-guinea.gnf", "Orange Money, GNF GUINEA", "GNF", "GN"),
	catIndianWallet("paytm.inr", "PayTM, INR"),
	catIndianWallet("phonepe.inr", "Phone PE, INR"),
	catMobile("tmoney.xof", "T-Money, XOF", "XOF", "TG"),
	catCrypto("usdt_erc20", "Tether ERC20, USDT ERC20", "USDT", patEthereum, "Ethereum (ERC20)"),
	catCrypto("usdt_trc20", "Tether TRC20, USDT TRC20", "USDT", patTron, "Tron (TRC20)"),
	catCrypto("tron", "Tron, TRX", "TRX", patTron, "Tron"),
	{Code: "upi.inr", Name: "UPI, INR", Currency: "INR", Kind: KindUPIWallet, Country: "IN", ExtraFields: []ExtraField{
		{Name: "vpa", Type: FieldAccount, Required: true, Pattern: patVPA,
			Description: "The payer's UPI virtual payment address, e.g. name@okbank"},
	}},
	catCrypto("usdc_trc20", "USDC TRC20, USDC TRC20", "USDC", patTron, "Tron (TRC20)"),
	catMobile("vanilla_pay.mga", "Vanilla Pay, MGA", "MGA", "MG"),
	catCard("verve.ngn", "Verve, NGN", "NGN", "NG"),
	catCard("visamaster.uah", "VisaMaster, UAH", "UAH", "UA"),
	catCard("visamaster.usd", "VisaMaster, USD", "USD", ""),
	catCard("visamaster.ngn", "VisaMaster, NGN", "NGN", "NG"),
	catCard("visamaster.xof", "VisaMaster, XOF", "XOF", ""),
	catMobile("wave-senegal.xof", "Wave, XOF SENEGAL", "XOF", "SN"),
	catMobile("wave-ci.xof", "Wave, XOF CI", "XOF", "CI"),
	catMobile("wiz_all-senegal.xof", "WizAll, XOF SENEGAL", "XOF", "SN"),
}

var (
	methodIndex = make(map[string]int, len(catalogue))
	// currencyMethods lists, per currency, the catalogue positions of its
	// methods in catalogue order: create-invoice asks on every request
	// whether one is payable (Service.payableIn), without copying them.
	currencyMethods = map[string][]int{}
	// extraPatterns holds every catalogue pattern compiled once; MustCompile makes a
	// bad pattern fail at start-up and in every test, not on a customer.
	extraPatterns = map[string]*regexp.Regexp{}
)

func init() {
	for i, m := range catalogue {
		if _, dup := methodIndex[m.Code]; dup {
			panic("commands: duplicate method code " + m.Code)
		}
		methodIndex[m.Code] = i
		currencyMethods[m.Currency] = append(currencyMethods[m.Currency], i)
		for _, f := range m.ExtraFields {
			if _, ok := extraPatterns[f.Pattern]; !ok && f.Pattern != "" {
				extraPatterns[f.Pattern] = regexp.MustCompile(f.Pattern)
			}
		}
	}
}

func (m Method) clone() Method {
	m.ExtraFields = append([]ExtraField(nil), m.ExtraFields...)
	return m
}

// Methods returns the whole catalogue in seed 001's order. The slice is a
// copy: changing it changes nothing for other callers.
func Methods() []Method {
	out := make([]Method, len(catalogue))
	for i, m := range catalogue {
		out[i] = m.clone()
	}
	return out
}

// LookupMethod returns the catalogue method with this exact code
// (case-sensitive, as seed 001 spells it).
func LookupMethod(code string) (Method, bool) {
	i, ok := methodIndex[code]
	if !ok {
		return Method{}, false
	}
	return catalogue[i].clone(), true
}

// MethodsForCurrency returns the methods whose Currency is cur, in catalogue
// order; nil when there are none.
func MethodsForCurrency(cur string) []Method {
	var out []Method
	for _, m := range catalogue {
		if m.Currency == cur {
			out = append(out, m.clone())
		}
	}
	return out
}

// ValidateExtra checks a request's extra_fields against the method and adds
// to v (which must not be nil) one FieldError per problem, with path
// "extra_fields.<name>":
//   - "missing": a required field is absent or empty;
//   - "invalid": a value does not match the field's pattern;
//   - "unknown": the method has no field of that name.
//
// An empty optional field counts as absent. Problems come in the method's
// field order, then unknown names sorted, so the same request always gives
// the same error.
func (m Method) ValidateExtra(fields map[string]string, v *ValidationError) {
	known := make(map[string]bool, len(m.ExtraFields))
	for _, f := range m.ExtraFields {
		known[f.Name] = true
		path := "extra_fields." + f.Name
		val := fields[f.Name]
		if val == "" {
			if f.Required {
				v.Add(path, "missing", fmt.Sprintf("%s is required for %s: %s", path, m.Code, f.Description))
			}
			continue
		}
		if f.Pattern == "" {
			continue
		}
		re, ok := extraPatterns[f.Pattern]
		if !ok {
			// A method built outside the catalogue; its pattern is not cached.
			var err error
			if re, err = regexp.Compile(f.Pattern); err != nil {
				v.Add(path, "invalid", fmt.Sprintf("%s cannot be checked: method %s has a bad pattern", path, m.Code))
				continue
			}
		}
		if !re.MatchString(val) {
			v.Add(path, "invalid", fmt.Sprintf("%s is not valid for %s: %s", path, m.Code, f.Description))
		}
	}
	var unknown []string
	for name := range fields {
		if !known[name] {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	for _, name := range unknown {
		v.Add("extra_fields."+name, "unknown", fmt.Sprintf("extra_fields.%s is not a field of %s", name, m.Code))
	}
}
