package storage

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/unrdf/consensus"
)

// SnapshotDir is the durable consensus.SnapshotStore: one file per
// snapshot in a directory, named by term and index. A file is written
// under a temporary name, synced, and renamed into place (the directory
// synced too), so a crash leaves either a whole snapshot or none. Every
// file carries its index, term, length and a CRC-32C of its data, and Open
// verifies them all before handing out a byte: a torn or damaged file is
// ErrCorrupt, never used.
//
// File layout: a 32-byte header (magic, index, term, zero), the data,
// then a 16-byte trailer (data length, CRC-32C of the data, end magic).
type SnapshotDir struct {
	dir string
	fs  vfs.FS
	// mu orders Prune against Commit's rename, so a snapshot is never
	// deleted in the moment it becomes visible.
	mu sync.Mutex
}

const (
	snapHeaderLen  = 32
	snapTrailerLen = 16
	snapSuffix     = ".snap"
	snapTmpSuffix  = ".snap.tmp"
	// snapBufferSize is the write buffer: one sink holds at most this much
	// of a snapshot in memory.
	snapBufferSize = 1 << 20
)

var (
	snapMagic    = [8]byte{'C', 'S', 'N', 'A', 'P', 0, 0, 1}
	snapEndMagic = [4]byte{'P', 'A', 'N', 'S'}
)

var _ consensus.SnapshotStore = (*SnapshotDir)(nil)

// OpenSnapshotDir opens (creating it 0700 if needed) the snapshot
// directory dir on fsys (the operating system's if nil), and deletes
// temporary files a crash left behind.
func OpenSnapshotDir(dir string, fsys vfs.FS) (*SnapshotDir, error) {
	if fsys == nil {
		fsys = privateFS{vfs.Default}
	}
	if err := mkdirSynced(fsys, dir); err != nil {
		return nil, fmt.Errorf("storage: snapshots %s: %w", dir, err)
	}
	d := &SnapshotDir{dir: dir, fs: fsys}
	names, err := fsys.List(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: snapshots %s: %w", dir, err)
	}
	for _, name := range names {
		if strings.HasSuffix(name, snapTmpSuffix) {
			if err := fsys.Remove(fsys.PathJoin(dir, name)); err != nil {
				return nil, fmt.Errorf("storage: snapshots %s: remove leftover %s: %w", dir, name, err)
			}
		}
	}
	return d, nil
}

func snapName(index, term uint64) string {
	return fmt.Sprintf("%016x-%016x%s", term, index, snapSuffix)
}

// parseSnapName returns the index and term in a snapshot file name.
func parseSnapName(name string) (index, term uint64, ok bool) {
	base, found := strings.CutSuffix(name, snapSuffix)
	if !found || len(base) != 33 || base[16] != '-' {
		return 0, 0, false
	}
	if _, err := fmt.Sscanf(base, "%016x-%016x", &term, &index); err != nil {
		return 0, 0, false
	}
	return index, term, true
}

// Create implements consensus.SnapshotStore.
func (d *SnapshotDir) Create(index, term uint64) (consensus.SnapshotSink, error) {
	final := d.fs.PathJoin(d.dir, snapName(index, term))
	tmp := final + ".tmp"
	f, err := d.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("storage: snapshot %d: %w", index, err)
	}
	s := &snapSink{d: d, f: f, tmp: tmp, final: final, crc: crc32.New(crcTable)}
	s.w = bufio.NewWriterSize(f, snapBufferSize)
	var h [snapHeaderLen]byte
	copy(h[:8], snapMagic[:])
	binary.BigEndian.PutUint64(h[8:16], index)
	binary.BigEndian.PutUint64(h[16:24], term)
	if _, err := s.w.Write(h[:]); err != nil {
		s.Abort()
		return nil, fmt.Errorf("storage: snapshot %d: %w", index, err)
	}
	return s, nil
}

type snapSink struct {
	d          *SnapshotDir
	f          vfs.File
	w          *bufio.Writer
	tmp, final string
	crc        hash.Hash32
	n          int64
	done       bool
}

func (s *snapSink) Write(p []byte) (int, error) {
	if s.done {
		return 0, errors.New("storage: snapshot sink already finished")
	}
	n, err := s.w.Write(p)
	s.crc.Write(p[:n])
	s.n += int64(n)
	return n, err
}

