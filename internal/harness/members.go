package harness

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/storage"
)

// Join adds a new node named name to the running cluster the way `consensus
// serve --join` does: it asks the running node via to add it as a learner
// (consensus.Node.AddMember), then starts it with empty storage so the
// leader replicates the log to it. The leader promotes it to voter once it
// has caught up. The new node's storage is MemoryStorage or CrashablePebble
// like the others'.
func (c *Cluster) Join(ctx context.Context, via, name string) error {
	if err := c.AddMember(ctx, via, name); err != nil {
		return err
	}
	return c.StartJoining(name)
}

// AddMember asks the running node via to add name as a learner at its
// in-memory address, without starting it.
func (c *Cluster) AddMember(ctx context.Context, via, name string) error {
	_, err := c.Node(via).AddMember(ctx, consensus.Member{ID: name, PeerAddr: "memnet:" + name})
	if err != nil {
		return fmt.Errorf("harness: add %s via %s: %w", name, via, err)
	}
	return nil
}

// StartJoining starts a node named name, not yet part of the cluster
// harness, with empty storage and Config.Join set. The cluster must have
// added it (AddMember) for the leader to replicate to it.
func (c *Cluster) StartJoining(name string) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	if _, ok := c.members[name]; ok || c.closed {
		c.mu.Unlock()
		return fmt.Errorf("harness: start %s: already known", name)
	}
	m := &member{name: name, id: consensus.RaftID(name), joins: true}
	switch c.opts.Storage {
	case CrashablePebble:
		m.fs = vfs.NewCrashableMem()
	default:
		m.storage = storage.NewMemory()
		m.snapFS = vfs.NewMem()
	}
	c.members[name] = m
	c.names = append(c.names, name)
	c.peers[name] = "memnet:" + name
	c.mu.Unlock()
	if err := c.start(m); err != nil {
		return fmt.Errorf("harness: start %s: %w", name, err)
	}
	return nil
}

// Remove asks the running node via to remove name from the cluster
// (consensus.Node.RemoveMember: a leader hands leadership over first)
// and, once the removal is in effect, stops name for good if it is
// running: it leaves Names and RunningNames, and its id is never used
// again. If the removal fails (ErrTimeout: outcome unknown), name stays
// a member as far as the harness knows; calling Remove again is safe,
// since removing a removed member succeeds.
func (c *Cluster) Remove(ctx context.Context, via, name string) error {
	if err := c.Node(via).RemoveMember(ctx, name); err != nil {
		return fmt.Errorf("harness: remove %s via %s: %w", name, via, err)
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	m := c.member(name)
	if m.removed || c.closed {
		c.mu.Unlock()
		return nil
	}
	m.removed = true
	running := m.running
	m.running = false
	c.mu.Unlock()
	if running {
		_ = m.tr.Close()
		m.stop()
		if c.opts.Storage == CrashablePebble {
			_ = m.storage.Close()
			c.mu.Lock()
			m.storage = nil
			c.mu.Unlock()
		}
	}
	return nil
}
