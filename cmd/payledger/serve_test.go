package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/payledger/payledger/internal/durable"
	"github.com/payledger/payledger/internal/syncbuf"
	"github.com/payledger/payledger/ledger/boltlog"
	"github.com/payledger/payledger/projections"
	"github.com/payledger/payledger/stream/natstest"
)

// serveChild is `payledger serve` in a child process (the test binary
// re-executed, see TestWebhooksWorkerChild), so a test can signal it.
type serveChild struct {
	cmd    *exec.Cmd
	out    *syncbuf.Buffer // its stdout and stderr: the log
	exited chan struct{}   // closed when it has exited
	err    error           // its exit (cmd.Wait's), once exited is closed
	base   string          // http://host:port it serves on
}

// servingLine is node.Serve's log line with the address it listens on.
var servingLine = regexp.MustCompile(`msg=serving addr=(\S+)`)

// startServe starts `payledger serve` with args in a child process on a
// loopback port the kernel picks (--addr 127.0.0.1:0), and returns once
// the child's log (text, at info) names it. A port picked here and closed
// for the child to bind could be taken by another process in between. The
// child is killed at the end of the test if it is still running.
func startServe(t *testing.T, args ...string) *serveChild {
	t.Helper()
	args = append([]string{"serve", "--addr", "127.0.0.1:0", "--log-format", "text", "--log-level", "info"}, args...)
	c := &serveChild{cmd: exec.Command(os.Args[0], "-test.run=^TestWebhooksWorkerChild$"), out: &syncbuf.Buffer{}, exited: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), childArgsEnv+"="+strings.Join(args, "\x1f"))
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			c.cmd.Process.Kill()
			<-c.exited
		}
	})
	natstest.WaitFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if m := servingLine.FindStringSubmatch(c.out.String()); m != nil {
			c.base = "http://" + m[1]
			return nil
		}
		select {
		case <-c.exited:
			t.Fatalf("serve exited (%v) before it served:\n%s", c.err, c.out.String())
		default:
		}
		return fmt.Errorf("no %q line in the log:\n%s", "msg=serving", c.out.String())
	})
	return c
}

