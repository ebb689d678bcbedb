//go:build unix

package boltlog

import (
	"os"
	"syscall"
)

// unlockFile releases the flock bbolt took on f. Closing f alone does not
// while bbolt's memory map of the file lasts: the map holds the open file,
// and the lock goes only with its last holder.
func unlockFile(f *os.File) {
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
