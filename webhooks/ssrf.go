package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/payledger/payledger/internal/publicaddr"
)

// CheckAddr returns nil for a public unicast address and a *RefusedError
// (ErrRefused) for any other, saying why (publicaddr.Reason): loopback,
// private, link-local, CGNAT, multicast, unspecified and the other
// non-public ranges, and an IPv6 address that embeds an IPv4 address it
// would refuse.
func CheckAddr(a netip.Addr) error {
	if reason := publicaddr.Reason(a); reason != "" {
		return &RefusedError{Target: a.Unmap().WithZone("").String(), Reason: reason}
	}
	return nil
}

// dialControl refuses, at connect time, any address CheckAddr refuses:
// after name resolution, for every connection, redirects included, so DNS
// rebinding cannot slip a private address past a check made earlier.
func dialControl(_ context.Context, network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &RefusedError{Target: address, Reason: "unparsable address"}
	}
	return CheckAddr(ap.Addr())
}

// checkScheme refuses anything but https (and http with allowPrivate).
func checkScheme(u *url.URL, allowPrivate bool) error {
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if allowPrivate {
			return nil
		}
		return &RefusedError{Target: redacted(u), Reason: "plain http (https required)"}
	default:
		return &RefusedError{Target: redacted(u), Reason: "scheme " + u.Scheme}
	}
}

// newClient is the HTTP client of attempts: no proxy (a proxy would make
// the dial check see the proxy's address, not the target's), the dial
// check unless AllowPrivate, and redirects limited and re-checked.
func newClient(cfg Config) *http.Client {
	if cfg.AllowPrivate {
		return newClientControl(cfg, nil)
	}
	return newClientControl(cfg, dialControl)
}

func newClientControl(cfg Config, control func(ctx context.Context, network, address string, c syscall.RawConn) error) *http.Client {
	dialer := &net.Dialer{Timeout: cfg.AttemptTimeout, KeepAlive: 30 * time.Second, ControlContext: control}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       cfg.TLSConfig,
		TLSHandshakeTimeout:   cfg.AttemptTimeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          cfg.Concurrency * 2,
		MaxIdleConnsPerHost:   cfg.PerHostConcurrency,
		MaxConnsPerHost:       cfg.PerHostConcurrency * 2,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.AttemptTimeout,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > cfg.MaxRedirects {
				return fmt.Errorf("%w: more than %d redirects", errRedirect, cfg.MaxRedirects)
			}
			if req.Method != via[0].Method {
				// 301, 302 and 303 turn a POST into a bodiless GET: the
				// receiver would see no webhook and answer 2xx.
				return fmt.Errorf("%w: %d would change %s into %s (use 307 or 308)", errRedirect, req.Response.StatusCode, via[0].Method, req.Method)
			}
			if req.Method == http.MethodGet && !strings.EqualFold(req.URL.Host, via[0].URL.Host) {
				// A status_url call (the only GET) goes to its own host:
				// the status it reports, and its signature, are for the
				// merchant, not for whichever host a redirect names.
				return fmt.Errorf("%w: %d to another host (%s); a status_url call follows redirects within its own host only", errRedirect, req.Response.StatusCode, req.URL.Host)
			}
			// The previous hop's URL, query and all, is nobody else's business.
			req.Header.Del("Referer")
			return checkScheme(req.URL, cfg.AllowPrivate)
		},
	}
}

var errRedirect = errors.New("redirect not followed")
