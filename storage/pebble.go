package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Options tunes a Pebble store. The zero value is ready to use.
type Options struct {
	// Logger receives storage events; pebble's own informational messages
	// go to it at debug level and its errors at error level. Nil discards
	// everything.
	Logger *slog.Logger

	// CacheSize is the size in bytes of pebble's block cache, which serves
	// reads of entries that have left the memtable (followers catching up,
	// restarts). Zero means DefaultCacheSize; negative is invalid.
	CacheSize int64

	// MemTableSize is the size in bytes of each pebble memtable. Appended
	// entries stay in memory until a memtable fills and is flushed, and
	// entries are usually compacted away before that happens, so a larger
	// memtable means less write amplification and more memory. Zero means
	// DefaultMemTableSize; otherwise it must be between 1 MiB and 1 GiB.
	MemTableSize uint64

	// FS is the file system the store lives on. Nil means the operating
	// system's, with the directory locked by flock. Any other FS (pebble's
	// vfs.NewCrashableMem, say, to simulate power loss in tests) is used
	// for everything, the directory and its lock file included: Open
	// creates and syncs the directory through FS and locks through
	// FS.Lock. Note that vfs.Default's Lock does not report a second open
	// in the same process as ErrLocked; leave FS nil for a real disk.
	FS vfs.FS
}

// Defaults for Options, sized for several nodes sharing a small machine.
const (
	// DefaultCacheSize is the block cache size used when Options.CacheSize
	// is zero.
	DefaultCacheSize = 8 << 20
	// DefaultMemTableSize is the memtable size used when
	// Options.MemTableSize is zero.
	DefaultMemTableSize = 32 << 20
)

// Validate reports whether o can be used to open a store.
func (o Options) Validate() error {
	if o.CacheSize < 0 {
		return fmt.Errorf("storage: negative cache size %d", o.CacheSize)
	}
	if o.MemTableSize != 0 && (o.MemTableSize < 1<<20 || o.MemTableSize > 1<<30) {
		return fmt.Errorf("storage: memtable size %d outside [1 MiB, 1 GiB]", o.MemTableSize)
	}
	return nil
}

// diskSlowThreshold is how long a write or sync may take before the
// disk is reported slow (pebble's own default).
const diskSlowThreshold = 5 * time.Second

// lockFileName is the file in the directory that Open flocks. Pebble takes
// its own LOCK with fcntl, but that lock does not conflict within one
// process on every platform and its error is not recognisable; ours is.
const lockFileName = "storage.lock"

// Pebble is durable raft storage on a pebble database: the log, the hard
// state and the newest snapshot of one raft node. It implements
// raft.Storage and consensus.LogStorage. Its methods are safe for
// concurrent use; reads wait while a Save or Compact is being written.
//
// Term and Entries return raft.ErrCompacted and raft.ErrUnavailable
// unwrapped, because raft compares them with ==. Any other error is
// wrapped and names the directory; stored data that fails verification
// gives an error wrapping ErrCorrupt. After a failed write the store's
// state on disk is unknown, so every later call returns that error.
type Pebble struct {
	dir string
	log *slog.Logger
	// lock holds the directory's lock (a flock, or the FS's lock) until
	// Close.
	lock io.Closer
	// fsCloser stops pebble's disk-health checker.
	fsCloser io.Closer

	// writeMu serialises writers (Save, Compact, SetClusterID, Close) so
	// that Save can write its batch without holding mu, which readers
	// (raft's goroutine) need. Order: writeMu, then mu.
	writeMu sync.Mutex
	mu      sync.RWMutex
	db      *pebble.DB // nil once closed
	// first and last bound the stored entries; start is the entry before
	// first (start.index == first-1), whose term is kept.
	first, last uint64
	start       logStart
	hardState   *raftpb.HardState
	// snapMeta is the stored snapshot's metadata, nil if none. The
	// snapshot's data stays on disk until Snapshot is called.
	snapMeta *raftpb.SnapshotMetadata
	// failed is set by a write whose outcome on disk is unknown.
	failed error
	// tail caches the newest stored entries, tail[0] up to index last, so
	// that raft's reads of what it has just appended (committed entries
	// to apply, appends to a follower slightly behind) need neither a disk
	// read nor a decode. Bounded by maxTailEntries and maxTailBytes. The
	// entries are raft's own, which neither raft nor we mutate.
	tail      []*raftpb.Entry
	tailBytes int
}

