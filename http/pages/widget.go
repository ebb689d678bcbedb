package pages

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/internal/ids"
	"github.com/payledger/payledger/internal/ratelimit"
	"github.com/payledger/payledger/projections"
)

// widgetState is the widget page's state, derived from the views.
type widgetState struct {
	w         projections.WidgetView
	merchant  string
	methods   []commands.Method // methods the customer may choose, with a rate set
	available bool              // active and not past its expiry
}

// loadWidget reads a widget and the methods its page offers.
// Errors: projections.ErrNotFound, or the views' failures.
func (h *handler) loadWidget(id string) (*widgetState, error) {
	if !plausibleID(id) {
		return nil, projections.ErrNotFound
	}
	w, err := h.views.WidgetPublic(strings.ToLower(id))
	if err != nil {
		return nil, err
	}
	m, err := h.views.Merchant(w.MerchantID)
	if err != nil {
		return nil, fmt.Errorf("merchant of widget %s: %w", id, err)
	}
	st := &widgetState{w: w, merchant: m.Name}
	st.available = w.Status == commands.WidgetStatusActive && (w.ExpiresAt == nil || h.now().Before(*w.ExpiresAt))
	var ms []commands.Method
	if w.Type == commands.WidgetSingle {
		ms = commands.MethodsForCurrency(w.FiatCurrency)
	} else {
		ms = commands.Methods()
	}
	// USDT, the settlement currency, needs no rate: the commands take its
	// rate per USDT as 1.
	hasRate := map[string]bool{commands.SettlementCurrency().Code: true}
	rates, err := h.views.Rates()
	if err != nil {
		return nil, err
	}
	for _, r := range rates {
		hasRate[r.Currency] = true
	}
	sw, err := h.views.GatewaySwitches()
	if err != nil {
		return nil, err
	}
	for _, m := range h.usable(ms, m.Methods, sw) {
		// Without a rate the invoice cannot be priced in USDT: not offered.
		if hasRate[m.Currency] {
			st.methods = append(st.methods, m)
		}
	}
	return st, nil
}

// widgetView is the widget page's template data.
type widgetView struct {
	ID          string
	Merchant    string
	Description string
	LogoURL     string
	ReturnURL   string
	SupportURL  string
	Single      bool
	FixedAmount string // single: "1500.00"
	FixedCur    string // single: "UAH"
	Groups      []methodGroup
	Selected    string // the chosen method's code
	Amount      string // unlimited: as the customer typed it
	AmountCur   string // unlimited: the currency of the selected method
	AmountError string
	MethodError string
	Error       string
	CSRF        string
	FormToken   string // see formKeys
	Action      string
}

type methodGroup struct {
	Currency string
	Methods  []methodOption
}

func (h *handler) renderWidget(w http.ResponseWriter, r *http.Request, status int, st *widgetState, v *widgetView) {
	wd := st.w
	v.ID, v.Merchant, v.Description = wd.ID, st.merchant, wd.Description
	v.LogoURL, v.ReturnURL, v.SupportURL = safeURL(wd.LogoURL), safeURL(wd.ReturnURL), safeURL(wd.SupportURL)
	v.Single = wd.Type == commands.WidgetSingle
	v.FixedAmount, v.FixedCur = wd.FiatAmount, wd.FiatCurrency
	v.CSRF = h.csrf.token(h.csrf.nonce(w, r), "w/"+wd.ID)
	v.FormToken = newFormToken()
	v.Action = WidgetPrefix + wd.ID
	v.Groups = groupMethods(st.methods, v.Selected)
	for _, g := range v.Groups {
		for _, m := range g.Methods {
			if m.Checked {
				v.Selected = m.Code
			}
		}
	}
	if m, ok := commands.LookupMethod(v.Selected); ok {
		v.AmountCur = m.Currency
	}
	title := wd.Description
	if title == "" {
		title = "Pay " + st.merchant
	}
	if v.Error != "" || v.AmountError != "" || v.MethodError != "" {
		// The first thing a screen reader says of the page (WCAG 3.3.1);
		// the field in error has the focus (autofocus).
		title = "Error: " + title
	}
	h.render(w, r, status, "widget", layout{Title: title, Brand: st.merchant, Script: "widget.js", Page: v})
}

// groupMethods groups methods by currency, currencies sorted, methods in
// catalogue order; one method alone is selected.
func groupMethods(ms []commands.Method, selected string) []methodGroup {
	if selected == "" && len(ms) == 1 {
		selected = ms[0].Code
	}
	by := map[string]*methodGroup{}
	var curs []string
	for _, m := range ms {
		g, ok := by[m.Currency]
		if !ok {
			g = &methodGroup{Currency: m.Currency}
			by[m.Currency] = g
			curs = append(curs, m.Currency)
		}
		g.Methods = append(g.Methods, methodOption{Code: m.Code, Name: m.Name, Currency: m.Currency, Checked: m.Code == selected})
	}
	sort.Strings(curs)
	out := make([]methodGroup, 0, len(curs))
	for _, c := range curs {
		out = append(out, *by[c])
	}
	return out
}

