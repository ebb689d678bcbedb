package api

import (
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"strings"

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

// CheckError is a failed readiness check, for Config.Ready to return
// (several with errors.Join): /readyz names Check and Reason in its body, and
// logs Err, which may say anything, with the request id. An error from
// Config.Ready that is not one is answered as check "ready", reason "failed".
type CheckError struct {
	// Check names what was checked ("relay", "webhooks"): stable, for
	// monitors to match.
	Check string
	// Reason is why it failed ("stopped", "stalled"): stable too.
	Reason string
	// Err is the failure in full, for the log only.
	Err error
}

func (e *CheckError) Error() string { return e.Err.Error() }
func (e *CheckError) Unwrap() error { return e.Err }

// The checks of /readyz and their reasons: stable words, never an error's
// text (which may carry file paths and internal detail), in the 503's
// details as {"path": check, "type": reason, "message"}.
var readyMessages = map[string]string{
	"log/not_open":            "The event log is not open",
	"log/read_only":           "The event log is open read-only",
	"log/failed":              "The event log failed to confirm a commit; the process must be restarted",
	"idempotency/unavailable": "The idempotency store cannot be read",
	"views/damaged":           "A page of the views in the event log's file is damaged; restore the data directory from a backup",
	"ready/failed":            "A readiness check of the node failed",
}

// readyz answers 200 when the log is open, writable and not failed, no read
// of the views has met a damaged page, the idempotency store answers, and
// Config.Ready (if any) passes; else 503
// SERVICE_UNAVAILABLE with one detail per failed check, naming the check and
// a stable reason. The errors themselves go to the log, with the request id.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if failed, err := s.ready(r); err != nil {
		rid := requestID(r.Context())
		names := make([]string, len(failed))
		for i, d := range failed {
			names[i] = d.Path
		}
		s.log.WarnContext(r.Context(), "not ready", "request_id", rid, "checks", strings.Join(names, ","), "err", err)
		e := newError(CodeUnavailable, "Not ready: "+strings.Join(names, ", "), failed...)
		e.RetryAfter = unavailableRetryAfter
		s.writeError(w, r, e)
		return
	}
	writeJSON(w, http.StatusOK, healthBody{Status: "ready", Head: s.store.Head().Seq})
}

// ready runs every check: the details of those that failed, for the body,
// and their errors joined, for the log.
func (s *Server) ready(r *http.Request) (failed []Detail, err error) {
	var errs []error
	fail := func(check, reason string, err error) {
		msg := readyMessages[check+"/"+reason]
		if msg == "" {
			msg = "The " + check + " check failed: " + reason
		}
		failed = append(failed, Detail{Path: check, Type: reason, Message: msg})
		errs = append(errs, err)
	}
	db := s.store.DB()
	switch {
	case db == nil:
		fail("log", "not_open", errors.New("log: not open"))
	case db.IsReadOnly():
		fail("log", "read_only", errors.New("log: open read-only"))
	default:
		if err := s.store.Failed(); err != nil {
			fail("log", "failed", fmt.Errorf("log: %w", err))
		} else if err := db.View(func(*bbolt.Tx) error { return nil }); err != nil {
			fail("log", "not_open", fmt.Errorf("log: %w", err))
		}
	}
	if err := s.views.Damaged(); err != nil {
		// Sticky: only a restored file mends it, not a restart.
		fail("views", "damaged", fmt.Errorf("views: %w", err))
	}
	if err := s.idem.ping(); err != nil {
		fail("idempotency", "unavailable", fmt.Errorf("idempotency store: %w", err))
	}
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(r.Context()); err != nil {
			for _, e := range readyErrors(err) {
				var ce *CheckError
				if errors.As(e, &ce) && ce.Check != "" && ce.Reason != "" {
					fail(ce.Check, ce.Reason, e)
				} else {
					fail("ready", "failed", e)
				}
			}
		}
	}
	return failed, errors.Join(errs...)
}

// readyErrors splits an error of Config.Ready into the failures it joins.
func readyErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok { //nolint:errorlint // splitting a join, not matching
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, readyErrors(e)...)
		}
		return out
	}
	return []error{err}
}
