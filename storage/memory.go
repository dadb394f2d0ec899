package storage

import (
	"fmt"
	"sync"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Memory is raft storage without durability, on raft's MemoryStorage, for
// fast deterministic tests and for embedders that keep no state across
// restarts. It has Pebble's semantics (Save, Compact and the errors of
// Term and Entries) except that nothing survives the process and nothing
// is verified, because nothing is read back from disk. Its methods are
// safe for concurrent use.
//
// Unlike Pebble, Memory keeps the entries and snapshot data passed to Save
// rather than copies; raft never mutates them and neither may the caller.
type Memory struct {
	// mu makes each Save and Compact atomic to readers: a Save validates
	// against the log and then applies in several MemoryStorage calls,
	// which must not interleave with another writer nor be observed half
	// done. It also keeps reads' bounds checks (which turn MemoryStorage's
	// panics into errors) true for the call they guard.
	mu sync.RWMutex
	ms *raft.MemoryStorage
	// hardState is the last saved hard state, never nil. It is kept here
	// because MemoryStorage.InitialState reads its own copy unlocked.
	hardState *raftpb.HardState
	// snapIndex is the index of the stored snapshot, 0 if none.
	snapIndex uint64
	// clusterID is the stored cluster id, 0 if none.
	clusterID uint64
	closed    bool
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	return &Memory{ms: raft.NewMemoryStorage(), hardState: &raftpb.HardState{}}
}

func (m *Memory) usable() error {
	if m.closed {
		return fmt.Errorf("storage: memory: %w", ErrClosed)
	}
	return nil
}

// bounds reads the log's shape. Callers hold m.mu.
func (m *Memory) bounds() (bounds, error) {
	first, err := m.ms.FirstIndex()
	if err != nil {
		return bounds{}, err
	}
	last, err := m.ms.LastIndex()
	if err != nil {
		return bounds{}, err
	}
	return bounds{first: first, last: last, snapIndex: m.snapIndex}, nil
}

// InitialState returns the saved hard state (empty if none) and the
// configuration in the stored snapshot (empty if none). The caller owns
// both.
func (m *Memory) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.usable(); err != nil {
		return nil, nil, err
	}
	snap, err := m.ms.Snapshot()
	if err != nil {
		return nil, nil, err
	}
	cs := raftpb.EnsureConfState(snap.GetMetadata().GetConfState())
	return proto.Clone(m.hardState).(*raftpb.HardState), cs, nil
}

// Entries has the contract of Pebble.Entries.
func (m *Memory) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.usable(); err != nil {
		return nil, err
	}
	b, err := m.bounds()
	if err != nil {
		return nil, err
	}
	switch {
	case lo < b.first:
		return nil, raft.ErrCompacted
	case hi > b.last+1:
		return nil, raft.ErrUnavailable
	case lo > hi:
		return nil, fmt.Errorf("storage: memory: invalid entry range [%d, %d)", lo, hi)
	}
	return m.ms.Entries(lo, hi, maxSize)
}

// Term has the contract of Pebble.Term.
func (m *Memory) Term(i uint64) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.usable(); err != nil {
		return 0, err
	}
	return m.ms.Term(i)
}

// LastIndex has the contract of Pebble.LastIndex.
func (m *Memory) LastIndex() (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.usable(); err != nil {
		return 0, err
	}
	return m.ms.LastIndex()
}

// FirstIndex has the contract of Pebble.FirstIndex.
func (m *Memory) FirstIndex() (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.usable(); err != nil {
		return 0, err
	}
	return m.ms.FirstIndex()
}

// Snapshot has the contract of Pebble.Snapshot.
func (m *Memory) Snapshot() (*raftpb.Snapshot, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.usable(); err != nil {
		return nil, err
	}
	return m.ms.Snapshot()
}

// Save has the contract of Pebble.Save, without the durability.
func (m *Memory) Save(hs *raftpb.HardState, entries []*raftpb.Entry, snap *raftpb.Snapshot) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.usable(); err != nil {
		return err
	}
	b, err := m.bounds()
	if err != nil {
		return err
	}
	plan, err := planSave(b, m.ms.Term, hs, entries, snap)
	if err != nil {
		return err
	}
	// Every step below is within the bounds planSave checked, so none of
	// MemoryStorage's panics or errors can fire; errors are still passed
	// on rather than assumed away.
	if plan.snap != nil {
		meta := plan.snap.GetMetadata()
		if plan.keepLog {
			// Record the snapshot without dropping the log after it, then
			// drop what it covers (unless that is only the log start).
			if err := m.createSnapshot(plan.snap); err != nil {
				return err
			}
			if meta.GetIndex() >= b.first {
				if err := m.ms.Compact(meta.GetIndex()); err != nil {
					return fmt.Errorf("storage: memory: %w", err)
				}
			}
		} else {
			// A shallow copy: ApplySnapshot fills in nil fields of its
			// argument, which belongs to the caller.
			s := &raftpb.Snapshot{Data: plan.snap.GetData(), Metadata: proto.Clone(meta).(*raftpb.SnapshotMetadata)}
			if err := m.ms.ApplySnapshot(s); err != nil {
				return fmt.Errorf("storage: memory: %w", err)
			}
		}
		m.snapIndex = meta.GetIndex()
	}
	if err := m.ms.Append(plan.entries); err != nil {
		return fmt.Errorf("storage: memory: %w", err)
	}
	if plan.hardState != nil {
		hs := &raftpb.HardState{
			Term:   proto.Uint64(plan.hardState.GetTerm()),
			Vote:   proto.Uint64(plan.hardState.GetVote()),
			Commit: proto.Uint64(plan.hardState.GetCommit()),
		}
		if err := m.ms.SetHardState(hs); err != nil {
			return fmt.Errorf("storage: memory: %w", err)
		}
		m.hardState = hs
	}
	return nil
}

// SetSnapshot has the contract of Pebble.SetSnapshot.
func (m *Memory) SetSnapshot(snap *raftpb.Snapshot) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.usable(); err != nil {
		return err
	}
	b, err := m.bounds()
	if err != nil {
		return err
	}
	if err := checkSetSnapshot(snap, m.snapIndex, b.first-1, b.last, m.ms.Term); err != nil {
		return fmt.Errorf("storage: memory: %w", err)
	}
	if err := m.createSnapshot(snap); err != nil {
		return err
	}
	m.snapIndex = snap.GetMetadata().GetIndex()
	return nil
}

// createSnapshot records snap in MemoryStorage without touching the log.
// Callers hold m.mu and have checked snap against the log.
func (m *Memory) createSnapshot(snap *raftpb.Snapshot) error {
	meta := snap.GetMetadata()
	cs := meta.GetConfState()
	if cs == nil {
		cs = &raftpb.ConfState{}
	}
	if _, err := m.ms.CreateSnapshot(meta.GetIndex(), cs, snap.GetData()); err != nil {
		return fmt.Errorf("storage: memory: %w", err)
	}
	return nil
}

// Compact has the contract of Pebble.Compact.
func (m *Memory) Compact(index uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.usable(); err != nil {
		return err
	}
	b, err := m.bounds()
	if err != nil {
		return err
	}
	if index < b.first {
		return nil
	}
	if index > b.last {
		return fmt.Errorf("storage: memory: compact %d beyond the last index %d: %w", index, b.last, raft.ErrUnavailable)
	}
	return m.ms.Compact(index)
}

// Close makes every later call fail with ErrClosed.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.usable(); err != nil {
		return err
	}
	m.closed = true
	return nil
}
