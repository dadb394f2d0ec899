package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
)

// ValueStore keeps the key space's values on disk, so that the Go heap
// holds only the keys and their revisions: values are most of a large
// state's bytes, and every byte of the heap costs 1 + GOGC/100 bytes of
// memory (BENCHMARKS.md, "Memory per node"). A Machine given one
// (WithValueStore) reads an item's value back from it, with one pread
// served by the operating system's page cache (which is not the process's
// memory), whenever the item is read.
//
// The store is a cache of the state, not a record of it: the raft log and
// the snapshots are what persist. OpenValueStore empties its directory,
// and a restart fills it again as the node restores its snapshot and
// replays its log, so it never syncs and a crash leaves nothing in it
// that matters.
//
// Layout: each tree of items (the state, or one being restored from a
// snapshot) appends its values to segment files of its own
// (<generation>-<segment>.vlog), each record checksummed:
//
//	crc32c(4) | key length(4) | value length(4) | key | value
//
// the CRC-32C covering the two lengths, the key and the value. A tree's
// item names its record by segment, offset and length. Records are never
// changed, so a read-only copy of a tree (Clone: a snapshot being
// written, a paged list's view) keeps reading what it was cloned with:
// files the state no longer needs are unlinked at once, and their last
// descriptor closes when the last copy that reads them is collected.
// Overwritten and deleted values leave garbage in their segment; a sealed
// segment less than half live is evacuated a little at a time by the
// writes that follow (itemTree.maintain), its live records appended anew,
// so the files hold at most about twice the live values plus one
// segment.
type ValueStore struct {
	dir      string
	segBytes int64
	closed   atomic.Bool

	mu sync.Mutex
	// gen numbers the trees' segment files; spaces are the writable
	// trees' values, whose files Close closes.
	gen    uint32
	spaces map[*valueSpace]struct{}
}

// ValueStoreOptions tunes a ValueStore. The zero value is ready to use.
type ValueStoreOptions struct {
	// SegmentBytes is the size at which a segment file is sealed and the
	// next begun (0: DefaultValueSegmentBytes).
	SegmentBytes int64
}

// DefaultValueSegmentBytes is the default segment size.
const DefaultValueSegmentBytes = 32 << 20

// maxSegmentBytes keeps every offset within an item's 32 bits, with room
// for the record that crosses the size.
const maxSegmentBytes = 1 << 30

// ErrValueStore wraps a failure of the value store. A read or write that
// meets one panics with it: the state can no longer be answered for, as
// when the log cannot be written.
var ErrValueStore = errors.New("kv: value store failed")

// OpenValueStore empties dir (creating it if needed) and opens a value
// store there. dir must be the store's own: everything in it is removed.
func OpenValueStore(dir string, o ValueStoreOptions) (*ValueStore, error) {
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = DefaultValueSegmentBytes
	}
	if o.SegmentBytes > maxSegmentBytes {
		return nil, fmt.Errorf("kv: value store: segments of %d bytes exceed %d", o.SegmentBytes, int64(maxSegmentBytes))
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("kv: value store: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("kv: value store: %w", err)
	}
	return &ValueStore{dir: dir, segBytes: o.SegmentBytes, spaces: make(map[*valueSpace]struct{})}, nil
}

// Close closes the writable trees' files. Trees read afterwards see no
// values (their server is shutting down).
func (vs *ValueStore) Close() error {
	if vs.closed.Swap(true) {
		return nil
	}
	vs.mu.Lock()
	defer vs.mu.Unlock()
	var errs []error
	for s := range vs.spaces { // closing files: the order does not matter
		for _, sg := range s.segs {
			if sg != nil {
				errs = append(errs, sg.f.Close())
			}
		}
	}
	vs.spaces = nil
	return errors.Join(errs...)
}

// newSpace returns the values of a new, empty tree.
func (vs *ValueStore) newSpace() *valueSpace {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	vs.gen++
	s := &valueSpace{vs: vs, gen: vs.gen}
	if vs.spaces != nil {
		vs.spaces[s] = struct{}{}
	}
	return s
}

// segment is one file of a tree's values.
type segment struct {
	id   uint32
	path string
	f    *os.File
	// size is the bytes appended (written or still in the space's
	// buffer); fixed once sealed.
	size int64
}