// Open opens the store in dir, creating dir (mode 0700) and an empty store
// if there is none. It verifies every record before returning, so a store
// that opens is whole; a store that fails verification gives an error
// wrapping ErrCorrupt, and a directory that another Pebble has open gives
// one wrapping ErrLocked. Errors name dir. The caller must Close the store.
func Open(dir string, opts Options) (*Pebble, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := mkdirSynced(opts.FS, dir); err != nil {
		return nil, fmt.Errorf("storage: %s: create directory: %w", dir, err)
	}
	lock, err := lockStore(opts.FS, filepath.Join(dir, lockFileName))
	if err != nil {
		if errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("storage: %s: already open: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("storage: %s: lock: %w", dir, err)
	}
	p := &Pebble{dir: dir, log: logger, lock: lock}
	if err := p.open(opts); err != nil {
		_ = lock.Close()
		return nil, err
	}
	logger.Debug("storage opened", "dir", dir, "first", p.first, "last", p.last,
		"snapshot", p.snapMeta.GetIndex(), "commit", p.hardState.GetCommit())
	return p, nil
}

// open opens pebble and loads and verifies the store. A panic from pebble
// on damaged files becomes an ErrCorrupt error instead of a crash.
func (p *Pebble) open(opts Options) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("storage: %s: pebble failed on open: %v: %w", p.dir, r, ErrCorrupt)
			if p.db != nil {
				closeQuietly(p.db)
				p.db = nil
			}
			if p.fsCloser != nil {
				_ = p.fsCloser.Close()
			}
		}
	}()
	popts := p.pebbleOptions(opts)
	db, err := pebble.Open(p.dir, popts)
	if err != nil {
		_ = p.fsCloser.Close()
		// The directory exists (Open made sure), so a file that pebble
		// cannot find is one its MANIFEST lists: the store is damaged.
		if pebble.IsCorruptionError(err) || errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("storage: %s: open pebble: %w: %w", p.dir, err, ErrCorrupt)
		}
		return fmt.Errorf("storage: %s: open pebble: %w", p.dir, err)
	}
	p.db = db
	if err := p.load(); err != nil {
		_ = db.Close()
		_ = p.fsCloser.Close()
		p.db = nil
		return err
	}
	return nil
}

// lockStore locks the directory's lock file at path: with flock on the
// operating system's file system (fsys nil), else with fsys.Lock.
func lockStore(fsys vfs.FS, path string) (io.Closer, error) {
	if fsys == nil {
		f, err := lockDir(path)
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	return fsys.Lock(path)
}

func closeQuietly(db *pebble.DB) {
	defer func() { _ = recover() }()
	_ = db.Close()
}

func (p *Pebble) pebbleOptions(opts Options) *pebble.Options {
	cacheSize := opts.CacheSize
	if cacheSize == 0 {
		cacheSize = DefaultCacheSize
	}
	memTableSize := opts.MemTableSize
	if memTableSize == 0 {
		memTableSize = DefaultMemTableSize
	}
	pl := pebbleLogger{l: p.log}
	// Pebble wraps its FS for disk-health checks itself when FS is nil, but
	// then leaks the checker's goroutine when Open fails; owning the
	// wrapper lets us always stop it.
	var healthFS vfs.FS
	baseFS := opts.FS
	if baseFS == nil {
		baseFS = privateFS{vfs.Default}
	}
	healthFS, p.fsCloser = vfs.WithDiskHealthChecks(baseFS, diskSlowThreshold, nil, func(info vfs.DiskSlowInfo) {
		p.log.Warn("storage: disk slow", "dir", p.dir, "info", info.String())
	})
	return &pebble.Options{
		FS:           healthFS,
		CacheSize:    cacheSize,
		MemTableSize: memTableSize,
		// Pinned rather than FormatNewest so that upgrading pebble never
		// ratchets the on-disk format (which cannot be undone) by accident.
		FormatMajorVersion: pebble.FormatValueSeparation,
		// One background compaction: several nodes may share two cores, and
		// a raft log is mostly written once and deleted soon.
		CompactionConcurrencyRange: func() (int, int) { return 1, 1 },
		Logger:                     pl,
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) {
				p.log.Error("storage: pebble background error", "dir", p.dir, "err", err)
			},
			// The default calls Fatalf. The read that found the corruption
			// also gets an error, which we report as ErrCorrupt.
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				p.log.Error("storage: pebble found corrupt data", "dir", p.dir, "path", info.Path, "err", info.Details)
			},
		},
	}
}

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

