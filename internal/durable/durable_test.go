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

// TestReadOrCreate: a missing file is made from newData once; an existing
// one is read as it is; of concurrent callers all read the one file that
// won; newData's error is returned and nothing is made.
func TestReadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d", "key")
	boom := errors.New("boom")
	if _, _, err := ReadOrCreate(path, 0o600, func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("newData failing: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a file was made though newData failed: %v", err)
	}
	const n = 16
	got := make([]string, n)
	made := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, created, err := ReadOrCreate(path, 0o600, func() ([]byte, error) { return []byte{byte('a' + i)}, nil })
			if err != nil {
				t.Error(err)
			}
			got[i], made[i] = string(b), created
		}()
	}
	wg.Wait()
	winners := 0
	for i := range n {
		if made[i] {
			winners++
		}
		if got[i] != got[0] {
			t.Fatalf("callers read %q and %q", got[0], got[i])
		}
	}
	if winners != 1 {
		t.Fatalf("%d callers created the file", winners)
	}
	b, created, err := ReadOrCreate(path, 0o600, func() ([]byte, error) { t.Fatal("newData called for an existing file"); return nil, nil })
	if err != nil || created || string(b) != got[0] {
		t.Fatalf("existing file: %q, created %v, %v", b, created, err)
	}
}
