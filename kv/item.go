package kv

import "github.com/unrdf/consensus/api"

// Item is one key and its value with the revisions that describe it
// (defined in api, the client-facing contract).
type Item = api.Item

// Consistency selects how a read is served.
type Consistency = api.Consistency

// Read consistencies.
const (
	// Linearizable reads reflect every write acknowledged before the read
	// began (raft ReadIndex). The default.
	Linearizable = api.Linearizable
	// Local reads serve this node's applied state: fast, possibly stale.
	Local = api.Local
)

// Limits enforced on keys and values.
const (
	// DefaultMaxKeyBytes is the default limit on a key's length in bytes.
	DefaultMaxKeyBytes = 1 << 10
	// DefaultMaxValueBytes is the default limit on a value's size in bytes.
	DefaultMaxValueBytes = 1 << 20
)

// Sentinel errors of the key-value store, checked with errors.Is; api
// defines them, so that a client matches them without importing kv.
var (
	// ErrKeyNotFound means the key does not exist.
	ErrKeyNotFound = api.ErrKeyNotFound
	// ErrInvalidKey means the key is empty or too long, or, in a write of
	// the HTTP and /v1/ws APIs (ValidateKey), not valid UTF-8 or holds a
	// control character; or that a prefix is too long.
	ErrInvalidKey = api.ErrInvalidKey
	// ErrInvalidValue means the value is not a valid JSON value.
	ErrInvalidValue = api.ErrInvalidValue
	// ErrValueTooLarge means the value exceeds the value size limit.
	ErrValueTooLarge = api.ErrValueTooLarge
)
