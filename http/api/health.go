package api

import (
	_ "embed"
	"errors"
	"fmt"
	"net/http"

	"go.etcd.io/bbolt"
)

//go:embed openapi.json
var openAPIDoc []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openAPIDoc)
}

type healthBody struct {
	Status string `json:"status"`
	Head   uint64 `json:"head,omitempty"`
}

// healthz answers while the process serves HTTP.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, healthBody{Status: "ok"})
}

// readyz answers 200 when the log is open, writable and not failed, the
// idempotency store answers, and Config.Ready (if any) passes; else 503.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if err := s.ready(r); err != nil {
		s.log.WarnContext(r.Context(), "not ready", "request_id", requestID(r.Context()), "err", err)
		e := newError(CodeUnavailable, "Not ready: "+err.Error())
		e.RetryAfter = unavailableRetryAfter
		s.writeError(w, r, e)
		return
	}
	writeJSON(w, http.StatusOK, healthBody{Status: "ready", Head: s.store.Head().Seq})
}

func (s *Server) ready(r *http.Request) error {
	db := s.store.DB()
	if db == nil {
		return errors.New("log is not open")
	}
	if db.IsReadOnly() {
		return errors.New("log is open read-only")
	}
	if err := s.store.Failed(); err != nil {
		return err
	}
	if err := db.View(func(*bbolt.Tx) error { return nil }); err != nil {
		return fmt.Errorf("log: %w", err)
	}
	if err := s.idem.ping(); err != nil {
		return fmt.Errorf("idempotency store: %w", err)
	}
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(r.Context()); err != nil {
			return err
		}
	}
	return nil
}
