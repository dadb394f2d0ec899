package kv

import "github.com/unrdf/consensus/api"

// EventType says what a change did to a key.
type EventType = api.EventType

// Event types. Their values are part of the snapshot and wire formats.
const (
	// EventPut means the key was created or changed.
	EventPut = api.EventPut
	// EventDelete means the key was deleted.
	EventDelete = api.EventDelete
)

// Event is one change to one key, as watchers and state_changed
// subscribers see it. Events are produced in revision order, identically
// on every node, because they come from applying the log.
type Event = api.Event