// get reads a singleton record; ok is false if it is absent. The returned
// value is a copy.
func (p *Pebble) get(key []byte) (value []byte, ok bool, err error) {
	v, closer, err := p.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, p.readFailed(fmt.Sprintf("record %x", key), err)
	}
	value = append([]byte(nil), v...)
	return value, true, closer.Close()
}

func (p *Pebble) corrupt(what string, err error) error {
	return fmt.Errorf("storage: %s: corrupt %s: %w", p.dir, what, err)
}

func (p *Pebble) corruptEntry(index uint64, err error) error {
	return fmt.Errorf("storage: %s: corrupt entry at index %d: %w", p.dir, index, err)
}

// readFailed wraps an error from pebble, adding ErrCorrupt when pebble
// says its files are damaged.
func (p *Pebble) readFailed(what string, err error) error {
	if pebble.IsCorruptionError(err) {
		return fmt.Errorf("storage: %s: read %s: %w: %w", p.dir, what, err, ErrCorrupt)
	}
	return fmt.Errorf("storage: %s: read %s: %w", p.dir, what, err)
}

// usable reports why the store cannot be used, if it cannot. Callers hold
// p.mu.
func (p *Pebble) usable() error {
	if p.db == nil {
		return fmt.Errorf("storage: %s: %w", p.dir, ErrClosed)
	}
	return p.failed
}

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

// Save durably writes, as one atomic synced pebble batch, a snapshot (if
// not empty), then entries, then the hard state (if not empty):
//
//   - A snapshot must be newer than the stored one and not older than the
//     log start (else an error wrapping raft.ErrSnapOutOfDate). It
//     discards every entry at or below its index, and the whole log unless
//     the log holds the snapshot's index with the snapshot's term.
//   - Entries must be contiguous and must not go back in term, from the
//     entry before them on. An entry with index i replaces every
//     stored entry at i or above. Entries below FirstIndex() are ignored;
//     entries starting beyond LastIndex()+1 are an error.
//   - A hard state may not commit an index beyond the resulting last index.
//
// An invalid Save writes nothing. Nil or empty arguments are skipped, and
// a Save with nothing to do does not touch the disk. Save keeps the newest
// entries in memory (the tail cache) and hands the same *Entry values back
// from Entries; like raft's MemoryStorage it relies on nobody mutating
// them, which raft's Storage contract requires of both sides.
//
// Save syncs only when raft needs it (raft.MustSync): when it stores
// entries, a snapshot, or a new term or vote. A hard state that only
// advances the commit index is written without waiting for the disk; a
// power loss may take it back, which raft tolerates, and the next synced
// write makes it durable with everything before it. Readers are not held
// up while the batch is written: raft never reads the indexes a Save is
// replacing (they are still in its unstable log), and the bounds readers
// see change only once the batch is durable.
func (p *Pebble) Save(hs *raftpb.HardState, entries []*raftpb.Entry, snap *raftpb.Snapshot) (err error) {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	defer p.catchFatalUnlocked(&err)
	p.mu.RLock()
	if err := p.usable(); err != nil {
		p.mu.RUnlock()
		return err
	}
	plan, err := planSave(bounds{first: p.first, last: p.last, snapIndex: p.snapMeta.GetIndex()}, p.term, hs, entries, snap)
	last, prevHS := p.last, p.hardState
	p.mu.RUnlock()
	if err != nil {
		return err
	}
	if plan.empty() {
		return nil
	}

	w := newBatchWriter(p.db)
	defer w.close()
	var newStart logStart
	var newSnapMeta *raftpb.SnapshotMetadata
	if plan.snap != nil {
		newSnapMeta = raftpb.EnsureSnapshotMetadata(proto.Clone(plan.snap.GetMetadata()).(*raftpb.SnapshotMetadata))
		newStart = logStart{index: newSnapMeta.GetIndex(), term: newSnapMeta.GetTerm()}
		w.setProto(keySnapshot, plan.snap)
		w.set(keyLogStart, encodeLogStart(newStart))
		end := entryKeysEnd
		if plan.keepLog {
			end = entryKey(newStart.index + 1)
		}
		w.deleteRange(entryKeysStart, end)
	}
	if n := len(plan.entries); n > 0 {
		for _, e := range plan.entries {
			w.setProto(entryKey(e.GetIndex()), e)
		}
		// The sets above overwrite the conflicting entries they share an
		// index with; what is left of the old suffix goes here.
		if hi := plan.entries[n-1].GetIndex(); last > hi {
			w.deleteRange(entryKey(hi+1), entryKeysEnd)
		}
	}
	var newHardState *raftpb.HardState
	if plan.hardState != nil {
		newHardState = &raftpb.HardState{
			Term:   proto.Uint64(plan.hardState.GetTerm()),
			Vote:   proto.Uint64(plan.hardState.GetVote()),
			Commit: proto.Uint64(plan.hardState.GetCommit()),
		}
		w.setProto(keyHardState, newHardState)
	}
	if w.err != nil {
		return fmt.Errorf("storage: %s: build batch: %w", p.dir, w.err)
	}
	sync := pebble.NoSync
	if plan.snap != nil || len(plan.entries) > 0 || (newHardState != nil &&
		(newHardState.GetTerm() != prevHS.GetTerm() || newHardState.GetVote() != prevHS.GetVote())) {
		sync = pebble.Sync
	}
	if err := w.b.Commit(sync); err != nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.writeFailed(err)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if newSnapMeta != nil {
		p.snapMeta = newSnapMeta
		p.start = newStart
	}
	if newHardState != nil {
		p.hardState = newHardState
	}
	if newSnapMeta != nil {
		p.tail, p.tailBytes = nil, 0
	}
	if len(plan.entries) > 0 {
		p.cacheTail(plan.entries)
	}
	p.first, p.last = plan.after.first, plan.after.last
	return nil
}

