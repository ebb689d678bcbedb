package pages

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/internal/ids"
	"github.com/payledger/payledger/internal/ratelimit"
	"github.com/payledger/payledger/projections"
)

// Phases of the payment page: what the customer sees and may do.
const (
	phaseChoose    = "choose"    // no live payment: pick a method
	phasePay       = "pay"       // a PENDING payment: pay to its details, then say so (past expires_at too)
	phaseConfirmed = "confirmed" // the customer says paid: waiting for the gateway
	phaseSuccess   = "success"   // the invoice is paid
	phaseExpired   = "expired"   // past expires_at without a live (PENDING or CONFIRMED) payment
	phaseCancelled = "cancelled" // the merchant cancelled the invoice
	// The latest payment was rejected or failed: not final, the invoice is
	// still pending and takes a new payment, so the methods are offered.
	phaseFailed    = "failed"
	phaseUnderpaid = "underpaid" // less than the amount due arrived
	// No live payment and commands.MaxPaymentsPerInvoice payments already:
	// no method can be chosen. Not final: the invoice is still pending, and
	// expires or is cancelled later.
	phaseExhausted = "exhausted"
)

// payState is the payment page's state, derived from the views.
type payState struct {
	inv      projections.InvoiceView
	merchant string
	methods  []commands.Method         // the methods the customer may choose
	payments []projections.PaymentView // in creation order
	payment  *projections.PaymentView  // the latest, or nil
	phase    string
	final    bool
	late     bool   // past expires_at, or expired: no new payment, no countdown
	redirect string // where the customer goes on a final phase, "" for nowhere
}

// loadPay reads an invoice and its payments and decides the phase.
// Errors: projections.ErrNotFound, or the views' failures.
func (h *handler) loadPay(invoiceID string) (*payState, error) {
	if !plausibleID(invoiceID) {
		return nil, projections.ErrNotFound
	}
	// Payments before the invoice: a payment seen PROCESSED has its
	// invoice.paid committed with it, so the invoice read next is already
	// success; the other order could show a paid invoice as pending.
	payments, err := h.views.PaymentsForInvoice(invoiceID)
	if err != nil {
		return nil, err
	}
	inv, err := h.views.InvoicePublic(invoiceID)
	if err != nil {
		return nil, err
	}
	m, err := h.views.Merchant(inv.MerchantID)
	if err != nil {
		return nil, fmt.Errorf("merchant of invoice %s: %w", invoiceID, err)
	}
	sw, err := h.views.GatewaySwitches()
	if err != nil {
		return nil, err
	}
	st := &payState{inv: inv, merchant: m.Name, payments: payments}
	if len(payments) > 0 {
		st.payment = &payments[len(payments)-1]
	}
	st.methods = h.offered(inv, m.Methods, sw)
	st.decide(h.now())
	return st, nil
}

// decide sets the phase. A live payment, PENDING or CONFIRMED, outlives
// expires_at: the customer may have sent the money at the last minute, and
// a late payment still pays the invoice (docs/payments.md), so the page
// keeps its details and waits for the gateway; only an invoice past
// expires_at without one is expired. A REJECTED or ERROR payment ends that
// payment only: before expires_at the invoice takes a new one.
func (st *payState) decide(now time.Time) {
	inv, p := &st.inv, st.payment
	pstatus := ""
	if p != nil {
		pstatus = p.Status
	}
	st.late = inv.Status == commands.InvoiceStatusExpired || !now.Before(inv.ExpiresAt)
	switch {
	case inv.Status == commands.InvoiceStatusSuccess:
		st.phase = phaseSuccess
	case inv.Status == commands.InvoiceStatusCancelled:
		st.phase = phaseCancelled
	case pstatus == commands.PaymentStatusProcessed:
		// Processed without paying the invoice: less than due arrived.
		st.phase = phaseUnderpaid
	case pstatus == commands.PaymentStatusConfirmed:
		st.phase = phaseConfirmed
	case pstatus == commands.PaymentStatusPending:
		st.phase = phasePay
	case st.late:
		st.phase = phaseExpired
	case len(st.payments) >= commands.MaxPaymentsPerInvoice:
		// Choosing a method could only be refused (ErrTooManyPayments).
		// The views hold every payment of the invoice, so this counts at
		// least what the command counts (invoice.payment_added).
		st.phase = phaseExhausted
	case pstatus == commands.PaymentStatusRejected || pstatus == commands.PaymentStatusError:
		st.phase = phaseFailed
	default:
		st.phase = phaseChoose
	}
	switch st.phase {
	case phaseSuccess:
		st.final, st.redirect = true, safeURL(inv.SuccessURL)
	case phaseCancelled, phaseExpired, phaseUnderpaid:
		st.final, st.redirect = true, safeURL(inv.FailURL)
	case phaseExhausted:
		// A dead end too, but not a final one: the page links back to the
		// shop without sending the customer there.
		st.redirect = safeURL(inv.FailURL)
	}
}

