package kv

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unrdf/consensus"
)

// LeaderNode is what a Lessor needs of the node (LeaderOf adapts a
// consensus.Node).
type LeaderNode interface {
	// Leading returns the current term and whether this node leads it.
	Leading() (term uint64, ok bool)
	// LinearizableRead returns once local state reflects every write
	// committed before the call.
	LinearizableRead(ctx context.Context) error
	// ProposeInTerm proposes cmd only while this node leads term, and
	// returns Apply's result (consensus.InTerm).
	ProposeInTerm(ctx context.Context, cmd []byte, term uint64) (any, error)
	// StorageStall says how long the storage write under way has run.
	StorageStall() time.Duration
}

// LeaderOf adapts node for a Lessor.
func LeaderOf(node *consensus.Node) LeaderNode { return nodeLeader{node} }

type nodeLeader struct{ *consensus.Node }

func (n nodeLeader) ProposeInTerm(ctx context.Context, cmd []byte, term uint64) (any, error) {
	p, err := n.Submit(ctx, cmd, consensus.InTerm(term))
	if err != nil {
		return nil, err
	}
	a, err := p.Wait(ctx)
	return a.Result, err
}

// LessorConfig tunes a Lessor. Zero fields take the defaults.
type LessorConfig struct {
	// Tick is how often the leader looks for expired leases (default
	// 50ms): a lease expires up to one tick, plus the commit of its
	// expiry, after its deadline.
	Tick time.Duration
	// StallBound (default 500ms) is how long a storage write may hang, or
	// the lessor go without running, before the leader's lease clock
	// counts it as stalled: while stalled it expires nothing, and
	// afterwards every lease's countdown starts again at its full time to
	// live, as after a change of leader, because keepalives could not be
	// served meanwhile.
	StallBound time.Duration
	// MaxExpireBatch bounds the leases one expiry revokes (default 1000).
	MaxExpireBatch int
	// Logger receives the lessor's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock, for tests; default time.Now (monotonic).
	Now func() time.Time
}

