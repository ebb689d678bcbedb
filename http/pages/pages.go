// Package pages serves payledger's hosted pages: the payment page a
// customer reaches by an invoice's payment_link, and the payment widget page.
// Both are server-rendered with html/template and work without JavaScript; a
// small embedded script adds the live status, the countdown and the redirect
// back to the merchant. The invoice or widget id in the URL is the only
// capability a page needs: there are no customer accounts.
package pages

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/internal/ids"
	"github.com/payledger/payledger/internal/ratelimit"
	"github.com/payledger/payledger/projections"
)

// Config configures the hosted pages. Service and Views are required; every
// other zero field means its default.
type Config struct {
	// Service executes the customers' commands (payments, confirmations,
	// widget invoices).
	Service *commands.Service
	// Views reads invoices, payments, widgets, merchants and rates. Pages
	// rely on read-your-writes: a command's result is visible to the next read.
	Views *projections.Views
	// Now is the clock commands and expiry checks read. Default time.Now.
	Now func() time.Time
	// Logger receives one line per failure the customer sees as a 500.
	// Default slog.Default().
	Logger *slog.Logger
	// CSRFKey signs the forms' anti-forgery tokens. Nodes behind one load
	// balancer must share it. Default: a random key made by New, so forms
	// rendered before a restart are refused once (the customer reloads).
	CSRFKey []byte
	// RedirectDelay is how long the payment page shows the final status
	// before it sends the customer to success_url or fail_url. Default 3s.
	RedirectDelay time.Duration
	// WidgetRate bounds the invoices a widget page's form starts, per
	// widget, per second, with bursts of WidgetBurst: the form takes no
	// credentials, so without it anyone could fill the log and the
	// merchant's invoice list through it. 0: DefaultWidgetRate; negative:
	// no limit. WidgetBurst 0: DefaultWidgetBurst.
	WidgetRate  rate.Limit
	WidgetBurst int
	// PayRate bounds the customer's POSTs to one invoice's payment page
	// (choose a method, "I have paid", choose another method), per
	// second, with bursts of PayBurst. The page takes no credentials:
	// without it anyone holding the link could make payment after payment,
	// each with its events and its webhooks to the merchant (the commands
	// also cap an invoice's payments: commands.MaxPaymentsPerInvoice).
	// 0: DefaultPayRate; negative: no limit. PayBurst 0: DefaultPayBurst.
	PayRate  rate.Limit
	PayBurst int
	// Failed reports the event log's failure (boltlog.Store.Failed): once
	// it returns an error, the views may show a commit the disk does not
	// hold, so every page but the static files answers 503 until the
	// process is restarted. nil: never checked.
	Failed func() error
}

// Defaults of Config.WidgetRate and WidgetBurst: some 18,000 invoices an
// hour per widget, a rush of 30 at once.
const (
	DefaultWidgetRate  = 5
	DefaultWidgetBurst = 30
)

// Defaults of Config.PayRate and PayBurst: 10 steps at once, far more than
// a customer who changes their mind takes, then one every 5 seconds.
const (
	DefaultPayRate  = 0.2
	DefaultPayBurst = 10
)

