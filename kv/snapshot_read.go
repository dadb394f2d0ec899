package kv

// Reading a snapshot (the format is described in snapshot.go).

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"slices"

	"github.com/google/btree"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/msgpackcheck"
)

// recordReader reads what recordWriter wrote, hashing as it goes.
type recordReader struct {
	r   *bufio.Reader
	crc hash.Hash32
	buf bytes.Buffer
}

func (rr *recordReader) ReadByte() (byte, error) {
	b, err := rr.r.ReadByte()
	if err == nil {
		rr.crc.Write([]byte{b})
	}
	return b, err
}

// full reads the next n bytes. The buffer grows with the bytes that
// arrive, not with n, so a declared length alone allocates nothing.
func (rr *recordReader) full(n int) ([]byte, error) {
	rr.buf.Reset()
	if _, err := io.CopyN(&rr.buf, rr.r, int64(n)); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	b := rr.buf.Bytes()
	rr.crc.Write(b)
	return b, nil
}

// read decodes the next record into v after validating its structure.
func (rr *recordReader) read(v any) error {
	n, err := binary.ReadUvarint(rr)
	if err != nil {
		return fmt.Errorf("record length: %w", err)
	}
	if n == 0 || n > maxSnapshotRecord {
		return fmt.Errorf("record of %d bytes", n)
	}
	b, err := rr.full(int(n))
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	if err := msgpackcheck.Validate(b, snapshotDepth); err != nil {
		return err
	}
	return msgpack.Unmarshal(b, v)
}

