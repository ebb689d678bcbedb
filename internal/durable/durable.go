// Package durable writes small files that must survive a crash once written:
// the node's master key and admin token, and the renames that put a backup
// or a restored log in place.
package durable

import (
	"os"
	"path/filepath"
)

// WriteFile writes data to a new file at path with mode perm, creating the
// directory (0700) if needed. When it returns nil the file is on disk under
// its name: the data is synced before a rename makes it visible, and the
// directory after, so a crash leaves either no file or the whole file, never
// an empty one. An existing file at path is replaced.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making the names created or renamed in it
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
