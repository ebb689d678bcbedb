package projections

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// allocated is the disk space a file's blocks take.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// TestPreallocatorFreesBlocksWhenItFails: when a later fallocate fails (a
// disk filling up), the preallocator frees what it allocated past the end
// before it turns itself off, rather than leaving it to the file for good.
func TestPreallocatorFreesBlocksWhenItFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "views.db")
	if err := os.WriteFile(path, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	p := newPreallocator(path)
	if p.f == nil {
		t.Skip("no fallocate on this file system")
	}
	if a := allocated(t, path); a < preallocAhead {
		t.Fatalf("%d bytes allocated, want the %d ahead", a, preallocAhead)
	}
	defer func(n int64) { preallocAhead = n }(preallocAhead)
	preallocAhead = 1 << 62 // more than any file system holds: fallocate fails
	p.extend()
	if p.f != nil {
		t.Fatal("the preallocator is still on after fallocate failed")
	}
	if a := allocated(t, path); a > 128<<10 {
		t.Fatalf("%d bytes still allocated for a 64 KiB file after the preallocator turned off", a)
	}
	if err := p.finish(); err != nil {
		t.Fatal(err)
	}
}
