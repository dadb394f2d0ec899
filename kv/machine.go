package kv

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"
)

// Machine is the replicated key-value state: the part every node holds
// identically because it applies the same commands in the same log order.
// It implements consensus.StateMachine. Apply is called by the raft loop;
// reads may run concurrently from any goroutine.
type Machine struct {
	maxKeyBytes   int
	maxValueBytes int

	mu       sync.RWMutex
	items    map[string]Item
	revision int64
	applied  uint64
	// hub receives every change, under mu, in revision order.
	hub watchHub
}

// Result is what Apply returns for a command: the revision the write was
// given, or the error that rejected it (nothing was changed then).
type Result struct {
	Revision int64
	Err      error
}

// NewMachine returns an empty state with the default key and value limits.
func NewMachine() *Machine {
	return &Machine{
		maxKeyBytes:   DefaultMaxKeyBytes,
		maxValueBytes: DefaultMaxValueBytes,
		items:         make(map[string]Item),
	}
}

// Apply implements consensus.StateMachine. It validates the command
// against the limits (identically on every node) and applies it. It never
// panics on a malformed command: it returns a Result carrying the error.
func (m *Machine) Apply(index uint64, cmd []byte) any {
	c, err := decodeCommand(cmd)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applied = index
	if err != nil {
		return Result{Err: err}
	}
	if err := checkKey(c.Key, m.maxKeyBytes); err != nil {
		return Result{Err: err}
	}
	switch c.Op {
	case opPut:
		if err := checkValue(c.Value, m.maxValueBytes); err != nil {
			return Result{Err: err}
		}
		m.revision++
		it, ok := m.items[c.Key]
		if !ok {
			it = Item{Key: c.Key, CreateRevision: m.revision}
		}
		it.Value = c.Value
		it.Revision = m.revision
		it.Version++
		m.items[c.Key] = it
		m.hub.publish(Event{Type: EventPut, Item: it})
	case opDelete:
		if _, ok := m.items[c.Key]; !ok {
			return Result{Err: fmt.Errorf("kv: delete %q: %w", c.Key, ErrKeyNotFound)}
		}
		m.revision++
		delete(m.items, c.Key)
		m.hub.publish(Event{Type: EventDelete, Item: Item{Key: c.Key, Revision: m.revision}})
	}
	return Result{Revision: m.revision}
}

// Get returns the item under key from local state.
func (m *Machine) Get(key string) (Item, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	it, ok := m.items[key]
	return it, ok
}

// List returns the items whose key starts with prefix, sorted by key, and
// the revision of the state they were read from.
func (m *Machine) List(prefix string) ([]Item, int64) {
	m.mu.RLock()
	out := make([]Item, 0)
	for k, it := range m.items {
		if strings.HasPrefix(k, prefix) {
			out = append(out, it)
		}
	}
	rev := m.revision
	m.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, rev
}

// Revision returns the revision of the last applied write.
func (m *Machine) Revision() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.revision
}

// Len returns the number of keys.
func (m *Machine) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.items)
}

func checkKey(key string, limit int) error {
	switch {
	case key == "":
		return fmt.Errorf("kv: empty key: %w", ErrInvalidKey)
	case len(key) > limit:
		return fmt.Errorf("kv: key of %d bytes exceeds %d: %w", len(key), limit, ErrInvalidKey)
	case !utf8.ValidString(key):
		return fmt.Errorf("kv: key is not valid UTF-8: %w", ErrInvalidKey)
	}
	return nil
}

func checkValue(v []byte, limit int) error {
	if len(v) > limit {
		return fmt.Errorf("kv: value of %d bytes exceeds %d: %w", len(v), limit, ErrValueTooLarge)
	}
	if !json.Valid(v) {
		return fmt.Errorf("kv: value is not valid JSON: %w", ErrInvalidValue)
	}
	return nil
}
