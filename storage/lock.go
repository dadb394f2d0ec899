package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Lock takes the lock a Pebble store holds on its directory dir while it
// is open, without opening the store or creating anything but the lock
// file, so that an offline tool (consensus recover) can make sure no
// running node uses dir for as long as it works on it. A directory that a
// store (in this process or another) has open gives an error wrapping
// ErrLocked; a missing dir an error wrapping fs.ErrNotExist. Close the
// returned lock to release it.
func Lock(dir string) (io.Closer, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: %s: %w", dir, err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("storage: %s: not a directory", dir)
	}
	f, err := lockDir(filepath.Join(dir, lockFileName))
	if err != nil {
		if errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("storage: %s: in use by a running node: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("storage: %s: lock: %w", dir, err)
	}
	return f, nil
}

// LockFileName is the name of the lock file in a store's directory (see
// Lock); a copy of a store need not include it.
const LockFileName = lockFileName