func (c *LessorConfig) setDefaults() {
	if c.Tick <= 0 {
		c.Tick = 50 * time.Millisecond
	}
	if c.StallBound <= 0 {
		c.StallBound = 500 * time.Millisecond
	}
	if c.MaxExpireBatch <= 0 {
		c.MaxExpireBatch = 1000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Lessor is the leader's lease clock. Leases and their keys are replicated
// state (Machine); when each expires is not: only the node that leads
// keeps a deadline per lease, by its own monotonic clock, and when one
// passes it proposes the expiry through the log, bound to its term
// (consensus.InTerm), so that a leader that lost its term can never have
// an expiry applied. Keepalives move a deadline in the leader's memory
// only: no log entry per renewal.
//
// A node that becomes leader gives every lease its full time to live
// again, counted from when its state is current (a linearizable read in
// its term), so no lease expires early because of a failover. A leader
// whose storage write hangs, or whose lessor goes unscheduled, for longer
// than StallBound expires nothing meanwhile and restarts every countdown
// afterwards (etcd-io/etcd#15247 revoked leases en masse after a stalled
// fsync). Every node runs a Lessor; it is idle unless its node leads.
type Lessor struct {
	node    LeaderNode
	machine *Machine
	cfg     LessorConfig

	mu sync.Mutex
	// term is the term this node leads (leading), ready once the
	// deadlines hold every lease of the state (rebuild).
	term    uint64
	leading bool
	ready   bool
	// deadlines are the leases' deadlines by the leader's clock;
	// expiring are those whose expiry is being proposed; removed are
	// leases removed while the deadlines were being rebuilt.
	deadlines map[LeaseID]deadline
	expiring  map[LeaseID]struct{}
	removed   map[LeaseID]struct{}
	// rebuilding is set while a rebuild runs; stalled while the leader
	// is stalled; lastTick is when tick last ran.
	rebuilding bool
	stalled    bool
	lastTick   time.Time

	// proposed and refused count expiries proposed and those not
	// applied (LessorStats).
	proposed, refused atomic.Uint64

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// LessorStats counts a lessor's work.
type LessorStats struct {
	// Leases is how many leases its deadlines hold (0 unless it leads).
	Leases int
	// ExpiriesProposed counts expiry proposals, of one or more leases;
	// ExpiriesNotApplied those that were refused or lost (a term that
	// ended, a timeout): nothing of those was applied, or it is unknown.
	ExpiriesProposed, ExpiriesNotApplied uint64
}

// Stats returns the lessor's counters.
func (l *Lessor) Stats() LessorStats {
	l.mu.Lock()
	n := len(l.deadlines)
	l.mu.Unlock()
	return LessorStats{Leases: n, ExpiriesProposed: l.proposed.Load(), ExpiriesNotApplied: l.refused.Load()}
}

type deadline struct {
	at  time.Time
	ttl time.Duration
}

// NewLessor returns the lease clock of node, whose state machine is
// machine; it observes machine's leases from now on. Start runs it.
func NewLessor(node LeaderNode, machine *Machine, cfg LessorConfig) *Lessor {
	cfg.setDefaults()
	l := &Lessor{node: node, machine: machine, cfg: cfg, stop: make(chan struct{}), done: make(chan struct{})}
	machine.SetLeaseObserver(l)
	return l
}

// Start runs the lessor until Stop.
func (l *Lessor) Start() {
	go l.run()
}

// Stop stops the lessor and waits for it.
func (l *Lessor) Stop() {
	l.once.Do(func() { close(l.stop) })
	<-l.done
}

func (l *Lessor) run() {
	defer close(l.done)
	t := time.NewTicker(l.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.tick()
		case <-l.stop:
			return
		}
	}
}

// LeaseGranted implements LeaseObserver: a lease granted while this node
// leads starts its countdown now.
func (l *Lessor) LeaseGranted(id LeaseID, ttlMs int64) {
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.leading {
		return
	}
	if _, ok := l.deadlines[id]; !ok {
		ttl := time.Duration(ttlMs) * time.Millisecond
		l.deadlines[id] = deadline{at: now.Add(ttl), ttl: ttl}
	}
}

// LeasesRemoved implements LeaseObserver.
func (l *Lessor) LeasesRemoved(ids []LeaseID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.leading {
		return
	}
	for _, id := range ids {
		delete(l.deadlines, id)
		delete(l.expiring, id)
		if !l.ready {
			l.removed[id] = struct{}{}
		}
	}
}

// lead makes the lessor the clock of term's leader, starting afresh if
// it was not. Called with mu held.
func (l *Lessor) lead(term uint64) {
	if l.leading && l.term == term {
		return
	}
	l.leading, l.term, l.ready, l.stalled = true, term, false, false
	l.deadlines = make(map[LeaseID]deadline)
	l.expiring = make(map[LeaseID]struct{})
	l.removed = make(map[LeaseID]struct{})
	l.rebuilding = false
	l.cfg.Logger.Info("lease clock started", "term", term)
}

// follow forgets every deadline. Called with mu held.
func (l *Lessor) follow() {
	if !l.leading {
		return
	}
	l.leading, l.ready, l.deadlines, l.expiring, l.removed = false, false, nil, nil, nil
	l.cfg.Logger.Info("lease clock stopped", "term", l.term)
}

func (l *Lessor) tick() {
	term, leading := l.node.Leading()
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var gap time.Duration
	if !l.lastTick.IsZero() {
		gap = now.Sub(l.lastTick)
	}
	l.lastTick = now
	if !leading {
		l.follow()
		return
	}
	l.lead(term)
	if stall := l.node.StorageStall(); stall > l.cfg.StallBound || gap > l.cfg.StallBound+l.cfg.Tick {
		if !l.stalled {
			l.cfg.Logger.Warn("lease clock stalled: expiring nothing until the node is back", "storageStall", stall, "tickGap", gap)
		}
		l.stalled = true
		if gap <= l.cfg.StallBound+l.cfg.Tick {
			return
		}
		// The lessor itself was not running: nothing was expired in
		// the gap, so restart the countdowns now, below.
	}
	if l.stalled {
		l.stalled = false
		for id, d := range l.deadlines {
			l.deadlines[id] = deadline{at: now.Add(d.ttl), ttl: d.ttl}
		}
		l.cfg.Logger.Info("lease clock resumed: every lease's countdown restarted", "leases", len(l.deadlines))
	}
	if !l.ready {
		if !l.rebuilding {
			l.rebuilding = true
			go l.rebuild(term)
		}
		return
	}
	var ids []int64
	for id, d := range l.deadlines {
		if _, busy := l.expiring[id]; !busy && !d.at.After(now) {
			ids = append(ids, int64(id))
		}
	}
	if len(ids) == 0 {
		return
	}
	slices.Sort(ids)
	if len(ids) > l.cfg.MaxExpireBatch {
		ids = ids[:l.cfg.MaxExpireBatch]
	}
	for _, id := range ids {
		l.expiring[LeaseID(id)] = struct{}{}
	}
	go l.expire(term, ids)
}

// rebuild gives every lease of the state, as of a linearizable read in
// term, its full time to live from now.
func (l *Lessor) rebuild(term uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*l.cfg.StallBound)
	defer cancel()
	err := l.node.LinearizableRead(ctx)
	var ids []LeaseID
	var ttls []int64
	if err == nil {
		ids, ttls = l.machine.leaseTTLs()
	}
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.leading || l.term != term {
		return
	}
	l.rebuilding = false
	if err != nil {
		l.cfg.Logger.Debug("lease clock: reading the state failed; trying again", "err", err)
		return
	}
	for i, id := range ids {
		if _, gone := l.removed[id]; gone {
			continue
		}
		if _, ok := l.deadlines[id]; !ok {
			ttl := time.Duration(ttls[i]) * time.Millisecond
			l.deadlines[id] = deadline{at: now.Add(ttl), ttl: ttl}
		}
	}
	l.ready, l.removed = true, nil
	l.cfg.Logger.Info("lease clock ready: every lease's countdown restarted", "term", term, "leases", len(l.deadlines))
}

// expire proposes the expiry of ids, bound to term.
func (l *Lessor) expire(term uint64, ids []int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*l.cfg.StallBound)
	defer cancel()
	l.proposed.Add(1)
	cmd, err := encodeCommand(withHistory(command{Op: opLeaseExpire, Leases: ids}))
	if err == nil {
		_, err = l.node.ProposeInTerm(ctx, cmd, term)
	}
	if err == nil {
		return // applied: LeasesRemoved dropped them
	}
	l.refused.Add(1)
	l.cfg.Logger.Debug("lease expiry not applied", "leases", len(ids), "term", term, "err", err)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.leading && l.term == term {
		for _, id := range ids {
			delete(l.expiring, LeaseID(id))
		}
	}
}

