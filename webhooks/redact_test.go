package webhooks

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payledger/payledger/commands"
	"github.com/payledger/payledger/internal/syncbuf"
)

// A webhook URL's query (where merchants put tokens; the API refuses
// userinfo) reaches neither the log nor the attempts' errors that the deliveries API
// shows, nor OnAttempt: for a target refused at connect time (loopback)
// and one refused for its scheme (plain http). Scheme, host and path
// stay, to say where.
func TestAttemptErrorsHideURLSecrets(t *testing.T) {
	e := newEnv(t)
	addr := freeAddr(t)
	e.merchant("dial", "https://"+addr+"/hook?token=HOOKTOKEN-s3cr3t")
	e.merchant("plain", "http://vm.example/plain?token=HOOKTOKEN-s3cr3t#frag-s3cr3t")
	var logs syncbuf.Buffer
	var mu sync.Mutex
	var attemptErrs []string
	cfg := e.config()
	cfg.AllowPrivate = false
	cfg.MaxAttempts = 2
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	cfg.OnAttempt = func(a AttemptEvent) {
		if a.Err != nil {
			mu.Lock()
			attemptErrs = append(attemptErrs, a.Err.Error())
			mu.Unlock()
		}
	}
	d, stop := e.dispatcher("", cfg)
	invs := map[string]string{"dial": e.invoice("dial", ""), "plain": e.invoice("plain", "")}
	var dels []Delivery
	for m, inv := range invs {
		waitFor(t, 10*time.Second, func() error {
			return statusIs(d, m, commands.TypeInvoiceCreated, inv, StatusFailed)
		})
		del, err := d.Delivery(m, mustFind(t, d, m, commands.TypeInvoiceCreated).ID)
		if err != nil {
			t.Fatal(err)
		}
		dels = append(dels, del)
	}
	stop()

	out := logs.String()
	if n := strings.Count(out, "webhook target refused"); n < 3 {
		t.Fatalf("%d refusals logged, want 3 (2 attempts at loopback, 1 at plain http):\n%s", n, out)
	}
	if !strings.Contains(out, "http://vm.example/plain") {
		t.Errorf("the plain http refusal does not say where:\n%s", out)
	}
	if strings.Contains(out, "s3cr3t") {
		t.Errorf("the log holds a URL's secret:\n%s", out)
	}
	for _, del := range dels {
		if len(del.Attempts) == 0 {
			t.Errorf("delivery %s: no attempts", del.ID)
		}
		for _, a := range del.Attempts {
			if a.Error == "" || strings.Contains(a.Error, "s3cr3t") {
				t.Errorf("delivery of %s, attempt %d: error %q", del.MerchantID, a.N, a.Error)
			}
		}
		if strings.Contains(del.LastError, "s3cr3t") {
			t.Errorf("delivery of %s: last_error %q", del.MerchantID, del.LastError)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(attemptErrs) == 0 {
		t.Error("OnAttempt saw no error")
	}
	for _, s := range attemptErrs {
		if strings.Contains(s, "s3cr3t") {
			t.Errorf("OnAttempt's error: %q", s)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://hook.example/in?token=s3cr3t":                 "https://hook.example/in",
		"https://user:s3cr3t@hook.example:8443/a/b?x=1#s3cr3t": "https://hook.example:8443/a/b",
		"https://s3cr3t@hook.example":                          "https://hook.example",
		"https://hook.example/%zz?token=s3cr3t":                "https://hook.example/%zz",     // does not parse
		"https://u:s3cr3t@hook.example/%zz#s3cr3t":             "https://hook.example/%zz",     // nor this
		"https://hook.example/a@b/%zz":                         "https://hook.example/a@b/%zz", // '@' in the path, not userinfo
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// A redirect that the policy refuses names its Location in net/http's
// error; redactErr keeps what the error is and drops that URL's
// credentials, in the error and in what an attempt records of it.
func TestRedactErrRedirect(t *testing.T) {
	rc := newReceiver(t, false, func(r *http.Request, _ int) (int, http.Header) {
		return http.StatusTemporaryRedirect, http.Header{"Location": {"ftp://user:pw-s3cr3t@files.example/in?token=s3cr3t#s3cr3t"}}
	})
	cfg, _ := Config{Keys: noKeys{}, AllowPrivate: true, AttemptTimeout: 2 * time.Second}.withDefaults()
	req, _ := http.NewRequest(http.MethodPost, rc.URL()+"?token=s3cr3t", strings.NewReader("{}"))
	req.GetBody = func() (io_ReadCloser, error) { return io_NopCloser(strings.NewReader("{}")), nil }
	resp, err := newClient(cfg).Do(req)
	if err == nil {
		resp.Body.Close()
	}
	err = redactErr(err)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "ftp://files.example/in") {
		t.Fatalf("redirect to ftp: %v", err)
	}
	for _, s := range []string{err.Error(), attemptError(err, time.Second), fmt.Sprintf("%v", err)} {
		if strings.Contains(s, "s3cr3t") {
			t.Errorf("a URL's secret in %q", s)
		}
	}
}