// Paths the handler serves. The surrounding router sends every path under
// these prefixes to the handler.
const (
	PayPrefix    = "/pay/"
	WidgetPrefix = "/w/"
	// StaticPrefix serves the embedded CSS and JavaScript, under a content
	// hash so that they can be cached for good.
	StaticPrefix = "/pay/static/"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// handler is the hosted pages' http.Handler.
type handler struct {
	widgetLimit   *ratelimit.Set // invoices started per widget
	payLimit      *ratelimit.Set // payment page POSTs per invoice
	svc           *commands.Service
	views         *projections.Views
	now           func() time.Time
	log           *slog.Logger
	csrf          csrf
	redirectDelay time.Duration
	mux           *http.ServeMux
	failed        func() error // Config.Failed; nil: never failed
	tmpl          map[string]*template.Template
	static        map[string]staticFile
	staticVersion string
	// locks serialise the commands on one invoice, so that a double click on
	// "Continue" makes one payment, not two. Striped: bounded memory, and
	// rare false sharing costs only a short wait.
	locks [64]sync.Mutex
}

type staticFile struct {
	body        []byte
	contentType string
}

// New returns the handler of the hosted pages, serving the routes of
// pageRoutes (Routes lists them); any other method on one of their paths
// is 405 with Allow, any other path 404.
//
// Errors: ErrConfig when Service or Views is missing, or the templates do
// not parse (a build defect).
func New(cfg Config) (http.Handler, error) {
	if cfg.Service == nil || cfg.Views == nil {
		return nil, fmt.Errorf("%w: Service and Views are required", ErrConfig)
	}
	h := &handler{
		svc:           cfg.Service,
		views:         cfg.Views,
		now:           cfg.Now,
		log:           cfg.Logger,
		redirectDelay: cfg.RedirectDelay,
		mux:           http.NewServeMux(),
		failed:        cfg.Failed,
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.redirectDelay <= 0 {
		h.redirectDelay = 3 * time.Second
	}
	h.widgetLimit = newLimit(cfg.WidgetRate, cfg.WidgetBurst, DefaultWidgetRate, DefaultWidgetBurst)
	h.payLimit = newLimit(cfg.PayRate, cfg.PayBurst, DefaultPayRate, DefaultPayBurst)
	key := cfg.CSRFKey
	if len(key) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("pages: csrf key: %w", err)
		}
	}
	h.csrf = csrf{key: bytes.Clone(key)}
	if err := h.loadStatic(); err != nil {
		return nil, err
	}
	if err := h.parseTemplates(); err != nil {
		return nil, err
	}
	h.routes()
	return h, nil
}

// newLimit is a limiter of r tokens a second in bursts of burst, with the
// Config's meaning: r 0 is defRate, negative no limit; burst 0 is defBurst.
func newLimit(r rate.Limit, burst int, defRate rate.Limit, defBurst int) *ratelimit.Set {
	switch {
	case r < 0:
		r = rate.Inf
	case r == 0:
		r = defRate
	}
	if burst <= 0 {
		burst = defBurst
	}
	return ratelimit.New(r, burst)
}

// pageFunc is one of the handler's routes.
type pageFunc = func(*handler, http.ResponseWriter, *http.Request)

// pageRoutes is every route the handler serves, by path and method: routes
// registers it, Routes lists it (the OpenAPI document's test checks that
// each is described).
var pageRoutes = []struct {
	pattern  string
	byMethod map[string]pageFunc
}{
	// The payment page; choose a method (creates the payment); "I have
	// paid" (CONFIRMED); "Choose another method" (CANCELLED); the page's
	// status as JSON, polled by its script.
	{"/pay/{invoice_id}", map[string]pageFunc{http.MethodGet: (*handler).payPage}},
	{"/pay/{invoice_id}/method", map[string]pageFunc{http.MethodPost: (*handler).payMethod}},
	{"/pay/{invoice_id}/confirm", map[string]pageFunc{http.MethodPost: (*handler).payConfirm}},
	{"/pay/{invoice_id}/cancel", map[string]pageFunc{http.MethodPost: (*handler).payCancel}},
	{"/pay/{invoice_id}/status", map[string]pageFunc{http.MethodGet: (*handler).payStatus}},
	// The widget page; its form creates an invoice, then 303 to its page.
	{"/w/{widget_id}", map[string]pageFunc{http.MethodGet: (*handler).widgetPage, http.MethodPost: (*handler).widgetCreate}},
	// The embedded CSS and JavaScript. Four segments, so that it cannot
	// collide with /pay/{invoice_id}/status.
	{"/pay/static/{version}/{file}", map[string]pageFunc{http.MethodGet: (*handler).serveStatic}},
}