// message is the status line for the phase.
func (st *payState) message() string {
	switch st.phase {
	case phaseChoose:
		return "Choose how you want to pay."
	case phasePay:
		if st.late {
			return "Time is up for this invoice. A payment you already sent to the details below is still being checked: " +
				"press \u201cI have paid\u201d if you sent it. Please do not send a payment now."
		}
		return "Waiting for your payment. Send the exact amount to the details below, then press \u201cI have paid\u201d."
	case phaseConfirmed:
		return "Thank you. We are checking your payment; this page updates by itself."
	case phaseSuccess:
		return "Payment received. Thank you!"
	case phaseExpired:
		return "Time is up: this invoice has expired and can no longer be paid."
	case phaseCancelled:
		return "This invoice was cancelled by the shop."
	case phaseFailed:
		if st.payment.Status == commands.PaymentStatusError {
			// The gateway failed: the customer may have paid all the same.
			return "Something went wrong with this payment. If you already sent the money, please contact the shop " +
				"before paying again; otherwise choose how you want to pay."
		}
		return "The payment was declined. You can try again: choose how you want to pay."
	case phaseUnderpaid:
		return "We received less than the amount due. Please contact the shop."
	case phaseExhausted:
		return "No more payment attempts can be made for this invoice. Please ask the shop for a new invoice."
	}
	return ""
}

// offered returns the methods a customer may choose for an invoice: its
// fixed method (e-invoices, widget invoices) or the catalogue's methods in
// its currency, enabled for the merchant and served by a gateway that sw
// leaves enabled.
func (h *handler) offered(inv projections.InvoiceView, enabled []string, sw commands.GatewaySwitches) []commands.Method {
	var ms []commands.Method
	if inv.Method != "" {
		if m, ok := commands.LookupMethod(inv.Method); ok {
			ms = append(ms, m)
		}
	} else {
		ms = commands.MethodsForCurrency(inv.Currency)
	}
	return h.usable(ms, enabled, sw)
}

func (h *handler) usable(ms []commands.Method, enabled []string, sw commands.GatewaySwitches) []commands.Method {
	out := ms[:0]
	for _, m := range ms {
		if !methodEnabled(enabled, m.Code) {
			continue
		}
		if _, ok := h.svc.Gateways().For(m, sw); !ok {
			continue
		}
		out = append(out, m)
	}
	return out
}

func methodEnabled(enabled []string, code string) bool {
	if len(enabled) == 0 {
		return true
	}
	for _, c := range enabled {
		if c == code {
			return true
		}
	}
	return false
}

func findMethod(ms []commands.Method, code string) (commands.Method, bool) {
	for _, m := range ms {
		if m.Code == code {
			return m, true
		}
	}
	return commands.Method{}, false
}

// payView is the payment page's template data.
type payView struct {
	InvoiceID string
	Purpose   string
	Amount    string
	Currency  string
	Phase     string
	Final     bool
	Exhausted bool // no method may be chosen: a dead end, though not final
	// The countdown is shown while the customer has something to do before
	// expires_at: choose a method, or pay. Not once they said they paid,
	// nor past expires_at (a live payment's page stays up then).
	Countdown     bool
	Message       string
	Redirect      string
	RedirectDelay int64  // milliseconds
	RedirectNote  string // what the page says when its script is about to redirect
	PageURL       string // the page's own URL: /pay/{invoice_id}
	PaymentID     string // the latest payment's public id, "" for none: the status's payment_id
	StatusURL     string
	ExpiresAt     string // RFC 3339
	ExpiresAtText string // "12:20 UTC"
	Remaining     string // "19:58", at render time
	Now           string // the server's clock, RFC 3339 with milliseconds
	Methods       []methodOption
	FixedMethod   bool
	Payment       *paymentDetails
	Error         string
	CSRF          string
	MethodAction  string
	ConfirmAction string
	CancelAction  string
}

type methodOption struct {
	Code     string
	Name     string
	Currency string
	Checked  bool
}

// paymentDetails are a payment's details with labels fit for its method.
type paymentDetails struct {
	ID            string // the public integer id
	Method        string
	Amount        string
	Currency      string
	NumberLabel   string
	AccountNumber string
	NameLabel     string
	AccountName   string
	BankLabel     string
	BankName      string
	CanConfirm    bool
	CanCancel     bool // "Choose another method": before expires_at, and not for a fixed method
}