// Restore implements consensus.Snapshotter: it replaces the whole state
// with one WriteTo wrote. It validates everything first (structure,
// bounds, order, checksum) and leaves the state unchanged on any error;
// it never panics on bad input. Watchers are told history before the
// snapshot's revision is gone (hub.reset).
func (m *Machine) Restore(at consensus.Position, r io.Reader) error {
	st, err := m.readSnapshot(r)
	if err != nil {
		return fmt.Errorf("kv: restore: %w: %w", ErrBadSnapshot, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var gone []LeaseID
	if m.leaseObs != nil {
		m.leases.Ascend(func(l lease) bool {
			if _, ok := st.leases.Get(l); !ok {
				gone = append(gone, LeaseID(l.id))
			}
			return true
		})
	}
	m.items.drop()
	m.items, m.bytes, m.revision, m.applied = st.items, st.bytes, st.revision, st.applied
	m.sessions = st.sessions
	m.leases = st.leases
	m.locks = st.locks
	m.tasks, m.taskReady, m.taskDone, m.queueCounts, m.clock = st.tasks, st.taskReady, st.taskDone, st.queueCounts, st.clock
	m.schedules = st.schedules
	m.wakeAllLocks()
	for q := range m.queueWatch { // closing channels: the order does not matter
		m.queueChanged(q)
	}
	m.hub.reset(st.revision)
	if m.leaseObs != nil {
		// The leader's clock learns of the leases the snapshot brought and
		// forgets those it dropped.
		if len(gone) > 0 {
			m.leaseObs.LeasesRemoved(gone)
		}
		m.leases.Ascend(func(l lease) bool {
			m.leaseObs.LeaseGranted(LeaseID(l.id), l.ttlMs)
			return true
		})
	}
	return nil
}

// restored is a state read from a snapshot, not yet installed.
type restored struct {
	items    *itemTree
	bytes    int64
	revision int64
	applied  uint64
	sessions sessionTable
	leases   *btree.BTreeG[lease]
	locks    *btree.BTreeG[lock]
	// tasks and their indexes (queue.go), and the state machine's clock.
	tasks       *btree.BTreeG[task]
	taskReady   *btree.BTreeG[readyKey]
	taskDone    *btree.BTreeG[doneKey]
	queueCounts map[string]*queueCounts
	clock       int64
	schedules   *btree.BTreeG[schedule]
}

func (m *Machine) readSnapshot(r io.Reader) (_ *restored, err error) {
	rr := &recordReader{r: bufio.NewReaderSize(r, 64<<10), crc: crc32.New(crcTable)}
	magic, err := rr.full(len(snapshotMagic) + 1)
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if string(magic[:len(snapshotMagic)]) != snapshotMagic {
		return nil, errors.New("not a kv snapshot (magic)")
	}
	version := magic[len(snapshotMagic)]
	if version < 1 || version > snapshotVersion {
		return nil, fmt.Errorf("format version %d; this version reads 1 to %d", version, snapshotVersion)
	}
	var h snapshotHeader
	switch version {
	case 1:
		var h1 snapshotHeaderV1
		if err := rr.read(&h1); err != nil {
			return nil, fmt.Errorf("header: %w", err)
		}
		h = snapshotHeader{Revision: h1.Revision, Applied: h1.Applied, ItemCount: h1.ItemCount, SessionCount: h1.SessionCount}
	case 2:
		var h2 snapshotHeaderV2
		if err := rr.read(&h2); err != nil {
			return nil, fmt.Errorf("header: %w", err)
		}
		h = snapshotHeader{Revision: h2.Revision, Applied: h2.Applied, ItemCount: h2.ItemCount, SessionCount: h2.SessionCount,
			LeaseCount: h2.LeaseCount, LockCount: h2.LockCount}
	case 3:
		var h3 snapshotHeaderV3
		if err := rr.read(&h3); err != nil {
			return nil, fmt.Errorf("header: %w", err)
		}
		h = snapshotHeader{Revision: h3.Revision, Applied: h3.Applied, ItemCount: h3.ItemCount, SessionCount: h3.SessionCount,
			LeaseCount: h3.LeaseCount, LockCount: h3.LockCount, TaskCount: h3.TaskCount, Clock: h3.Clock}
	default:
		if err := rr.read(&h); err != nil {
			return nil, fmt.Errorf("header: %w", err)
		}
	}
	if h.Revision < 0 {
		return nil, fmt.Errorf("negative revision %d", h.Revision)
	}
	st := &restored{items: newItemTreeIn(m.values), revision: h.Revision, applied: h.Applied,
		sessions: newSessionTable(m.maxSessions, m.sessionWindow), leases: btree.NewG(btreeDegree, leaseLess),
		locks: btree.NewG(btreeDegree, lockLess), tasks: btree.NewG(btreeDegree, taskLess),
		taskReady: btree.NewG(btreeDegree, readyLess), taskDone: btree.NewG(btreeDegree, doneLess),
		queueCounts: make(map[string]*queueCounts), clock: h.Clock, schedules: btree.NewG(btreeDegree, scheduleLess)}
	defer func() {
		if err != nil {
			st.items.drop() // its values, written to a value store
		}
	}()
	var prev string
	var leased int
	for i := uint64(0); i < h.ItemCount; i++ {
		var it snapshotItem
		if version == 1 {
			var it1 snapshotItemV1
			if err := rr.read(&it1); err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			it = snapshotItem{Key: it1.Key, Value: it1.Value, Revision: it1.Revision, CreateRevision: it1.CreateRevision, Version: it1.Version}
		} else if err := rr.read(&it); err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		if it.Lease < 0 {
			return nil, fmt.Errorf("item %q: lease %d", it.Key, it.Lease)
		}
		if it.Lease != 0 {
			leased++
		}
		switch {
		case it.Key == "":
			// Any other bytes are a key (checkKey): etcd's are binary.
			return nil, fmt.Errorf("item %d: empty key", i)
		case i > 0 && it.Key <= prev:
			return nil, fmt.Errorf("item %d: key %q out of order", i, it.Key)
		case it.Version < 1 || it.CreateRevision < 1 || it.CreateRevision > it.Revision || it.Revision > h.Revision:
			return nil, fmt.Errorf("item %q: revisions %d/%d/%d inconsistent with %d", it.Key, it.Revision, it.CreateRevision, it.Version, h.Revision)
		case !json.Valid(it.Value):
			return nil, fmt.Errorf("item %q: value is not JSON", it.Key)
		}
		prev = it.Key
		st.items.ReplaceOrInsert(Item{Key: it.Key, Value: it.Value, Revision: it.Revision,
			CreateRevision: it.CreateRevision, Version: it.Version, Lease: LeaseID(it.Lease)})
		st.bytes += int64(len(it.Key) + len(it.Value))
	}
	if h.SessionCount > uint64(st.sessions.maxClients) {
		return nil, fmt.Errorf("%d sessions, more than the %d this node keeps", h.SessionCount, st.sessions.maxClients)
	}
	prev = ""
	for i := uint64(0); i < h.SessionCount; i++ {
		var ss snapshotSession
		if err := rr.read(&ss); err != nil {
			return nil, fmt.Errorf("session %d: %w", i, err)
		}
		if ss.Client == "" || (i > 0 && ss.Client <= prev) || ss.LastIndex == 0 || ss.LastIndex > h.Applied {
			return nil, fmt.Errorf("session %d: client %q or index %d invalid", i, ss.Client, ss.LastIndex)
		}
		if len(ss.Results) == 0 || len(ss.Results) > maxSessionResults {
			return nil, fmt.Errorf("session %q: %d results", ss.Client, len(ss.Results))
		}
		prev = ss.Client
		s := &session{client: ss.Client, lastIndex: ss.LastIndex, results: make([]sessionResult, 0, len(ss.Results))}
		for j, r := range ss.Results {
			if (j > 0 && r.Seq <= ss.Results[j-1].Seq) || int(r.Kind) >= len(kindErrors) {
				return nil, fmt.Errorf("session %q: result %d invalid", ss.Client, j)
			}
			s.results = append(s.results, sessionResult{seq: r.Seq, revision: r.Revision, kind: errKind(r.Kind), msg: r.Msg})
		}
		// A node keeping a smaller window keeps the newest results.
		if over := len(s.results) - st.sessions.window; len(s.results) > 2*st.sessions.window {
			s.results = slices.Delete(s.results, 0, over)
		}
		st.sessions.byClient.ReplaceOrInsert(s)
		st.sessions.byIndex.ReplaceOrInsert(lruKey{index: s.lastIndex, client: s.client})
	}
	if err := m.readLeases(rr, st, h.LeaseCount, leased); err != nil {
		return nil, err
	}
	if err := m.readLocks(rr, st, h.LockCount); err != nil {
		return nil, err
	}
	if err := m.readTasks(rr, st, h.TaskCount); err != nil {
		return nil, err
	}
	if version == snapshotVersion && h.ScheduleCount == 0 {
		return nil, errors.New("a version 4 snapshot without schedules (version 3 is written for that)")
	}
	if err := m.readSchedules(rr, st, h.ScheduleCount); err != nil {
		return nil, err
	}
	want := rr.crc.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(rr.r, sum[:]); err != nil {
		return nil, fmt.Errorf("checksum: %w", err)
	}
	if got := binary.BigEndian.Uint32(sum[:]); got != want {
		return nil, fmt.Errorf("checksum %08x, computed %08x", got, want)
	}
	if _, err := rr.r.ReadByte(); err != io.EOF {
		return nil, errors.New("trailing bytes after the checksum")
	}
	return st, nil
}

// readLeases reads count lease records into st and gives each the keys
// (leased of st's items) that name it.
func (m *Machine) readLeases(rr *recordReader, st *restored, count uint64, leased int) error {
	if count > uint64(m.maxLeases) {
		return fmt.Errorf("%d leases, more than the %d this node keeps", count, m.maxLeases)
	}
	var prev int64
	for i := uint64(0); i < count; i++ {
		var l snapshotLease
		if err := rr.read(&l); err != nil {
			return fmt.Errorf("lease %d: %w", i, err)
		}
		if l.ID <= prev || checkTTL(l.TTLMs) != nil {
			return fmt.Errorf("lease %d: id %d or time to live %d invalid", i, l.ID, l.TTLMs)
		}
		prev = l.ID
		st.leases.ReplaceOrInsert(lease{id: l.ID, ttlMs: l.TTLMs, auto: l.Auto})
	}
	if leased == 0 {
		return nil
	}
	// Items ascend by key, so each lease's keys come out sorted.
	keys := make(map[int64][]string)
	var bad error
	st.items.AscendKeys(func(it Item) bool {
		if it.Lease == 0 {
			return true
		}
		if _, ok := st.leases.Get(lease{id: int64(it.Lease)}); !ok {
			bad = fmt.Errorf("item %q names lease %s, which the snapshot does not hold", it.Key, it.Lease)
			return false
		}
		keys[int64(it.Lease)] = append(keys[int64(it.Lease)], it.Key)
		return true
	})
	if bad != nil {
		return bad
	}
	// Leases are updated in id order: nothing depends on the map's order.
	ids := make([]int64, 0, len(keys))
	for id := range keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		l, _ := st.leases.Get(lease{id: id})
		if len(keys[id]) > m.maxLeaseKeys {
			return fmt.Errorf("lease %s carries %d keys, more than the %d this node allows", LeaseID(id), len(keys[id]), m.maxLeaseKeys)
		}
		l.keys = keys[id]
		st.leases.ReplaceOrInsert(l)
	}
	return nil
}

// readLocks reads count lock records into st and gives each lease the
// names of the locks it holds or waits for.
func (m *Machine) readLocks(rr *recordReader, st *restored, count uint64) error {
	if count > uint64(m.maxLocks) {
		return fmt.Errorf("%d locks, more than the %d this node keeps", count, m.maxLocks)
	}
	byLease := make(map[int64][]string)
	var prev string
	for i := uint64(0); i < count; i++ {
		var l snapshotLock
		if err := rr.read(&l); err != nil {
			return fmt.Errorf("lock %d: %w", i, err)
		}
		if checkLockName(l.Name) != nil || (i > 0 && l.Name <= prev) || l.Token <= 0 || len(l.Waiters) > m.maxLockWait {
			return fmt.Errorf("lock %d: name %q, token %d or %d waiters invalid", i, l.Name, l.Token, len(l.Waiters))
		}
		prev = l.Name
		ids := []int64{l.Holder}
		var waiters []lockWaiter
		for _, w := range l.Waiters {
			if len(w.Value) > 0 && !json.Valid(w.Value) {
				return fmt.Errorf("lock %q: a waiter's value is not JSON", l.Name)
			}
			ids = append(ids, w.Lease)
			waiters = append(waiters, lockWaiter{lease: w.Lease, value: w.Value})
		}
		if len(l.Value) > 0 && !json.Valid(l.Value) {
			return fmt.Errorf("lock %q: its value is not JSON", l.Name)
		}
		for j, id := range ids {
			if _, ok := st.leases.Get(lease{id: id}); !ok {
				return fmt.Errorf("lock %q names lease %s, which the snapshot does not hold", l.Name, LeaseID(id))
			}
			if slices.Contains(byLease[id], l.Name) {
				return fmt.Errorf("lock %q names lease %s twice (at %d)", l.Name, LeaseID(id), j)
			}
			// Locks come by name, so each lease's list is sorted.
			byLease[id] = append(byLease[id], l.Name)
		}
		st.locks.ReplaceOrInsert(lock{name: l.Name, holder: l.Holder, token: l.Token, value: l.Value, waiters: waiters})
	}
	ids := make([]int64, 0, len(byLease))
	for id := range byLease {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		le, _ := st.leases.Get(lease{id: id})
		le.locks = byLease[id]
		st.leases.ReplaceOrInsert(le)
	}
	return nil
}

// readTasks reads count task records into st, rebuilds their indexes and
// gives each claim's lease its task.
func (m *Machine) readTasks(rr *recordReader, st *restored, count uint64) error {
	if count > uint64(m.maxTasks) {
		return fmt.Errorf("%d tasks, more than the %d this node keeps", count, m.maxTasks)
	}
	// The indexes are filled by a machine of their own, so that setTask
	// keeps them as Apply does.
	tm := &Machine{tasks: st.tasks, taskReady: st.taskReady, taskDone: st.taskDone, queueCounts: st.queueCounts}
	var prev task
	for i := uint64(0); i < count; i++ {
		var r snapshotTask
		if err := rr.read(&r); err != nil {
			return fmt.Errorf("task %d: %w", i, err)
		}
		t := task{queue: r.Queue, id: r.ID, data: r.Data, workflow: r.Workflow, state: taskState(r.State), readyAt: r.ReadyAt,
			created: r.Created, attempt: r.Attempt, maxAttempts: r.MaxAttempts, epoch: r.Epoch, lease: r.Lease,
			worker: r.Worker, result: r.Result, err: r.Error, finished: r.Finished}
		switch {
		case checkName("queue", t.queue, 1<<16) != nil || checkName("task id", t.id, 1<<16) != nil:
			return fmt.Errorf("task %d: invalid queue or id", i)
		case i > 0 && !taskLess(prev, t):
			return fmt.Errorf("task %q of %q out of order", t.id, t.queue)
		case t.state < taskWaiting || t.state > taskDead:
			return fmt.Errorf("task %q of %q: state %d", t.id, t.queue, t.state)
		case t.created == 0 || t.created > st.applied || t.epoch < 0 || uint64(t.epoch) > st.applied || t.attempt < 0 ||
			t.maxAttempts < 1 || t.finished > st.applied || (t.state == taskDone) != (t.finished != 0):
			return fmt.Errorf("task %q of %q: indexes or attempts inconsistent", t.id, t.queue)
		case !json.Valid(t.data) || (len(t.result) > 0 && !json.Valid(t.result)):
			return fmt.Errorf("task %q of %q: data or result is not JSON", t.id, t.queue)
		}
		prev = t
		if t.state == taskClaimed {
			l, ok := st.leases.Get(lease{id: t.lease})
			if !ok || l.taskID != "" {
				return fmt.Errorf("task %q of %q: its claim's lease %s is missing or holds another task", t.id, t.queue, LeaseID(t.lease))
			}
			l.taskQueue, l.taskID = t.queue, t.id
			st.leases.ReplaceOrInsert(l)
		} else if t.lease != 0 {
			return fmt.Errorf("task %q of %q: a lease without a claim", t.id, t.queue)
		}
		if t.state == taskDone {
			if _, dup := st.taskDone.Get(doneKey{finished: t.finished}); dup {
				return fmt.Errorf("task %q of %q: finished at index %d as another", t.id, t.queue, t.finished)
			}
		}
		if t.state == taskWaiting {
			if _, dup := st.taskReady.Get(readyKey{queue: t.queue, at: t.readyAt, created: t.created}); dup {
				return fmt.Errorf("task %q of %q: created at index %d as another", t.id, t.queue, t.created)
			}
		}
		tm.setTask(t, task{}, false)
	}
	return nil
}

// readSchedules reads count schedule records into st.
func (m *Machine) readSchedules(rr *recordReader, st *restored, count uint64) error {
	if count > uint64(m.maxSchedules) {
		return fmt.Errorf("%d schedules, more than the %d this node keeps", count, m.maxSchedules)
	}
	var prev string
	for i := uint64(0); i < count; i++ {
		var r snapshotSchedule
		if err := rr.read(&r); err != nil {
			return fmt.Errorf("schedule %d: %w", i, err)
		}
		if checkName("schedule id", r.ID, 1<<16) != nil || (i > 0 && r.ID <= prev) || checkName("queue", r.Queue, 1<<16) != nil {
			return fmt.Errorf("schedule %d: invalid or out of order id, or invalid queue", i)
		}
		prev = r.ID
		spec, err := checkScheduleSpec(r.Cron, r.EveryMs)
		switch {
		case err != nil:
			return fmt.Errorf("schedule %q: %w", r.ID, err)
		case !json.Valid(r.Data):
			return fmt.Errorf("schedule %q: data is not JSON", r.ID)
		case r.Created == 0 || r.Created > st.applied || r.After < 0 || r.LastFired < 0 || r.LastFired > r.After ||
			r.Fired < 0 || r.Skipped < 0:
			return fmt.Errorf("schedule %q: index, ticks or counts inconsistent", r.ID)
		}
		s := schedule{id: r.ID, queue: r.Queue, cron: r.Cron, everyMs: r.EveryMs, data: r.Data, created: r.Created,
			after: r.After, lastFired: r.LastFired, fired: r.Fired, skipped: r.Skipped, spec: spec}
		s.next = s.tickAfter(s.after)
		st.schedules.ReplaceOrInsert(s)
	}
	return nil
}
