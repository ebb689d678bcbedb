package projections

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/ledger"
)

// prepare decodes an event's data and builds everything that depends on the
// event alone: new views, formatted amounts, checked postings. It is pure,
// so a rebuild runs it on several goroutines; apply then merges the result
// into the views in log order. It returns nil, nil for an unknown event type
// (ignored, for forward compatibility), and ErrMalformedEvent or
// ErrUnbalanced for a known type whose data are wrong.
//
// c (nil: none) is the calling goroutine's cache.
func prepare(e *ledger.Event, c *cache) (any, error) {
	v := newFast(e.Type)
	if v == nil || !fastDecode(e.Data, v, c) {
		v = newData(e.Type)
		if v == nil {
			return nil, nil
		}
		if err := json.Unmarshal(e.Data, v); err != nil {
			return nil, fmt.Errorf("sequence %d (%s on %s): %w: %v", e.Seq, e.Type, e.Stream, ErrMalformedEvent, err)
		}
		v = mirror(v)
	}
	p, err := build(e, v, c)
	if err != nil {
		return nil, fmt.Errorf("sequence %d (%s on %s): %w", e.Seq, e.Type, e.Stream, err)
	}
	return p, nil
}

// newData returns a pointer to the data struct of a known event type.
func newData(typ string) any {
	switch typ {
	case commands.TypeMerchantRegistered:
		return new(commands.MerchantRegistered)
	case commands.TypeMerchantSettings:
		return new(commands.MerchantSettingsChanged)
	case commands.TypeAPIKeyIssued:
		return new(commands.APIKeyIssued)
	case commands.TypeAPIKeyRevoked:
		return new(commands.APIKeyRevoked)
	case commands.TypeSigningSecretRotated:
		return new(commands.SigningSecretRotated)
	case commands.TypeRateSet:
		return new(commands.RateSet)
	case commands.TypeGatewayEnabled, commands.TypeGatewayDisabled:
		return new(commands.GatewaySwitched)
	case commands.TypeInvoiceCreated:
		return new(commands.InvoiceCreated)
	case commands.TypeInvoiceCancelled:
		return new(commands.InvoiceCancelled)
	case commands.TypeInvoiceExpired:
		return new(commands.InvoiceExpired)
	case commands.TypeInvoicePaid:
		return new(commands.InvoicePaid)
	case commands.TypeInvoicePaymentAdded:
		// No view shows it: the invoice aggregate counts its payments
		// with it, and the views find them by the payments' own events.
		return nil
	case commands.TypePaymentCreated:
		return new(commands.PaymentCreated)
	case commands.TypePaymentConfirmed, commands.TypePaymentRejected,
		commands.TypePaymentCancelled, commands.TypePaymentFailed:
		return new(commands.PaymentStatusChanged)
	case commands.TypePaymentProcessed:
		return new(commands.PaymentProcessed)
	case commands.TypePaymentReceiptHeld:
		return new(commands.PaymentReceiptHeld)
	case commands.TypeWidgetCreated:
		return new(commands.WidgetCreated)
	case commands.TypeWidgetStatusChanged, commands.TypeWidgetExpired:
		return new(commands.WidgetStatusChanged)
	}
	return nil
}

// Prepared events: what apply merges into the views.
type (
	// merchant events stay as their data structs, aggregate id beside.
	pMerchant struct {
		id   string
		data any
	}
	pRate struct {
		currency string
		rec      []byte // Rate JSON
	}
	pGateway struct {
		id  string
		rec []byte // GatewayView (binary)
	}
	pInvoiceCreated struct{ v InvoiceView }
	pInvoiceUpdate  struct {
		id     string
		status string
		reason string // cancelled
		paid   *pInvoicePaid
	}
	pInvoicePaid struct {
		at             time.Time
		late           bool
		by             string // the paying payment's stream
		amount, excess num    // in the payment's currency; zero: absent
	}
	pPaymentCreated struct{ v PaymentView }
	pPaymentUpdate  struct {
		status, reason string
		processed      *pProcessed
	}
	pProcessed struct {
		at         time.Time
		allocation string
		late       bool
		paid       num
		postings   []posting
		lines      []mPosting // the postings as written: the allocation rule's, checked on apply
	}
	// posting is a commands.Posting with its view keys worked out.
	posting struct {
		currency      string
		balanceKey    string // merchant 0 account 0 currency
		merchantTotal string // merchant 0 currency
		amount        num
	}
	// pReceiptHeld is a payment.receipt_held: money held, the payment's
	// status unchanged.
	pReceiptHeld struct {
		paid     num
		postings []posting
		lines    []mPosting // the postings as written: the suspense rule's, checked on apply
	}
	pWidgetCreated struct{ v WidgetView }
	pWidgetUpdate  struct{ id, status string }
)