// valueSpace is one tree's values. A writable tree's space appends and
// keeps the accounting; a read-only copy's has the segments as they
// were, and nothing else.
type valueSpace struct {
	vs       *ValueStore
	gen      uint32
	segs     []*segment // by id; nil once evacuated
	readOnly bool

	// live is each segment's bytes still referenced by the tree.
	live []int64
	// active is the segment appended to; buf holds its bytes from bufAt
	// on, not yet written.
	active *segment
	buf    []byte
	bufAt  int64
	// victim is the segment being evacuated, read from cursor on.
	victim *segment
	cursor int64
}

const (
	recordHeader = 12
	// flushBytes is how much a space buffers before writing.
	flushBytes = 64 << 10
	// evacuateBytes bounds the bytes of a victim one maintain reads.
	evacuateBytes = 64 << 10
)

var valueCRC = crc32.MakeTable(crc32.Castagnoli)

func recordLen(key string, n uint32) int64 { return recordHeader + int64(len(key)) + int64(n) }

// append adds key's record and returns where it is.
func (s *valueSpace) append(key string, v []byte) (seg, off uint32) {
	if s.readOnly {
		panic("kv: write to a read-only tree")
	}
	if s.active == nil || s.active.size >= s.vs.segBytes {
		s.seal()
		s.open()
	}
	a := s.active
	off = uint32(a.size)
	start := len(s.buf)
	s.buf = binary.LittleEndian.AppendUint32(s.buf, 0)
	s.buf = binary.LittleEndian.AppendUint32(s.buf, uint32(len(key)))
	s.buf = binary.LittleEndian.AppendUint32(s.buf, uint32(len(v)))
	s.buf = append(s.buf, key...)
	s.buf = append(s.buf, v...)
	binary.LittleEndian.PutUint32(s.buf[start:], crc32.Checksum(s.buf[start+4:], valueCRC))
	n := int64(len(s.buf) - start)
	a.size += n
	s.live[a.id] += n
	if len(s.buf) >= flushBytes {
		s.flush()
	}
	return a.id, off
}

// open begins the next segment.
func (s *valueSpace) open() {
	id := uint32(len(s.segs))
	path := filepath.Join(s.vs.dir, fmt.Sprintf("%08d-%08d.vlog", s.gen, id))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		panic(fmt.Errorf("%w: %w", ErrValueStore, err))
	}
	s.active = &segment{id: id, path: path, f: f}
	s.segs = append(s.segs, s.active)
	s.live = append(s.live, 0)
	s.bufAt = 0
}

// seal writes the active segment's buffer and ends it.
func (s *valueSpace) seal() {
	if s.active != nil {
		s.flush()
		s.active = nil
	}
}

// flush writes the buffer to the active segment.
func (s *valueSpace) flush() {
	if len(s.buf) == 0 {
		return
	}
	if s.vs.closed.Load() {
		s.buf = s.buf[:0]
		return
	}
	if _, err := s.active.f.WriteAt(s.buf, s.bufAt); err != nil {
		panic(fmt.Errorf("%w: write %s: %w", ErrValueStore, s.active.path, err))
	}
	s.bufAt += int64(len(s.buf))
	if cap(s.buf) > 4*flushBytes {
		s.buf = nil // one large value grew it
	} else {
		s.buf = s.buf[:0]
	}
}

// forget notes that the record of it is no longer the tree's.
func (s *valueSpace) forget(it *treeItem) {
	s.live[it.seg] -= recordLen(it.key(), it.n)
}

// read returns the value in the record of it: nil once the store is closed.
func (s *valueSpace) read(it *treeItem) []byte {
	if s.vs.closed.Load() {
		return nil
	}
	if it.seg < uint32(len(s.segs)) && s.active != nil && it.seg == s.active.id && int64(it.off) >= s.bufAt {
		// Still in the buffer (a writable tree; its readers exclude its
		// writer).
		i := int64(it.off) - s.bufAt + recordHeader + int64(it.klen)
		return slices.Clone(s.buf[i : i+int64(it.n)])
	}
	var sg *segment
	if it.seg < uint32(len(s.segs)) {
		sg = s.segs[it.seg]
	}
	if sg == nil {
		panic(fmt.Errorf("%w: %q names segment %d, which the tree does not hold", ErrValueStore, it.key(), it.seg))
	}
	rec := make([]byte, recordLen(it.key(), it.n))
	if _, err := sg.f.ReadAt(rec, int64(it.off)); err != nil {
		if errors.Is(err, os.ErrClosed) && s.vs.closed.Load() {
			return nil
		}
		panic(fmt.Errorf("%w: read %q from %s: %w", ErrValueStore, it.key(), sg.path, err))
	}
	return valueOf(sg, it, rec)
}

