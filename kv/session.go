package kv

import (
	"cmp"
	"slices"

	"github.com/google/btree"

	"github.com/unrdf/consensus/api"
)

// Bounds of the exactly-once session table.
const (
	// DefaultMaxSessions is how many clients the session table remembers;
	// beyond it the client whose last request has the lowest log index is
	// forgotten.
	DefaultMaxSessions = 1024
	// DefaultSessionWindow is how many of a client's most recent sequence
	// numbers (by value) at least have their results remembered (up to
	// twice as many: the table trims in steps).
	DefaultSessionWindow = api.DefaultSessionWindow
)

// session is one client's record: the results of its most recent
// sequences. A session reachable from a snapshot is never changed in
// place: gen says which snapshot generation may mutate it.
type session struct {
	client    string
	lastIndex uint64
	// results is sorted by seq, at most the table's window long.
	results []sessionResult
	gen     uint64
}

// sessionResult is the recorded outcome of one (client, seq).
type sessionResult struct {
	seq      uint64
	revision int64
	kind     errKind
	msg      string
}

func (r sessionResult) result() Result {
	if r.kind == 0 {
		return Result{Revision: r.revision}
	}
	return Result{Err: &applyError{kind: r.kind, msg: r.msg}}
}

// lruKey orders sessions by the log index of their last request.
type lruKey struct {
	index  uint64
	client string
}

// sessionTable is the deterministic, bounded table of client sessions.
// Every decision depends only on the log (indexes, client ids, sequence
// numbers), never on clocks or map order, so all nodes agree.
type sessionTable struct {
	maxClients int
	window     int
	// byClient orders sessions by client id (the snapshot order); it is
	// cloned by Snapshot.
	byClient *btree.BTreeG[*session]
	// byIndex orders them by last use, for eviction; derived, never
	// snapshotted.
	byIndex *btree.BTreeG[lruKey]
	// gen is bumped by every snapshot; a session with an older gen is
	// shared with a snapshot and copied before it changes.
	gen uint64
}

func newSessionTable(maxClients, window int) sessionTable {
	return sessionTable{
		maxClients: max(1, maxClients),
		window:     max(1, window),
		byClient:   btree.NewG(btreeDegree, func(a, b *session) bool { return a.client < b.client }),
		byIndex: btree.NewG(btreeDegree, func(a, b lruKey) bool {
			return a.index < b.index || (a.index == b.index && a.client < b.client)
		}),
	}
}

func (t *sessionTable) len() int { return t.byClient.Len() }

// writable returns the session of client that may be changed in place,
// creating it (and evicting the least recently used) when absent.
func (t *sessionTable) writable(client string) *session {
	s, ok := t.byClient.Get(&session{client: client})
	if !ok {
		for t.byClient.Len() >= t.maxClients {
			oldest, _ := t.byIndex.DeleteMin()
			t.byClient.Delete(&session{client: oldest.client})
		}
		s = &session{client: client, gen: t.gen}
		t.byClient.ReplaceOrInsert(s)
		return s
	}
	if s.gen != t.gen {
		cp := *s
		cp.results = slices.Clone(s.results)
		cp.gen = t.gen
		s = &cp
		t.byClient.ReplaceOrInsert(s)
	}
	return s
}

// touch records that client's latest request is at index.
func (t *sessionTable) touch(s *session, index uint64) {
	if s.lastIndex != 0 {
		t.byIndex.Delete(lruKey{index: s.lastIndex, client: s.client})
	}
	s.lastIndex = index
	t.byIndex.ReplaceOrInsert(lruKey{index: index, client: s.client})
}

// lookup returns the recorded result of (client, seq) if the request was
// applied, or ErrRequestExpired if seq is older than the window kept. In
// both cases the request must not be applied; the session is touched.
func (t *sessionTable) lookup(index uint64, client string, seq uint64) (Result, bool) {
	s, ok := t.byClient.Get(&session{client: client})
	if !ok {
		return Result{}, false
	}
	i, found := slices.BinarySearchFunc(s.results, seq, bySeq)
	var r Result
	switch {
	case found:
		r = s.results[i].result()
	case i == 0 && len(s.results) >= t.window:
		r = Result{Err: fail(ErrRequestExpired, "client %q sequence %d is older than the %d remembered", client, seq, len(s.results))}
	default:
		return Result{}, false
	}
	t.touch(t.writable(client), index)
	return r, true
}

// record remembers the result of (client, seq), applied at index.
func (t *sessionTable) record(index uint64, client string, seq uint64, r Result) {
	s := t.writable(client)
	t.touch(s, index)
	rec := sessionResult{seq: seq, revision: r.Revision}
	if ae := asApplyError(r.Err); ae != nil {
		rec.kind, rec.msg, rec.revision = ae.kind, ae.msg, 0
	}
	i, _ := slices.BinarySearchFunc(s.results, seq, bySeq)
	s.results = slices.Insert(s.results, i, rec)
	// Trim to the window only when it has doubled: one shift per window
	// of writes rather than one per write. A client thus has between
	// window and 2*window results remembered, decided by the log alone.
	if len(s.results) > 2*t.window {
		s.results = slices.Delete(s.results, 0, len(s.results)-t.window)
	}
}

// snapshot freezes the table: the returned tree is shared, and every
// session in it is copied before its next change.
func (t *sessionTable) snapshot() *btree.BTreeG[*session] {
	t.gen++
	return t.byClient.Clone()
}

// bySeq orders a client's results by sequence number, for binary search.
func bySeq(r sessionResult, seq uint64) int { return cmp.Compare(r.seq, seq) }