// SetSnapshot durably records snap, a snapshot the node took of its own
// applied state, without touching the log: the entries it covers stay
// until Compact, so followers slightly behind can still be sent entries
// rather than the whole snapshot. snap's index must be in the log with
// snap's term, and newer than the stored snapshot (else an error wrapping
// raft.ErrSnapOutOfDate). Only the metadata is meaningful to the node;
// the snapshot's data is kept elsewhere (see SnapshotDir).
func (p *Pebble) SetSnapshot(snap *raftpb.Snapshot) (err error) {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.catchFatal(&err, true)
	if err := p.usable(); err != nil {
		return err
	}
	if err := checkSetSnapshot(snap, p.snapMeta.GetIndex(), p.start.index, p.last, p.term); err != nil {
		return fmt.Errorf("storage: %s: %w", p.dir, err)
	}
	w := newBatchWriter(p.db)
	defer w.close()
	w.setProto(keySnapshot, snap)
	// Open requires a log start beside a snapshot; a log never compacted
	// has none stored yet, so store the current one (unchanged).
	w.set(keyLogStart, encodeLogStart(p.start))
	if w.err != nil {
		return fmt.Errorf("storage: %s: build batch: %w", p.dir, w.err)
	}
	// Synced: once this returns the node deletes older snapshot files, so
	// the record must not fall back to one of them in a crash.
	if err := w.b.Commit(pebble.Sync); err != nil {
		return p.writeFailed(err)
	}
	p.snapMeta = raftpb.EnsureSnapshotMetadata(proto.Clone(snap.GetMetadata()).(*raftpb.SnapshotMetadata))
	return nil
}

// checkSetSnapshot validates SetSnapshot's argument against a log whose
// start (the compaction point) is start and whose last index is last.
func checkSetSnapshot(snap *raftpb.Snapshot, stored, start, last uint64, termAt func(uint64) (uint64, error)) error {
	if raft.IsEmptySnap(snap) {
		return errors.New("set snapshot: empty snapshot")
	}
	si, st := snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm()
	if si <= stored || si < start {
		return fmt.Errorf("set snapshot at index %d: stored snapshot %d, log start %d: %w", si, stored, start, raft.ErrSnapOutOfDate)
	}
	if si > last {
		return fmt.Errorf("set snapshot at index %d beyond the last index %d: %w", si, last, raft.ErrUnavailable)
	}
	t, err := termAt(si)
	if err != nil {
		return fmt.Errorf("set snapshot at index %d: %w", si, err)
	}
	if t != st {
		return fmt.Errorf("set snapshot at index %d: term %d, the log has %d", si, st, t)
	}
	return nil
}

