package projections_test

import (
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/payledger/payledger/projections"
)

// TestRebuildFreesPreallocatedBlocks: a rebuild allocates disk blocks ahead
// of its file's end as it commits (prealloc.go) and frees those left past
// the end when it is done, so the file takes no more disk than it holds.
func TestRebuildFreesPreallocatedBlocks(t *testing.T) {
	st := newLog(t)
	for _, ws := range workload(newGen(), rand.New(rand.NewPCG(3, 3)), []string{"m1", "m2"}, 600, 50) {
		mustAppend(t, st, ws...)
	}
	restore := projections.SetRebuildTxEvents(300) // many commits, each preallocating
	db, _ := rebuildInto(t, st, time.Time{})
	restore()
	if err := projections.Compare(st.DB(), db); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	stat, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Skip("no block counts here")
	}
	// Blocks are counted in 512-byte units; allow one file system block of
	// rounding.
	if allocated, size := stat.Blocks*512, fi.Size(); allocated > size+64<<10 {
		t.Fatalf("the rebuilt file holds %d bytes on %d bytes of blocks: the preallocation past its end was not freed", size, allocated)
	}
}
