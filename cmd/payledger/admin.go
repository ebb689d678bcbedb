package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func init() {
	register(&command{name: "admin", summary: "operator commands against a running server's admin API", run: runAdmin})
}

const adminUsage = `usage: payledger admin [--server URL] [--admin-token TOKEN] <command> [args] [flags]

  merchant create --name NAME [--webhook-url URL] [--commission 2] [--lifetime SECONDS]
                  [--methods a,b] [--invoicing true|false]
  merchant list [--page N] [--page-size N]
                                  every merchant, by id, as one
                                  {"merchants": [...]}: the pages fetched in
                                  turn; with --page or --page-size, that one
                                  page as the server answers it, with
                                  page_details
  merchant get ID
  merchant update ID [--name] [--webhook-url] [--commission] [--lifetime] [--methods]
                  [--invoicing true|false] [--disabled true|false]
  key issue MERCHANT_ID [--label LABEL]
  key revoke MERCHANT_ID KEY_ID
  secret rotate MERCHANT_ID
  rate set CURRENCY RATE          e.g. rate set UAH 41.50
  rate list
  gateway list                    the gateways, enabled or not, and their methods
  gateway enable|disable ID       route new payments to it, or no longer
                                  ("gateways" works as well as "gateway")
  payment get ID
  payment confirm|reject|fail ID [--reason TEXT]
  payment process ID [--paid-amount AMOUNT]
  payment receipt ID --paid-amount AMOUNT [--reason TEXT]
                                  money received for a CANCELLED, REJECTED
                                  or ERROR payment, or again for a PROCESSED
                                  one: held in the merchant's suspense
                                  account, the status unchanged

The token is --admin-token, else the admin.token file that 'payledger serve'
wrote in --data-dir. Answers are printed as JSON; a refusal exits 1.

Every POST carries an Idempotency-Key (--idempotency-key, else a random one
for this run). A request that gets no answer (a lost connection, a timeout)
or a transient one (5xx, 429, 409 with Retry-After) is sent again with the
same key, up to 4 times in all: the server acts once and answers every copy
with its first answer. Refusals (4xx) are not retried.

Flags, before, between or after the arguments:
`

// adminClient calls the admin API.
type adminClient struct {
	server   string
	token    string
	idemKey  string // Idempotency-Key of this run's POSTs
	http     *http.Client
	stderr   io.Writer
	attempts int                                  // per request, the first included
	pause    func(time.Duration) <-chan time.Time // between attempts (time.After)
}

// adminAttempts is how many times a request is sent at most.
const adminAttempts = 4

// adminFlags are the flags every admin command takes, wherever they stand.
type adminFlags struct {
	server, token, dataDir string
}

func (a *adminFlags) register(fs *flagSet) {
	fs.StringVar(&a.server, "server", "http://127.0.0.1:8080", "server URL")
	fs.StringVar(&a.token, "admin-token", "", "admin token")
	fs.StringVar(&a.dataDir, "data-dir", "./data", "where serve wrote admin.token, read when no token is given")
	fs.bindEnv(map[string]string{"server": "PAYLEDGER_SERVER", "admin-token": "PAYLEDGER_ADMIN_TOKEN", "data-dir": "PAYLEDGER_DATA_DIR"})
}

