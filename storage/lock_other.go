//go:build !unix

package storage

import (
	"errors"
	"os"
)

// errWouldBlock never matches on platforms without flock; there pebble's
// own LOCK file is the only guard against a second open.
var errWouldBlock = errors.New("storage: lock would block")

// lockDir opens (creating) the lock file without locking it.
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}
