package durable

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "secret")
	if err := Create(path, []byte("one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "one\n" {
		t.Fatalf("read back %q, %v", b, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode().Perm(), err)
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v, %v", di.Mode().Perm(), err)
	}
	// A second Create leaves the first file alone.
	if err := Create(path, []byte("two\n"), 0o600); !errors.Is(err, os.ErrExist) {
		t.Fatalf("Create over an existing file: %v, want os.ErrExist", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one\n" {
		t.Fatalf("existing file changed to %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left beside the file: %v", entries)
	}
	if err := SyncDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("SyncDir of a missing directory succeeded")
	}
}

// TestCreateRace: of many concurrent creations exactly one wins, and the
// file holds the winner's data, whole.
func TestCreateRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	const n = 16
	var wg sync.WaitGroup
	wins := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := string(rune('a'+i)) + "-0123456789abcdef"
			switch err := Create(path, []byte(data), 0o600); {
			case err == nil:
				wins <- data
			case !errors.Is(err, os.ErrExist):
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	close(wins)
	var won []string
	for w := range wins {
		won = append(won, w)
	}
	if len(won) != 1 {
		t.Fatalf("%d winners", len(won))
	}
	if b, _ := os.ReadFile(path); string(b) != won[0] {
		t.Fatalf("file holds %q, the winner wrote %q", b, won[0])
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("left beside the file: %v", entries)
	}
}

// TestCreateFails: a file that cannot be made (its directory cannot be
// created) is an error that is not os.ErrExist, and leaves nothing behind.
func TestCreateFails(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := Create(filepath.Join(blocker, "sub", "key"), []byte("x"), 0o600)
	if err == nil || errors.Is(err, os.ErrExist) {
		t.Fatalf("Create under a regular file: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}
