package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/boltlog"
)

const adminToken = "faults-admin-token"

// waitFor calls cond until it returns nil, failing the test with its last
// error once timeout has passed. It polls: no test waits by sleeping.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := poll(timeout, cond); err != nil {
		t.Fatalf("waited %s for %s: %v", timeout, what, err)
	}
}

// poll calls cond every few milliseconds until it returns nil or timeout
// passes, and returns its last error.
func poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// freePort returns a loopback TCP port that was free a moment ago. A test
// keeps it for its whole life, so a restarted child listens where the last
// one did. Another process may take it before the child listens (a
// connection's ephemeral port, say): whoever listens on it goes through
// retryPortTaken.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// portWait is how long a restart waits for another process to let go of
// the port it must listen on again.
const portWait = 10 * time.Second

// portTaken reports an error of listening on a port that something else
// holds: syscall.EADDRINUSE, or its text where it has only come through a
// message (an embedded NATS server's, a child's log).
func portTaken(err error) bool {
	return err != nil && (errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), syscall.EADDRINUSE.Error()))
}

// retryPortTaken calls listen until it returns anything but a taken port,
// or timeout has passed, and returns its last error; busy, if not nil, is
// called after each taken port.
func retryPortTaken(timeout time.Duration, busy func(), listen func() error) error {
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		err := listen()
		if !portTaken(err) || time.Now().After(deadline) {
			return err
		}
		if busy != nil {
			busy()
		}
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// serveProc is `payledger serve` as a child process on fixed loopback ports
// and one data directory, started again after every kill.
type serveProc struct {
	t        *testing.T
	bin      string
	dataDir  string
	addr     string
	natsPort int
	extra    []string
	logPath  string

	cmd    *exec.Cmd
	exited chan struct{}
	err    error // the child's exit, once exited is closed
	starts int
	served bool // a start has been ready: clients know addr and natsPort
	// portBusy, if set, is called each time a start finds a port taken
	// (for a test to let go of it then).
	portBusy func()
}

func newServe(t *testing.T, dataDir string, extra ...string) *serveProc {
	t.Helper()
	s := &serveProc{
		t: t, bin: payledgerBin(t), dataDir: dataDir,
		addr:     fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		natsPort: freePort(t),
		extra:    extra,
		logPath:  filepath.Join(t.TempDir(), "serve.log"),
	}
	t.Cleanup(func() {
		if s.running() {
			s.signal(syscall.SIGKILL)
			<-s.exited
		}
		if t.Failed() {
			s.dumpLog(60)
		}
	})
	return s
}

func (s *serveProc) base() string { return "http://" + s.addr }

func (s *serveProc) running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// start runs the child and waits until /readyz answers 200. A child that
// exits because one of its ports is taken is started again: on fresh ports
// if no start has served yet, else on the same ones once they are free.
func (s *serveProc) start() {
	t := s.t
	t.Helper()
	if s.running() {
		t.Fatal("serve already running")
	}
	err := retryPortTaken(portWait, func() {
		if !s.served {
			s.addr, s.natsPort = fmt.Sprintf("127.0.0.1:%d", freePort(t)), freePort(t)
		}
		if s.portBusy != nil {
			s.portBusy()
		}
	}, s.launch)
	if err != nil {
		t.Fatalf("serve (start %d) not ready: %v", s.starts, err)
	}
	s.served = true
}

// launch runs the child once and waits until /readyz answers 200, or it
// exits; the error of a child that exited for a taken port says so
// (portTaken), from its log.
func (s *serveProc) launch() error {
	t := s.t
	t.Helper()
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	from, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		t.Fatal(err)
	}
	s.starts++
	fmt.Fprintf(logf, "=== start %d at %s\n", s.starts, time.Now().Format(time.RFC3339Nano))
	args := append([]string{"serve",
		"--addr", s.addr, "--data-dir", s.dataDir,
		"--nats-port", fmt.Sprint(s.natsPort),
		"--admin-token", adminToken, "--allow-private-webhooks", "--no-demo",
		"--log-level", "warn",
	}, s.extra...)
	cmd := exec.Command(s.bin, args...)
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() {
		s.err = cmd.Wait()
		logf.Close()
		close(s.exited)
	}()
	counts.add("serve starts", 1)
	exited := false
	err = poll(60*time.Second, func() error {
		select {
		case <-s.exited:
			exited = true
			return nil // no use waiting longer
		default:
		}
		// Not http.Get: what answers on the address before the child
		// listens may be another process that never replies.
		resp, err := probe.Get(s.base() + "/readyz")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d: %s", resp.StatusCode, body)
		}
		return nil
	})
	if exited {
		out, _ := os.ReadFile(s.logPath)
		out = out[min(int(from), len(out)):]
		if strings.Contains(string(out), syscall.EADDRINUSE.Error()) {
			return fmt.Errorf("serve exited (%v), a port taken: %w", s.err, syscall.EADDRINUSE)
		}
		return fmt.Errorf("serve exited: %v", s.err)
	}
	return err
}

// probe asks whether a child is ready, never for long.
var probe = &http.Client{Timeout: 2 * time.Second}

// childEnv is the test's environment without PAYLEDGER_ settings, so a
// developer's own configuration cannot leak into the child.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PAYLEDGER_") {
			env = append(env, kv)
		}
	}
	return env
}

