//go:build unix

package boltlog

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/payledger/payledger/ledger"
)

// TestGuardReadRepanicsOwnPanics: guardRead turns only bbolt's panics into
// errors; a panic of our own code inside a read is a bug and goes on.
func TestGuardReadRepanicsOwnPanics(t *testing.T) {
	defer func() {
		if r := recover(); r != "ours" {
			t.Fatalf("recovered %v, want our panic to go on", r)
		}
	}()
	_ = guardRead(func() error { panic("ours") })
	t.Fatal("guardRead swallowed a panic of ours")
}

// TestGuardReadCatchesFault: a memory fault while reading (a damaged offset
// pointing past the end of the file, as bbolt maps more than the file) is
// damage too, wherever it happens.
func TestGuardReadCatchesFault(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ps := os.Getpagesize()
	if err := f.Truncate(int64(ps)); err != nil {
		t.Fatal(err)
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, 2*ps, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	var b byte
	err = guardRead(func() error { b = m[ps+1]; return nil }) // past the file: SIGBUS
	if !errors.Is(err, ErrDamaged) || !errors.Is(err, ledger.ErrCorrupt) {
		t.Fatalf("guardRead of a read past the file = %v (%d)", err, b)
	}
}