// apiCall makes a JSON request to a serve child: auth is "Bearer <admin
// token>" or a merchant's API key.
func apiCall(method, url, auth, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if strings.HasPrefix(auth, "Bearer ") {
		req.Header.Set("Authorization", auth)
	} else {
		req.Header.Set("X-Api-Key", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// TestServeGracefulShutdown runs `payledger serve` as a child process under
// create-invoice load and sends it SIGTERM: it exits 0, and every invoice
// whose create was acknowledged (2xx) is in the log and its views.
func TestServeGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	child := startServe(t, "--data-dir", dir, "--nats-port", "-1", "--admin-token", "t0ken", "--no-demo")
	cmd, out, base := child.cmd, child.out, child.base
	natstest.WaitFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	post := func(path, auth, body string) (int, []byte, error) {
		return apiCall(http.MethodPost, base+path, auth, body)
	}
	if code, b, err := post("/admin/v1/rates", "Bearer t0ken", `{"currency": "UAH", "rate": "41.50"}`); err != nil || code >= 300 {
		t.Fatalf("set rate: %d %s %v", code, b, err)
	}
	code, b, err := post("/admin/v1/merchants", "Bearer t0ken", `{"name": "Shop", "commission_percent": "2"}`)
	if err != nil || code >= 300 {
		t.Fatalf("create merchant: %d %s %v", code, b, err)
	}
	var m struct {
		MerchantID string `json:"merchant_id"`
		APIKey     string `json:"api_key"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"amount": "10.00", "currency_code": "UAH", "customer_id": "c%d-%d", "external_id": "o-%d-%d"}`, w, i, w, i)
				code, b, err := post("/api/v1/create-invoice", m.APIKey, body)
				if err != nil {
					return // the server has gone
				}
				if code == http.StatusCreated || code == http.StatusOK {
					var inv struct {
						ID string `json:"invoice_id"`
					}
					if json.Unmarshal(b, &inv) == nil {
						mu.Lock()
						acked = append(acked, inv.ID)
						mu.Unlock()
					}
				}
			}
		}()
	}
	natstest.WaitFor(t, 30*time.Second, time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < 200 {
			return fmt.Errorf("%d acknowledged", len(acked))
		}
		return nil
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-child.exited:
		if child.err != nil {
			t.Fatalf("serve exited with %v after SIGTERM:\n%s", child.err, out.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("serve did not stop within 60s of SIGTERM:\n%s", out.String())
	}
	close(stop)
	wg.Wait()

	store, err := boltlog.Open(filepath.Join(dir, "ledger.db"), &boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	views := projections.NewViews(store.DB())
	for _, id := range acked {
		if _, err := views.Invoice(m.MerchantID, id); err != nil {
			t.Fatalf("acknowledged invoice %s lost: %v", id, err)
		}
	}
	if !bytes.Contains([]byte(out.String()), []byte("shutting down")) {
		t.Fatalf("no graceful shutdown in the log:\n%s", out.String())
	}
	t.Logf("%d acknowledged invoices, all present after SIGTERM", len(acked))
}

// TestLoadOrCreateToken: serve makes an admin token once (mode 0600) and
// reads it back after; a token file left empty (by hand, or by a crash of a
// build that did not sync it) is refused with advice, not taken for "no
// token", which would lock the admin API.
func TestLoadOrCreateToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", adminTokenFile)
	tok, created, err := loadOrCreateToken(path, slog.New(slog.DiscardHandler))
	if err != nil || !created || len(tok) != 48 {
		t.Fatalf("create: %q %v %v", tok, created, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	again, created, err := loadOrCreateToken(path, slog.New(slog.DiscardHandler))
	if err != nil || created || again != tok {
		t.Fatalf("reload: %q %v %v", again, created, err)
	}
	if err := os.WriteFile(path, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadOrCreateToken(path, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("empty token file: %v", err)
	}
}

// TestLoadOrCreateTokenPermissions: an admin token file others may write
// is refused (whoever can write it can let themselves into the admin API);
// one its group may write, or group or others may read, is used, with a
// warning that does not hold the token.
func TestLoadOrCreateTokenPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permission bits")
	}
	const tok = "0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		mode            os.FileMode
		refused, warned bool
	}{
		{0o600, false, false}, {0o400, false, false}, {0o640, false, true}, {0o644, false, true},
		{0o620, false, true}, {0o660, false, true}, // a Kubernetes fsGroup's volume
		{0o602, true, false}, {0o666, true, false},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), adminTokenFile)
			if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			got, _, err := loadOrCreateToken(path, slog.New(slog.NewTextHandler(&logs, nil)))
			if refused := errors.Is(err, durable.ErrSecretWritable); refused != tc.refused || (!refused && err != nil) {
				t.Fatalf("mode %v: %v, want refused %v", tc.mode, err, tc.refused)
			}
			if !tc.refused && got != tok {
				t.Fatalf("mode %v: read %q", tc.mode, got)
			}
			if warned := strings.Contains(logs.String(), "level=WARN"); warned != tc.warned {
				t.Errorf("mode %v: warned %v, want %v; logs:\n%s", tc.mode, warned, tc.warned, logs.String())
			}
			if strings.Contains(logs.String(), tok) || (err != nil && strings.Contains(err.Error(), tok)) {
				t.Errorf("the token was shown: %v %s", err, logs.String())
			}
		})
	}
}

// TestLoadOrCreateTokenRace: serves starting at once on an empty data dir
// (the token is made before the log's lock is taken) all get the token on
// disk, and exactly one of them made it.
func TestLoadOrCreateTokenRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), adminTokenFile)
	const n = 64
	toks := make([]string, n)
	made := make([]bool, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var err error
			if toks[i], made[i], err = loadOrCreateToken(path, slog.New(slog.DiscardHandler)); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	b, _ := os.ReadFile(path)
	creators := 0
	for i := range n {
		if toks[i] != strings.TrimSpace(string(b)) {
			t.Errorf("caller %d got %q, the file holds %q", i, toks[i], b)
		}
		if made[i] {
			creators++
		}
	}
	if creators != 1 {
		t.Errorf("%d callers made the token", creators)
	}
}

