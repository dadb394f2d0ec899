//go:build unix

package storage

import (
	"errors"
	"os"
	"syscall"
)

// errWouldBlock is what lockDir returns when another open file holds the
// lock.
var errWouldBlock = syscall.EWOULDBLOCK

// lockDir takes an exclusive flock on the file at path, creating it, and
// returns the open file that holds the lock. flock locks belong to the
// open file description, so a second Open in the same process conflicts
// just like another process does, and the kernel drops the lock when the
// process dies, so a crash never leaves a stale lock behind.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}
