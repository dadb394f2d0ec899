package kv

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/google/btree"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/unrdf/consensus"
)

// The snapshot format, version 4:
//
//	magic "KVSN", format version byte (4)
//	records, each a uvarint length then one MessagePack array:
//	  header   [revision, appliedIndex, itemCount, sessionCount, leaseCount, lockCount, taskCount, clock, scheduleCount]
//	  items    [key, value bin, revision, createRevision, version, lease]   itemCount of them, by key
//	  sessions [client, lastIndex, [[seq, revision, errKind, message], ...]]   by client; results by seq
//	  leases   [id, ttlMs, auto]   leaseCount of them, by id
//	  locks    [name, holder lease, token, value, [[waiter lease, value], ...]]   lockCount of them, by name
//	  tasks    [queue, id, data, workflow, state, readyAt, created, attempt, maxAttempts,
//	            epoch, lease, worker, result, error, finished]   taskCount of them, by queue and id
//	  schedules [id, queue, cron, everyMs, data, created, after, lastFired, fired, skipped]
//	            scheduleCount of them, by id
//	CRC-32C (Castagnoli) of everything before it, 4 bytes big-endian
//
// A state without schedules is written as version 3, which is version 4
// without the schedules and the header's scheduleCount: a release that
// reads versions 1 to 3 keeps reading this one's snapshots, in a rolling
// upgrade, until a schedule is put.
// Version 2, still read, has no tasks: a 6-element header. Version 1,
// still read, has no leases either: a 4-element header and 5-element
// items. Everything Apply depends on is in it: revision, items, the
// session table, the leases (whose keys are the items that name them, and
// whose locks the locks that name them) and the locks.
// The encoding is deterministic: equal states give equal bytes.
const (
	snapshotMagic   = "KVSN"
	snapshotVersion = 4
	// snapshotVersionNoSchedules is the version written for a state
	// without schedules.
	snapshotVersionNoSchedules = 3
	// maxSnapshotRecord bounds one record: a key, a value and framing are
	// far below it, whatever the limits of the node that wrote it.
	maxSnapshotRecord = 64 << 20
	// snapshotDepth bounds a record's nesting (session: record, results,
	// result).
	snapshotDepth = 4
	// maxSessionResults bounds one session's results in a snapshot.
	maxSessionResults = 1 << 16
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrBadSnapshot is wrapped by every error Restore returns for input that
// is not a snapshot this version reads.
var ErrBadSnapshot = errors.New("bad snapshot")

var _ consensus.Snapshotter = (*Machine)(nil)

// snapshot is a frozen view of the state: copy-on-write clones, written
// out while Apply goes on.
type snapshot struct {
	revision int64
	applied  uint64
	items    *itemTree
	sessions *btree.BTreeG[*session]
	leases   *btree.BTreeG[lease]
	locks    *btree.BTreeG[lock]
	tasks    *btree.BTreeG[task]
	clock    int64
	// schedules (schedule.go), empty in versions 1 to 3.
	schedules *btree.BTreeG[schedule]
}

// Snapshot implements consensus.Snapshotter: an O(1) copy-on-write clone
// of the items and the session table. The machine keeps its own applied
// index in the snapshot, so it needs nothing from at.
func (m *Machine) Snapshot(at consensus.Position) (consensus.StateSnapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.snapshotLocked(), nil
}

// snapshotLocked clones the state; the caller holds mu.
func (m *Machine) snapshotLocked() *snapshot {
	return &snapshot{revision: m.revision, applied: m.applied, items: m.items.Clone(), sessions: m.sessions.snapshot(),
		leases: m.leases.Clone(), locks: m.locks.Clone(), tasks: m.tasks.Clone(), clock: m.clock,
		schedules: m.schedules.Clone()}
}

// Release implements consensus.StateSnapshot.
func (s *snapshot) Release() {
	s.items, s.sessions, s.leases, s.locks, s.tasks, s.schedules = nil, nil, nil, nil, nil, nil
}

type snapshotHeader struct {
	_msgpack      struct{} `msgpack:",as_array"` //lint:ignore U1000 the tag makes msgpack encode an array
	Revision      int64
	Applied       uint64
	ItemCount     uint64
	SessionCount  uint64
	LeaseCount    uint64
	LockCount     uint64
	TaskCount     uint64
	Clock         int64
	ScheduleCount uint64
}

// snapshotHeaderV3 is version 3's header.
type snapshotHeaderV3 struct {
	_msgpack     struct{} `msgpack:",as_array"` //lint:ignore U1000 the tag makes msgpack encode an array
	Revision     int64
	Applied      uint64
	ItemCount    uint64
	SessionCount uint64
	LeaseCount   uint64
	LockCount    uint64
	TaskCount    uint64
	Clock        int64
}

// snapshotHeaderV2 is version 2's header.
type snapshotHeaderV2 struct {
	_msgpack     struct{} `msgpack:",as_array"` //lint:ignore U1000 the tag makes msgpack encode an array
	Revision     int64
	Applied      uint64
	ItemCount    uint64
	SessionCount uint64
	LeaseCount   uint64
	LockCount    uint64
}

// snapshotHeaderV1 is version 1's header.
type snapshotHeaderV1 struct {
	_msgpack     struct{} `msgpack:",as_array"` //lint:ignore U1000 the tag makes msgpack encode an array
	Revision     int64
	Applied      uint64
	ItemCount    uint64
	SessionCount uint64
}

type snapshotItem struct {
	_msgpack       struct{} `msgpack:",as_array"` //lint:ignore U1000 the tag makes msgpack encode an array
	Key            string
	Value          []byte
	Revision       int64
	CreateRevision int64
	Version        int64
	Lease          int64
}

// snapshotItemV1 is version 1's item.
type snapshotItemV1 struct {
	_msgpack       struct{} `msgpack:",as_array"` //lint:ignore U1000 the tag makes msgpack encode an array
	Key            string
	Value          []byte
	Revision       int64
	CreateRevision int64
	Version        int64
}

type snapshotLock struct {
	_msgpack struct{} `msgpack:",as_array"` //lint:ignore U1000 the tag makes msgpack encode an array
	Name     string
	Holder   int64
	Token    int64
	Value    []byte
	Waiters  []snapshotWaiter
}

type snapshotWaiter struct {
	_msgpack struct{} `msgpack:",as_array"` //lint:ignore U1000 the tag makes msgpack encode an array
	Lease    int64
	Value    []byte
}

type snapshotTask struct {
	_msgpack    struct{} `msgpack:",as_array"` //lint:ignore U1000 the tag makes msgpack encode an array
	Queue       string
	ID          string
	Data        []byte
	Workflow    string
	State       uint8
	ReadyAt     int64
	Created     uint64
	Attempt     int
	MaxAttempts int
	Epoch       int64
	Lease       int64
	Worker      string
	Result      []byte
	Error       string
	Finished    uint64
}

type snapshotSchedule struct {
	_msgpack  struct{} `msgpack:",as_array"` //lint:ignore U1000 the tag makes msgpack encode an array
	ID        string
	Queue     string
	Cron      string
	EveryMs   int64
	Data      []byte
	Created   uint64
	After     int64
	LastFired int64
	Fired     int64
	Skipped   int64
}

type snapshotLease struct {
	_msgpack struct{} `msgpack:",as_array"` //lint:ignore U1000 the tag makes msgpack encode an array
	ID       int64
	TTLMs    int64
	Auto     bool
}

type snapshotResult struct {
	_msgpack struct{} `msgpack:",as_array"` //lint:ignore U1000 the tag makes msgpack encode an array
	Seq      uint64
	Revision int64
	Kind     uint8
	Msg      string
}

type snapshotSession struct {
	_msgpack  struct{} `msgpack:",as_array"` //lint:ignore U1000 the tag makes msgpack encode an array
	Client    string
	LastIndex uint64
	Results   []snapshotResult
}

// recordWriter writes length-prefixed MessagePack records into a hashed
// stream.
type recordWriter struct {
	w   *bufio.Writer
	crc hash.Hash32
	n   int64
	buf bytes.Buffer
	enc *msgpack.Encoder
	err error
}

func (rw *recordWriter) write(v any) {
	if rw.err != nil {
		return
	}
	rw.buf.Reset()
	if rw.err = rw.enc.Encode(v); rw.err != nil {
		return
	}
	rw.raw(binary.AppendUvarint(nil, uint64(rw.buf.Len())))
	rw.raw(rw.buf.Bytes())
}

func (rw *recordWriter) raw(b []byte) {
	if rw.err != nil {
		return
	}
	rw.crc.Write(b)
	var n int
	n, rw.err = rw.w.Write(b)
	rw.n += int64(n)
}

// WriteTo implements consensus.StateSnapshot. It may run concurrently with
// Apply.
func (s *snapshot) WriteTo(w io.Writer) (int64, error) {
	rw := &recordWriter{w: bufio.NewWriterSize(w, 64<<10), crc: crc32.New(crcTable)}
	rw.enc = msgpack.NewEncoder(&rw.buf)
	rw.enc.UseCompactInts(true)
	h := snapshotHeader{Revision: s.revision, Applied: s.applied,
		ItemCount: uint64(s.items.Len()), SessionCount: uint64(s.sessions.Len()), LeaseCount: uint64(s.leases.Len()),
		LockCount: uint64(s.locks.Len()), TaskCount: uint64(s.tasks.Len()), Clock: s.clock, ScheduleCount: uint64(s.schedules.Len())}
	if h.ScheduleCount == 0 {
		rw.raw(append([]byte(snapshotMagic), snapshotVersionNoSchedules))
		rw.write(&snapshotHeaderV3{Revision: h.Revision, Applied: h.Applied, ItemCount: h.ItemCount, SessionCount: h.SessionCount,
			LeaseCount: h.LeaseCount, LockCount: h.LockCount, TaskCount: h.TaskCount, Clock: h.Clock})
	} else {
		rw.raw(append([]byte(snapshotMagic), snapshotVersion))
		rw.write(&h)
	}
	s.items.Ascend(func(it Item) bool {
		rw.write(&snapshotItem{Key: it.Key, Value: it.Value, Revision: it.Revision,
			CreateRevision: it.CreateRevision, Version: it.Version, Lease: int64(it.Lease)})
		return rw.err == nil
	})
	s.sessions.Ascend(func(ss *session) bool {
		rec := snapshotSession{Client: ss.client, LastIndex: ss.lastIndex, Results: make([]snapshotResult, len(ss.results))}
		for i, r := range ss.results {
			rec.Results[i] = snapshotResult{Seq: r.seq, Revision: r.revision, Kind: uint8(r.kind), Msg: r.msg}
		}
		rw.write(&rec)
		return rw.err == nil
	})
	s.leases.Ascend(func(l lease) bool {
		rw.write(&snapshotLease{ID: l.id, TTLMs: l.ttlMs, Auto: l.auto})
		return rw.err == nil
	})
	s.locks.Ascend(func(l lock) bool {
		rec := snapshotLock{Name: l.name, Holder: l.holder, Token: l.token}
		if len(l.value) > 0 { // none is nil, however it came to be
			rec.Value = l.value
		}
		for _, w := range l.waiters {
			sw := snapshotWaiter{Lease: w.lease}
			if len(w.value) > 0 {
				sw.Value = w.value
			}
			rec.Waiters = append(rec.Waiters, sw)
		}
		rw.write(&rec)
		return rw.err == nil
	})
	s.tasks.Ascend(func(t task) bool {
		rec := snapshotTask{Queue: t.queue, ID: t.id, Data: t.data, Workflow: t.workflow, State: uint8(t.state),
			ReadyAt: t.readyAt, Created: t.created, Attempt: t.attempt, MaxAttempts: t.maxAttempts, Epoch: t.epoch,
			Lease: t.lease, Worker: t.worker, Error: t.err, Finished: t.finished}
		if len(t.result) > 0 {
			rec.Result = t.result
		}
		rw.write(&rec)
		return rw.err == nil
	})
	s.schedules.Ascend(func(sc schedule) bool {
		rw.write(&snapshotSchedule{ID: sc.id, Queue: sc.queue, Cron: sc.cron, EveryMs: sc.everyMs, Data: sc.data,
			Created: sc.created, After: sc.after, LastFired: sc.lastFired, Fired: sc.fired, Skipped: sc.skipped})
		return rw.err == nil
	})
	rw.raw(binary.BigEndian.AppendUint32(nil, rw.crc.Sum32()))
	if rw.err == nil {
		rw.err = rw.w.Flush()
	}
	if rw.err != nil {
		return rw.n, fmt.Errorf("kv: write snapshot: %w", rw.err)
	}
	return rw.n, nil
}