func (s *snapSink) Commit() error {
	if s.done {
		return errors.New("storage: snapshot sink already finished")
	}
	var t [snapTrailerLen]byte
	binary.BigEndian.PutUint64(t[:8], uint64(s.n))
	binary.BigEndian.PutUint32(t[8:12], s.crc.Sum32())
	copy(t[12:], snapEndMagic[:])
	err := func() error {
		if _, err := s.w.Write(t[:]); err != nil {
			return err
		}
		if err := s.w.Flush(); err != nil {
			return err
		}
		if err := s.f.Sync(); err != nil {
			return err
		}
		return s.f.Close()
	}()
	if err != nil {
		s.Abort()
		return fmt.Errorf("storage: write snapshot %s: %w", s.final, err)
	}
	s.done = true
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if err := s.d.fs.Rename(s.tmp, s.final); err != nil {
		_ = s.d.fs.Remove(s.tmp)
		return fmt.Errorf("storage: commit snapshot %s: %w", s.final, err)
	}
	if err := syncDir(s.d.fs, s.d.dir); err != nil {
		return fmt.Errorf("storage: commit snapshot %s: %w", s.final, err)
	}
	return nil
}

func (s *snapSink) Abort() {
	if s.done {
		return
	}
	s.done = true
	_ = s.f.Close()
	_ = s.d.fs.Remove(s.tmp)
}

// Open implements consensus.SnapshotStore. It reads the whole file once to
// verify it; a missing file is an error wrapping fs.ErrNotExist, a damaged
// one an error wrapping ErrCorrupt.
func (d *SnapshotDir) Open(index, term uint64) (io.ReadCloser, int64, error) {
	name := d.fs.PathJoin(d.dir, snapName(index, term))
	f, err := d.fs.Open(name)
	if err != nil {
		return nil, 0, fmt.Errorf("storage: open snapshot %d: %w", index, err)
	}
	size, err := verifySnapFile(f, index, term)
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("storage: snapshot %s: %w", name, err)
	}
	return &snapReader{SectionReader: io.NewSectionReader(f, snapHeaderLen, size), f: f}, size, nil
}

type snapReader struct {
	*io.SectionReader
	f vfs.File
}

func (r *snapReader) Close() error { return r.f.Close() }

// verifySnapFile checks a snapshot file's header, trailer and checksum and
// returns the length of its data.
func verifySnapFile(f vfs.File, index, term uint64) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	total := st.Size()
	if total < snapHeaderLen+snapTrailerLen {
		return 0, fmt.Errorf("%d bytes is too short for a snapshot: %w", total, ErrCorrupt)
	}
	var h [snapHeaderLen]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return 0, fmt.Errorf("read header: %w", err)
	}
	if [8]byte(h[:8]) != snapMagic {
		return 0, fmt.Errorf("bad magic %x: %w", h[:8], ErrCorrupt)
	}
	if gi, gt := binary.BigEndian.Uint64(h[8:16]), binary.BigEndian.Uint64(h[16:24]); gi != index || gt != term {
		return 0, fmt.Errorf("header says index %d term %d, want %d term %d: %w", gi, gt, index, term, ErrCorrupt)
	}
	var t [snapTrailerLen]byte
	if _, err := f.ReadAt(t[:], total-snapTrailerLen); err != nil {
		return 0, fmt.Errorf("read trailer: %w", err)
	}
	size := total - snapHeaderLen - snapTrailerLen
	if [4]byte(t[12:]) != snapEndMagic || binary.BigEndian.Uint64(t[:8]) != uint64(size) {
		return 0, fmt.Errorf("trailer does not match a %d-byte snapshot (torn write?): %w", size, ErrCorrupt)
	}
	crc := crc32.New(crcTable)
	if _, err := io.Copy(crc, io.NewSectionReader(f, snapHeaderLen, size)); err != nil {
		return 0, fmt.Errorf("read data: %w", err)
	}
	if got, want := crc.Sum32(), binary.BigEndian.Uint32(t[8:12]); got != want {
		return 0, fmt.Errorf("checksum %08x, want %08x: %w", got, want, ErrCorrupt)
	}
	return size, nil
}

// Prune implements consensus.SnapshotStore.
func (d *SnapshotDir) Prune(keep uint64, retain int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	names, err := d.fs.List(d.dir)
	if err != nil {
		return fmt.Errorf("storage: prune snapshots: %w", err)
	}
	type snapFile struct {
		name  string
		index uint64
	}
	var older []snapFile
	for _, name := range names {
		if i, _, ok := parseSnapName(name); ok && i < keep {
			older = append(older, snapFile{name, i})
		}
	}
	slices.SortFunc(older, func(a, b snapFile) int { return cmp.Compare(b.index, a.index) })
	for i, s := range older {
		if i < retain-1 {
			continue
		}
		if err := d.fs.Remove(d.fs.PathJoin(d.dir, s.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("storage: prune snapshot %s: %w", s.name, err)
		}
	}
	return nil
}

// List returns the (index, term) of every committed snapshot, oldest
// first.
func (d *SnapshotDir) List() ([][2]uint64, error) {
	names, err := d.fs.List(d.dir)
	if err != nil {
		return nil, fmt.Errorf("storage: list snapshots: %w", err)
	}
	var out [][2]uint64
	for _, name := range names {
		if i, t, ok := parseSnapName(name); ok {
			out = append(out, [2]uint64{i, t})
		}
	}
	slices.SortFunc(out, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
	return out, nil
}
