package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/payledger/payledger/http/pages"
)

// TestPagesAnswerEveryMethod: the hosted pages are mounted for every
// method, so a PUT or DELETE on a page's path is answered by the pages
// themselves: their HTML 405 with that path's own Allow, or their HTML 404.
// Before, only GET and POST were mounted, and the server's JSON 405 named
// the methods of the mount ("GET, HEAD, POST") on every page path.
func TestPagesAnswerEveryMethod(t *testing.T) {
	var ph http.Handler
	h := newHarness(t, func(c *Config) {
		c.Pages = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ph.ServeHTTP(w, r) })
	})
	var err error
	ph, err = pages.New(pages.Config{Service: h.svc, Views: h.views, Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	m := h.seedSetup()
	id, _ := h.api(m, "POST", "/api/v1/create-invoice", seed003Request).JSON(t)["invoice_id"].(string)
	if id == "" {
		t.Fatal("no invoice")
	}
	for _, method := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch} {
		for path, allow := range map[string]string{
			"/pay/" + id:             "GET, HEAD",
			"/pay/" + id + "/method": "POST",
			"/pay/" + id + "/status": "GET, HEAD",
			"/w/some-widget":         "GET, HEAD, POST",
		} {
			r := h.do(req{method: method, path: path})
			if r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != allow ||
				!strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
				t.Errorf("%s %s: %d, Allow %q, %s, want 405 text/html with Allow %q\n%s",
					method, path, r.Status, r.Header.Get("Allow"), r.Header.Get("Content-Type"), allow, r.Body)
			}
		}
		r := h.do(req{method: method, path: "/pay/a/b/c/d"})
		if r.Status != http.StatusNotFound || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s on no page: %d %s, want the pages' 404 in HTML", method, r.Status, r.Header.Get("Content-Type"))
		}
	}
	// GET and POST are served as before.
	if r := h.do(req{method: "GET", path: "/pay/" + id}); r.Status != http.StatusOK {
		t.Errorf("GET the page: %d", r.Status)
	}
}
