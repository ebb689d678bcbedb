package pages

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"
)

// Anti-forgery tokens: a signed double-submit cookie. Every page sets (or
// keeps) a random nonce in a cookie; each form carries
// HMAC(key, nonce, scope), where scope names the invoice or widget. A POST is
// accepted only if its token matches its own cookie's nonce, so a page on
// another site can neither read a token nor forge one, and a token taken from
// one invoice's page is useless on another's.
const (
	csrfCookie = "pl_csrf"
	csrfField  = "csrf_token"
	nonceBytes = 32
)

type csrf struct {
	key []byte
}

// nonce returns the request's nonce, setting a new cookie when the request
// has none (or a malformed one).
func (c csrf) nonce(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(csrfCookie); err == nil && validNonce(ck.Value) {
		return ck.Value
	}
	b := make([]byte, nonceBytes)
	rand.Read(b) // never fails (crypto/rand panics rather than return an error)
	n := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{
		Name:     csrfCookie,
		Value:    n,
		Path:     "/",
		HttpOnly: true,
		Secure:   isHTTPS(r),
		SameSite: http.SameSiteLaxMode,
	})
	return n
}

// token is the form token for a nonce and a scope.
func (c csrf) token(nonce, scope string) string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(nonce))
	m.Write([]byte{0})
	m.Write([]byte(scope))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// check reports whether the POST's form token matches its cookie and scope.
// The form must have been parsed.
func (c csrf) check(r *http.Request, scope string) bool {
	ck, err := r.Cookie(csrfCookie)
	if err != nil || !validNonce(ck.Value) {
		return false
	}
	got := r.PostFormValue(csrfField)
	want := c.token(ck.Value, scope)
	return hmac.Equal([]byte(got), []byte(want))
}

// Form tokens make a widget form idempotent: each rendering of the form
// carries a random token of its own (field form_token), and the invoice and
// payment its POST creates claim request keys derived from it (the commands'
// RequestKey, as an Idempotency-Key does for the API). The same form sent
// again, by a double click or a browser resending it, lands on the invoice
// the first sending made; a form rendered anew makes a new invoice. The keys
// also hash the cookie's nonce, so a token copied into another browser
// leads nowhere, and the customer's entries, so the form sent back with
// another amount or method makes a new invoice rather than the old one.
const (
	formField      = "form_token"
	formTokenBytes = 16
)

// newFormToken is a fresh form token.
func newFormToken() string {
	b := make([]byte, formTokenBytes)
	rand.Read(b) // never fails (see nonce)
	return base64.RawURLEncoding.EncodeToString(b)
}

// formKeys returns the request keys of the invoice and the payment a widget
// form creates, or "" (no claim: the form is not idempotent) when the POST
// carries no well-formed form token, as a page rendered before form tokens
// existed does. The form must have been parsed and its CSRF token checked.
func formKeys(r *http.Request, widgetID, method, amount string) (invoice, payment string) {
	tok := r.PostFormValue(formField)
	ck, err := r.Cookie(csrfCookie)
	if err != nil || len(tok) != base64.RawURLEncoding.EncodedLen(formTokenBytes) {
		return "", ""
	}
	if _, err := base64.RawURLEncoding.DecodeString(tok); err != nil {
		return "", ""
	}
	key := func(what string) string {
		h := sha256.New()
		for _, s := range []string{"pages/widget-form", what, ck.Value, tok, widgetID, method, amount} {
			h.Write([]byte(s))
			h.Write([]byte{0})
		}
		return hex.EncodeToString(h.Sum(nil))
	}
	return key("invoice"), key("payment")
}

func validNonce(s string) bool {
	if len(s) != base64.RawURLEncoding.EncodedLen(nonceBytes) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

// isHTTPS reports whether the customer reached us over TLS, directly or
// through a proxy that says so; it only decides the cookie's Secure flag.
func isHTTPS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}
