// Package memnet is an in-memory network for raft nodes in one process,
// for tests: every node attached to a Network gets a consensus.Transport,
// and the Network can drop, delay, duplicate and reorder messages and cut
// links (one-way or both ways), partition the nodes into groups, isolate
// one node and heal, all at run time.
//
// Faults are drawn from a math/rand/v2 PCG generator seeded by the test,
// so a failing run prints a seed that replays the same fault decisions
// (the Go scheduler still interleaves goroutines its own way, so a replay
// is likely, not certain, to take the same path).
//
// Delivery is asynchronous, as on a real network: Send clones each message
// (raft may reuse the originals), draws its fate and puts it in the
// destination's bounded inbound queue, due after its delay; one goroutine
// per attached node hands due messages to its MessageHandler. Messages
// with different delays overtake each other, which is how reordering
// happens. A full queue drops the message and reports the destination
// unreachable to the sender, as the WebSocket transport does; so does a
// destination that is not attached (a crashed node: connection refused).
// A message lost to a drop rule or a cut link is lost silently, as on a
// real network. A dropped MsgSnap is also reported as a failed snapshot,
// a delivered one as finished.
//
// Routing is by raft id: AddPeer and RemovePeer only name peers for
// ConnectedPeers. Close every Transport, or the Network, to stop its
// goroutines.
package memnet

import (
	"bytes"
	"container/heap"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/unrdf/consensus"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// DefaultQueueLimit is the inbound queue bound used when Config.QueueLimit
// is zero.
const DefaultQueueLimit = 4096

// maxDeliverBatch bounds the messages handed to one Deliver call, so one
// busy sender cannot starve the others.
const maxDeliverBatch = 64

// Config configures a Network.
type Config struct {
	// Seed seeds the generator that draws every fault.
	Seed uint64
	// QueueLimit bounds each node's inbound queue (messages waiting for
	// their delay or for delivery). Zero means DefaultQueueLimit.
	QueueLimit int
}

// Rule is the behaviour of a link: each message is dropped with
// probability Drop; otherwise it is delivered after a delay drawn
// uniformly from [MinDelay, MaxDelay], and with probability Duplicate a
// second copy is delivered after a delay of its own. The zero Rule
// delivers everything at once.
type Rule struct {
	// Drop is the probability, in [0, 1], that a message is lost.
	Drop float64
	// Duplicate is the probability, in [0, 1], that a message is
	// delivered twice. Proposals (MsgProp) are duplicated only if
	// DuplicateProposals is set: stream transports (TCP, WebSocket) never
	// deliver a message twice, and raft has no defence against a
	// proposal that reaches the leader twice (it is appended, and
	// applied, twice); the node's own deduplication is future work.
	Duplicate float64
	// DuplicateProposals extends Duplicate to MsgProp.
	DuplicateProposals bool
	// MinDelay and MaxDelay bound a message's delay. Different delays
	// reorder messages.
	MinDelay, MaxDelay time.Duration
}

// Validate reports whether r is usable.
func (r Rule) Validate() error {
	switch {
	case r.Drop < 0 || r.Drop > 1 || r.Duplicate < 0 || r.Duplicate > 1:
		return fmt.Errorf("memnet: probabilities %v and %v must be in [0, 1]", r.Drop, r.Duplicate)
	case r.MinDelay < 0 || r.MaxDelay < r.MinDelay:
		return fmt.Errorf("memnet: delay range [%v, %v] is invalid", r.MinDelay, r.MaxDelay)
	}
	return nil
}

// Stats counts what happened to the messages sent on a Network.
type Stats struct {
	// Sent counts messages passed to Send.
	Sent uint64
	// Delivered counts messages handed to a MessageHandler, copies
	// included.
	Delivered uint64
	// Dropped counts messages lost to a Rule's Drop probability.
	Dropped uint64
	// Cut counts messages lost to a cut link, at Send or while in
	// flight.
	Cut uint64
	// QueueFull counts messages dropped because the destination's queue
	// was full.
	QueueFull uint64
	// Unreachable counts messages to a node that was not attached, or
	// still queued when it detached.
	Unreachable uint64
	// Duplicated counts extra copies made by a Rule's Duplicate
	// probability.
	Duplicated uint64
	// Delayed counts messages (and copies) given a non-zero delay.
	Delayed uint64
}

type link struct{ from, to uint64 }

// Network connects Transports in memory. Its methods are safe for
// concurrent use.
type Network struct {
	queueLimit int

	mu     sync.Mutex
	rng    *rand.Rand
	nodes  map[uint64]*Transport
	def    Rule
	rules  map[link]Rule
	cut    map[link]bool
	alone  map[uint64]bool
	groups map[uint64]int // nil when there is no partition
	closed bool
	seq    uint64
	stats  Stats
}

// New returns an empty Network.
func New(cfg Config) *Network {
	limit := cfg.QueueLimit
	if limit <= 0 {
		limit = DefaultQueueLimit
	}
	return &Network{
		queueLimit: limit,
		rng:        rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x6d656d6e6574)),
		nodes:      make(map[uint64]*Transport),
		rules:      make(map[link]Rule),
		cut:        make(map[link]bool),
		alone:      make(map[uint64]bool),
	}
}

