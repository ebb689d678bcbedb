package stream_test

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
)

// holdProxy forwards TCP connections to a NATS server. While holding, what
// clients send is kept back instead of forwarded (and counted: hpubs is
// how many header publishes it swallowed); cut drops every connection and
// whatever it held.
type holdProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	hold  bool
	hpubs int
	conns []net.Conn
}

func newHoldProxy(t *testing.T, target string) *holdProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{ln: ln}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(c, s); c.Close(); s.Close() }()
			go p.forward(c, s)
		}
	}()
	return p
}

func (p *holdProxy) forward(c, s net.Conn) {
	defer c.Close()
	defer s.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			p.mu.Lock()
			held := p.hold
			if held {
				p.hpubs += bytes.Count(buf[:n], []byte("HPUB "))
			}
			p.mu.Unlock()
			if !held {
				if _, err := s.Write(buf[:n]); err != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *holdProxy) URL() string { return "nats://" + p.ln.Addr().String() }

func (p *holdProxy) setHold(h bool) {
	p.mu.Lock()
	p.hold = h
	p.mu.Unlock()
}

func (p *holdProxy) held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hpubs
}

func (p *holdProxy) cut() {
	p.mu.Lock()
	cs := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}
