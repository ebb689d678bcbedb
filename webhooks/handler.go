package webhooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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
		var bad QueryError
		page := bad.whole(q, "page", 1, maxPage)
		size := bad.whole(q, "page_size", DefaultPageSize, MaxPageSize)
		bad.status(q.Get("status"))
		if err := bad.err(); err != nil {
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
		req, err := decodeRedeliver(r.Body)
		if err != nil {
			cfg.WriteError(w, r, err)
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

// maxPage bounds page as the API's other lists do.
const maxPage = 1_000_000

// whole reads the optional whole-number query parameter name, from 1 to
// hi (def when absent), naming it in e otherwise.
func (e *QueryError) whole(q url.Values, name string, def, hi int) int {
	v := q.Get(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n < 1 || n > uint64(hi) {
		e.add(name, "int_parsing", fmt.Sprintf("%s must be a whole number from 1 to %d", name, hi))
		return def
	}
	return int(n)
}

// redeliverRequest is the body of POST /api/v1/webhooks/redeliver.
type redeliverRequest struct {
	Since  time.Time
	Status string
}

// redeliverShape is what POST /api/v1/webhooks/redeliver takes.
const redeliverShape = `{"since": RFC 3339 time, "status": optional}`

// decodeRedeliver reads the body of a bulk redelivery: a *QueryError names
// what is wrong with it.
func decodeRedeliver(body io.Reader) (redeliverRequest, error) {
	var raw struct {
		Since  string `json:"since"`
		Status string `json:"status"`
	}
	var bad QueryError
	data, err := io.ReadAll(io.LimitReader(body, 4096))
	if err != nil {
		return redeliverRequest{}, err
	}
	// As strict as the rest of the API (docs/api.md): encoding/json would
	// take "SINCE" for since, and the last of a key given twice.
	if f, ok := checkRedeliverKeys(data); !ok {
		bad.Fields = append(bad.Fields, f)
		return redeliverRequest{}, &bad
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		bad.Fields = append(bad.Fields, bodyField(err))
		return redeliverRequest{}, &bad
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		bad.add("body", "json_invalid", "body must hold exactly one JSON value: "+redeliverShape)
		return redeliverRequest{}, &bad
	}
	req := redeliverRequest{Status: raw.Status}
	if raw.Since != "" && req.Since.UnmarshalText([]byte(raw.Since)) != nil {
		bad.add("since", "datetime_parsing", "since must be an RFC 3339 time such as 2026-02-25T12:00:00Z")
	} else {
		bad.since(req.Since)
	}
	bad.status(raw.Status)
	if err := bad.err(); err != nil {
		return redeliverRequest{}, err
	}
	return req, nil
}

// checkRedeliverKeys refuses a redelivery body whose top-level object has
// a key other than since and status as written (case counts) or one of
// them twice. Anything it cannot read as an object it leaves to the
// decoder, which names that.
func checkRedeliverKeys(data []byte) (QueryField, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return QueryField{}, true
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return QueryField{}, true
		}
		name, _ := t.(string)
		switch {
		case name != "since" && name != "status":
			msg := fmt.Sprintf("%q is not a field of this request: %s", name, redeliverShape)
			if strings.EqualFold(name, "since") || strings.EqualFold(name, "status") {
				msg = fmt.Sprintf("%q is not a field of this request (field names are case-sensitive): %s", name, redeliverShape)
			}
			return QueryField{name, "extra_forbidden", msg}, false
		case seen[name]:
			return QueryField{name, "duplicate", fmt.Sprintf("%q is given twice", name)}, false
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return QueryField{}, true
		}
	}
	return QueryField{}, true
}

// bodyField names what a decoding error of the redelivery body concerns.
func bodyField(err error) QueryField {
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return QueryField{"body", "missing", "body is required: " + redeliverShape}
	case errors.As(err, &te) && te.Field == "":
		return QueryField{"body", "model_type", "body must be a JSON object: " + redeliverShape}
	case errors.As(err, &te):
		return QueryField{te.Field, "string_type", fmt.Sprintf("%s must be a string, not a JSON %s", te.Field, te.Value)}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return QueryField{name, "extra_forbidden", fmt.Sprintf("%q is not a field of this request: %s", name, redeliverShape)}
	}
	return QueryField{"body", "json_invalid", "body is not valid JSON (" + strings.TrimPrefix(err.Error(), "json: ") + "): " + redeliverShape}
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
