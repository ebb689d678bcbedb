package commands

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/ledger"
)

// Widget is the payment widget aggregate, folded from its stream.
type Widget struct {
	WidgetCreated
	Status  string
	Version uint64
}

func (w *Widget) apply(e ledger.Event) error {
	w.Version = e.Version
	switch e.Type {
	case TypeWidgetCreated:
		if err := unmarshal(e, &w.WidgetCreated); err != nil {
			return err
		}
		w.Status = WidgetStatusActive
	case TypeWidgetStatusChanged, TypeWidgetExpired:
		var d WidgetStatusChanged
		if err := unmarshal(e, &d); err != nil {
			return err
		}
		w.Status = d.Status
	}
	return nil
}

// LoadWidget folds a widget's stream; merchantID "" loads any merchant's.
func (s *Service) LoadWidget(ctx context.Context, merchantID, widgetID string) (*Widget, error) {
	w := &Widget{}
	if err := s.loadOwned(ctx, StreamWidget, widgetID, merchantID, w.apply, func() string { return w.MerchantID }); err != nil {
		return nil, err
	}
	return w, nil
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// CreateWidget is seed 000's create request for either kind.
type CreateWidget struct {
	Meta
	MerchantID         string
	WidgetID           string // client-supplied UUID, or "" for one derived from NewID
	NewID              ulid.ULID
	Kind               string
	Currencies         []string
	Description        string
	LogoURL            string
	ReturnURL          string
	SupportURL         string
	MerchantExternalID string
	FiatCurrency       string // single
	FiatAmount         string // single
	ExpiresAt          time.Time
	// RequestKey: see Service.requestClaim.
	RequestKey string
}

// CreateWidget appends widget.created.
//
// Errors: *ValidationError, ErrNotFound (merchant), ErrMerchantDisabled,
// ErrDuplicateWidget, ErrCurrencyInvalid, ErrConflict, *RepeatedError
// (ErrRepeated).
func (s *Service) CreateWidget(ctx context.Context, c CreateWidget) (*Widget, error) {
	if err := checkMeta(c.Meta); err != nil {
		return nil, err
	}
	v := &ValidationError{}
	id := strings.ToLower(c.WidgetID)
	if id == "" {
		id = UUID(c.NewID)
	} else if !uuidRE.MatchString(id) {
		v.Add("external_id", "invalid", "external_id must be a UUID")
	}
	d := WidgetCreated{WidgetID: id, MerchantID: c.MerchantID, Kind: c.Kind, Description: c.Description,
		LogoURL: c.LogoURL, ReturnURL: c.ReturnURL, SupportURL: c.SupportURL,
		MerchantExternalID: c.MerchantExternalID, CreatedAt: c.Time.UTC()}
	switch c.Kind {
	case WidgetUnlimited:
		if c.FiatAmount != "" || c.FiatCurrency != "" {
			v.Add("fiat_amount", "invalid", "an unlimited widget takes no fixed amount or currency")
		}
	case WidgetSingle:
		cur, ok := checkInvoiceCurrency(c.FiatCurrency, "fiat_currency", v)
		if !ok && currencyCodeRE.MatchString(c.FiatCurrency) {
			v.Add("fiat_currency", "invalid", fmt.Sprintf("unknown fiat currency %q", c.FiatCurrency))
		}
		d.FiatCurrency = c.FiatCurrency
		d.FiatAmount = checkAmount("fiat_amount", c.FiatAmount, cur, v)
	case "":
		v.Add("type", "missing", "type is required: unlimited or single")
	default:
		v.Add("type", "invalid", "type must be unlimited or single")
	}
	if len(c.Currencies) == 0 {
		d.Currencies = []string{"USDT"}
	}
	for i, code := range c.Currencies {
		if _, ok := LookupCurrency(code); !ok {
			v.Add(fmt.Sprintf("currencies[%d]", i), "invalid", fmt.Sprintf("unknown currency %q", code))
		}
		d.Currencies = append(d.Currencies, code)
	}
	checkText("description", c.Description, maxPurposeLen, v)
	checkText("merchant_external_id", c.MerchantExternalID, maxIDLen, v)
	checkOptionalURL("logo_url", c.LogoURL, true, v)
	if c.LogoURL != "" && !strings.HasSuffix(strings.ToLower(strings.SplitN(c.LogoURL, "?", 2)[0]), ".png") {
		v.Add("logo_url", "invalid", "logo_url must point to a PNG image (.png)")
	}
	checkOptionalURL("return_url", c.ReturnURL, false, v)
	checkOptionalURL("support_url", c.SupportURL, false, v)
	if !c.ExpiresAt.IsZero() {
		if !c.ExpiresAt.After(c.Time) {
			v.Add("expires_at", "invalid", "expires_at must be in the future")
		}
		d.ExpiresAt = c.ExpiresAt.UTC()
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	claims, err := s.requestClaim(c.MerchantID, c.RequestKey)
	if err != nil {
		return nil, err
	}
	stream := StreamID(StreamWidget, id)
	evs, err := s.run(ctx, func() (decision, error) {
		m, err := s.LoadMerchant(ctx, c.MerchantID)
		if err != nil {
			return decision{}, err
		}
		if m.Disabled {
			return decision{}, fmt.Errorf("merchant %s: %w", m.ID, ErrMerchantDisabled)
		}
		// The id is the client's: a conflict on the widget's stream (not
		// on the merchant's) leaves it taken when decided again.
		if v, err := s.store.StreamVersion(stream); err != nil {
			return decision{}, fmt.Errorf("load %s: %w", stream, err)
		} else if v > 0 {
			return decision{}, fmt.Errorf("widget %s: %w", id, ErrDuplicateWidget)
		}
		ids := &eventIDs{meta: c.Meta}
		return decision{writes: []ledger.Write{
			{Stream: stream, Expected: ledger.NoStream, Events: []ledger.NewEvent{ids.event(TypeWidgetCreated, m.ID, d, claims...)}},
			m.asRead(),
		}}, nil
	})
	// A twin of this request (the same key, so the same id) may have made
	// the widget after the key was checked above: repeated answers with it.
	if err = s.repeated(err, claims); err != nil {
		if errors.Is(err, ErrRepeated) || errors.Is(err, ErrDuplicateWidget) {
			return nil, err
		}
		return nil, fmt.Errorf("create widget: %w", err)
	}
	s.created()
	return &Widget{WidgetCreated: d, Status: WidgetStatusActive, Version: evs[0].Version}, nil
}

// ChangeWidgetStatus is the merchant's command to disable or re-activate a
// widget (and the scheduler's to expire one, with Status "expired").
type ChangeWidgetStatus struct {
	Meta
	MerchantID string // "" for the scheduler
	WidgetID   string
	Status     string
}

// ChangeWidgetStatus appends the status change. Allowed: active <-> disabled,
// active|disabled -> expired (at or after expires_at). Expired is final.
//
// Errors: ErrNotFound, ErrInvalidTransition, ErrNotDue, *ValidationError.
func (s *Service) ChangeWidgetStatus(ctx context.Context, c ChangeWidgetStatus) (*Widget, error) {
	if err := checkMeta(c.Meta); err != nil {
		return nil, err
	}
	typ := TypeWidgetStatusChanged
	switch c.Status {
	case WidgetStatusActive, WidgetStatusDisabled:
	case WidgetStatusExpired:
		typ = TypeWidgetExpired
	default:
		return nil, &ValidationError{Fields: []FieldError{{Path: "status", Type: "invalid", Message: "status must be active or disabled"}}}
	}
	var out *Widget
	evs, err := s.run(ctx, func() (decision, error) {
		w, err := s.LoadWidget(ctx, c.MerchantID, c.WidgetID)
		if err != nil {
			return decision{}, err
		}
		switch {
		case !WidgetStatusAllowed(w.Status, c.Status):
			return decision{}, fmt.Errorf("widget %s: %s -> %s: %w", w.WidgetID, w.Status, c.Status, ErrInvalidTransition)
		case c.Status == WidgetStatusActive && !w.ExpiresAt.IsZero() && !c.Time.Before(w.ExpiresAt):
			return decision{}, fmt.Errorf("widget %s is past its expiry: %w", w.WidgetID, ErrInvalidTransition)
		case c.Status == WidgetStatusExpired && (w.ExpiresAt.IsZero() || c.Time.Before(w.ExpiresAt)):
			return decision{}, fmt.Errorf("widget %s: %w", w.WidgetID, ErrNotDue)
		}
		out = w
		return single(c.Meta, StreamID(StreamWidget, w.WidgetID), w.MerchantID, w.Version, typ,
			WidgetStatusChanged{Status: c.Status, At: c.Time.UTC()}), nil
	})
	if err != nil {
		return nil, err
	}
	if err := out.apply(evs[0]); err != nil {
		return nil, err
	}
	return out, nil
}

// CreateWidgetInvoice is a customer's request on a widget page: an unlimited
// widget takes the amount and the method the customer chose (the invoice is
// in the method's currency); a single widget has its own amount and currency.
type CreateWidgetInvoice struct {
	Meta
	InvoiceID  ulid.ULID
	WidgetID   string
	Amount     string // unlimited only
	Method     string // unlimited: required, fixes the invoice's currency; single: optional
	CustomerID string
	// Rate is the invoice currency's rate per USDT (zero: none set; USDT's
	// is 1 whatever is given).
	Rate decimal.Decimal
	// MerchantID is "" from the hosted page; else the widget must be its.
	MerchantID string
	// RequestKey: see Service.requestClaim (it needs MerchantID).
	RequestKey string
}

// WidgetInvoiceCurrency says which currency a widget invoice will be in, so
// the adapter can read the right rate before issuing CreateWidgetInvoice.
func WidgetInvoiceCurrency(w *Widget, method string) string {
	if w.Kind == WidgetSingle {
		return w.FiatCurrency
	}
	if m, ok := LookupMethod(method); ok {
		return m.Currency
	}
	return ""
}

// CreateWidgetInvoice appends an invoice.created carrying the widget's id and
// merchant external id, conditional on the widget still being as read.
//
// Errors: *ValidationError, ErrNotFound, ErrWidgetNotActive,
// ErrDealsDisabled, ErrMethodInvalid, ErrNoGateway (a method given that no
// enabled gateway serves; it wraps ErrMethodInvalid), ErrCurrencyInvalid,
// ErrNoPayableMethod (no method given, and none in the currency that the
// merchant accepts is served by an enabled gateway; it wraps
// ErrCurrencyInvalid), ErrConflict, *RepeatedError (ErrRepeated).
func (s *Service) CreateWidgetInvoice(ctx context.Context, c CreateWidgetInvoice) (*Invoice, error) {
	if err := checkMeta(c.Meta); err != nil {
		return nil, err
	}
	claims, err := s.requestClaim(c.MerchantID, c.RequestKey)
	if err != nil {
		return nil, err
	}
	var out InvoiceCreated
	_, err = s.run(ctx, func() (decision, error) {
		w, err := s.LoadWidget(ctx, c.MerchantID, c.WidgetID)
		if err != nil {
			return decision{}, err
		}
		if w.Status != WidgetStatusActive || (!w.ExpiresAt.IsZero() && !c.Time.Before(w.ExpiresAt)) {
			return decision{}, fmt.Errorf("widget %s (%s): %w", w.WidgetID, w.Status, ErrWidgetNotActive)
		}
		v := &ValidationError{}
		var method Method
		if c.Method != "" {
			var ok bool
			if method, ok = LookupMethod(c.Method); !ok {
				return decision{}, fmt.Errorf("method %q: %w", c.Method, ErrMethodInvalid)
			}
		}
		var cur Currency
		var amount decimal.Decimal
		if w.Kind == WidgetSingle {
			cur, _ = LookupCurrency(w.FiatCurrency)
			amount = w.FiatAmount
			if c.Method != "" && method.Currency != cur.Code {
				return decision{}, fmt.Errorf("method %q does not take %s: %w", c.Method, cur.Code, ErrMethodInvalid)
			}
		} else {
			if c.Method == "" {
				v.Add("method", "missing", "method is required")
				return decision{}, v
			}
			var ok bool
			if cur, ok = LookupCurrency(method.Currency); !ok {
				return decision{}, fmt.Errorf("method %q: %w", c.Method, ErrMethodInvalid)
			}
			amount = checkAmount("amount", c.Amount, cur, v)
		}
		checkText("customer_id", c.CustomerID, maxIDLen, v)
		if err := v.Err(); err != nil {
			return decision{}, err
		}
		m, err := s.payableMerchant(ctx, w.MerchantID)
		if err != nil {
			return decision{}, err
		}
		if c.Method != "" && !m.MethodEnabled(method.Code) {
			return decision{}, fmt.Errorf("method %q: %w", c.Method, ErrMethodInvalid)
		}
		// A method given is fixed: with no enabled gateway serving it, the
		// invoice could never be paid. Without one (a single widget's
		// invoice) the customer picks it on the payment page, which needs
		// some method in the currency that the merchant accepts and an
		// enabled gateway serves, as create-invoice does.
		sw, err := s.GatewaySwitches(ctx)
		if err != nil {
			return decision{}, err
		}
		if c.Method != "" {
			if _, ok := s.gateways.For(method, sw); !ok {
				return decision{}, fmt.Errorf("method %q: %w", method.Code, ErrNoGateway)
			}
		} else if !s.payableIn(m, cur.Code, sw) {
			return decision{}, fmt.Errorf("currency %q: %w", cur.Code, ErrNoPayableMethod)
		}
		rate := settlementRate(cur.Code, c.Rate)
		if !rate.IsPositive() {
			return decision{}, fmt.Errorf("currency %q: %w", cur.Code, ErrCurrencyInvalid)
		}
		d, err := newInvoice(c.Meta, c.InvoiceID, m, amount, cur, rate)
		if err != nil {
			return decision{}, err
		}
		d.Source = SourceWidget
		d.WidgetID, d.MerchantExternalID, d.ExternalID = w.WidgetID, w.MerchantExternalID, w.MerchantExternalID
		d.Purpose, d.CustomerID, d.Method = w.Description, c.CustomerID, method.Code
		d.SuccessURL, d.FailURL = w.ReturnURL, w.ReturnURL
		out = d
		ids := &eventIDs{meta: c.Meta}
		return decision{writes: []ledger.Write{
			{Stream: StreamID(StreamInvoice, d.InvoiceID), Expected: ledger.NoStream,
				Events: []ledger.NewEvent{ids.event(TypeInvoiceCreated, m.ID, d, claims...)}},
			{Stream: StreamID(StreamWidget, w.WidgetID), Expected: ledger.Exactly(w.Version)},
			// A gateway disabled since the check: decide again.
			{Stream: StreamGateways, Expected: ledger.Exactly(sw.Version)},
			m.asRead(),
		}}, nil
	})
	if err != nil {
		return nil, s.repeated(err, claims)
	}
	s.created()
	return &Invoice{InvoiceCreated: out, Status: InvoiceStatusPending, Version: 1}, nil
}
