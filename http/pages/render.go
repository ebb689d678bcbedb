package pages

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strings"
)

// layout is what every page's base template reads.
type layout struct {
	Title  string // the document title
	Brand  string // the header: the merchant's name, or the product's
	Static string // path prefix of the static files, with their version
	Script string // the page's script file, or ""
	Page   any    // the page's own data: *payView, *widgetView or *messageView
}

// messageView is a page that only says something: not found, gone, refused.
type messageView struct {
	Heading string
	Text    string
	Links   []link
}

type link struct {
	Href  string
	Label string
}

var pageNames = []string{"pay", "widget", "message"}

func (h *handler) parseTemplates() error {
	base, err := template.ParseFS(templateFS, "templates/base.html")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	h.tmpl = map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("%w: template %s: %v", ErrConfig, name, err)
		}
		h.tmpl[name] = t
	}
	return nil
}

// render executes a page into a buffer first, so that a template error
// becomes a clean 500 rather than half a page.
func (h *handler) render(w http.ResponseWriter, r *http.Request, status int, name string, l layout) {
	l.Static = StaticPrefix + h.staticVersion
	if l.Brand == "" {
		l.Brand = "payledger"
	}
	var buf bytes.Buffer
	if err := h.tmpl[name].ExecuteTemplate(&buf, "base", l); err != nil {
		h.serverError(w, r, fmt.Errorf("render %s: %w", name, err))
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	// Payment details and tokens: never stored by a browser or a proxy.
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

func (h *handler) renderMessage(w http.ResponseWriter, r *http.Request, status int, heading, text string, links ...link) {
	h.render(w, r, status, "message", layout{Title: heading, Page: &messageView{Heading: heading, Text: text, Links: links}})
}

func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.renderMessage(w, r, http.StatusNotFound, "Page not found",
		"We could not find this payment page. Check the link you were given, or ask the shop for a new one.")
}

// serverError logs err once with the request id and shows a page without
// details.
func (h *handler) serverError(w http.ResponseWriter, r *http.Request, err error) {
	id := requestID(w, r)
	h.log.Error("hosted page failed", "request_id", id, "method", r.Method, "path", r.URL.Path, "err", err)
	// Not through render: the failure may be the templates themselves.
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(w, `<!doctype html><html lang="en"><head><meta charset="utf-8">`+
		`<meta name="viewport" content="width=device-width, initial-scale=1"><title>Something went wrong</title></head>`+
		`<body><main><h1>Something went wrong</h1><p>Please try again in a moment. If it keeps happening, `+
		`contact the shop and quote this reference: %s</p></main></body></html>`, template.HTMLEscapeString(id))
}

// unavailable answers a request while the event log has failed
// (Config.Failed): the status poll in JSON, which the page's script retries,
// any other page with a message. Not logged per request: a page polls every
// 2 s (less often once its polls keep failing), and /readyz reports the
// failure.
func (h *handler) unavailable(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/status") {
		hd := w.Header()
		hd.Set("Content-Type", "application/json")
		hd.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":"unavailable"}` + "\n"))
		return
	}
	h.renderMessage(w, r, http.StatusServiceUnavailable, "Temporarily unavailable",
		"This payment page cannot be shown right now. Please try again in a few minutes.")
}

// badForm answers a POST whose anti-forgery token does not check out.
func (h *handler) badForm(w http.ResponseWriter, r *http.Request, back string) {
	h.renderMessage(w, r, http.StatusForbidden, "Please try again",
		"This form could not be accepted: it has expired or your browser did not send its security cookie. "+
			"Go back to the page, reload it and try again. Cookies must be enabled for this site.",
		link{Href: back, Label: "Back to the page"})
}
