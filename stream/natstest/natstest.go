// Package natstest starts real NATS servers with JetStream for tests: one
// server on a random loopback port, or an in-process cluster, each storing
// under the test's temporary directory and shut down when the test ends.
package natstest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// options remembers how each server was started, for Restart.
var options sync.Map // *server.Server -> *server.Options

// Options returns the options RunServer uses: loopback, a random client
// port, JetStream storing under a new t.TempDir(), no logging, no signal
// handlers.
func Options(t testing.TB) *server.Options {
	t.Helper()
	return &server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
}

// RunServer starts a JetStream server on a random port and waits until it
// accepts connections. It shuts down when the test ends.
func RunServer(t testing.TB) *server.Server {
	t.Helper()
	return RunServerOptions(t, Options(t))
}

// RunServerOptions starts a server with opts and waits until it accepts
// connections. It shuts down when the test ends.
func RunServerOptions(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natstest: new server: %v", err)
	}
	if !opts.NoLog {
		s.ConfigureLogger()
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		t.Fatalf("natstest: server %s not ready", opts.ServerName)
	}
	options.Store(s, opts)
	t.Cleanup(func() { Shutdown(s) })
	return s
}

// Shutdown stops a server and waits until it has (its files flushed).
func Shutdown(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

// Restart stops s (if it is running) and starts a server with the same
// options, on the same ports and store directory, as a crash-free restart.
func Restart(t testing.TB, s *server.Server) *server.Server {
	t.Helper()
	v, ok := options.Load(s)
	if !ok {
		t.Fatalf("natstest: Restart of a server natstest did not start")
	}
	opts := v.(*server.Options).Clone()
	if opts.Port == server.RANDOM_PORT {
		opts.Port = port(t, s.ClientURL())
	}
	Shutdown(s)
	// Another process may take the port between the shutdown and the
	// start (a connection's ephemeral port, say): wait until it lets go,
	// as faults' receiver does, rather than fail.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := startListening(opts)
		if err == nil {
			options.Store(s, opts)
			t.Cleanup(func() { Shutdown(s) })
			return s
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			t.Fatalf("natstest: restart on port %d: %v", opts.Port, err)
		}
		if restartPortBusy != nil {
			restartPortBusy()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// restartPortBusy, if set, is called each time Restart finds its port
// taken (for a test to let go of it then).
var restartPortBusy func()

// startListening starts a server with opts and waits until it accepts
// connections. Unlike RunServerOptions it returns the error of a client
// listener that cannot listen (its port taken) as soon as the server
// reports it, rather than wait for readiness that will not come.
func startListening(opts *server.Options) (*server.Server, error) {
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	fatal := make(chan error, 1)
	s.SetLogger(fatalLogger(fatal), false, false)
	s.Start()
	deadline := time.Now().Add(30 * time.Second)
	for !s.ReadyForConnections(20 * time.Millisecond) {
		select {
		case err := <-fatal:
			Shutdown(s)
			return nil, err
		default:
		}
		if time.Now().After(deadline) {
			Shutdown(s)
			return nil, fmt.Errorf("server %s not ready", opts.ServerName)
		}
	}
	return s, nil
}

// fatalLogger hands a server's fatal errors (such as failing to listen)
// to a channel and drops everything else.
type fatalLogger chan<- error

func (l fatalLogger) Fatalf(format string, v ...any) {
	err := fmt.Errorf(format, v...)
	for _, a := range v {
		if e, ok := a.(error); ok {
			err = fmt.Errorf("%s: %w", err, e)
			break
		}
	}
	select {
	case l <- err:
	default:
	}
}
func (fatalLogger) Noticef(string, ...any) {}
func (fatalLogger) Warnf(string, ...any)   {}
func (fatalLogger) Errorf(string, ...any)  {}
func (fatalLogger) Debugf(string, ...any)  {}
func (fatalLogger) Tracef(string, ...any)  {}

func port(t testing.TB, rawURL string) int {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	var p int
	if _, err := fmt.Sscan(u.Port(), &p); err != nil {
		t.Fatalf("natstest: port of %s: %v", rawURL, err)
	}
	return p
}

// Connect connects to url (several separated by commas) and closes the
// connection when the test ends. It reconnects for ever, quickly, so tests
// that restart servers need no more options.
func Connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	all := append([]nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.Timeout(5 * time.Second),
	}, opts...)
	nc, err := nats.Connect(url, all...)
	if err != nil {
		t.Fatalf("natstest: connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// WaitFor calls cond every interval until it returns nil, and fails the
// test with cond's last error if that takes longer than timeout. It is the
// way to wait for something in a test: never a bare sleep.
func WaitFor(t testing.TB, timeout, interval time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: condition not met within %v: %v", timeout, err)
		}
		time.Sleep(interval)
	}
}

// Cluster is an in-process JetStream cluster.
type Cluster struct {
	t       testing.TB
	Name    string
	Servers []*server.Server
}

// RunCluster starts n JetStream servers, named S-1 ... S-n, routed to each
// other on free loopback ports, and waits until JetStream has a meta leader
// that sees every server, so that a stream of up to n replicas can be placed.
// Each shuts down when the test ends.
//
// The route ports must be known before the servers start, so they cannot
// be "random" (-1): they are found free, let go, and listened on again by
// the servers, and another process may take one in between (a connection's
// ephemeral port, say). A server that then cannot listen fails the attempt:
// every server of it is shut down and the cluster started again on fresh
// ports, until it starts or clusterStartWait has passed.
func RunCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Name: "PLC"}
	deadline := time.Now().Add(clusterStartWait)
	for {
		servers, err := startCluster(t, c.Name, n)
		if err == nil {
			c.Servers = servers
			break
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			t.Fatalf("natstest: cluster: %v", err)
		}
		t.Logf("natstest: cluster: %v; starting it again on other ports", err)
	}
	t.Cleanup(func() {
		for _, s := range c.Servers {
			Shutdown(s)
		}
	})
	WaitFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for _, s := range c.Servers {
			if s.NumRoutes() < n-1 {
				return fmt.Errorf("%s has %d routes", s.Name(), s.NumRoutes())
			}
		}
		l := c.Leader()
		if l == nil {
			return fmt.Errorf("no JetStream meta leader")
		}
		// Placement needs every peer online with current stats.
		if peers := l.JetStreamClusterPeers(); len(peers) < n {
			return fmt.Errorf("meta leader %s sees %d peers", l.Name(), len(peers))
		}
		return nil
	})
	return c
}

