package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/internal/ids"
	"github.com/payledger/payledger/internal/ratelimit"
	"github.com/payledger/payledger/keyring"
	"github.com/payledger/payledger/projections"
)

// family is the error envelope a path answers in.
type family int

const (
	familyV1       family = iota // seed 003's {"successful": false, ...}
	familyEInvoice               // seed 001's {"error": {"code": N, ...}}
)

type ctxKey struct{}

// reqInfo is what the outer middleware attaches to every request.
type reqInfo struct {
	id     string
	family family
}

func info(ctx context.Context) *reqInfo {
	if ri, ok := ctx.Value(ctxKey{}).(*reqInfo); ok {
		return ri
	}
	return &reqInfo{}
}

// RequestID returns the X-Request-Id the server gave a request (for the
// hosted pages' logs and commands), or "" outside the server.
func RequestID(ctx context.Context) string { return info(ctx).id }

func requestID(ctx context.Context) string { return info(ctx).id }

func familyOf(ctx context.Context) family { return info(ctx).family }

func familyFor(path string) family {
	if strings.HasPrefix(path, "/api/einvoice/") || strings.HasPrefix(path, "/api/extrafields/") {
		return familyEInvoice
	}
	return familyV1
}

// validRequestID accepts a client's X-Request-Id of 1 to 64 safe characters.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == ':':
		default:
			return false
		}
	}
	return true
}

// statusWriter records the status for metrics and logs, and holds back the
// ServeMux's plain-text 404 and 405 so they can be answered in JSON.
type statusWriter struct {
	http.ResponseWriter
	req         *http.Request
	status      int
	wroteHeader bool
	intercepted int    // 404 or 405 of an unmatched request, held back
	allow       string // the Allow header of a held-back 405
	own         bool   // our own answer: never held back
}

func (w *statusWriter) WriteHeader(code int) {
	if w.wroteHeader || w.intercepted != 0 {
		return
	}
	if !w.own && w.req.Pattern == "" && (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) {
		w.intercepted = code
		w.allow = w.Header().Get("Allow")
		return
	}
	w.wroteHeader = true
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.intercepted != 0 {
		return len(b), nil
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
		if w.intercepted != 0 {
			return len(b), nil
		}
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets the hosted pages stream.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if !w.wroteHeader {
			w.WriteHeader(http.StatusOK)
		}
		f.Flush()
	}
}

// Unwrap serves http.ResponseController.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// outer wraps every request: request id, error family, panic recovery,
// JSON 404/405, latency metrics and the request log.
func (s *Server) outer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := r.Header.Get("X-Request-Id")
		if !validRequestID(rid) {
			rid = ids.New().String()
		}
		w.Header().Set("X-Request-Id", rid)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		ctx := context.WithValue(r.Context(), ctxKey{}, &reqInfo{id: rid, family: familyFor(r.URL.Path)})
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w, req: r}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler { //nolint:errorlint // net/http's own sentinel panic
					panic(v)
				}
				s.log.ErrorContext(ctx, "panic serving request", "request_id", rid, "method", r.Method,
					"path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if !sw.wroteHeader {
					sw.intercepted, sw.own = 0, true
					s.writeError(sw, r, newError(CodeInternal, "Internal server error; quote the request id to support"))
				}
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			took := time.Since(start)
			s.metrics.observe(route, r.Method, status, took)
			s.log.DebugContext(ctx, "request", "request_id", rid, "method", r.Method, "route", route,
				"status", status, "duration", took)
		}()
		next.ServeHTTP(sw, r)
		if code := sw.intercepted; code != 0 {
			sw.intercepted, sw.own = 0, true
			h := sw.Header()
			h.Del("Content-Type")
			if code == http.StatusMethodNotAllowed {
				e := newError(CodeMethodNotAllowed, "Method "+r.Method+" is not allowed on "+r.URL.Path)
				e.Allow = sw.allow
				s.writeError(sw, r, e)
				return
			}
			s.writeError(sw, r, newError(CodeNotFound, "No route for "+r.Method+" "+r.URL.Path))
		}
	})
}