// valueOf checks rec, the record of it read from sg, and returns its
// value (sharing rec). A record that fails its checks or names another
// key is never served.
func valueOf(sg *segment, it *treeItem, rec []byte) []byte {
	key, v, err := parseRecord(rec)
	if err == nil && (key != it.key() || uint32(len(v)) != it.n) {
		err = fmt.Errorf("holds %q (%d bytes)", key, len(v))
	}
	if err != nil {
		panic(fmt.Errorf("%w: %s at %d, %q: %w", ErrValueStore, sg.path, it.off, it.key(), err))
	}
	return v
}

// readAhead serves a walk of a tree in key order. Where keys were written
// in key order (generated ids, a restored snapshot), each record follows
// the one before it in its segment, and one pread of readAheadBytes then
// serves hundreds of items instead of one each: the reads of a snapshot
// being written, say. Each walk has its own.
type readAhead struct {
	buf   []byte
	seg   uint32
	start int64 // the segment offset of buf[0]
	// next is where the walk's previous record ended, in nextSeg (-1:
	// none yet).
	next    int64
	nextSeg uint32
}

const readAheadBytes = 64 << 10

func newReadAhead() *readAhead { return &readAhead{next: -1} }

// readNext is read for the next item of a walk.
func (s *valueSpace) readNext(ra *readAhead, it *treeItem) []byte {
	if s.vs.closed.Load() {
		return nil
	}
	off, n := int64(it.off), recordLen(it.key(), it.n)
	seq := it.seg == ra.nextSeg && off == ra.next
	ra.next, ra.nextSeg = off+n, it.seg
	inBuf := ra.buf != nil && it.seg == ra.seg && off >= ra.start && off+n <= ra.start+int64(len(ra.buf))
	buffered := s.active != nil && it.seg == s.active.id && off+n > s.bufAt
	switch {
	case buffered || (!inBuf && (!seq || n > readAheadBytes)) || it.seg >= uint32(len(s.segs)) || s.segs[it.seg] == nil:
		return s.read(it)
	case !inBuf:
		if ra.buf == nil {
			ra.buf = make([]byte, readAheadBytes)
		}
		ra.buf = ra.buf[:readAheadBytes]
		got, err := s.segs[it.seg].f.ReadAt(ra.buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			ra.buf = nil
			return s.read(it) // which reports the error, or nil once closed
		}
		ra.buf, ra.seg, ra.start = ra.buf[:got], it.seg, off
		if off+n > ra.start+int64(got) {
			return s.read(it)
		}
	}
	i := off - ra.start
	// Cloned: the buffer is the next read's.
	return slices.Clone(valueOf(s.segs[it.seg], it, ra.buf[i:i+n]))
}

// recordSize is the length of the record starting b (at least a header),
// as its header gives it.
func recordSize(b []byte) int64 {
	return recordHeader + int64(binary.LittleEndian.Uint32(b[4:])) + int64(binary.LittleEndian.Uint32(b[8:]))
}

// errBadRecord is a record that fails its checks.
var errBadRecord = errors.New("corrupt record")

// parseRecord checks the record at the start of b and returns its key and
// value (sharing b).
func parseRecord(b []byte) (key string, v []byte, err error) {
	if len(b) < recordHeader {
		return "", nil, fmt.Errorf("%w: %d bytes", errBadRecord, len(b))
	}
	kl, vl := int64(binary.LittleEndian.Uint32(b[4:])), int64(binary.LittleEndian.Uint32(b[8:]))
	end := recordSize(b)
	if end > int64(len(b)) {
		return "", nil, fmt.Errorf("%w: lengths %d and %d exceed its %d bytes", errBadRecord, kl, vl, len(b))
	}
	if crc32.Checksum(b[4:end], valueCRC) != binary.LittleEndian.Uint32(b) {
		return "", nil, fmt.Errorf("%w: checksum mismatch", errBadRecord)
	}
	return string(b[recordHeader : recordHeader+kl]), b[recordHeader+kl : end], nil
}

