package storage

// The Pebble store is split by concern:
//
//	pebble.go        Options, the Pebble type, Open and Close, error helpers,
//	                 and turning pebble's fatal errors into ours
//	pebble_load.go   loading and verifying every record on Open
//	pebble_read.go   the raft.Storage reads (entries, terms, snapshot)
//	pebble_write.go  Save, SetSnapshot and Compact, and their batches
//	pebble_tail.go   the in-memory cache of the newest entries
//
// record.go holds the key layout and value encodings they share.

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
	"go.etcd.io/raft/v3/raftpb"
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

	// MemTableSize is the size in bytes of each pebble memtable. Every
	// appended entry stays in a memtable, compacted or not, until the
	// memtable fills and is flushed; pebble may hold two (one filling, one
	// flushing). A larger memtable flushes less often, so fewer entries
	// still in the log at a flush are written to an sstable, and costs
	// that much more resident memory. Zero means DefaultMemTableSize;
	// otherwise it must be between 1 MiB and 1 GiB.
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
	// Options.MemTableSize is zero. A log store is written at its tail
	// and read there from the tail cache, so a memtable buys it little:
	// 2 MiB holds some 9,000 entries of 150 B, more than the 5,000
	// catch-up entries and the 1,000 between snapshots that a node keeps
	// by default, and keeps the memtables within 4 MiB, where 32 MiB let
	// them take 16-20 MiB of resident memory after 100,000 such writes and
	// 4 MiB about 3 MiB more than 2 (BENCHMARKS.md, "Memory per node").
	DefaultMemTableSize = 2 << 20
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
	p.fatal(r, err)
	p.mu.Lock()
	p.failed = *err
	p.mu.Unlock()
}

func (p *Pebble) catchFatal(err *error, write bool) {
	r := recover()
	if r == nil {
		return
	}
	p.fatal(r, err)
	if write {
		p.failed = *err
	}
}

// fatal sets *err to the error for r, a value recovered in catchFatal or
// catchFatalUnlocked (which must call recover themselves), and logs it;
// it panics again with r unless r is a pebbleFatal.
func (p *Pebble) fatal(r any, err *error) {
	f, ok := r.(pebbleFatal)
	if !ok {
		panic(r)
	}
	*err = fmt.Errorf("storage: %s: pebble failed: %s: %w", p.dir, f.msg, ErrCorrupt)
	p.log.Error("storage: pebble failed", "dir", p.dir, "err", f.msg)
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