func (h *handler) payView(w http.ResponseWriter, r *http.Request, st *payState, formErr, selected string) *payView {
	now := h.now()
	id := st.inv.InvoiceID
	v := &payView{
		InvoiceID:     id,
		Purpose:       st.inv.Purpose,
		Amount:        st.inv.Amount,
		Currency:      st.inv.Currency,
		Phase:         st.phase,
		Final:         st.final,
		Exhausted:     st.phase == phaseExhausted,
		Countdown:     !st.final && !st.late && (st.phase == phaseChoose || st.phase == phasePay || st.phase == phaseFailed),
		Message:       st.message(),
		Redirect:      st.redirect,
		RedirectDelay: h.redirectDelay.Milliseconds(),
		RedirectNote:  redirectNote(h.redirectDelay),
		PageURL:       PayPrefix + id,
		StatusURL:     PayPrefix + id + "/status",
		ExpiresAt:     st.inv.ExpiresAt.UTC().Format(time.RFC3339),
		ExpiresAtText: st.inv.ExpiresAt.UTC().Format("15:04 UTC, 2 Jan 2006"),
		Remaining:     remaining(st.inv.ExpiresAt.Sub(now)),
		Now:           now.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		FixedMethod:   st.inv.Method != "",
		Error:         formErr,
		CSRF:          h.csrf.token(h.csrf.nonce(w, r), "pay/"+id),
		MethodAction:  PayPrefix + id + "/method",
		ConfirmAction: PayPrefix + id + "/confirm",
		CancelAction:  PayPrefix + id + "/cancel",
	}
	if selected == "" && len(st.methods) == 1 {
		selected = st.methods[0].Code
	}
	for _, m := range st.methods {
		v.Methods = append(v.Methods, methodOption{Code: m.Code, Name: m.Name, Currency: m.Currency, Checked: m.Code == selected})
	}
	if st.payment != nil {
		v.PaymentID = st.payment.ID
	}
	if p := st.payment; p != nil && (st.phase == phasePay || st.phase == phaseConfirmed) {
		v.Payment = details(p)
		v.Payment.CanConfirm = st.phase == phasePay
		v.Payment.CanCancel = v.Payment.CanConfirm && !st.late && !v.FixedMethod
	}
	return v
}

func details(p *projections.PaymentView) *paymentDetails {
	d := &paymentDetails{
		ID: p.ID, Method: p.Method, Amount: p.PaymentAmount, Currency: p.PaymentCurrency,
		NumberLabel: "Account number", AccountNumber: p.Extra.AccountNumber,
		NameLabel: "Recipient", AccountName: p.Extra.AccountName,
		BankLabel: "Bank", BankName: p.Extra.BankName,
	}
	if m, ok := commands.LookupMethod(p.Method); ok {
		d.Method = m.Name
		switch m.Kind {
		case commands.KindCard:
			d.NumberLabel = "Card number"
		case commands.KindMobileMoney:
			d.NumberLabel, d.BankLabel = "Phone number", "Operator"
		case commands.KindUPIWallet:
			d.NumberLabel = "UPI address"
		case commands.KindCrypto:
			d.NumberLabel, d.NameLabel, d.BankLabel = "Wallet address", "Wallet", "Network"
		}
	}
	return d
}

// redirectNote says when the page will send the customer back to the shop.
func redirectNote(d time.Duration) string {
	if s := int64(d.Round(time.Second) / time.Second); s > 1 {
		return fmt.Sprintf("You will be taken back to the shop in %d seconds.", s)
	}
	return "You will be taken back to the shop in a second."
}