// Routes lists every route the hosted pages serve as "METHOD pattern"
// (HEAD is served with each GET), sorted.
func Routes() []string {
	var out []string
	for _, rt := range pageRoutes {
		for method := range rt.byMethod {
			out = append(out, method+" "+rt.pattern)
		}
	}
	slices.Sort(out)
	return out
}

func (h *handler) routes() {
	for _, rt := range pageRoutes {
		h.route(rt.pattern, rt.byMethod)
	}
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { h.notFound(w, r) })
}

// route registers a path for some methods and a 405 with Allow for the others.
func (h *handler) route(pattern string, byMethod map[string]pageFunc) {
	var allow []string
	for method, fn := range byMethod {
		h.mux.HandleFunc(method+" "+pattern, func(w http.ResponseWriter, r *http.Request) { fn(h, w, r) })
		allow = append(allow, method)
		if method == http.MethodGet {
			allow = append(allow, http.MethodHead)
		}
	}
	slices.Sort(allow)
	allowed := strings.Join(allow, ", ")
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allowed)
		h.renderMessage(w, r, http.StatusMethodNotAllowed, "Not allowed",
			"This address does not accept that kind of request.")
	})
}

// ServeHTTP sets the headers every response carries, then routes.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	// No inline script or style: everything comes from /pay/static. Logos
	// are merchants' https images.
	hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' https:; "+
		"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	// The invoice id in the URL is a capability: never send it to the
	// merchant's logo host or to the success page.
	hd.Set("Referrer-Policy", "no-referrer")
	if h.failed != nil && !strings.HasPrefix(r.URL.Path, StaticPrefix) {
		if h.failed() != nil {
			h.unavailable(w, r)
			return
		}
	}
	h.mux.ServeHTTP(w, r)
}

// requestID is the request id of SPEC §4: the X-Request-Id the surrounding
// middleware put on the response, else the client's, else a new one.
func requestID(w http.ResponseWriter, r *http.Request) string {
	if id := w.Header().Get("X-Request-Id"); id != "" {
		return id
	}
	id := r.Header.Get("X-Request-Id")
	if !plausibleRequestID(id) {
		id = ids.New().String()
	}
	w.Header().Set("X-Request-Id", id)
	return id
}

// plausibleRequestID accepts a client's request id of 1 to 64 safe characters.
func plausibleRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.ContainsRune("-_.:", c)) {
			return false
		}
	}
	return true
}

// meta is a command's metadata for a request.
func (h *handler) meta(w http.ResponseWriter, r *http.Request) commands.Meta {
	return commands.Meta{CommandID: ids.New(), Time: h.now().UTC(), Correlation: requestID(w, r)}
}

// lock serialises commands on one aggregate id.
func (h *handler) lock(id string) func() {
	sum := sha256.Sum256([]byte(id))
	m := &h.locks[int(sum[0])%len(h.locks)]
	m.Lock()
	return m.Unlock
}

func (h *handler) loadStatic() error {
	h.static = map[string]staticFile{}
	sum := sha256.New()
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		ct := "application/octet-stream"
		switch path.Ext(p) {
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".js":
			ct = "text/javascript; charset=utf-8"
		}
		name := path.Base(p)
		h.static[name] = staticFile{body: b, contentType: ct}
		sum.Write([]byte(name))
		sum.Write(b)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: static files: %v", ErrConfig, err)
	}
	h.staticVersion = hex.EncodeToString(sum.Sum(nil))[:12]
	return nil
}

func (h *handler) serveStatic(w http.ResponseWriter, r *http.Request) {
	f, ok := h.static[r.PathValue("file")]
	if !ok {
		h.notFound(w, r)
		return
	}
	w.Header().Set("Content-Type", f.contentType)
	if r.PathValue("version") == h.staticVersion {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		// A page from before a deploy: serve the current file, briefly cached.
		w.Header().Set("Cache-Control", "public, max-age=60")
	}
	w.Write(f.body)
}
