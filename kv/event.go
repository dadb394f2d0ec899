package kv

// EventType says what a change did to a key.
type EventType uint8

// Event types. Their values are part of the snapshot and wire formats.
const (
	// EventPut means the key was created or changed.
	EventPut EventType = 1
	// EventDelete means the key was deleted.
	EventDelete EventType = 2
)

// String returns "put" or "delete".
func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	}
	return "unknown"
}

// Event is one change to one key, as watchers and state_changed
// subscribers see it. Events are produced in revision order, identically
// on every node, because they come from applying the log.
type Event struct {
	// Type is put or delete.
	Type EventType
	// Item is the key after a put. After a delete it holds the key and
	// the delete's revision, with no value.
	Item Item
}
