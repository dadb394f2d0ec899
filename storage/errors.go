package storage

import "errors"

// Sentinel errors. They are always wrapped with what was being read or
// written (and, for Pebble, the directory); check them with errors.Is.
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

	// ErrInvalidState means NewMemoryFrom was given a state no raft node
	// could have stored; the *StateError that wraps it names the rule.
	ErrInvalidState = errors.New("invalid storage state")
)