// TestServeTrustedProxiesChecked: a --trusted-proxies entry that is not a
// CIDR prefix or an IP address stops serve with exit status 2 naming it,
// before the data dir is made; good lists parse.
func TestServeTrustedProxiesChecked(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "lb.internal", "10.0.0.1:443", "2001:db8::/129", "fe80::1%eth0"} {
		dir := filepath.Join(t.TempDir(), "data")
		code, out, errs := runCmd(t, "serve", "--data-dir", dir, "--trusted-proxies", "192.0.2.1,"+bad)
		if code != 2 || !strings.Contains(errs, "-trusted-proxies") || !strings.Contains(errs, `bad trusted proxy "`+bad+`"`) {
			t.Errorf("--trusted-proxies %s: exit %d\n%s%s", bad, code, out, errs)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("--trusted-proxies %s: the refused command made its data dir: %v", bad, err)
		}
	}
	var got []netip.Prefix
	f := &prefixesFlag{to: &got}
	if err := f.Set("10.0.0.0/8, 192.0.2.1, ::1, fd00::/8"); err != nil || len(got) != 4 || f.String() != "10.0.0.0/8, 192.0.2.1, ::1, fd00::/8" {
		t.Errorf("a good list: %v %v %q", got, err, f.String())
	}
}

// TestServeRefusesOpenNATS: an embedded NATS server on a host other
// machines reach (--nats-host 0.0.0.0), with no user and password or
// token, stops serve with exit status 2 saying why, before the data dir is
// made: anyone reaching it could read every event and publish into the
// stream that worker and restore consume.
func TestServeRefusesOpenNATS(t *testing.T) {
	for _, args := range [][]string{
		{"--nats-host", "0.0.0.0"},
		{"--nats-host", "::"},
		{"--nats-host", "nats.internal", "--nats-user", "payledger"}, // no password
	} {
		dir := filepath.Join(t.TempDir(), "data")
		// Bounded: a serve that is not refused runs until cancelled.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		var stdout, stderr bytes.Buffer
		code := runMain(ctx, append([]string{"serve", "--data-dir", dir, "--addr", "127.0.0.1:0", "--nats-port", "-1"}, args...), &stdout, &stderr)
		cancel()
		out, errs := stdout.String(), stderr.String()
		if code != 2 || !strings.Contains(errs, "not a loopback address") || !strings.Contains(errs, "--nats-token") {
			t.Errorf("%v: exit %d\n%s%s", args, code, out, errs)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%v: the refused command made its data dir: %v", args, err)
		}
	}
}

// TestServeRefusesWebhooksNowhere: --webhooks=false hands deliveries to
// webhook workers, which read the NATS stream; with --no-nats too nothing
// would ever be delivered, so serve refuses the pair before making anything.
func TestServeRefusesWebhooksNowhere(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // a serve not refused runs until cancelled
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := runMain(ctx, []string{"serve", "--data-dir", dir, "--addr", "127.0.0.1:0", "--webhooks=false", "--no-nats"}, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "no webhook would ever be sent") {
		t.Errorf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the refused command made its data dir: %v", err)
	}
}