// KeepAlive renews lease id: its countdown starts again at its full time
// to live. It must be called on the leader (consensus.ErrNotLeader
// otherwise: the server forwards it). A lease that does not exist, or
// whose deadline has passed (its expiry is on its way), is
// ErrLeaseNotFound.
func (l *Lessor) KeepAlive(ctx context.Context, id LeaseID) (Lease, error) {
	info, term, err := l.current(ctx, id)
	if err != nil {
		return Lease{}, err
	}
	ttl := time.Duration(info.TTLMs) * time.Millisecond
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lead(term)
	if _, busy := l.expiring[id]; busy {
		return Lease{}, fmt.Errorf("kv: keepalive of lease %s: it expired: %w", id, ErrLeaseNotFound)
	}
	if d, ok := l.deadlines[id]; ok && l.ready && !l.stalled && !d.at.After(now) {
		return Lease{}, fmt.Errorf("kv: keepalive of lease %s: it expired %v ago: %w", id, now.Sub(d.at).Round(time.Millisecond), ErrLeaseNotFound)
	}
	l.deadlines[id] = deadline{at: now.Add(ttl), ttl: ttl}
	remaining := info.TTLMs
	return Lease{ID: id, TTLMs: info.TTLMs, RemainingMs: &remaining}, nil
}

