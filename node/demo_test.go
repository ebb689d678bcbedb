package node_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"regexp"
	"testing"

	"github.com/payledger/payledger/node"
)

// TestDemoAfterFailedFirstStart: a first start that fails after opening the
// log (its HTTP address is taken) leaves an empty ledger.db behind; the next
// start still finds no events, so it still makes the demo merchant and
// prints its key, as it would have on the empty data dir.
func TestDemoAfterFailedFirstStart(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if n, err := node.Open(context.Background(), node.Config{DataDir: dir, Addr: busy.Addr().String(), NoNATS: true,
		Demo: true, Out: io.Discard}); err == nil {
		n.Close()
		t.Fatal("Open succeeded on a taken address")
	}

	var out bytes.Buffer
	n, err := node.Open(context.Background(), node.Config{DataDir: dir, Addr: "127.0.0.1:0", NoNATS: true, Demo: true, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if regexp.MustCompile(`api_key:\s+pl_\S+`).FindString(out.String()) == "" || n.Log.Head().Seq == 0 {
		t.Fatalf("second start on a data dir with an empty log made no demo merchant (head %d):\n%s", n.Log.Head().Seq, out.String())
	}
}
