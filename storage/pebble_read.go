package storage

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// InitialState returns the stored hard state (empty if none was saved) and
// the configuration in the stored snapshot's metadata (empty if there is no
// snapshot). Neither is nil, and the caller owns both.
func (p *Pebble) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if err := p.usable(); err != nil {
		return nil, nil, err
	}
	hs := proto.Clone(p.hardState).(*raftpb.HardState)
	cs := &raftpb.ConfState{}
	if c := p.snapMeta.GetConfState(); c != nil {
		cs = proto.Clone(c).(*raftpb.ConfState)
	}
	return hs, raftpb.EnsureConfState(cs), nil
}

// Entries returns the entries in [lo, hi), stopping before the total
// encoded size would exceed maxSize but returning at least one entry. It
// returns raft.ErrCompacted if lo is at or below the log start and
// raft.ErrUnavailable if hi is beyond LastIndex()+1 or the log is empty.
// The caller owns the slice; the entries must not be mutated.
func (p *Pebble) Entries(lo, hi, maxSize uint64) (ents []*raftpb.Entry, err error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	defer p.catchFatal(&err, false)
	if err := p.usable(); err != nil {
		return nil, err
	}
	switch {
	case lo < p.first:
		return nil, raft.ErrCompacted
	case hi > p.last+1:
		return nil, raft.ErrUnavailable
	case lo > hi:
		return nil, fmt.Errorf("storage: %s: invalid entry range [%d, %d)", p.dir, lo, hi)
	case p.last < p.first:
		return nil, raft.ErrUnavailable
	case lo == hi:
		return []*raftpb.Entry{}, nil
	}
	if _, ok := p.cached(lo); ok {
		ents = make([]*raftpb.Entry, 0, min(hi-lo, 64))
		var size uint64
		for i := lo; i < hi; i++ {
			e, _ := p.cached(i)
			size += uint64(proto.Size(e))
			if len(ents) > 0 && size > maxSize {
				break
			}
			ents = append(ents, e)
		}
		return ents, nil
	}

	iter, err := p.db.NewIter(&pebble.IterOptions{LowerBound: entryKey(lo), UpperBound: entryKey(hi)})
	if err != nil {
		return nil, p.readFailed("entries", err)
	}
	defer func() {
		if cerr := iter.Close(); cerr != nil && err == nil {
			ents, err = nil, p.readFailed("entries", cerr)
		}
	}()
	// Bounded so that a large hi with a small maxSize does not allocate
	// for entries that will never be read.
	ents = make([]*raftpb.Entry, 0, min(hi-lo, 64))
	var size uint64
	want := lo
	for valid := iter.First(); valid; valid = iter.Next() {
		index, ok := parseEntryKey(iter.Key())
		if !ok || index != want {
			return nil, p.corruptEntry(want, fmt.Errorf("missing: %w", ErrCorrupt))
		}
		v, err := iter.ValueAndErr()
		if err != nil {
			return nil, p.readFailed(fmt.Sprintf("entry at index %d", index), err)
		}
		e, err := decodeEntry(index, v)
		if err != nil {
			return nil, p.corruptEntry(index, err)
		}
		size += uint64(proto.Size(e))
		if len(ents) > 0 && size > maxSize {
			return ents, nil
		}
		ents = append(ents, e)
		want++
	}
	if err := iter.Error(); err != nil {
		return nil, p.readFailed("entries", err)
	}
	if want != hi {
		return nil, p.corruptEntry(want, fmt.Errorf("missing: %w", ErrCorrupt))
	}
	return ents, nil
}

// Term returns the term of entry i, for i in [FirstIndex()-1, LastIndex()].
// It returns raft.ErrCompacted below that range and raft.ErrUnavailable
// above it.
func (p *Pebble) Term(i uint64) (term uint64, err error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	defer p.catchFatal(&err, false)
	if err := p.usable(); err != nil {
		return 0, err
	}
	return p.term(i)
}

// term is Term for callers that hold p.mu.
func (p *Pebble) term(i uint64) (uint64, error) {
	switch {
	case i < p.start.index:
		return 0, raft.ErrCompacted
	case i > p.last:
		return 0, raft.ErrUnavailable
	case i == p.start.index:
		return p.start.term, nil
	}
	if e, ok := p.cached(i); ok {
		return e.GetTerm(), nil
	}
	v, closer, err := p.db.Get(entryKey(i))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, p.corruptEntry(i, fmt.Errorf("missing: %w", ErrCorrupt))
	}
	if err != nil {
		return 0, p.readFailed(fmt.Sprintf("entry at index %d", i), err)
	}
	defer func() { _ = closer.Close() }()
	t, err := decodeEntryTerm(i, v)
	if err != nil {
		return 0, p.corruptEntry(i, err)
	}
	return t, nil
}

// LastIndex returns the index of the last entry, or the log start's index
// when the log is empty.
func (p *Pebble) LastIndex() (uint64, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if err := p.usable(); err != nil {
		return 0, err
	}
	return p.last, nil
}

// FirstIndex returns the index of the first entry that Entries may
// return: one past the snapshot or the last Compact.
func (p *Pebble) FirstIndex() (uint64, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if err := p.usable(); err != nil {
		return 0, err
	}
	return p.first, nil
}

// Snapshot returns the stored snapshot, data included, or an empty
// snapshot (zero metadata) if none has been saved. The caller owns it.
func (p *Pebble) Snapshot() (snap *raftpb.Snapshot, err error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	defer p.catchFatal(&err, false)
	if err := p.usable(); err != nil {
		return nil, err
	}
	if p.snapMeta == nil {
		return raftpb.EnsureSnapshot(nil), nil
	}
	v, ok, err := p.get(keySnapshot)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, p.corrupt("snapshot", fmt.Errorf("missing: %w", ErrCorrupt))
	}
	snap = &raftpb.Snapshot{}
	if err := decodeProto(v, snap); err != nil {
		return nil, p.corrupt("snapshot", err)
	}
	if m := snap.GetMetadata(); m.GetIndex() != p.snapMeta.GetIndex() || m.GetTerm() != p.snapMeta.GetTerm() {
		return nil, p.corrupt("snapshot", fmt.Errorf("holds index %d term %d, expected %d term %d: %w",
			m.GetIndex(), m.GetTerm(), p.snapMeta.GetIndex(), p.snapMeta.GetTerm(), ErrCorrupt))
	}
	return raftpb.EnsureSnapshot(snap), nil
}