// clusterStartWait bounds RunCluster's attempts at starting a cluster whose
// route ports were taken.
const clusterStartWait = 30 * time.Second

// clusterPortsPicked, if set, is called with the route ports of each of
// RunCluster's attempts before its servers start (for a test to take one).
var clusterPortsPicked func(ports []int)

// startCluster starts n routed servers at once, on fresh route ports, and
// waits until each accepts connections. If any cannot start, it shuts the
// others down and returns the errors (one whose port was taken matches
// syscall.EADDRINUSE).
func startCluster(t testing.TB, name string, n int) ([]*server.Server, error) {
	t.Helper()
	ports := freePorts(t, n)
	if clusterPortsPicked != nil {
		clusterPortsPicked(ports)
	}
	routes := make([]*url.URL, n)
	for i, p := range ports {
		routes[i] = &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)}
	}
	servers := make([]*server.Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		opts := Options(t)
		opts.ServerName = fmt.Sprintf("S-%d", i+1)
		opts.Cluster = server.ClusterOpts{Name: name, Host: "127.0.0.1", Port: ports[i]}
		opts.Routes = routes
		wg.Go(func() {
			s, err := startListening(opts)
			if err != nil {
				errs[i] = fmt.Errorf("%s (route port %d): %w", opts.ServerName, ports[i], err)
				return
			}
			options.Store(s, opts)
			servers[i] = s
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, s := range servers {
			if s != nil {
				Shutdown(s)
			}
		}
		return nil, err
	}
	return servers, nil
}

// freePorts finds n loopback ports that were free a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ls := make([]net.Listener, n)
	ports := make([]int, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("natstest: free port: %v", err)
		}
		ls[i], ports[i] = l, l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// Leader is the running server that leads JetStream's meta group, or nil.
func (c *Cluster) Leader() *server.Server {
	for _, s := range c.Servers {
		if s.Running() && s.JetStreamIsLeader() {
			return s
		}
	}
	return nil
}

// StreamLeader is the running server that leads the stream, or nil. Streams
// live in the global account unless the test configured accounts.
func (c *Cluster) StreamLeader(stream string) *server.Server {
	for _, s := range c.Servers {
		if s.Running() && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return s
		}
	}
	return nil
}

// WaitForStreamLeader waits until some running server leads the stream.
func (c *Cluster) WaitForStreamLeader(stream string) *server.Server {
	c.t.Helper()
	var l *server.Server
	WaitFor(c.t, 30*time.Second, 20*time.Millisecond, func() error {
		if l = c.StreamLeader(stream); l == nil {
			return fmt.Errorf("no leader for stream %s", stream)
		}
		return nil
	})
	return l
}

// URLs are the client URLs of the running servers, comma-separated.
func (c *Cluster) URLs() string {
	var urls []string
	for _, s := range c.Servers {
		if s.Running() {
			urls = append(urls, s.ClientURL())
		}
	}
	return strings.Join(urls, ",")
}
