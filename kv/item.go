package kv

import (
	"encoding/json"
	"errors"
)

// Item is one key and its value with the revisions that describe it.
type Item struct {
	// Key is the item's key.
	Key string `json:"key"`
	// Value is the stored JSON value, compacted.
	Value json.RawMessage `json:"value"`
	// Revision is the cluster-wide revision of the write that last changed
	// the key.
	Revision int64 `json:"revision"`
	// CreateRevision is the revision at which the key was created.
	CreateRevision int64 `json:"createRevision"`
	// Version is 1 at creation and grows by one with every change; a
	// delete resets it.
	Version int64 `json:"version"`
}

// Consistency selects how a read is served.
type Consistency int

const (
	// Linearizable reads reflect every write acknowledged before the read
	// began (raft ReadIndex). The default.
	Linearizable Consistency = iota
	// Local reads serve this node's applied state: fast, possibly stale.
	Local
)

// String returns "linearizable" or "local".
func (c Consistency) String() string {
	if c == Local {
		return "local"
	}
	return "linearizable"
}

// Limits enforced on keys and values.
const (
	// DefaultMaxKeyBytes is the default limit on a key's length in bytes.
	DefaultMaxKeyBytes = 1 << 10
	// DefaultMaxValueBytes is the default limit on a value's size in bytes.
	DefaultMaxValueBytes = 1 << 20
)

// Sentinel errors of the key-value store, checked with errors.Is.
var (
	// ErrKeyNotFound means the key does not exist.
	ErrKeyNotFound = errors.New("key not found")
	// ErrInvalidKey means the key is empty, not valid UTF-8 or too long,
	// or, in a request (ValidateKey), holds a control character; or that a
	// prefix is not valid UTF-8, too long or holds a control character.
	ErrInvalidKey = errors.New("invalid key")
	// ErrInvalidValue means the value is not a valid JSON value.
	ErrInvalidValue = errors.New("invalid value")
	// ErrValueTooLarge means the value exceeds the value size limit.
	ErrValueTooLarge = errors.New("value too large")
)