// ErrClosed is returned by Attach on a closed Network.
var ErrClosed = errors.New("memnet: network closed")

// Attach connects the node with raft id id, whose inbound traffic goes to
// h, and returns its Transport. An id can be attached again after its
// Transport is closed (a restarted node); messages queued for the old one
// are gone.
func (n *Network) Attach(id uint64, h consensus.MessageHandler) (*Transport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	if _, ok := n.nodes[id]; ok {
		return nil, fmt.Errorf("memnet: node %x is already attached", id)
	}
	t := &Transport{
		net:   n,
		id:    id,
		h:     h,
		peers: make(map[uint64]string),
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	n.nodes[id] = t
	go t.deliverLoop()
	return t, nil
}

// SetDefaultRule sets the rule of every link that has none of its own.
func (n *Network) SetDefaultRule(r Rule) error {
	if err := r.Validate(); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.def = r
	return nil
}

// SetRule sets the rule of the one-way link from -> to.
func (n *Network) SetRule(from, to uint64, r Rule) error {
	if err := r.Validate(); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rules[link{from, to}] = r
	return nil
}

// ClearRules makes every link deliver everything at once again. Cuts
// stay.
func (n *Network) ClearRules() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.def = Rule{}
	clear(n.rules)
}

// Cut stops traffic from -> to (one way): messages are lost silently,
// including those already in flight.
func (n *Network) Cut(from, to uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[link{from, to}] = true
}

// Disconnect cuts both directions between a and b.
func (n *Network) Disconnect(a, b uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[link{a, b}] = true
	n.cut[link{b, a}] = true
}

// Isolate cuts every link to and from id.
func (n *Network) Isolate(id uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.alone[id] = true
}

// Partition splits the nodes into groups that cannot reach each other;
// nodes within a group can. Ids named in no group form one more group
// together. It replaces any previous partition; cuts and isolation stay.
func (n *Network) Partition(groups ...[]uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.groups = make(map[uint64]int)
	for i, g := range groups {
		for _, id := range g {
			n.groups[id] = i + 1
		}
	}
}

// Heal removes every cut, isolation and partition. Rules stay.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
	clear(n.alone)
	n.groups = nil
}

// Stats returns the counters so far.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Close closes every attached Transport and refuses new ones.
func (n *Network) Close() {
	n.mu.Lock()
	n.closed = true
	ts := make([]*Transport, 0, len(n.nodes))
	for _, t := range n.nodes {
		ts = append(ts, t)
	}
	n.mu.Unlock()
	for _, t := range ts {
		_ = t.Close()
	}
}

// blocked reports whether from -> to is cut. Callers hold n.mu.
func (n *Network) blocked(from, to uint64) bool {
	if n.alone[from] || n.alone[to] || n.cut[link{from, to}] {
		return true
	}
	return n.groups != nil && n.groups[from] != n.groups[to]
}

// ruleFor returns the rule of from -> to. Callers hold n.mu.
func (n *Network) ruleFor(from, to uint64) Rule {
	if r, ok := n.rules[link{from, to}]; ok {
		return r
	}
	return n.def
}

// delay draws a delay from r. Callers hold n.mu.
func (n *Network) delay(r Rule) time.Duration {
	d := r.MinDelay
	if r.MaxDelay > r.MinDelay {
		d += time.Duration(n.rng.Int64N(int64(r.MaxDelay-r.MinDelay) + 1))
	}
	if d > 0 {
		n.stats.Delayed++
	}
	return d
}

// failure is a message Send could not queue and must report to raft.
type failure struct {
	to   uint64
	snap bool
}