func (s *serveProc) signal(sig syscall.Signal) {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// kill sends SIGKILL and waits for the child to be gone.
func (s *serveProc) kill() {
	s.t.Helper()
	s.signal(syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.t.Fatal("serve did not die of SIGKILL within 30s")
	}
	counts.add("SIGKILLs of serve", 1)
}

// stop sends SIGTERM and waits up to timeout for a graceful exit; it
// returns how long it took and the child's exit error (nil for status 0).
func (s *serveProc) stop(timeout time.Duration) (time.Duration, error) {
	s.t.Helper()
	start := time.Now()
	s.signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(timeout):
		s.signal(syscall.SIGKILL)
		<-s.exited
		return time.Since(start), fmt.Errorf("no exit within %s of SIGTERM (killed)", timeout)
	}
	return time.Since(start), s.err
}

func (s *serveProc) dumpLog(lines int) {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	s.t.Logf("last %d lines of serve's log (%s):\n%s", len(all), s.logPath, strings.Join(all, "\n"))
}

// verifyOffline checks the stopped child's log twice: `payledger verify`
// must exit 0, and the log opened read-only must verify; it returns the
// verified head.
func (s *serveProc) verifyOffline() ledger.Head {
	t := s.t
	t.Helper()
	if s.running() {
		t.Fatal("verifyOffline while serve runs")
	}
	out, err := exec.Command(s.bin, "verify", "--data-dir", s.dataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("payledger verify --data-dir %s: %v\n%s", s.dataDir, err, out)
	}
	counts.add("log verifications (payledger verify)", 1)
	st, err := boltlog.Open(filepath.Join(s.dataDir, "ledger.db"), &boltlog.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h, err := st.Verify(context.Background())
	if err != nil {
		t.Fatalf("verify read-only: %v", err)
	}
	return h
}

// readyHead is the log head /readyz reports.
func readyHead(base string) (uint64, error) {
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var b struct {
		Status string `json:"status"`
		Head   uint64 `json:"head"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("readyz %d %s", resp.StatusCode, b.Status)
	}
	return b.Head, nil
}

// metric reads one unlabelled sample from /metrics.
func metric(base, name string) (float64, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			_, err := fmt.Sscan(v, &f)
			return f, err
		}
	}
	return 0, fmt.Errorf("no metric %s", name)
}

// client is a JSON client of one node.
type client struct {
	base string
	key  string // X-Api-Key for merchant routes
	hc   *http.Client
}

func newClient(base string) *client {
	return &client{base: base, hc: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConnsPerHost: 64,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		},
	}}
}

type answer struct {
	Status int
	Header http.Header
	Body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.Body, &m); err != nil {
		t.Fatalf("answer %d is not JSON: %v: %s", a.Status, err, a.Body)
	}
	return m
}

// errorCode is the error.code of an error answer ("" if none).
func (a answer) errorCode() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(a.Body, &e)
	return e.Error.Code
}

// do sends one request; admin routes get the bearer token, others the API key.
func (a *client) do(method, path string, body []byte, hdr map[string]string) (answer, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if strings.HasPrefix(path, "/admin/") {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	} else if a.key != "" {
		req.Header.Set("X-Api-Key", a.key)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// must sends a request that has to succeed with want.
func (a *client) must(t *testing.T, want int, method, path string, body string) map[string]any {
	t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	r, err := a.do(method, path, b, nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if r.Status != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	return r.json(t)
}

// merchant is what the operator gets back when registering one.
type merchant struct {
	ID     string
	APIKey string
	Secret string
}

// shop is a serve child with a merchant whose webhooks go to a receiver
// that checks their signatures: what most fault tests start from.
type shop struct {
	sv   *serveProc
	a    *client // with the merchant's API key
	recv *receiver
	m    merchant
}

// startShop starts serve on dataDir and registers the merchant.
func startShop(t *testing.T, dataDir string) shop {
	t.Helper()
	recv := newReceiver(t)
	sv := newServe(t, dataDir)
	sv.start()
	a := newClient(sv.base())
	m := setupMerchant(t, a, recv.url())
	recv.setSecret(m.Secret)
	a.key = m.APIKey
	return shop{sv: sv, a: a, recv: recv, m: m}
}

// setupMerchant sets the UAH rate and registers a merchant whose webhooks
// go to hookURL.
func setupMerchant(t *testing.T, a *client, hookURL string) merchant {
	t.Helper()
	a.must(t, http.StatusOK, "POST", "/admin/v1/rates", `{"currency": "UAH", "rate": "41.50"}`)
	m := a.must(t, http.StatusCreated, "POST", "/admin/v1/merchants",
		fmt.Sprintf(`{"name": "Faults shop", "webhook_url": %q, "commission_percent": "2"}`, hookURL))
	return merchant{ID: m["merchant_id"].(string), APIKey: m["api_key"].(string), Secret: m["signing_secret"].(string)}
}

// isRefused reports a connection that was refused before anything was sent
// (the server is down): the request certainly did nothing.
func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// TestServeStartPortTaken: a port of serve's taken by another process
// before the child listens does not fail the test. Before its first start
// serve moves to fresh ports; after it has served, when it is restarted, it
// waits for the port to be let go and listens where it did.
func TestServeStartPortTaken(t *testing.T) {
	t.Parallel()
	sv := newServe(t, t.TempDir())
	takenNATS, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", sv.natsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer takenNATS.Close()
	sv.start()
	if sv.natsPort == takenNATS.Addr().(*net.TCPAddr).Port {
		t.Fatalf("serve started on the taken NATS port %d", sv.natsPort)
	}

	sv.kill()
	addr := sv.addr
	takenHTTP, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(func() { takenHTTP.Close() }) }
	defer release()
	busy := 0
	sv.portBusy = func() { busy++; release() }
	sv.start()
	if sv.addr != addr || busy == 0 {
		t.Fatalf("restarted on %s after %d taken ports, want %s after at least one", sv.addr, busy, addr)
	}
	if _, err := readyHead(sv.base()); err != nil {
		t.Fatal(err)
	}
}