func (h *handler) widgetUnavailable(w http.ResponseWriter, r *http.Request, st *widgetState) {
	var links []link
	if u := safeURL(st.w.ReturnURL); u != "" {
		links = append(links, link{Href: u, Label: "Back to the shop"})
	}
	if u := safeURL(st.w.SupportURL); u != "" {
		links = append(links, link{Href: u, Label: "Contact support"})
	}
	h.render(w, r, http.StatusGone, "message", layout{Title: "Payment page unavailable", Brand: st.merchant,
		Page: &messageView{Heading: "This payment page is not available",
			Text: "The shop has switched this payment page off or it has expired. No payment can be made here.", Links: links}})
}

func (h *handler) loadWidgetOrFail(w http.ResponseWriter, r *http.Request) (*widgetState, bool) {
	st, err := h.loadWidget(r.PathValue("widget_id"))
	switch {
	case errors.Is(err, projections.ErrNotFound):
		h.notFound(w, r)
		return nil, false
	case err != nil:
		h.serverError(w, r, err)
		return nil, false
	case !st.available:
		h.widgetUnavailable(w, r, st)
		return nil, false
	}
	return st, true
}

// widgetPage is GET /w/{widget_id}.
func (h *handler) widgetPage(w http.ResponseWriter, r *http.Request) {
	st, ok := h.loadWidgetOrFail(w, r)
	if !ok {
		return
	}
	h.renderWidget(w, r, http.StatusOK, st, &widgetView{})
}

// widgetCreate is POST /w/{widget_id}: it creates the invoice and, as the
// customer chose the method here already, its payment, then sends the
// customer to the payment page (303).
func (h *handler) widgetCreate(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		h.renderMessage(w, r, http.StatusBadRequest, "Please try again", "The form could not be read.")
		return
	}
	st, ok := h.loadWidgetOrFail(w, r)
	if !ok {
		return
	}
	id := st.w.ID
	if !h.csrf.check(r, "w/"+id) {
		h.badForm(w, r, WidgetPrefix+url.PathEscape(id))
		return
	}
	code := r.PostFormValue("method")
	amount, amountErr := normalizeAmount(r.PostFormValue("amount"))
	// The form comes back with the customer's entries when refused.
	v := &widgetView{Amount: amount, Selected: code}
	refuse := func(status int, field, msg string) {
		switch field {
		case "amount":
			v.AmountError = msg
		case "method":
			v.MethodError = msg
		default:
			v.Error = msg
		}
		h.renderWidget(w, r, status, st, v)
	}
	method, ok := findMethod(st.methods, code)
	if !ok {
		refuse(http.StatusBadRequest, "method", "Choose one of the payment methods listed.")
		return
	}
	cur := commands.WidgetInvoiceCurrency(&commands.Widget{WidgetCreated: commands.WidgetCreated{
		Kind: st.w.Type, FiatCurrency: st.w.FiatCurrency}}, method.Code)
	rate, err := h.rate(cur)
	if errors.Is(err, projections.ErrNotFound) {
		refuse(http.StatusBadRequest, "method", "This payment method is not available right now. Choose another one.")
		return
	} else if err != nil {
		h.serverError(w, r, err)
		return
	}
	if st.w.Type == commands.WidgetSingle {
		amount = ""
	} else if amountErr != "" {
		refuse(http.StatusBadRequest, "amount", amountErr)
		return
	}
	if wait, ok := h.widgetLimit.Allow(id, h.now()); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(ratelimit.RetryAfter(wait)))
		refuse(http.StatusTooManyRequests, "", "Many payments are being started on this page right now. Please try again in a few seconds.")
		return
	}
	invoiceKey, paymentKey := formKeys(r, id, method.Code, amount)
	invoiceID, repeated, err := h.repeatedInvoice(h.svc.CreateWidgetInvoice(r.Context(), commands.CreateWidgetInvoice{
		Meta: h.meta(w, r), InvoiceID: ids.New(), WidgetID: id, Amount: amount, Method: method.Code, Rate: rate,
		MerchantID: st.w.MerchantID, RequestKey: invoiceKey,
	}))
	var ve *commands.ValidationError
	switch {
	case err == nil:
	case errors.As(err, &ve):
		for _, f := range ve.Fields {
			switch {
			case f.Path != "amount":
			case st.w.Type == commands.WidgetSingle:
				// The shop's own amount: the customer has no amount to change.
				refuse(http.StatusBadRequest, "", "This payment's amount is too small to be paid at the current exchange rate. Please contact the shop.")
				return
			default:
				refuse(http.StatusBadRequest, "amount", amountMessage(f, method.Currency))
				return
			}
		}
		refuse(http.StatusBadRequest, "", "Please check the form: "+ve.Fields[0].Message)
		return
	case errors.Is(err, commands.ErrWidgetNotActive), errors.Is(err, commands.ErrNotFound):
		st.available = false
		h.widgetUnavailable(w, r, st)
		return
	case errors.Is(err, commands.ErrDealsDisabled), errors.Is(err, commands.ErrMerchantDisabled):
		refuse(http.StatusConflict, "", "The shop is not accepting payments right now. Please try again later.")
		return
	case errors.Is(err, commands.ErrMethodInvalid), errors.Is(err, commands.ErrCurrencyInvalid):
		refuse(http.StatusBadRequest, "method", "This payment method is not available right now. Choose another one.")
		return
	default:
		h.serverError(w, r, fmt.Errorf("widget %s: create invoice: %w", id, err))
		return
	}
	// The method is chosen: make the payment now, so the payment page opens
	// on its details. Should that fail, the page offers the method again.
	// A form sent again makes it only if the first sending did not.
	to := PayPrefix + invoiceID
	_, _, err = h.svc.CreatePayment(r.Context(), commands.CreatePayment{
		Meta: h.meta(w, r), PaymentID: ids.New(), InvoiceID: invoiceID, Method: method.Code,
		MerchantID: st.w.MerchantID, RequestKey: paymentKey,
	})
	switch {
	case err == nil, errors.Is(err, commands.ErrRepeated):
		to += "#details"
	case repeated && errors.Is(err, commands.ErrInvoiceNotPayable):
		// Sent again after the invoice was paid or cancelled: its page says so.
	default:
		h.log.Warn("widget invoice: payment not created", "request_id", requestID(w, r), "invoice_id", invoiceID, "err", err)
	}
	seeOther(w, r, to)
}