// TestEnvValuesAreChecked: a PAYLEDGER_* variable holding a value its flag
// would refuse stops the command with exit status 2, naming the variable,
// before anything is made; it used to fall back to the flag's default
// unseen (three replicas asked for, one made). A flag on the command line
// still wins over the variable, and an empty variable counts as unset.
func TestEnvValuesAreChecked(t *testing.T) {
	for _, tc := range []struct {
		cmd      []string
		variable string
		value    string
	}{
		{[]string{"serve"}, "PAYLEDGER_NATS_REPLICAS", "three"},
		{[]string{"serve"}, "PAYLEDGER_NO_NATS", "yes"},
		{[]string{"serve"}, "PAYLEDGER_CHECKPOINT_INTERVAL", "60"},
		{[]string{"serve"}, "PAYLEDGER_KEY_RATE", "fast"},
		{[]string{"serve"}, "PAYLEDGER_AUTH_FAIL_RATE", "slow"},
		{[]string{"serve"}, "PAYLEDGER_TRUSTED_PROXIES", "10.0.0.0/8,lb.internal"},
		{[]string{"worker", "webhooks"}, "PAYLEDGER_ALLOW_PRIVATE_WEBHOOKS", "on"},
	} {
		t.Run(tc.variable, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			t.Setenv(tc.variable, tc.value)
			code, out, errs := runCmd(t, append(tc.cmd, "--data-dir", dir)...)
			if code != 2 || !strings.Contains(errs, tc.variable) || !strings.Contains(errs, tc.value) {
				t.Fatalf("%s=%s: exit %d\n%s%s", tc.variable, tc.value, code, out, errs)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("the refused command made its data dir: %v", err)
			}
		})
	}

	fs := newFlagSet("test", io.Discard)
	replicas := fs.Int("nats-replicas", 1, "")
	noNATS := fs.Bool("no-nats", false, "")
	t.Setenv("PAYLEDGER_NATS_REPLICAS", "3")
	t.Setenv("PAYLEDGER_NO_NATS", "")
	fs.bindEnv(map[string]string{"nats-replicas": "PAYLEDGER_NATS_REPLICAS", "no-nats": "PAYLEDGER_NO_NATS"})
	if err := fs.applyEnv(); err != nil {
		t.Fatal(err)
	}
	if *replicas != 3 || *noNATS {
		t.Fatalf("from the environment: replicas %d, no-nats %v", *replicas, *noNATS)
	}
	if err := parseArgs(fs, []string{"--nats-replicas", "5"}); err != nil || *replicas != 5 {
		t.Fatalf("the flag after the variable: %d %v", *replicas, err)
	}

	// An empty string variable is unset too: PAYLEDGER_DATA_DIR= used to
	// put admin.token in the current directory while the node used ./data.
	t.Setenv("PAYLEDGER_DATA_DIR", "")
	fs = newFlagSet("test", io.Discard)
	dir := dataDirFlag(fs)
	if err := parseArgs(fs, nil); err != nil || *dir != "./data" {
		t.Errorf("empty PAYLEDGER_DATA_DIR gives %q (%v), want ./data", *dir, err)
	}
}