// send routes one message, already cloned, from the node with raft id
// from. Callers hold n.mu.
func (n *Network) send(from uint64, m *raftpb.Message, snapData []byte, now time.Time) (failed *failure) {
	n.stats.Sent++
	to := m.GetTo()
	isSnap := m.GetType() == raftpb.MsgSnap
	dst, ok := n.nodes[to]
	if !ok || dst.closed {
		n.stats.Unreachable++
		return &failure{to, isSnap}
	}
	if n.blocked(from, to) {
		n.stats.Cut++
		if isSnap {
			return &failure{to, true}
		}
		return nil
	}
	r := n.ruleFor(from, to)
	if r.Drop > 0 && n.rng.Float64() < r.Drop {
		n.stats.Dropped++
		if isSnap {
			return &failure{to, true}
		}
		return nil
	}
	copies := 1
	if r.Duplicate > 0 && (r.DuplicateProposals || m.GetType() != raftpb.MsgProp) && n.rng.Float64() < r.Duplicate {
		copies = 2
	}
	for c := range copies {
		if c > 0 {
			n.stats.Duplicated++
		}
		if len(dst.queue) >= n.queueLimit {
			n.stats.QueueFull++
			if c == 0 {
				return &failure{to, isSnap}
			}
			break
		}
		msg := m
		if c > 0 {
			msg = proto.Clone(m).(*raftpb.Message)
		}
		n.seq++
		heap.Push(&dst.queue, &pending{due: now.Add(n.delay(r)), seq: n.seq, from: from, msg: msg, snapData: snapData})
	}
	select {
	case dst.wake <- struct{}{}:
	default:
	}
	return nil
}