// parseInterleaved parses flags that may stand before, between or after
// the positional arguments, and returns the positionals. A negative number
// ("-1") is a positional, so the server, not the flag parser, refuses it.
func parseInterleaved(fs *flagSet, args []string) ([]string, error) {
	if err := fs.applyEnv(); err != nil {
		return nil, err
	}
	var pos []string
	for len(args) > 0 {
		a := args[0]
		switch {
		case a == "--":
			return append(pos, args[1:]...), nil
		case a == "-" || !strings.HasPrefix(a, "-") || isNumber(a[1:]):
			pos = append(pos, a)
			args = args[1:]
			continue
		}
		n := 1
		if name := strings.TrimLeft(a, "-"); !strings.Contains(name, "=") {
			if f := fs.Lookup(name); f != nil && !isBoolFlag(f) {
				n = 2
			}
		}
		n = min(n, len(args))
		if err := fs.Parse(args[:n]); err != nil {
			return nil, usageError(err)
		}
		args = args[n:]
	}
	return pos, nil
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil && s != "" && s[0] >= '0' && s[0] <= '9'
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("admin", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, adminUsage)
		fs.PrintDefaults()
	}
	var g adminFlags
	g.register(fs)
	// Command flags, all known up front so they can stand anywhere.
	var (
		name, webhook, commission, methods, label, reason, paid string
		lifetime, page, pageSize                                int64
		invoicing, disabled                                     optBool
	)
	fs.StringVar(&name, "name", "", "merchant name")
	fs.StringVar(&webhook, "webhook-url", "", "merchant default webhook URL")
	fs.StringVar(&commission, "commission", "", "commission percent, e.g. 2")
	fs.Int64Var(&lifetime, "lifetime", 0, "invoice lifetime in seconds")
	fs.StringVar(&methods, "methods", "", "enabled method codes, comma separated")
	fs.Var(&invoicing, "invoicing", "invoicing switch: true or false")
	fs.Var(&disabled, "disabled", "suspend the merchant: true or false")
	fs.StringVar(&label, "label", "", "API key label")
	fs.StringVar(&reason, "reason", "", "reason for a payment status change or a held receipt")
	fs.Int64Var(&page, "page", 1, "merchant list: the page, from 1")
	fs.Int64Var(&pageSize, "page-size", 20, "merchant list: merchants per page, 1 to 100")
	fs.StringVar(&paid, "paid-amount", "", "amount received (process: default the amount due; receipt: required)")
	idemKey := fs.String("idempotency-key", "", "Idempotency-Key of the POST (default: a random one for this run); the same key and request get the first answer again")
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fs.Usage()
		if len(args) == 0 {
			return &exitError{code: 2, err: errors.New("no admin command given")}
		}
		return nil
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return &exitError{code: 2, err: errors.New("no admin command given")}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	token := g.token
	if token == "" {
		b, err := os.ReadFile(filepath.Join(g.dataDir, adminTokenFile))
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("no admin token: give --admin-token or PAYLEDGER_ADMIN_TOKEN (%v)", err)}
		}
		token = strings.TrimSpace(string(b))
	}
	key := *idemKey
	if key == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		key = "cli-" + hex.EncodeToString(b[:])
	}
	c := &adminClient{server: strings.TrimRight(g.server, "/"), token: token, idemKey: key,
		http: &http.Client{Timeout: 30 * time.Second}, stderr: stderr, attempts: adminAttempts, pause: time.After}

	settings := func() map[string]any {
		body := map[string]any{}
		if set["name"] {
			body["name"] = name
		}
		if set["webhook-url"] {
			body["webhook_url"] = webhook
		}
		if set["commission"] {
			body["commission_percent"] = commission
		}
		if set["lifetime"] {
			body["invoice_lifetime_seconds"] = lifetime
		}
		if set["methods"] {
			list := []string{}
			for _, m := range strings.Split(methods, ",") {
				if m = strings.TrimSpace(m); m != "" {
					list = append(list, m)
				}
			}
			body["methods"] = list
		}
		if invoicing.set {
			body["invoicing_enabled"] = invoicing.v
		}
		return body
	}
	need := func(n int, usage string) error {
		if len(pos) != n {
			return &exitError{code: 2, err: fmt.Errorf("usage: payledger admin %s", usage)}
		}
		return nil
	}
	esc := url.PathEscape
	if len(pos) > 0 && pos[0] == "gateways" {
		pos[0] = "gateway" // "gateways list" reads as well: both spellings
	}
	cmd := strings.Join(pos[:min(2, len(pos))], " ")
	switch cmd {
	case "merchant create":
		if err := need(2, "merchant create --name NAME [flags]"); err != nil {
			return err
		}
		if !set["name"] {
			return &exitError{code: 2, err: errors.New("merchant create needs --name")}
		}
		return c.call(ctx, stdout, "POST", "/admin/v1/merchants", settings())
	case "merchant list":
		if err := need(2, "merchant list [--page N] [--page-size N]"); err != nil {
			return err
		}
		if set["page"] || set["page-size"] {
			q := url.Values{"page": {strconv.FormatInt(page, 10)}, "page_size": {strconv.FormatInt(pageSize, 10)}}
			return c.call(ctx, stdout, "GET", "/admin/v1/merchants?"+q.Encode(), nil)
		}
		return c.listMerchants(ctx, stdout)
	case "merchant get":
		if err := need(3, "merchant get ID"); err != nil {
			return err
		}
		return c.call(ctx, stdout, "GET", "/admin/v1/merchants/"+esc(pos[2]), nil)
	case "merchant update":
		if err := need(3, "merchant update ID [flags]"); err != nil {
			return err
		}
		body := settings()
		if disabled.set {
			body["disabled"] = disabled.v
		}
		return c.call(ctx, stdout, "PATCH", "/admin/v1/merchants/"+esc(pos[2]), body)
	case "key issue":
		if err := need(3, "key issue MERCHANT_ID [--label LABEL]"); err != nil {
			return err
		}
		return c.call(ctx, stdout, "POST", "/admin/v1/merchants/"+esc(pos[2])+"/keys", map[string]any{"label": label})
	case "key revoke":
		if err := need(4, "key revoke MERCHANT_ID KEY_ID"); err != nil {
			return err
		}
		return c.call(ctx, stdout, "DELETE", "/admin/v1/merchants/"+esc(pos[2])+"/keys/"+esc(pos[3]), nil)
	case "secret rotate":
		if err := need(3, "secret rotate MERCHANT_ID"); err != nil {
			return err
		}
		return c.call(ctx, stdout, "POST", "/admin/v1/merchants/"+esc(pos[2])+"/secret/rotate", nil)
	case "rate set":
		if err := need(4, "rate set CURRENCY RATE"); err != nil {
			return err
		}
		return c.call(ctx, stdout, "POST", "/admin/v1/rates", map[string]any{"currency": pos[2], "rate": pos[3]})
	case "rate list":
		if err := need(2, "rate list"); err != nil {
			return err
		}
		return c.call(ctx, stdout, "GET", "/admin/v1/rates", nil)
	case "gateway list":
		if err := need(2, "gateway list"); err != nil {
			return err
		}
		return c.call(ctx, stdout, "GET", "/admin/v1/gateways", nil)
	case "gateway enable", "gateway disable":
		if err := need(3, "gateway "+pos[1]+" ID"); err != nil {
			return err
		}
		return c.call(ctx, stdout, "POST", "/admin/v1/gateways/"+esc(pos[2])+"/"+pos[1], nil)
	case "payment get":
		if err := need(3, "payment get ID"); err != nil {
			return err
		}
		return c.call(ctx, stdout, "GET", "/admin/v1/payments/"+esc(pos[2]), nil)
	case "payment confirm", "payment reject", "payment fail":
		if err := need(3, pos[0]+" "+pos[1]+" ID [--reason TEXT]"); err != nil {
			return err
		}
		var body map[string]any
		if set["reason"] {
			body = map[string]any{"reason": reason}
		}
		return c.call(ctx, stdout, "POST", "/admin/v1/payments/"+esc(pos[2])+"/"+pos[1], body)
	case "payment process":
		if err := need(3, "payment process ID [--paid-amount AMOUNT]"); err != nil {
			return err
		}
		var body map[string]any
		if set["paid-amount"] {
			body = map[string]any{"paid_amount": paid}
		}
		return c.call(ctx, stdout, "POST", "/admin/v1/payments/"+esc(pos[2])+"/process", body)
	case "payment receipt":
		const usage = "payment receipt ID --paid-amount AMOUNT [--reason TEXT]"
		if err := need(3, usage); err != nil {
			return err
		}
		if !set["paid-amount"] {
			return &exitError{code: 2, err: fmt.Errorf("usage: payledger admin %s: --paid-amount is required", usage)}
		}
		body := map[string]any{"paid_amount": paid}
		if set["reason"] {
			body["reason"] = reason
		}
		return c.call(ctx, stdout, "POST", "/admin/v1/payments/"+esc(pos[2])+"/receipt", body)
	}
	fs.Usage()
	return &exitError{code: 2, err: fmt.Errorf("unknown admin command %q", strings.Join(pos, " "))}
}