// Bounds of the tail cache.
const (
	maxTailEntries = 8192
	maxTailBytes   = 16 << 20
)

// cacheTail adds entries, which start at most one past the cached tail and
// replace whatever they overlap, to the tail cache. Callers hold mu.
func (p *Pebble) cacheTail(entries []*raftpb.Entry) {
	first := entries[0].GetIndex()
	if n := len(p.tail); n > 0 {
		start := p.tail[0].GetIndex()
		switch {
		case first < start || first > start+uint64(n):
			p.tail, p.tailBytes = p.tail[:0], 0
		default:
			for _, e := range p.tail[first-start:] {
				p.tailBytes -= entryCost(e)
			}
			clear(p.tail[first-start:])
			p.tail = p.tail[:first-start]
		}
	}
	for _, e := range entries {
		p.tail = append(p.tail, e)
		p.tailBytes += entryCost(e)
	}
	drop := 0
	for len(p.tail)-drop > maxTailEntries || (p.tailBytes > maxTailBytes && len(p.tail)-drop > 1) {
		p.tailBytes -= entryCost(p.tail[drop])
		drop++
	}
	if drop > 0 {
		// Copy down rather than reslice, so the backing array does not
		// grow without bound.
		n := copy(p.tail, p.tail[drop:])
		clear(p.tail[n:])
		p.tail = p.tail[:n]
	}
}

// dropTailBelow forgets cached entries below index. Callers hold mu.
func (p *Pebble) dropTailBelow(index uint64) {
	if len(p.tail) == 0 || p.tail[0].GetIndex() >= index {
		return
	}
	k := min(index-p.tail[0].GetIndex(), uint64(len(p.tail)))
	for _, e := range p.tail[:k] {
		p.tailBytes -= entryCost(e)
	}
	n := copy(p.tail, p.tail[k:])
	clear(p.tail[n:])
	p.tail = p.tail[:n]
}

// cached returns the cached entry at index, if any. Callers hold mu.
func (p *Pebble) cached(index uint64) (*raftpb.Entry, bool) {
	if len(p.tail) == 0 || index < p.tail[0].GetIndex() || index > p.last {
		return nil, false
	}
	return p.tail[index-p.tail[0].GetIndex()], true
}

// entryCost approximates an entry's memory for the cache bound.
func entryCost(e *raftpb.Entry) int { return len(e.GetData()) + 64 }

// Compact discards the entries at and below index, keeping index's term:
// afterwards FirstIndex() is index+1 and Term(index) still answers.
// Compacting at or below the current log start is a no-op; compacting
// beyond LastIndex() is an error wrapping raft.ErrUnavailable.
func (p *Pebble) Compact(index uint64) (err error) {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.catchFatal(&err, true)
	if err := p.usable(); err != nil {
		return err
	}
	if index <= p.start.index {
		return nil
	}
	if index > p.last {
		return fmt.Errorf("storage: %s: compact %d beyond the last index %d: %w", p.dir, index, p.last, raft.ErrUnavailable)
	}
	term, err := p.term(index)
	if err != nil {
		return err
	}
	newStart := logStart{index: index, term: term}
	w := newBatchWriter(p.db)
	defer w.close()
	w.deleteRange(entryKeysStart, entryKey(index+1))
	w.set(keyLogStart, encodeLogStart(newStart))
	if w.err != nil {
		return fmt.Errorf("storage: %s: build batch: %w", p.dir, w.err)
	}
	// No sync: losing this batch in a crash only brings back entries that
	// are already applied, and the next synced Save makes it durable
	// anyway because pebble's WAL is ordered.
	if err := w.b.Commit(pebble.NoSync); err != nil {
		return p.writeFailed(err)
	}
	p.start = newStart
	p.first = index + 1
	p.dropTailBelow(p.first)
	return nil
}

// batchWriter builds a pebble batch, keeping the first error so that a
// Save reads as the list of records it writes.
type batchWriter struct {
	b   *pebble.Batch
	err error
}

