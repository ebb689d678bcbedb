package webhooks

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"
)

// HandlerConfig configures Handler.
type HandlerConfig struct {
	// Merchant returns the authenticated merchant of a request (the API's
	// auth middleware put it in the context). Required; false answers 401.
	Merchant func(*http.Request) (string, bool)
	// WriteError writes an error response. Default: seed 003's envelope
	// {"successful": false, "request_id", "error": {"code", "message"}}
	// with ErrNotFound as 404 NOT_FOUND, ErrInvalidQuery as 400
	// VALIDATION_ERROR, anything else 500 INTERNAL_ERROR; a
	// *RedeliverError adds "details": [{"path": "redelivered", "type":
	// "partial", "message": "<n> deliveries were redelivered before the
	// failure; ..."}]. A WriteError of its own should say that count too.
	WriteError func(w http.ResponseWriter, r *http.Request, err error)
}

// Handler serves the merchant's webhook routes, to be mounted behind the
// API's authentication:
//
//	GET  /api/v1/webhooks/deliveries?status=failed&page=1&page_size=20
//	GET  /api/v1/webhooks/deliveries/{id}
//	POST /api/v1/webhooks/deliveries/{id}/redeliver
//	POST /api/v1/webhooks/redeliver   {"since": "2026-02-25T12:00:00Z", "status": "failed"}
//
// Lists answer {"items": [...], "page_details": {page_number, page_size,
// total_pages, total_objects}} (a page before the last holds fewer than
// page_size when it leaves out a delivery whose record does not decode:
// see ListDeliveries); a delivery answers its JSON with attempts; the bulk
// redelivery answers {"redelivered": n}, those it redelivered, or, failing
// part way, an error whose details say how many it redelivered first.
func (d *Dispatcher) Handler(cfg HandlerConfig) http.Handler {
	if cfg.WriteError == nil {
		cfg.WriteError = func(w http.ResponseWriter, r *http.Request, err error) {
			if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrInvalidQuery) && !errors.Is(err, errUnauthenticated) {
				d.cfg.Logger.Error("webhooks API", "path", r.URL.Path, "request_id", w.Header().Get("X-Request-Id"), "err", err)
			}
			writeError(w, r, err)
		}
	}
	mux := http.NewServeMux()
	auth := func(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			m, ok := "", false
			if cfg.Merchant != nil {
				m, ok = cfg.Merchant(r)
			}
			if !ok {
				cfg.WriteError(w, r, errUnauthenticated)
				return
			}
			h(w, r, m)
		}
	}
	mux.Handle("GET /api/v1/webhooks/deliveries", auth(func(w http.ResponseWriter, r *http.Request, m string) {
		q := r.URL.Query()
		page, err1 := atoiOr(q.Get("page"), 1)
		size, err2 := atoiOr(q.Get("page_size"), DefaultPageSize)
		if err := errors.Join(err1, err2); err != nil {
			cfg.WriteError(w, r, err)
			return
		}
		p, err := d.ListDeliveries(m, ListQuery{Status: q.Get("status"), Page: page, PageSize: size})
		if err != nil {
			cfg.WriteError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, p)
	}))
	mux.Handle("GET /api/v1/webhooks/deliveries/{id}", auth(func(w http.ResponseWriter, r *http.Request, m string) {
		del, err := d.Delivery(m, r.PathValue("id"))
		if err != nil {
			cfg.WriteError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, del)
	}))
	mux.Handle("POST /api/v1/webhooks/deliveries/{id}/redeliver", auth(func(w http.ResponseWriter, r *http.Request, m string) {
		del, err := d.Redeliver(m, r.PathValue("id"))
		if err != nil {
			cfg.WriteError(w, r, err)
			return
		}
		writeJSON(w, http.StatusAccepted, del)
	}))
	mux.Handle("POST /api/v1/webhooks/redeliver", auth(func(w http.ResponseWriter, r *http.Request, m string) {
		var req struct {
			Since  time.Time `json:"since"`
			Status string    `json:"status"`
		}
		dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			cfg.WriteError(w, r, &queryError{"body must be {\"since\": RFC 3339 time, \"status\": optional}: " + err.Error()})
			return
		}
		n, err := d.RedeliverSince(m, req.Since, req.Status)
		if err != nil {
			cfg.WriteError(w, r, err)
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]int{"redelivered": n})
	}))
	return mux
}

var errUnauthenticated = errors.New("webhooks: no authenticated merchant")

type queryError struct{ msg string }

func (e *queryError) Error() string { return "webhooks: " + e.msg }
func (e *queryError) Unwrap() error { return ErrInvalidQuery }

func atoiOr(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, &queryError{"page and page_size must be positive integers"}
	}
	return n, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code := http.StatusInternalServerError, "INTERNAL_ERROR"
	msg := "internal error"
	switch {
	case errors.Is(err, errUnauthenticated):
		status, code, msg = http.StatusUnauthorized, "API_KEY_MISSING", "Missing X-Api-Key header"
	case errors.Is(err, ErrNotFound):
		status, code, msg = http.StatusNotFound, "NOT_FOUND", "delivery not found"
	case errors.Is(err, ErrInvalidQuery):
		status, code, msg = http.StatusBadRequest, "VALIDATION_ERROR", err.Error()
	}
	body := map[string]any{"code": code, "message": msg}
	var re *RedeliverError
	if errors.As(err, &re) {
		body["details"] = []map[string]string{{"path": "redelivered", "type": "partial", "message": re.Done()}}
	}
	writeJSON(w, status, map[string]any{
		"successful": false,
		"request_id": w.Header().Get("X-Request-Id"),
		"error":      body,
	})
}