// TimeToLive describes lease id with its keys and, by the leader's clock,
// the time it has left. Like KeepAlive, it must be called on the leader.
func (l *Lessor) TimeToLive(ctx context.Context, id LeaseID) (Lease, error) {
	info, term, err := l.current(ctx, id)
	if err != nil {
		return Lease{}, err
	}
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lead(term)
	remaining := info.TTLMs // not counted yet: the full time to live
	if d, ok := l.deadlines[id]; ok {
		remaining = max(0, d.at.Sub(now).Milliseconds())
	}
	info.RemainingMs = &remaining
	return info, nil
}

// current returns lease id as the state has it after a linearizable read
// on this node, which must lead, and the term it leads.
func (l *Lessor) current(ctx context.Context, id LeaseID) (Lease, uint64, error) {
	term, ok := l.node.Leading()
	if !ok {
		return Lease{}, 0, fmt.Errorf("kv: lease %s: its clock is the leader's: %w", id, consensus.ErrNotLeader)
	}
	if err := l.node.LinearizableRead(ctx); err != nil {
		return Lease{}, 0, err
	}
	info, ok := l.machine.LeaseInfo(id)
	if !ok {
		return Lease{}, 0, fmt.Errorf("kv: lease %s: %w", id, ErrLeaseNotFound)
	}
	if now, ok := l.node.Leading(); !ok || now != term {
		return Lease{}, 0, fmt.Errorf("kv: lease %s: leadership moved: %w", id, consensus.ErrNotLeader)
	}
	return info, term, nil
}

// Countdowns is what the leader's clock says of the leases, for a
// display such as the dashboard: it reads no log, so a lease granted or
// removed a moment ago may be missing or left over. It returns the
// milliseconds left of each of ids that the clock counts, and the first n
// leases by deadline (ties by id), with their time to live and time left.
// ok is false where the clock does not count: on a node that does not
// lead, on a new leader until its countdowns have started, and while the
// leader is stalled (its countdowns restart after).
func (l *Lessor) Countdowns(ids []LeaseID, n int) (remaining map[LeaseID]int64, soonest []Lease, ok bool) {
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.leading || !l.ready || l.stalled {
		return nil, nil, false
	}
	left := func(d deadline) int64 { return max(0, d.at.Sub(now).Milliseconds()) }
	remaining = make(map[LeaseID]int64, len(ids))
	for _, id := range ids {
		if d, ok := l.deadlines[id]; ok {
			remaining[id] = left(d)
		}
	}
	type entry struct {
		id LeaseID
		d  deadline
	}
	before := func(a, b entry) bool { return a.d.at.Before(b.d.at) || (a.d.at.Equal(b.d.at) && a.id < b.id) }
	// The n soonest, kept sorted: n is small (a display's rows), so an
	// insertion into it beats sorting every lease.
	first := make([]entry, 0, n+1)
	for id, d := range l.deadlines {
		e := entry{id, d}
		if len(first) == n && (n == 0 || !before(e, first[n-1])) {
			continue
		}
		i := len(first)
		for i > 0 && before(e, first[i-1]) {
			i--
		}
		first = slices.Insert(first, i, e)
		if len(first) > n {
			first = first[:n]
		}
	}
	soonest = make([]Lease, len(first))
	for i, e := range first {
		ms := left(e.d)
		soonest[i] = Lease{ID: e.id, TTLMs: e.d.ttl.Milliseconds(), RemainingMs: &ms}
	}
	return remaining, soonest, true
}
