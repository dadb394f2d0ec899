package kv

import (
	"context"
	"io"
)

// View is a frozen, point-in-time view of the whole state, for backups.
// Its bytes (WriteTo) are those of a state machine snapshot, which
// Machine.Restore reads back. Capturing one is O(1) (a copy-on-write
// clone); writes go on while it is written out, and it holds the memory
// of what they change until Release.
type View struct {
	// Revision is the revision of the last write the view includes.
	Revision int64
	// AppliedIndex is the raft index of the last command applied to it.
	AppliedIndex uint64
	// Keys is the number of keys in it.
	Keys int

	snap *snapshot
}

// View captures the state as it is now.
func (m *Machine) View() *View {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &View{
		Revision: m.revision, AppliedIndex: m.applied, Keys: m.keysRead(),
		snap: m.snapshotLocked(),
	}
}

// View captures the state at a linearizable point: after a linearizable
// read (bounded by ctx), so it holds every write acknowledged before the
// call, on whichever node it is taken.
func (s *Store) View(ctx context.Context) (*View, error) {
	if err := s.node.LinearizableRead(ctx); err != nil {
		return nil, err
	}
	return s.machine.View(), nil
}

// WriteTo writes the view in the state machine's snapshot format. It may
// run concurrently with Apply, and may be called more than once before
// Release.
func (v *View) WriteTo(w io.Writer) (int64, error) { return v.snap.WriteTo(w) }

// Release frees the view; WriteTo must not be called after it.
func (v *View) Release() { v.snap.Release() }