// TestServeRefusesBadFlagValues: a flag value serve cannot use stops it
// with exit status 2, naming the flag (or its variable, when the value
// came from one), before it makes the data dir or anything in it: a listen
// address or NATS port that cannot be listened on used to exit 1 after
// admin.token, master.key and ledger.db were made, a base URL that is not
// one went into every payment_link, and a negative checkpoint interval
// silently became a minute.
func TestServeRefusesBadFlagValues(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		env   [2]string
		names string // what the message names
	}{
		{args: []string{"--addr", "nonsense"}, names: `--addr "nonsense"`},
		{args: []string{"--addr", "127.0.0.1:70000"}, names: "--addr"},
		{args: []string{"--addr", "127.0.0.1:http"}, names: "--addr"},
		{args: []string{"--nats-port", "70000"}, names: "--nats-port 70000"},
		{args: []string{"--nats-port", "-2"}, names: "--nats-port -2"},
		{args: []string{"--base-url", "notaurl"}, names: `--base-url "notaurl"`},
		{args: []string{"--base-url", "ftp://pay.example.com"}, names: "--base-url"},
		{args: []string{"--base-url", "https:///pay"}, names: "--base-url"},
		{args: []string{"--base-url", "https://pay.example.com/?a=1"}, names: "--base-url"},
		{args: []string{"--base-url", "https://pay.example.com/#top"}, names: "--base-url"},
		{args: []string{"--checkpoint-interval", "-5s"}, names: "--checkpoint-interval -5s"},
		{args: []string{"--checkpoint-interval", "0s"}, names: "--checkpoint-interval 0s"},
		{args: []string{"--checkpoint-every", "0"}, names: "--checkpoint-every 0"},
		{args: []string{"--redirect-delay", "0s"}, names: "--redirect-delay 0s"},
		{args: []string{"--nats-replicas", "0"}, names: "--nats-replicas 0"},
		{args: []string{"--nats-replicas", "6"}, names: "--nats-replicas 6"},
		{env: [2]string{"PAYLEDGER_REDIRECT_DELAY", "-1s"}, names: `PAYLEDGER_REDIRECT_DELAY="-1s" (for --redirect-delay)`},
		{env: [2]string{"PAYLEDGER_ADDR", "nonsense"}, names: `PAYLEDGER_ADDR="nonsense" (for --addr)`},
		{env: [2]string{"PAYLEDGER_BASE_URL", "notaurl"}, names: `PAYLEDGER_BASE_URL="notaurl" (for --base-url)`},
		{env: [2]string{"PAYLEDGER_NATS_PORT", "65536"}, names: `PAYLEDGER_NATS_PORT="65536" (for --nats-port)`},
		// The command line wins over the variable, and is named.
		{args: []string{"--base-url", "notaurl"}, env: [2]string{"PAYLEDGER_BASE_URL", "https://pay.example.com"}, names: `--base-url "notaurl"`},
		{args: []string{"--addr", "127.0.0.1:0", "--base-url", "notaurl"}, env: [2]string{"PAYLEDGER_ADDR", "nonsense"}, names: `--base-url "notaurl"`},
	} {
		t.Run(strings.Join(append(tc.args, tc.env[:]...), " "), func(t *testing.T) {
			if tc.env[0] != "" {
				t.Setenv(tc.env[0], tc.env[1])
			}
			dir := filepath.Join(t.TempDir(), "data")
			// Bounded: a serve that takes the value runs until cancelled.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			args := []string{"serve", "--data-dir", dir, "--no-nats"}
			if tc.env[0] != "PAYLEDGER_ADDR" {
				args = append(args, "--addr", "127.0.0.1:0") // no fixed port, should the value be taken
			}
			code := runMain(ctx, append(args, tc.args...), &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tc.names) {
				t.Errorf("exit %d, want 2 naming %s\n%s%s", code, tc.names, stdout.String(), stderr.String())
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("the refused command made its data dir: %v", err)
			}
		})
	}
	// The same check of worker webhooks' --base-url.
	dir := filepath.Join(t.TempDir(), "data")
	if code, _, errs := runCmd(t, "worker", "webhooks", "--data-dir", dir, "--base-url", "notaurl"); code != 2 || !strings.Contains(errs, `--base-url "notaurl"`) {
		t.Errorf("worker webhooks --base-url notaurl: exit %d: %s", code, errs)
	}
}

// TestServeRedirectDelay: --redirect-delay reaches the payment page, whose
// script waits that long before it sends the customer back, and whose
// status says so.
func TestServeRedirectDelay(t *testing.T) {
	dir := t.TempDir()
	child := startServe(t, "--data-dir", dir, "--no-nats", "--admin-token", "t0ken", "--no-demo", "--redirect-delay", "20s")
	base := child.base
	post := func(path, auth, body string) []byte {
		t.Helper()
		code, b, err := apiCall(http.MethodPost, base+path, auth, body)
		if err != nil || code >= 300 {
			t.Fatalf("POST %s: %d %s %v", path, code, b, err)
		}
		return b
	}
	post("/admin/v1/rates", "Bearer t0ken", `{"currency": "UAH", "rate": "41.50"}`)
	var m struct {
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal(post("/admin/v1/merchants", "Bearer t0ken", `{"name": "Shop", "commission_percent": "2"}`), &m); err != nil {
		t.Fatal(err)
	}
	var inv struct {
		InvoiceID string `json:"invoice_id"`
	}
	if err := json.Unmarshal(post("/api/v1/create-invoice", m.APIKey,
		`{"amount": "10.00", "currency_code": "UAH", "customer_id": "c", "external_id": "o1", "success_url": "https://shop.example/ok"}`), &inv); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(base + "/pay/" + inv.InvoiceID)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`data-redirect-delay="20000"`, "in 20 seconds"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("payment page lacks %q", want)
		}
	}
}
