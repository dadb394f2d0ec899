package kv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/unrdf/consensus/api"
)

// Divergence checks. A bit flip in memory or a bug can make one member's
// state differ from the others' without any error (etcd's corruption
// check exists for this). The leader proposes a hash check now and then;
// every member, applying it, hashes its state as it stands after that
// entry, so members that agree produce the same hash for the same index.
// The hash is of the snapshot encoding, which is deterministic (equal
// states give equal bytes). It is taken from a copy-on-write clone and
// computed off the apply path. Comparing members' hashes, and what to do
// about a member that differs, is the server's (cluster health checks).

// opHashCheck asks every member to hash its state at this entry. It
// changes nothing and has no revision of its own. Its value stands apart
// from command.go's run so that new operations there never collide.
const opHashCheck op = 40

// recentHashes is how many state hashes a machine keeps.
const recentHashes = 4

// StateHash is a member's hash of its state as it stood after applying
// the entry at Index: equal for every member whose state is the same.
type StateHash = api.StateHash

// ErrDiverged is wrapped by the error reads answer on a member whose state
// has diverged from the others' (Store.SetDiverged).
var ErrDiverged = errors.New("this member's state diverged from the majority's")

// stateHashes keeps a machine's most recent state hashes, by index.
type stateHashes struct {
	mu     sync.Mutex
	recent []StateHash
	// running counts hashes being computed (tests wait for them).
	running sync.WaitGroup
}

func (s *stateHashes) add(h StateHash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, found := slices.BinarySearchFunc(s.recent, h.Index, func(a StateHash, idx uint64) int {
		return cmpUint(a.Index, idx)
	})
	if found {
		return
	}
	s.recent = slices.Insert(s.recent, i, h)
	if len(s.recent) > recentHashes {
		s.recent = slices.Delete(s.recent, 0, len(s.recent)-recentHashes)
	}
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// applyHashCheck starts hashing the state as it stands now (after the
// entry at m.applied); the caller holds mu.
func (m *Machine) applyHashCheck() {
	snap, index := m.snapshotLocked(), m.applied
	m.hashes.running.Add(1)
	go func() {
		defer m.hashes.running.Done()
		defer snap.Release()
		h := sha256.New()
		if _, err := snap.WriteTo(h); err != nil {
			return // a hash.Hash does not fail
		}
		m.hashes.add(StateHash{Index: index, Hash: hex.EncodeToString(h.Sum(nil))})
	}()
}

// StateHashes returns the machine's most recent state hashes, oldest
// first (at most four).
func (m *Machine) StateHashes() []StateHash {
	m.hashes.mu.Lock()
	defer m.hashes.mu.Unlock()
	return slices.Clone(m.hashes.recent)
}

// StateHashes returns the most recent hashes of this store's state
// (Machine.StateHashes).
func (s *Store) StateHashes() []StateHash { return s.machine.StateHashes() }

// FlipValueForTest is Machine.FlipValueForTest on this store's machine: a
// test hook, never to be called otherwise.
func (s *Store) FlipValueForTest(key string) bool { return s.machine.FlipValueForTest(key) }

// WaitHashes waits until every state hash started so far is computed.
func (m *Machine) WaitHashes() { m.hashes.running.Wait() }

// FlipValueForTest changes the value of key on this machine alone,
// outside the log, as a bit flip in memory would: a test hook for the
// divergence check, never to be called otherwise. It reports whether the
// key exists.
func (m *Machine) FlipValueForTest(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.items.Get(Item{Key: key})
	if !ok || len(it.Value) == 0 {
		return false
	}
	v := slices.Clone(it.Value)
	v[len(v)-1] ^= 1 // still valid JSON for a digit; the test picks such a value
	it.Value = v
	m.items.ReplaceOrInsert(it)
	return true
}

// ProposeHashCheck proposes a hash check: every member hashes its state
// after that entry (Machine.StateHashes).
func (s *Store) ProposeHashCheck(ctx context.Context) error {
	if _, err := s.node.Propose(ctx, appendCommand(nil, &command{Op: opHashCheck})); err != nil {
		return fmt.Errorf("kv: hash check: %w", err)
	}
	return nil
}

// SetDiverged makes every read of this store fail with err (which should
// wrap ErrDiverged) until it is called with nil: a member whose state
// differs from the majority's must not answer from it.
func (s *Store) SetDiverged(err error) {
	if err == nil {
		s.diverged.Store(nil)
		return
	}
	s.diverged.Store(&err)
}

// Diverged returns the error SetDiverged set, or nil.
func (s *Store) Diverged() error {
	if p := s.diverged.Load(); p != nil {
		return *p
	}
	return nil
}
