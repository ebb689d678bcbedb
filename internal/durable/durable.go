// Package durable creates small files that must survive a crash once
// written (the node's master key, admin token and checkpoint signing key),
// and syncs the directories of renames that put a backup or a restored log
// in place.
package durable

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
)

// Create writes data to a new file at path with mode perm, creating the
// directory (0700) if needed, unless a file is there already: then it
// returns an error that matches os.ErrExist and leaves that file alone, so
// of two processes creating the same file at once one wins and the other
// reads the winner's file. When Create returns nil the file is on disk
// under its name: the data is synced in a temporary file before a link
// makes it visible, and the directory after, so a crash leaves either no
// file or the whole file, never an empty one.
func Create(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return err // *os.LinkError; errors.Is(err, os.ErrExist) when path exists
	}
	return SyncDir(dir)
}

// ReadOrCreate returns the contents of the file at path, first creating it
// with Create from what newData returns if it does not exist; created says
// whether this call made it. Of two processes creating it at once, both
// get the file that reached the disk first.
func ReadOrCreate(path string, perm os.FileMode, newData func() ([]byte, error)) (data []byte, created bool, err error) {
	data, err = os.ReadFile(path)
	if !errors.Is(err, os.ErrNotExist) {
		return data, false, err
	}
	if data, err = newData(); err != nil {
		return nil, false, err
	}
	switch err := Create(path, data, perm); {
	case err == nil:
		return data, true, nil
	case !errors.Is(err, os.ErrExist):
		return nil, false, err
	}
	data, err = os.ReadFile(path) // made meanwhile by another process
	return data, false, err
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

// ErrSecretWritable means a secret file others (not its owner, not its
// group) may write: whoever can write it can put a secret of their own in
// its place.
var ErrSecretWritable = errors.New("a secret file others may write")

// CheckSecret checks the permission bits of the secret file at path (what
// names it in messages: "master key", "admin token"): it refuses one others
// may write (ErrSecretWritable), and warns through log of one its group may
// write or its group or others may read. Group write is not refused: on a
// Kubernetes volume with an fsGroup the kubelet gives the pod's group read
// and write on every file, the node's own 0600 files too, and secrets are
// mounted 0644 by default. Neither the error nor the log holds the secret.
// Windows has no such permission bits: nothing to check.
func CheckSecret(path, what string, log *slog.Logger) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	fi, err := os.Stat(path) // through a symlink, as Kubernetes mounts secrets
	if err != nil {
		return err
	}
	switch perm := fi.Mode().Perm(); {
	case perm&0o002 != 0:
		return fmt.Errorf("%w: %s %s is %v (chmod 600 it)", ErrSecretWritable, what, path, perm)
	case perm&0o020 != 0:
		log.Warn(what+" file is writable by its group: chmod 600 it, unless the group is the deployment's own (a Kubernetes fsGroup)",
			"path", path, "mode", perm.String())
	case perm&0o044 != 0:
		log.Warn(what+" file is readable by its group or others: chmod 600 it, or mount it owner-only",
			"path", path, "mode", perm.String())
	}
	return nil
}
