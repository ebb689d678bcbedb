package webhooks

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
)

// redactURL is raw without the parts where merchants put credentials
// (userinfo, query, fragment): scheme, host and path, which say where.
// A URL that does not parse is cut the same way, as text.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return redacted(u)
	}
	s, _, _ := strings.Cut(raw, "?")
	s, _, _ = strings.Cut(s, "#")
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		authority := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			authority = rest[:i]
		}
		if at := strings.LastIndexByte(authority, '@'); at >= 0 {
			rest = rest[at+1:]
		}
		s = scheme + "://" + rest
	}
	return s
}

func redacted(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return r.String()
}

// redactErr is err, for a log line or an attempt's recorded error, with
// the URL of the *url.Error it holds (net/http's errors name the request's
// URL, query and all) redacted by redactURL. It wraps err: errors.Is and
// errors.As see what err holds.
func redactErr(err error) error {
	var ue *url.Error
	if err == nil || !errors.As(err, &ue) {
		return err
	}
	msg := err.Error()
	if ue.URL != "" {
		msg = strings.ReplaceAll(msg, strconv.Quote(ue.URL), strconv.Quote(redactURL(ue.URL)))
		msg = strings.ReplaceAll(msg, ue.URL, redactURL(ue.URL))
	}
	return &redactedError{msg: msg, err: err}
}

// redactedError is an error whose message leaves out a URL's credentials.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