// repeatedInvoice returns the id of the invoice a widget form made: the one
// just created, or, for a form sent again (a double click, a browser
// resending it), the one its first sending made.
func (h *handler) repeatedInvoice(inv *commands.Invoice, err error) (id string, repeated bool, _ error) {
	var rep *commands.RepeatedError
	if errors.As(err, &rep) {
		id, ok := strings.CutPrefix(rep.Stream, commands.StreamInvoice+"-")
		if !ok {
			return "", false, fmt.Errorf("widget form made %s, not an invoice: %w", rep.Stream, projections.ErrCorrupt)
		}
		return id, true, nil
	}
	if err != nil {
		return "", false, err
	}
	return inv.InvoiceID, false, nil
}

func (h *handler) rate(cur string) (decimal.Decimal, error) {
	if cur == commands.SettlementCurrency().Code {
		return decimal.NewFromInt(1), nil // see widgetState: USDT needs no rate
	}
	r, err := h.views.Rate(cur)
	if err != nil {
		return decimal.Decimal{}, err
	}
	d, err := decimal.NewFromString(r.Rate)
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("rate %s %q: %w", cur, r.Rate, projections.ErrCorrupt)
	}
	return d, nil
}

// normalizeAmount accepts what people type: spaces around, and a comma
// as the decimal separator where it cannot be a thousands separator
// ("250,50", "0,5", "1500,5"). A comma that may be one ("1,500": 1500, or
// 1.5?) or is one ("1,500,000", "1,500.50", "1.500,50") is refused with
// a message for the customer (msg != ""): reading it either way could make
// an invoice a thousand times off.
func normalizeAmount(s string) (amount, msg string) {
	s = strings.TrimSpace(s)
	whole, frac, found := strings.Cut(s, ",")
	switch {
	case !found:
		return s, ""
	case strings.Contains(frac, ",") || strings.Contains(s, "."):
		return s, "Write the amount without thousands separators, with a dot before any decimals: for example 1500 or 1500.50."
	case thousandsRE.MatchString(s):
		return s, fmt.Sprintf("%s could mean %s%s or %s.%s: write the amount without thousands separators, with a dot before any decimals.",
			s, whole, frac, whole, frac)
	}
	return whole + "." + frac, ""
}

// thousandsRE matches a number a single comma could group in thousands.
var thousandsRE = regexp.MustCompile(`^-?[1-9][0-9]{0,2},[0-9]{3}$`)

// amountMessage words a domain amount error for a customer.
func amountMessage(f commands.FieldError, cur string) string {
	switch f.Type {
	case "missing":
		return "Enter the amount you want to pay."
	case "not_positive":
		return "Enter an amount greater than zero."
	case "too_precise", "too_large", "too_small":
		return strings.ToUpper(f.Message[:1]) + f.Message[1:] + "."
	}
	return "Enter the amount as a number, for example 150 or 150.50 (" + cur + ")."
}