// unlessFailed answers every request with ledger.ErrFailed's 503 once the
// log has failed (boltlog.Store.Failed), before it authenticates anything:
// bbolt then already shows every reader, the views and the API keys among
// them, a commit that the disk may not hold, and a client that read it
// would take an unconfirmed write for a done one. Only a restart, which
// reopens the log, says what is on the disk.
func (s *Server) unlessFailed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.store.Failed(); err != nil {
			s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// call is one JSON request on its way through endpoint.
type call struct {
	s          *Server
	r          *http.Request
	ctx        context.Context
	merchantID string // authenticated merchant; "" on admin routes
	keyID      string
	body       []byte
	meta       commands.Meta
	replayed   bool   // the handler answered a retry from what the first attempt made
	requestKey string // for the command to claim; "" without an Idempotency-Key
}

// endpoint runs a JSON route: auth, per-key rate limit, body limit,
// signature, idempotency, then the handler.
func (s *Server) endpoint(a auth, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{s: s, r: r, ctx: r.Context()}
		if err := s.admit(c, a, w); err != nil {
			s.writeError(w, r, err)
			return
		}
		c.meta = commands.Meta{CommandID: ids.New(), Time: s.now(), Correlation: requestID(r.Context())}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if key := r.Header.Get("Idempotency-Key"); key != "" {
				s.idempotent(w, c, key, func(w http.ResponseWriter) { s.run(w, c, h) })
				return
			}
		}
		s.run(w, c, h)
	})
}

type merchantKey struct{}

// MerchantID returns the merchant a request was authenticated as, for
// handlers mounted behind the API's auth (Config.Webhooks).
func MerchantID(r *http.Request) (string, bool) {
	id, ok := r.Context().Value(merchantKey{}).(string)
	return id, ok && id != ""
}

// merchantHandler mounts a plain handler behind the merchant API's auth,
// limits, signature check and Idempotency-Key; it finds the merchant with
// MerchantID and the body as it came.
func (s *Server) merchantHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{s: s, r: r, ctx: r.Context()}
		if err := s.admit(c, authMerchant, w); err != nil {
			s.writeError(w, r, err)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), merchantKey{}, c.merchantID))
		r.Body = io.NopCloser(bytes.NewReader(c.body))
		r.ContentLength = int64(len(c.body))
		serve := func(w http.ResponseWriter) { h.ServeHTTP(w, r) }
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if key := r.Header.Get("Idempotency-Key"); key != "" {
				s.idempotent(w, c, key, serve)
				return
			}
		}
		serve(w)
	})
}

// admit authenticates, limits and reads the body.
func (s *Server) admit(c *call, a auth, w http.ResponseWriter) error {
	r := c.r
	limitKey := ""
	switch a {
	case authMerchant:
		if err := s.authMerchant(c); err != nil {
			return err
		}
		limitKey = "key/" + c.keyID
	case authAdmin:
		if err := s.authAdmin(w, r); err != nil {
			return err
		}
		limitKey = "admin"
	}
	if limitKey != "" {
		if wait, ok := s.keyLimits.Allow(limitKey, s.now()); !ok {
			return rateLimited(wait, "Too many requests for this API key")
		}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		body, err := s.readBody(w, r)
		if err != nil {
			return err
		}
		c.body = body
	}
	if a == authMerchant {
		if err := s.verifySignature(c); err != nil {
			return err
		}
	}
	return nil
}

func rateLimited(wait time.Duration, msg string) *apiError {
	secs := ratelimit.RetryAfter(wait)
	e := newError(CodeRateLimited, msg+"; retry after "+fmt.Sprint(secs)+"s")
	e.RetryAfter = secs
	return e
}

func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	max := s.cfg.MaxBodyBytes
	tooLarge := newError(CodeBodyTooLarge,
		fmt.Sprintf("The request body is larger than %d bytes", max),
		Detail{Path: "body", Type: "too_large", Message: fmt.Sprintf("body must be at most %d bytes", max)})
	if r.ContentLength > max {
		return nil, tooLarge
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge
		}
		return nil, newError(CodeValidation, "The request body could not be read",
			Detail{Path: "body", Type: "body_unreadable", Message: "body could not be read: " + err.Error()})
	}
	return b, nil
}