// frozen returns the space for a read-only copy of its tree. The caller
// excludes the tree's writer.
func (s *valueSpace) frozen() *valueSpace {
	s.flush()
	return &valueSpace{vs: s.vs, gen: s.gen, segs: slices.Clone(s.segs), readOnly: true}
}

// drop removes the space's files: its tree is no longer the state.
// Read-only copies keep reading them until they are collected.
func (s *valueSpace) drop() {
	s.vs.mu.Lock()
	delete(s.vs.spaces, s)
	s.vs.mu.Unlock()
	for _, sg := range s.segs {
		if sg != nil {
			_ = os.Remove(sg.path)
		}
	}
	s.segs, s.live, s.active, s.buf, s.victim = nil, nil, nil, nil, nil
}

// pickVictim returns the sealed segment with the smallest live share
// below one half, if any.
func (s *valueSpace) pickVictim() *segment {
	var best *segment
	var bestShare float64
	for id, sg := range s.segs {
		if sg == nil || sg == s.active || sg.size == 0 {
			continue
		}
		share := float64(s.live[id]) / float64(sg.size)
		if share < 0.5 && (best == nil || share < bestShare) {
			best, bestShare = sg, share
		}
	}
	return best
}

// maintain moves on the evacuation of a mostly dead segment, if one is
// due: it reads up to evacuateBytes of it and appends again the records
// that t still names there, repointing t's items. It changes no item's
// key, value or revisions, only where the value lies.
func (t *itemTree) maintain() {
	s := t.vals
	if s == nil || s.readOnly || s.vs.closed.Load() {
		return
	}
	if s.victim == nil {
		if s.victim = s.pickVictim(); s.victim == nil {
			return
		}
		s.cursor = 0
	}
	v := s.victim
	if s.live[v.id] == 0 {
		s.cursor = v.size
	}
	if s.cursor < v.size {
		from := s.cursor
		chunk := make([]byte, min(evacuateBytes, v.size-s.cursor))
		if _, err := v.f.ReadAt(chunk, s.cursor); err != nil && !errors.Is(err, io.EOF) {
			panic(fmt.Errorf("%w: read %s: %w", ErrValueStore, v.path, err))
		}
		if len(chunk) >= recordHeader {
			if need := recordSize(chunk); need > int64(len(chunk)) && need <= v.size-s.cursor {
				// One record larger than a chunk: read it whole.
				chunk = make([]byte, need)
				if _, err := v.f.ReadAt(chunk, s.cursor); err != nil {
					panic(fmt.Errorf("%w: read %s: %w", ErrValueStore, v.path, err))
				}
			}
		}
		b := chunk
		for len(b) >= recordHeader {
			need := recordSize(b)
			if need > int64(len(b)) {
				break // the rest of the chunk starts the next record
			}
			key, val, err := parseRecord(b)
			if err != nil {
				panic(fmt.Errorf("%w: %s at %d: %w", ErrValueStore, v.path, s.cursor, err))
			}
			off := uint32(s.cursor)
			if p, ok := t.t.Get(&treeItem{kv: key, klen: uint32(len(key))}); ok && p.seg == v.id && p.off == off {
				moved := *p
				moved.seg, moved.off = s.append(key, val)
				s.live[v.id] -= need
				t.t.ReplaceOrInsert(&moved)
			}
			s.cursor += need
			b = b[need:]
		}
		if s.cursor == from {
			// Not one whole record where the segment says there are bytes
			// left: its lengths or its size are wrong.
			panic(fmt.Errorf("%w: %s at %d: %w: no whole record in the %d bytes left", ErrValueStore, v.path, from, errBadRecord, v.size-from))
		}
	}
	if s.cursor >= v.size {
		if s.live[v.id] != 0 {
			panic(fmt.Errorf("%w: %s evacuated with %d live bytes left", ErrValueStore, v.path, s.live[v.id]))
		}
		s.segs[v.id] = nil
		_ = os.Remove(v.path)
		s.victim = nil
	}
}

// diskBytes is the size of the space's segments (tests).
func (s *valueSpace) diskBytes() (total, live int64) {
	for id, sg := range s.segs {
		if sg != nil {
			total += sg.size
			live += s.live[id]
		}
	}
	return total, live
}
