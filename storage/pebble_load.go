package storage

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// load reads and verifies every record and fills the in-memory state.
func (p *Pebble) load() error {
	if err := p.checkVersion(); err != nil {
		return err
	}

	p.hardState = &raftpb.HardState{}
	if v, ok, err := p.get(keyHardState); err != nil {
		return err
	} else if ok {
		if err := decodeProto(v, p.hardState); err != nil {
			return p.corrupt("hard state", err)
		}
	}

	if v, ok, err := p.get(keySnapshot); err != nil {
		return err
	} else if ok {
		snap := &raftpb.Snapshot{}
		if err := decodeProto(v, snap); err != nil {
			return p.corrupt("snapshot", err)
		}
		if raft.IsEmptySnap(snap) {
			return p.corrupt("snapshot", fmt.Errorf("stored snapshot has index 0: %w", ErrCorrupt))
		}
		p.snapMeta = snap.GetMetadata()
	}

	if v, ok, err := p.get(keyLogStart); err != nil {
		return err
	} else if ok {
		if p.start, err = decodeLogStart(v); err != nil {
			return p.corrupt("log start", err)
		}
	} else if p.snapMeta != nil {
		return p.corrupt("log start", fmt.Errorf("missing, but a snapshot is stored: %w", ErrCorrupt))
	}
	if si := p.snapMeta.GetIndex(); p.start.index == si && p.snapMeta != nil && p.start.term != p.snapMeta.GetTerm() {
		return p.corrupt("log start", fmt.Errorf("index %d term %d disagrees with the snapshot at index %d term %d: %w",
			p.start.index, p.start.term, si, p.snapMeta.GetTerm(), ErrCorrupt))
	}
	p.first = p.start.index + 1
	p.last = p.start.index

	if v, ok, err := p.get(keyClusterID); err != nil {
		return err
	} else if ok {
		if _, err := decodeClusterID(v); err != nil {
			return p.corrupt("cluster id", err)
		}
	}
	if err := p.verifyEntries(); err != nil {
		return err
	}
	// A snapshot the node took itself sits inside the log (SetSnapshot
	// keeps the entries before it for slow followers); the log must then
	// reach it with the snapshot's term.
	if si := p.snapMeta.GetIndex(); p.snapMeta != nil && p.start.index < si {
		if si > p.last {
			return p.corrupt("log", fmt.Errorf("ends at index %d, before the snapshot at index %d: %w", p.last, si, ErrCorrupt))
		}
		if t, err := p.term(si); err != nil || t != p.snapMeta.GetTerm() {
			return p.corrupt("log", fmt.Errorf("entry %d (term %d, %v) disagrees with the snapshot's term %d: %w", si, t, err, p.snapMeta.GetTerm(), ErrCorrupt))
		}
	}
	if c := p.hardState.GetCommit(); c > p.last {
		return p.corrupt("hard state", fmt.Errorf("commit index %d is beyond the last index %d: %w", c, p.last, ErrCorrupt))
	}
	return nil
}

// checkVersion checks the format version record, writing it into a new,
// empty store.
func (p *Pebble) checkVersion() error {
	v, ok, err := p.get(keyVersion)
	if err != nil {
		return err
	}
	if ok {
		got, err := decodeVersion(v)
		if err != nil {
			return p.corrupt("format version", err)
		}
		if got != formatVersion {
			return p.corrupt("format version", fmt.Errorf("unsupported version %d (this build reads %d): %w", got, formatVersion, ErrCorrupt))
		}
		return nil
	}
	iter, err := p.db.NewIter(nil)
	if err != nil {
		return p.readFailed("format version", err)
	}
	nonEmpty := iter.First()
	if err := errors.Join(iter.Error(), iter.Close()); err != nil {
		return p.readFailed("format version", err)
	}
	if nonEmpty {
		return p.corrupt("format version", fmt.Errorf("missing from a non-empty store: %w", ErrCorrupt))
	}
	if err := p.db.Set(keyVersion, encodeVersion(formatVersion), pebble.Sync); err != nil {
		return fmt.Errorf("storage: %s: write format version: %w", p.dir, err)
	}
	// Pebble replays a damaged WAL tail as if it were a torn write and
	// drops it silently. Flushing moves the version record into an
	// sstable, so that damage can never make a used store look new (and
	// so be taken for an empty one, forgetting votes and entries).
	if err := p.db.Flush(); err != nil {
		return fmt.Errorf("storage: %s: flush format version: %w", p.dir, err)
	}
	return nil
}

// verifyEntries reads every entry, checking that each decodes, sits under
// its own index, follows the previous one and does not go back in term.
func (p *Pebble) verifyEntries() error {
	iter, err := p.db.NewIter(&pebble.IterOptions{LowerBound: entryKeysStart, UpperBound: entryKeysEnd})
	if err != nil {
		return p.readFailed("entries", err)
	}
	defer func() { _ = iter.Close() }()
	prevTerm := p.start.term
	for valid := iter.First(); valid; valid = iter.Next() {
		want := p.last + 1
		index, ok := parseEntryKey(iter.Key())
		if !ok {
			return p.corrupt("entries", fmt.Errorf("malformed key %x: %w", iter.Key(), ErrCorrupt))
		}
		if index != want {
			return p.corruptEntry(want, fmt.Errorf("missing (next stored entry is %d): %w", index, ErrCorrupt))
		}
		v, err := iter.ValueAndErr()
		if err != nil {
			return p.readFailed(fmt.Sprintf("entry at index %d", index), err)
		}
		term, err := decodeEntryTerm(index, v)
		if err == nil {
			// The term-only reader skips the data; decode fully once here
			// so that a store that opens never fails to decode later.
			_, err = decodeEntry(index, v)
		}
		if err != nil {
			return p.corruptEntry(index, err)
		}
		if term < prevTerm {
			return p.corruptEntry(index, fmt.Errorf("term %d is below the previous term %d: %w", term, prevTerm, ErrCorrupt))
		}
		prevTerm = term
		p.last = index
	}
	if err := iter.Error(); err != nil {
		return p.readFailed("entries", err)
	}
	return nil
}