// streamID returns the id part of a "<prefix>-<id>" stream.
func streamID(e *ledger.Event, prefix string) (string, error) {
	id, ok := strings.CutPrefix(e.Stream, prefix+"-")
	if !ok || id == "" {
		return "", fmt.Errorf("%w: %s event on stream %q", ErrMalformedEvent, e.Type, e.Stream)
	}
	return id, nil
}

// paymentTypeStatus is the status each payment status-change event type records.
var paymentTypeStatus = map[string]string{
	commands.TypePaymentConfirmed: commands.PaymentStatusConfirmed,
	commands.TypePaymentRejected:  commands.PaymentStatusRejected,
	commands.TypePaymentCancelled: commands.PaymentStatusCancelled,
	commands.TypePaymentFailed:    commands.PaymentStatusError,
}

var widgetStatuses = map[string]bool{
	commands.WidgetStatusActive:   true,
	commands.WidgetStatusDisabled: true,
	commands.WidgetStatusExpired:  true,
}

func build(e *ledger.Event, data any, c *cache) (any, error) {
	switch d := data.(type) {
	case *commands.MerchantRegistered, *commands.MerchantSettingsChanged, *commands.APIKeyIssued,
		*commands.APIKeyRevoked, *commands.SigningSecretRotated:
		id, err := streamID(e, commands.StreamMerchant)
		if err != nil {
			return nil, err
		}
		if r, ok := d.(*commands.MerchantRegistered); ok && r.MerchantID != id {
			return nil, fmt.Errorf("%w: merchant_id %q on stream %q", ErrMalformedEvent, r.MerchantID, e.Stream)
		}
		return &pMerchant{id: id, data: d}, nil
	case *commands.RateSet:
		if d.Currency == "" {
			return nil, fmt.Errorf("%w: rate without currency", ErrMalformedEvent)
		}
		rec, err := EncodeView(&Rate{Currency: d.Currency, Rate: numOf(d.Rate).rate(), SetAt: utc(d.SetAt)})
		return &pRate{currency: d.Currency, rec: rec}, err
	case *commands.GatewaySwitched:
		if e.Stream != commands.StreamGateways || d.GatewayID == "" {
			return nil, fmt.Errorf("%w: %s of gateway %q on stream %q", ErrMalformedEvent, e.Type, d.GatewayID, e.Stream)
		}
		rec, err := EncodeView(&GatewayView{ID: d.GatewayID, Enabled: e.Type == commands.TypeGatewayEnabled, ChangedAt: utc(d.At)})
		return &pGateway{id: d.GatewayID, rec: rec}, err
	case *mInvoiceCreated:
		return buildInvoice(e, d)
	case *commands.InvoiceCancelled:
		id, err := streamID(e, commands.StreamInvoice)
		return &pInvoiceUpdate{id: id, status: commands.InvoiceStatusCancelled, reason: d.Reason}, err
	case *commands.InvoiceExpired:
		id, err := streamID(e, commands.StreamInvoice)
		return &pInvoiceUpdate{id: id, status: commands.InvoiceStatusExpired}, err
	case *mInvoicePaid:
		id, err := streamID(e, commands.StreamInvoice)
		p := &pInvoicePaid{at: utc(d.PaidAt), late: d.Late, by: d.PaymentID, amount: d.PaidAmount, excess: d.Overpaid}
		return &pInvoiceUpdate{id: id, status: commands.InvoiceStatusSuccess, paid: p}, err
	case *mPaymentCreated:
		return buildPayment(e, d)
	case *commands.PaymentStatusChanged:
		if _, err := streamID(e, commands.StreamPayment); err != nil {
			return nil, err
		}
		status := paymentTypeStatus[e.Type]
		if d.Status != "" && d.Status != status {
			return nil, fmt.Errorf("%w: status %q in a %s event", ErrMalformedEvent, d.Status, e.Type)
		}
		return &pPaymentUpdate{status: status, reason: d.Reason}, nil
	case *mPaymentProcessed:
		if _, err := streamID(e, commands.StreamPayment); err != nil {
			return nil, err
		}
		ps, err := buildPostings(d.Postings, c)
		if err != nil {
			return nil, err
		}
		return &pPaymentUpdate{status: commands.PaymentStatusProcessed, processed: &pProcessed{
			at: utc(d.At), allocation: d.Allocation, late: d.Late, paid: d.PaidAmount, postings: ps, lines: d.Postings,
		}}, nil
	case *mReceiptHeld:
		if _, err := streamID(e, commands.StreamPayment); err != nil {
			return nil, err
		}
		if !d.PaidAmount.decimal().IsPositive() {
			return nil, fmt.Errorf("%w: paid_amount %s", ErrMalformedEvent, d.PaidAmount.plain())
		}
		ps, err := buildPostings(d.Postings, c)
		if err != nil {
			return nil, err
		}
		// Which postings it must have (a suspense allocation's two lines
		// for the payment's gateway, merchant and currency) the apply
		// checks against the payment's view.
		return &pReceiptHeld{paid: d.PaidAmount, postings: ps, lines: d.Postings}, nil
	case *mWidgetCreated:
		return buildWidget(e, d)
	case *commands.WidgetStatusChanged:
		status := d.Status
		if e.Type == commands.TypeWidgetExpired {
			if status != "" && status != commands.WidgetStatusExpired {
				return nil, fmt.Errorf("%w: status %q in a %s event", ErrMalformedEvent, status, e.Type)
			}
			status = commands.WidgetStatusExpired
		}
		if !widgetStatuses[status] {
			return nil, fmt.Errorf("%w: widget status %q", ErrMalformedEvent, status)
		}
		id, err := streamID(e, commands.StreamWidget)
		return &pWidgetUpdate{id: id, status: status}, err
	}
	return nil, fmt.Errorf("projections: no builder for %T", data)
}