// authMerchant resolves X-Api-Key to a merchant. A revoked or unknown key is
// API_KEY_INVALID.
func (s *Server) authMerchant(c *call) error {
	key := c.r.Header.Get("X-Api-Key")
	if key == "" {
		return newError(CodeAPIKeyMissing, "Missing X-Api-Key header")
	}
	if err := s.authBlocked(c.r); err != nil {
		return err
	}
	invalid := func() error {
		s.authFailed(c.r)
		return newError(CodeAPIKeyInvalid, "Invalid or inactive API key")
	}
	if len(key) > 256 {
		return invalid()
	}
	k, err := s.views.APIKey(keyring.HashAPIKey(key))
	if errors.Is(err, projections.ErrNotFound) {
		return invalid()
	}
	if err != nil {
		return fmt.Errorf("look up api key: %w", err)
	}
	if k.Revoked || k.MerchantID == "" {
		return invalid()
	}
	c.merchantID, c.keyID = k.MerchantID, k.KeyID
	return nil
}

// authAdmin checks the bearer token against Config.AdminTokenHash in
// constant time.
func (s *Server) authAdmin(w http.ResponseWriter, r *http.Request) error {
	h := r.Header.Get("Authorization")
	if h == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="payledger-admin"`)
		return newError(CodeAdminTokenMissing, "Missing Authorization: Bearer <admin token> header")
	}
	if err := s.authBlocked(r); err != nil {
		return err
	}
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" || s.cfg.AdminTokenHash == "" ||
		!keyring.EqualHash(keyring.HashAPIKey(token), strings.ToLower(s.cfg.AdminTokenHash)) {
		s.authFailed(r)
		w.Header().Set("WWW-Authenticate", `Bearer realm="payledger-admin", error="invalid_token"`)
		return newError(CodeAdminTokenInvalid, "Invalid admin token")
	}
	return nil
}

// authBlocked refuses a request that carries credentials from a client
// address whose failed authentications are over Config.AuthFailRate, before
// the credentials are looked at: a guess from there learns nothing.
func (s *Server) authBlocked(r *http.Request) error {
	if s.authFails.Empty() {
		return nil // no address has failed: not even the address to work out
	}
	client, _ := s.clientAddr(r)
	if wait, blocked := s.authFails.Blocked(client, s.now()); blocked {
		return rateLimited(wait, "Too many failed authentications from this address")
	}
	return nil
}

// authFailed counts a wrong API key or admin token against the client's
// address, and logs (at most about once a second across addresses) when an
// address has used up its failures: the client, and the trusted proxy that
// forwarded the request if one did.
func (s *Server) authFailed(r *http.Request) {
	client, peer := s.clientAddr(r)
	now := s.now()
	if s.authFails.Charge(client, now) {
		if _, ok := s.authLogLimit.Allow("", now); ok {
			attrs := []any{"request_id", requestID(r.Context()), "client", client}
			if peer != "" {
				attrs = append(attrs, "proxy", peer)
			}
			s.log.WarnContext(r.Context(), "failed authentications limited",
				append(attrs, "method", r.Method, "path", r.URL.Path)...)
		}
	}
}

// run calls the handler and writes its answer.
func (s *Server) run(w http.ResponseWriter, c *call, h handler) {
	status, body, err := h(c)
	if ferr := s.store.Failed(); ferr != nil {
		// The log failed while the handler read it: what it read may be
		// the unconfirmed commit (see unlessFailed), and a refusal decided
		// on it (a payment refused because the views show a cancel the
		// restart may drop) is as unconfirmed as a success.
		err = ferr
	}
	if err != nil {
		s.writeError(w, c.r, err)
		return
	}
	if c.replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, status, body)
}

// writeJSON writes v as the JSON body with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Bodies are plain structs of this package: a failure is a bug.
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"successful":false,"request_id":"","error":{"code":"INTERNAL_ERROR","message":"response encoding failed","details":[]}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