// remaining renders a duration as m:ss (h:mm:ss past an hour), 0:00 when past.
func remaining(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

func (h *handler) renderPay(w http.ResponseWriter, r *http.Request, status int, st *payState, formErr, selected string) {
	title := "Pay " + st.inv.Amount + " " + st.inv.Currency + " \u2013 " + st.merchant
	if formErr != "" {
		title = "Error: " + title // as on the widget page
	}
	h.render(w, r, status, "pay", layout{
		Title:  title,
		Brand:  st.merchant,
		Script: "pay.js",
		Page:   h.payView(w, r, st, formErr, selected),
	})
}

// payPage is GET /pay/{invoice_id}.
func (h *handler) payPage(w http.ResponseWriter, r *http.Request) {
	st, ok := h.loadPayOrFail(w, r)
	if !ok {
		return
	}
	h.renderPay(w, r, http.StatusOK, st, "", "")
}

// loadPayOrFail loads the page state, answering 404 or 500 itself.
func (h *handler) loadPayOrFail(w http.ResponseWriter, r *http.Request) (*payState, bool) {
	st, err := h.loadPay(invoiceID(r))
	switch {
	case errors.Is(err, projections.ErrNotFound):
		h.notFound(w, r)
		return nil, false
	case err != nil:
		h.serverError(w, r, err)
		return nil, false
	}
	return st, true
}

// postPrelude parses a POST to the payment page, checks its token and the
// invoice's rate limit, and takes the invoice's lock; it answers the
// failures itself. The caller must call unlock when ok.
func (h *handler) postPrelude(w http.ResponseWriter, r *http.Request) (id string, unlock func(), ok bool) {
	id = invoiceID(r)
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		h.renderMessage(w, r, http.StatusBadRequest, "Please try again", "The form could not be read.",
			link{Href: PayPrefix + url.PathEscape(id), Label: "Back to the page"})
		return "", nil, false
	}
	if !h.csrf.check(r, "pay/"+id) {
		h.badForm(w, r, PayPrefix+url.PathEscape(id))
		return "", nil, false
	}
	// After the token: only a page rendered for a real invoice gets one, so
	// made-up ids take no bucket. Ids are hex: one bucket whatever the case.
	if wait, ok := h.payLimit.Allow(strings.ToLower(id), h.now()); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(ratelimit.RetryAfter(wait)))
		h.refreshAndRender(w, r, http.StatusTooManyRequests,
			"Many requests are being made on this page right now. Please try again in a few seconds.", r.PostFormValue("method"))
		return "", nil, false
	}
	return id, h.lock(id), true
}

