package storage

import "errors"

// Sentinel errors. They are always wrapped with the directory and what was
// being read or written; check them with errors.Is.
var (
	// ErrCorrupt means stored data failed verification: a checksum
	// mismatch, a record that does not decode, a missing or misplaced log
	// entry, an unknown format version, or corruption that pebble itself
	// detected in its files. The store must not be used as is; recover the
	// node from its peers (or a backup) instead.
	ErrCorrupt = errors.New("storage corrupt")

	// ErrLocked means another Pebble (in this process or another one) has
	// the directory open.
	ErrLocked = errors.New("storage locked")

	// ErrClosed means the storage has been closed.
	ErrClosed = errors.New("storage closed")
)