// call sends a request, again while it gets no answer or a transient one
// (see adminUsage), and prints the JSON answer; a non-2xx answer is an error
// naming the server's code and message.
func (c *adminClient) call(ctx context.Context, stdout io.Writer, method, path string, body map[string]any) error {
	raw, err := c.fetch(ctx, method, path, body)
	if err != nil {
		return err
	}
	return printJSON(stdout, raw)
}

// listMerchants prints every merchant, by id, as {"merchants": [...]}
// (what GET /admin/v1/merchants answered before it paged): the pages,
// 100 merchants each, fetched in turn up to the last the latest answer
// counts. A merchant registered meanwhile may be left out; none is printed
// twice. A server that answers no page_details (one before paging) is
// asked once.
func (c *adminClient) listMerchants(ctx context.Context, stdout io.Writer) error {
	all := []json.RawMessage{}
	seen := map[string]bool{}
	for page := 1; ; page++ {
		path := fmt.Sprintf("/admin/v1/merchants?page=%d&page_size=100", page)
		raw, err := c.fetch(ctx, http.MethodGet, path, nil)
		if err != nil {
			return err
		}
		var p struct {
			Merchants   []json.RawMessage `json:"merchants"`
			PageDetails struct {
				TotalPages int `json:"total_pages"`
			} `json:"page_details"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return fmt.Errorf("GET %s: %w", path, err)
		}
		for _, m := range p.Merchants {
			var id struct {
				ID string `json:"id"` // merchant_id too, but a server before it answers only id
			}
			if err := json.Unmarshal(m, &id); err != nil {
				return fmt.Errorf("GET %s: %w", path, err)
			}
			if !seen[id.ID] {
				seen[id.ID] = true
				all = append(all, m)
			}
		}
		if page >= p.PageDetails.TotalPages || len(p.Merchants) == 0 {
			break
		}
	}
	raw, err := json.Marshal(map[string]any{"merchants": all})
	if err != nil {
		return err
	}
	return printJSON(stdout, raw)
}

// fetch sends a request as call does and returns a 2xx answer's body.
func (c *adminClient) fetch(ctx context.Context, method, path string, body map[string]any) ([]byte, error) {
	var payload []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		payload = b
	}
	var (
		status int
		raw    []byte
	)
	for attempt := 1; ; attempt++ {
		var (
			transient bool
			wait      time.Duration
			err       error
		)
		status, raw, transient, wait, err = c.send(ctx, method, path, payload)
		if err == nil && !transient {
			break
		}
		if attempt >= c.attempts || ctx.Err() != nil {
			if err != nil && method == http.MethodPost {
				return nil, fmt.Errorf("%w (Idempotency-Key %s: give it with --idempotency-key to try again safely)", err, c.idemKey)
			}
			if err != nil {
				return nil, err
			}
			break // the last transient answer is the answer
		}
		if wait == 0 {
			wait = 250 * time.Millisecond << (attempt - 1)
		}
		why := fmt.Sprintf("%d", status)
		if err != nil {
			why = err.Error()
		}
		fmt.Fprintf(c.stderr, "payledger admin: %s %s: %s; again in %v\n", method, path, why, wait)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.pause(wait):
		}
	}
	if status/100 != 2 {
		var e struct {
			RequestID string `json:"request_id"`
			Error     struct {
				Code    string `json:"code"`
				Message string `json:"message"`
				Details []struct {
					Path    string `json:"path"`
					Message string `json:"message"`
				} `json:"details"`
			} `json:"error"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error.Code == "" {
			return nil, fmt.Errorf("%s %s: %d %s: %s", method, path, status, http.StatusText(status), strings.TrimSpace(string(raw)))
		}
		msg := fmt.Sprintf("%s %s: %d %s: %s", method, path, status, e.Error.Code, e.Error.Message)
		for _, d := range e.Error.Details {
			msg += fmt.Sprintf("\n  %s: %s", d.Path, d.Message)
		}
		if e.RequestID != "" {
			msg += " (request " + e.RequestID + ")"
		}
		return nil, errors.New(msg)
	}
	return raw, nil
}

// printJSON prints a JSON answer indented (as it came if it is not JSON).
func printJSON(stdout io.Writer, raw []byte) error {
	var pretty bytes.Buffer
	if json.Indent(&pretty, raw, "", "  ") != nil {
		_, err := stdout.Write(raw)
		return err
	}
	pretty.WriteByte('\n')
	_, err := stdout.Write(pretty.Bytes())
	return err
}

// send makes one attempt. transient says the answer asks for another:
// 5xx, 429, or 409 with Retry-After (a request with the same key under
// way); wait is its Retry-After (at most 10 s), or 0 for the caller's
// back-off, which a transport error (err) gets too.
func (c *adminClient) send(ctx context.Context, method, path string, payload []byte) (status int, raw []byte, transient bool, wait time.Duration, err error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, rd)
	if err != nil {
		return 0, nil, false, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if method == http.MethodPost {
		req.Header.Set("Idempotency-Key", c.idemKey)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return 0, nil, false, 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	raw, err = io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return 0, nil, false, 0, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	secs, serr := strconv.Atoi(res.Header.Get("Retry-After"))
	hasRetryAfter := serr == nil && secs >= 0
	if hasRetryAfter {
		wait = max(min(time.Duration(secs)*time.Second, 10*time.Second), 100*time.Millisecond)
	}
	transient = res.StatusCode >= 500 && res.StatusCode != http.StatusNotImplemented ||
		res.StatusCode == http.StatusTooManyRequests ||
		res.StatusCode == http.StatusConflict && hasRetryAfter
	return res.StatusCode, raw, transient, wait, nil
}

// optBool is a boolean flag that records whether it was given.
type optBool struct{ set, v bool }

func (b *optBool) String() string {
	if b == nil || !b.set {
		return ""
	}
	return strconv.FormatBool(b.v)
}

func (b *optBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want true or false")
	}
	b.set, b.v = true, v
	return nil
}