func seeOther(w http.ResponseWriter, r *http.Request, to string) {
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// payMethod is POST /pay/{invoice_id}/method: the customer chose a method.
// It creates the payment and redirects back to the page (POST-redirect-GET),
// which then shows the payment details.
func (h *handler) payMethod(w http.ResponseWriter, r *http.Request) {
	id, unlock, ok := h.postPrelude(w, r)
	if !ok {
		return
	}
	defer unlock()
	st, ok := h.loadPayOrFail(w, r)
	if !ok {
		return
	}
	code := r.PostFormValue("method")
	switch st.phase {
	case phaseChoose, phaseFailed:
	case phasePay, phaseConfirmed:
		// A second click, or another tab: the live payment stands.
		seeOther(w, r, PayPrefix+id+"#details")
		return
	case phaseExhausted:
		h.renderPay(w, r, http.StatusConflict, st, tooManyPayments, "")
		return
	default:
		h.renderPay(w, r, http.StatusConflict, st, "This invoice can no longer be paid.", "")
		return
	}
	if _, ok := findMethod(st.methods, code); !ok {
		h.renderPay(w, r, http.StatusBadRequest, st, "Choose one of the payment methods listed.", "")
		return
	}
	_, _, err := h.svc.CreatePayment(r.Context(), commands.CreatePayment{
		Meta: h.meta(w, r), PaymentID: ids.New(), InvoiceID: id, Method: code,
	})
	switch {
	case err == nil:
		seeOther(w, r, PayPrefix+id+"#details")
	case errors.Is(err, commands.ErrInvoiceNotPayable):
		h.refreshAndRender(w, r, http.StatusConflict, "This invoice can no longer be paid.", "")
	case errors.Is(err, commands.ErrTooManyPayments):
		h.refreshAndRender(w, r, http.StatusConflict, tooManyPayments, "")
	case errors.Is(err, commands.ErrMerchantDisabled):
		h.refreshAndRender(w, r, http.StatusConflict, "The shop is not accepting payments right now. Please try again later.", "")
	case errors.Is(err, commands.ErrMethodInvalid), errors.Is(err, commands.ErrCurrencyInvalid):
		h.refreshAndRender(w, r, http.StatusBadRequest, "This payment method is not available right now. Choose another one.", "")
	case errors.Is(err, commands.ErrNotFound):
		h.notFound(w, r)
	default:
		h.serverError(w, r, fmt.Errorf("create payment for invoice %s: %w", id, err))
	}
}

const tooManyPayments = "Too many payment attempts were made for this invoice. Please contact the shop."

// refreshAndRender re-reads the state after a refused command and shows the
// page with the error.
func (h *handler) refreshAndRender(w http.ResponseWriter, r *http.Request, status int, msg, selected string) {
	st, ok := h.loadPayOrFail(w, r)
	if !ok {
		return
	}
	h.renderPay(w, r, status, st, msg, selected)
}

// payConfirm is POST /pay/{invoice_id}/confirm: "I have paid".
func (h *handler) payConfirm(w http.ResponseWriter, r *http.Request) {
	h.transition(w, r, commands.PaymentStatusConfirmed, "This payment can no longer be confirmed.")
}

// payCancel is POST /pay/{invoice_id}/cancel: the customer drops the
// payment to choose another method.
func (h *handler) payCancel(w http.ResponseWriter, r *http.Request) {
	h.transition(w, r, commands.PaymentStatusCancelled, "This payment can no longer be changed.")
}

// transition moves the invoice's payment named by the form from PENDING
// to status. Repeating a transition already made is not an error.
func (h *handler) transition(w http.ResponseWriter, r *http.Request, status, refused string) {
	id, unlock, ok := h.postPrelude(w, r)
	if !ok {
		return
	}
	defer unlock()
	st, ok := h.loadPayOrFail(w, r)
	if !ok {
		return
	}
	var p *projections.PaymentView
	for i := range st.payments {
		if st.payments[i].ID == r.PostFormValue("payment") {
			p = &st.payments[i]
		}
	}
	switch {
	case p == nil:
		h.renderPay(w, r, http.StatusBadRequest, st, "This payment was not found. Reload the page and try again.", "")
		return
	case p.Status == status:
		seeOther(w, r, PayPrefix+id)
		return
	case p.Status != commands.PaymentStatusPending:
		h.renderPay(w, r, http.StatusConflict, st, refused, "")
		return
	}
	_, err := h.svc.TransitionPayment(r.Context(), commands.PaymentTransition{
		Meta: h.meta(w, r), PaymentID: strings.TrimPrefix(p.Stream, commands.StreamPayment+"-"), Status: status,
		By: commands.ByCustomer,
	})
	switch {
	case err == nil:
		seeOther(w, r, PayPrefix+id)
	case errors.Is(err, commands.ErrInvalidTransition):
		h.refreshAndRender(w, r, http.StatusConflict, refused, "")
	default:
		h.serverError(w, r, fmt.Errorf("payment %s -> %s: %w", p.Stream, status, err))
	}
}

// statusBody is GET /pay/{invoice_id}/status: what the page's script polls.
type statusBody struct {
	InvoiceID     string    `json:"invoice_id"`
	InvoiceStatus string    `json:"invoice_status"` // pending, success, expired, cancelled
	PaymentID     *string   `json:"payment_id"`     // the latest payment's public id; null: none
	PaymentStatus *string   `json:"payment_status"` // PENDING, CONFIRMED, PROCESSED, ...; null: none
	Phase         string    `json:"phase"`          // choose, pay, confirmed, exhausted, success, expired, cancelled, failed, underpaid
	Final         bool      `json:"final"`          // the page will not change again
	Message       string    `json:"message"`        // the status line for the customer
	ExpiresAt     time.Time `json:"expires_at"`
	Now           time.Time `json:"now"`          // the server's clock, for the countdown
	RedirectURL   *string   `json:"redirect_url"` // success_url or fail_url once final; null otherwise (exhausted too)
}

func (h *handler) payStatus(w http.ResponseWriter, r *http.Request) {
	st, err := h.loadPay(invoiceID(r))
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	switch {
	case errors.Is(err, projections.ErrNotFound):
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":"not_found"}` + "\n"))
		return
	case err != nil:
		id := requestID(w, r)
		h.log.Error("hosted page status failed", "request_id", id, "path", r.URL.Path, "err", err)
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"error":"internal"}` + "\n"))
		return
	}
	b := statusBody{
		InvoiceID: st.inv.InvoiceID, InvoiceStatus: st.inv.Status, Phase: st.phase, Final: st.final,
		Message: st.message(), ExpiresAt: st.inv.ExpiresAt.UTC(), Now: h.now().UTC(),
	}
	if p := st.payment; p != nil {
		b.PaymentID, b.PaymentStatus = &p.ID, &p.Status
	}
	if st.final && st.redirect != "" {
		b.RedirectURL = &st.redirect
	}
	json.NewEncoder(w).Encode(b)
}

// safeURL returns u if it is an absolute http(s) URL, else "": a redirect
// target must never be a javascript: or data: URL, whatever got into the log.
func safeURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" || (p.Scheme != "https" && p.Scheme != "http") {
		return ""
	}
	return u
}

// invoiceID is the {invoice_id} of a payment page route. An invoice's id is
// UUID text in lower case (commands.UUID); the same UUID in upper or mixed
// case names it too.
func invoiceID(r *http.Request) string { return commands.CanonicalUUID(r.PathValue("invoice_id")) }

// plausibleID bounds the ids the views are asked about.
func plausibleID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