// CreatedInvoiceView is the view the projector stores for a new invoice,
// made from what the create command decided (version: its stream version,
// 1; at: the event's time, the command's): the API answers a creation with
// it instead of reading back the view the same append just wrote.
// TestCreatedInvoiceView checks it equals the stored view.
//
// Errors: ErrMalformedEvent for data no invoice.created could carry.
func CreatedInvoiceView(d *commands.InvoiceCreated, version uint64, at time.Time) (InvoiceView, error) {
	e := ledger.Event{Stream: commands.StreamID(commands.StreamInvoice, d.InvoiceID), Version: version,
		Type: commands.TypeInvoiceCreated, Time: at}
	p, err := buildInvoice(&e, mirror(d).(*mInvoiceCreated))
	if err != nil {
		return InvoiceView{}, err
	}
	return p.(*pInvoiceCreated).v, nil
}

func buildInvoice(e *ledger.Event, d *mInvoiceCreated) (any, error) {
	id, err := streamID(e, commands.StreamInvoice)
	if err != nil {
		return nil, err
	}
	if d.InvoiceID != id || d.MerchantID == "" {
		return nil, fmt.Errorf("%w: invoice_id %q, merchant_id %q on stream %q", ErrMalformedEvent, d.InvoiceID, d.MerchantID, e.Stream)
	}
	return &pInvoiceCreated{v: InvoiceView{
		InvoiceID:          id,
		ExternalID:         d.ExternalID,
		Amount:             currencyAmount(d.Amount, d.Currency),
		Currency:           d.Currency,
		ConversionRate:     d.ConversionRate.rate(),
		MerchantUSDT:       d.MerchantUSDT.rate(),
		Status:             commands.InvoiceStatusPending,
		CustomerID:         d.CustomerID,
		Purpose:            d.Purpose,
		CallbackURL:        d.CallbackURL,
		SuccessURL:         d.SuccessURL,
		FailURL:            d.FailURL,
		CreatedAt:          utc(d.CreatedAt),
		ExpiresAt:          utc(d.ExpiresAt),
		MerchantID:         d.MerchantID,
		Source:             d.Source,
		Version:            e.Version,
		Method:             d.Method,
		Tracking:           d.Tracking,
		PaymentID:          d.PaymentID,
		StatusURL:          d.StatusURL,
		Account:            d.Account,
		Sender:             d.Sender,
		ExtraFields:        d.ExtraFields,
		WidgetID:           d.WidgetID,
		MerchantExternalID: d.MerchantExternalID,
		CommissionPercent:  d.CommissionPercent.plain(),
		GrossUSDT:          d.GrossUSDT.rate(),
		FeeUSDT:            d.FeeUSDT.rate(),
		UpdatedAt:          utc(e.Time),
	}}, nil
}