func newBatchWriter(db *pebble.DB) *batchWriter {
	return &batchWriter{b: db.NewBatch()}
}

func (w *batchWriter) set(key, value []byte) {
	if w.err == nil {
		w.err = w.b.Set(key, value, nil)
	}
}

func (w *batchWriter) setProto(key []byte, m proto.Message) {
	if w.err != nil {
		return
	}
	v, err := encodeProto(m)
	if err != nil {
		w.err = err
		return
	}
	w.set(key, v)
}

func (w *batchWriter) deleteRange(start, end []byte) {
	if w.err == nil {
		w.err = w.b.DeleteRange(start, end, nil)
	}
}

func (w *batchWriter) close() { _ = w.b.Close() }

// writeFailed records a failed write. Whether any of it reached the disk
// is unknown, so the in-memory state can no longer be trusted to match it
// and the store refuses further use.
func (p *Pebble) writeFailed(err error) error {
	p.failed = fmt.Errorf("storage: %s: write failed, store unusable until reopened: %w", p.dir, err)
	p.log.Error("storage: write failed", "dir", p.dir, "err", err)
	return p.failed
}

// catchFatal, deferred while p.mu is held, turns pebble's Fatalf (which
// our logger raises as a panic) into an error; any other panic is a bug
// and continues. A write that fails this way poisons the store, as
// writeFailed does; the caller must then hold p.mu for writing.
// catchFatalUnlocked is catchFatal for a writer that does not hold mu.
func (p *Pebble) catchFatalUnlocked(err *error) {
	r := recover()
	if r == nil {
		return
	}
	f, ok := r.(pebbleFatal)
	if !ok {
		panic(r)
	}
	*err = fmt.Errorf("storage: %s: pebble failed: %s: %w", p.dir, f.msg, ErrCorrupt)
	p.log.Error("storage: pebble failed", "dir", p.dir, "err", f.msg)
	p.mu.Lock()
	p.failed = *err
	p.mu.Unlock()
}

func (p *Pebble) catchFatal(err *error, write bool) {
	r := recover()
	if r == nil {
		return
	}
	f, ok := r.(pebbleFatal)
	if !ok {
		panic(r)
	}
	*err = fmt.Errorf("storage: %s: pebble failed: %s: %w", p.dir, f.msg, ErrCorrupt)
	p.log.Error("storage: pebble failed", "dir", p.dir, "err", f.msg)
	if write {
		p.failed = *err
	}
}

// Close closes the database and releases the directory lock. Later calls
// return ErrClosed.
func (p *Pebble) Close() error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.db == nil {
		return fmt.Errorf("storage: %s: %w", p.dir, ErrClosed)
	}
	var err error
	if p.failed == nil {
		// After a clean Close the state lives in sstables, checksummed and
		// listed in the MANIFEST, rather than in a WAL whose damaged tail
		// pebble would silently drop; it also makes the next Open faster.
		err = unfatal(p.db.Flush)
	}
	err = errors.Join(err, unfatal(p.db.Close), p.fsCloser.Close(), p.lock.Close())
	p.db = nil
	if err != nil {
		return fmt.Errorf("storage: %s: close: %w", p.dir, err)
	}
	return nil
}

// unfatal calls f, turning a pebble Fatalf into an error.
func unfatal(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			pf, ok := r.(pebbleFatal)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("pebble failed: %s", pf.msg)
		}
	}()
	return f()
}

// pebbleFatal is what pebbleLogger.Fatalf panics with. Pebble calls Fatalf
// when it cannot continue (a failed WAL write, a broken invariant) and
// expects it not to return; a panic keeps that promise while letting the
// calling method turn it into an error instead of exiting the process.
type pebbleFatal struct{ msg string }

// pebbleLogger routes pebble's logging into slog.
type pebbleLogger struct{ l *slog.Logger }

func (pl pebbleLogger) Infof(format string, args ...any) {
	if pl.l.Enabled(context.Background(), slog.LevelDebug) {
		pl.l.Debug("pebble: " + fmt.Sprintf(format, args...))
	}
}

func (pl pebbleLogger) Errorf(format string, args ...any) {
	pl.l.Error("pebble: " + fmt.Sprintf(format, args...))
}

func (pl pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	pl.l.Error("pebble: fatal: " + msg)
	panic(pebbleFatal{msg: msg})
}