// Transport is one node's attachment to a Network. It implements
// consensus.Transport; all its methods are safe for concurrent use.
type Transport struct {
	net *Network
	id  uint64
	h   consensus.MessageHandler

	// Guarded by net.mu.
	peers  map[uint64]string
	queue  pendingQueue
	closed bool

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

var _ consensus.Transport = (*Transport)(nil)

// Send implements consensus.Transport. It never blocks on the network.
func (t *Transport) Send(msgs []*raftpb.Message) {
	clones := make([]*raftpb.Message, len(msgs))
	for i, m := range msgs {
		clones[i] = proto.Clone(m).(*raftpb.Message)
	}
	// A node that keeps snapshot data beside its messages hands it over
	// here, as the WebSocket transport streams it.
	var snapData map[*raftpb.Message][]byte
	if sh, ok := t.h.(consensus.SnapshotHandler); ok {
		for _, m := range clones {
			if m.GetType() != raftpb.MsgSnap {
				continue
			}
			meta := m.GetSnapshot().GetMetadata()
			b, err := readSnapshot(sh, meta.GetIndex(), meta.GetTerm())
			if err != nil {
				b = nil // delivered without data: the receiver refuses it
			}
			if snapData == nil {
				snapData = make(map[*raftpb.Message][]byte)
			}
			snapData[m] = b
		}
	}
	now := time.Now()
	var failed []failure
	t.net.mu.Lock()
	if t.closed {
		t.net.mu.Unlock()
		return
	}
	for _, m := range clones {
		if f := t.net.send(t.id, m, snapData[m], now); f != nil {
			failed = append(failed, *f)
		}
	}
	t.net.mu.Unlock()
	// Reported outside the lock: the handler steps raft, which must never
	// wait on the network.
	for _, f := range failed {
		t.h.ReportUnreachable(f.to)
		if f.snap {
			t.h.ReportSnapshot(f.to, raft.SnapshotFailure)
		}
	}
}

// AddPeer implements consensus.Transport; it records the peer's name.
func (t *Transport) AddPeer(id uint64, name, _ string) {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	t.peers[id] = name
}

// RemovePeer implements consensus.Transport.
func (t *Transport) RemovePeer(id uint64) {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	delete(t.peers, id)
}

// ConnectedPeers implements consensus.Transport: the added peers that are
// attached and reachable both ways.
func (t *Transport) ConnectedPeers() []uint64 {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	var out []uint64
	for id := range t.peers {
		if p, ok := t.net.nodes[id]; ok && !p.closed && !t.net.blocked(t.id, id) && !t.net.blocked(id, t.id) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Close implements consensus.Transport: it detaches the node, dropping
// its queued inbound messages, and waits for its delivery goroutine. It
// must not be called from the node's MessageHandler. Safe to call more
// than once.
func (t *Transport) Close() error {
	t.net.mu.Lock()
	if t.closed {
		t.net.mu.Unlock()
		<-t.done
		return nil
	}
	t.closed = true
	if t.net.nodes[t.id] == t {
		delete(t.net.nodes, t.id)
	}
	t.net.stats.Unreachable += uint64(len(t.queue))
	t.queue = nil
	t.net.mu.Unlock()
	close(t.stop)
	<-t.done
	return nil
}

// deliverLoop hands due messages to the handler until Close.
func (t *Transport) deliverLoop() {
	defer close(t.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop() // armed only while a queued message is not yet due
	var batch []*raftpb.Message
	var snaps, lostSnaps []uint64
	sh, streams := t.h.(consensus.SnapshotHandler)
	for {
		batch, snaps, lostSnaps = batch[:0], snaps[:0], lostSnaps[:0]
		var stream *pending // a MsgSnap to hand over with its data
		t.net.mu.Lock()
		now := time.Now()
		var wait time.Duration = -1
		for len(t.queue) > 0 && len(batch) < maxDeliverBatch {
			p := t.queue[0]
			if p.due.After(now) {
				wait = p.due.Sub(now)
				break
			}
			if streams && p.msg.GetType() == raftpb.MsgSnap && len(batch) > 0 {
				break // deliver what came before it first
			}
			heap.Pop(&t.queue)
			if streams && p.msg.GetType() == raftpb.MsgSnap && !t.net.blocked(p.from, t.id) {
				t.net.stats.Delivered++
				stream = p
				break
			}
			if t.net.blocked(p.from, t.id) {
				t.net.stats.Cut++
				if p.msg.GetType() == raftpb.MsgSnap {
					lostSnaps = append(lostSnaps, p.from)
				}
				continue
			}
			t.net.stats.Delivered++
			batch = append(batch, p.msg)
			if p.msg.GetType() == raftpb.MsgSnap {
				snaps = append(snaps, p.from)
			}
		}
		t.net.mu.Unlock()
		t.reportSnapshots(lostSnaps, raft.SnapshotFailure)
		if stream != nil {
			status := raft.SnapshotFinish
			if stream.snapData == nil {
				status = raft.SnapshotFailure
			} else if err := sh.ReceiveSnapshot(stream.msg, bytes.NewReader(stream.snapData)); err != nil {
				status = raft.SnapshotFailure
			}
			t.reportSnapshots([]uint64{stream.from}, status)
			continue
		}
		if len(batch) > 0 {
			t.h.Deliver(batch)
			t.reportSnapshots(snaps, raft.SnapshotFinish)
			batch = make([]*raftpb.Message, 0, maxDeliverBatch) // Deliver owns the old one
			continue
		}
		if wait >= 0 {
			timer.Reset(wait)
		}
		select {
		case <-t.wake:
		case <-timer.C:
		case <-t.stop:
			return
		}
		// Since Go 1.23 a stopped timer delivers no stale tick, so a
		// timer that was due while we woke for another reason cannot end
		// a later wait early.
		timer.Stop()
	}
}

// reportSnapshots tells each sender of a MsgSnap to t whether it
// arrived.
func (t *Transport) reportSnapshots(froms []uint64, status raft.SnapshotStatus) {
	if len(froms) == 0 {
		return
	}
	t.net.mu.Lock()
	senders := make([]*Transport, 0, len(froms))
	for _, from := range froms {
		if s, ok := t.net.nodes[from]; ok {
			senders = append(senders, s)
		}
	}
	t.net.mu.Unlock()
	for _, s := range senders {
		if status == raft.SnapshotFailure {
			s.h.ReportUnreachable(t.id)
		}
		s.h.ReportSnapshot(t.id, status)
	}
}

// pending is a message waiting for its due time.
type pending struct {
	due  time.Time
	seq  uint64
	from uint64
	msg  *raftpb.Message
	// snapData is a MsgSnap's data when its sender keeps it outside the
	// message (consensus.SnapshotHandler); nil otherwise.
	snapData []byte
}

// pendingQueue is a min-heap of messages by due time, then send order.
type pendingQueue []*pending

func (q pendingQueue) Len() int { return len(q) }
func (q pendingQueue) Less(i, j int) bool {
	if !q[i].due.Equal(q[j].due) {
		return q[i].due.Before(q[j].due)
	}
	return q[i].seq < q[j].seq
}
func (q pendingQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *pendingQueue) Push(x any)   { *q = append(*q, x.(*pending)) }
func (q *pendingQueue) Pop() any {
	old := *q
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return p
}

// readSnapshot reads a whole snapshot's data from its sender.
func readSnapshot(sh consensus.SnapshotHandler, index, term uint64) ([]byte, error) {
	r, _, err := sh.OpenSnapshot(index, term)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}