func buildPayment(e *ledger.Event, d *mPaymentCreated) (any, error) {
	id, err := streamID(e, commands.StreamPayment)
	if err != nil {
		return nil, err
	}
	if d.PaymentID != id || d.InvoiceID == "" || d.MerchantID == "" {
		return nil, fmt.Errorf("%w: payment_id %q, invoice_id %q, merchant_id %q on stream %q",
			ErrMalformedEvent, d.PaymentID, d.InvoiceID, d.MerchantID, e.Stream)
	}
	return &pPaymentCreated{v: PaymentView{
		ID:                  strconv.FormatUint(e.Seq, 10),
		GatewayID:           d.GatewayID,
		Status:              commands.PaymentStatusPending,
		Extra:               PaymentExtra(d.Extra),
		PaymentCurrency:     d.PaymentCurrency,
		PaymentAmount:       currencyAmount(d.PaymentAmount, d.PaymentCurrency),
		DestinationCurrency: d.DestinationCurrency,
		DestinationAmount:   d.DestinationAmount.rate(),
		CreatedAt:           utc(d.CreatedAt),
		Stream:              e.Stream,
		InvoiceID:           d.InvoiceID,
		MerchantID:          d.MerchantID,
		Method:              d.Method,
		UpdatedAt:           utc(e.Time),
		Version:             e.Version,
	}}, nil
}

func buildWidget(e *ledger.Event, d *mWidgetCreated) (any, error) {
	id, err := streamID(e, commands.StreamWidget)
	if err != nil {
		return nil, err
	}
	if d.WidgetID != id || d.MerchantID == "" {
		return nil, fmt.Errorf("%w: widget_id %q, merchant_id %q on stream %q", ErrMalformedEvent, d.WidgetID, d.MerchantID, e.Stream)
	}
	v := WidgetView{
		ID:                 id,
		Type:               d.Kind,
		Status:             commands.WidgetStatusActive,
		Currencies:         nonNil(d.Currencies),
		Description:        d.Description,
		LogoURL:            d.LogoURL,
		ReturnURL:          d.ReturnURL,
		SupportURL:         d.SupportURL,
		MerchantExternalID: d.MerchantExternalID,
		FiatCurrency:       d.FiatCurrency,
		CreatedAt:          utc(d.CreatedAt),
		MerchantID:         d.MerchantID,
		Version:            e.Version,
		UpdatedAt:          utc(e.Time),
	}
	if d.FiatCurrency != "" || !d.FiatAmount.isZero() {
		v.FiatAmount = currencyAmount(d.FiatAmount, d.FiatCurrency)
	}
	if !d.ExpiresAt.IsZero() {
		v.ExpiresAt = timePtr(d.ExpiresAt)
	}
	return &pWidgetCreated{v: v}, nil
}

// accountOwner splits a posting account into the merchant it belongs to and
// the account's name: "merchant_available:m1" is m1's "merchant_available".
// Only merchant_* accounts carry a merchant suffix (gateway_clearing's
// suffix is a gateway id); every other account is a system account, kept
// whole under systemMerchant.
func accountOwner(account string) (merchant, name string) {
	if strings.HasPrefix(account, "merchant_") {
		if n, m, ok := strings.Cut(account, ":"); ok && m != "" {
			return m, n
		}
	}
	return systemMerchant, account
}

// buildPostings checks that an event's postings sum to zero in every
// currency and works out their keys.
func buildPostings(ps []mPosting, c *cache) ([]posting, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	out := make([]posting, len(ps))
	var sums [4]struct {
		cur string
		sum sum
	}
	var more map[string]*sum // past four currencies
	n := 0
	for i, p := range ps {
		if p.Account == "" || p.Currency == "" || strings.IndexByte(p.Account, 0) >= 0 || strings.IndexByte(p.Currency, 0) >= 0 {
			return nil, fmt.Errorf("%w: posting without account or currency", ErrMalformedEvent)
		}
		k := c.postingKeys(p.Account, p.Currency)
		out[i] = posting{currency: p.Currency, balanceKey: k.balance, merchantTotal: k.merchantTotal, amount: p.Amount}
		j := 0
		for j < n && sums[j].cur != p.Currency {
			j++
		}
		switch {
		case j < n:
			sums[j].sum.addNum(p.Amount)
		case n < len(sums):
			sums[n].cur = p.Currency
			sums[n].sum.addNum(p.Amount)
			n++
		default:
			if more == nil {
				more = map[string]*sum{}
			}
			addTo(more, p.Currency, p.Amount)
		}
	}
	for i := range sums[:n] {
		if v := sums[i].sum.value(); !v.IsZero() {
			return nil, fmt.Errorf("%w: %s postings sum to %s", ErrUnbalanced, sums[i].cur, v)
		}
	}
	for cur, a := range more {
		if v := a.value(); !v.IsZero() {
			return nil, fmt.Errorf("%w: %s postings sum to %s", ErrUnbalanced, cur, v)
		}
	}
	return out, nil
}
